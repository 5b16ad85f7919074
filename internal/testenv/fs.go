package testenv

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// Tmpfs mounts a tmpfs of size bytes on a fresh folder until the test ends: a real file
// system that fills up, for the disk-full tests. Mounting needs root (CAP_SYS_ADMIN); the
// test fails saying so where it is missing.
func Tmpfs(t testing.TB, size int) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+strconv.Itoa(size)); err != nil {
		t.Fatalf("mount a %d-byte tmpfs on %s: %v: the disk-full tests mount one and need root (CAP_SYS_ADMIN)", size, dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// Fill writes the file dir/name so that about free bytes stay free on dir's file system,
// as another program filling the disk would.
func Fill(t testing.TB, dir, name string, free int64) string {
	t.Helper()
	var fs syscall.Statfs_t
	if err := syscall.Statfs(dir, &fs); err != nil {
		t.Fatal(err)
	}
	n := int64(fs.Bavail)*fs.Bsize - free
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, make([]byte, max(n, 0)), 0o640); err != nil && !errors.Is(err, syscall.ENOSPC) {
		t.Fatal(err)
	}
	return path
}
