//go:build linux

package pageout

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// A read-only file mapping whose pages this process touched loses them from its resident set
// on Release and reads them back correctly after; a writable one is left alone.
func TestReleaseGivesBackReadOnlyFilePages(t *testing.T) {
	const size = 8 << 20
	content := bytes.Repeat([]byte("stardetr"), size/8)
	dir := t.TempDir()
	var fs syscall.Statfs_t
	if err := syscall.Statfs(dir, &fs); err != nil {
		t.Fatal(err)
	}
	if fs.Type == 0x01021994 { // TMPFS_MAGIC: its pages have no file to be re-read from
		t.Skipf("%s is on tmpfs, whose pages only swap can take: set TMPDIR to a folder on a disk", dir)
	}
	ro := mapFile(t, filepath.Join(dir, "ro.bin"), content, syscall.PROT_READ)
	rw := mapFile(t, filepath.Join(dir, "rw.bin"), content, syscall.PROT_READ|syscall.PROT_WRITE)
	sum := 0
	for i := 0; i < size; i += 4096 {
		sum += int(ro[i])
		rw[i] = 'X' // a private copy of each page: anonymous memory
	}
	if sum != size/4096*int('s') {
		t.Fatalf("read %d from the mapping's pages, want %d", sum, size/4096*int('s'))
	}
	if got := residentKB(t, "ro.bin"); got < size/1024*9/10 {
		t.Fatalf("the read-only mapping has %d kB resident after touching it all, want about %d", got, size/1024)
	}

	r, err := Release()
	if errors.Is(err, errors.ErrUnsupported) {
		t.Skipf("this kernel has no MADV_PAGEOUT: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if r.Mappings == 0 || r.Bytes < size {
		t.Errorf("Release advised %d mappings, %d bytes; want the test file's %d bytes at least", r.Mappings, r.Bytes, size)
	}
	if got := residentKB(t, "ro.bin"); got > size/1024/4 {
		t.Errorf("the read-only mapping still has %d kB of %d resident after Release", got, size/1024)
	}
	if got := residentKB(t, "rw.bin"); got < size/1024*9/10 {
		t.Errorf("the writable mapping went from %d kB to %d kB resident: its written pages must stay", size/1024, got)
	}
	if !bytes.Equal(ro, content) || rw[4096] != 'X' || rw[4097] != 't' {
		t.Error("the mappings' contents changed")
	}
}

func TestReadOnlyFileMapping(t *testing.T) {
	for _, c := range []struct {
		line      string
		ok        bool
		start, ln uintptr
	}{
		{"7f0000000000-7f0000002000 r-xp 00000000 fe:00 123 /usr/lib/libx.so", true, 0x7f0000000000, 0x2000},
		{"7f0000000000-7f0000002000 r--p 00001000 fe:00 123 /opt/with space/lib.so", true, 0x7f0000000000, 0x2000},
		{"7f0000000000-7f0000002000 rw-p 00000000 fe:00 123 /usr/lib/libx.so", false, 0, 0},
		{"7f0000000000-7f0000002000 rw-p 00000000 00:00 0 ", false, 0, 0},
		{"7ffc00000000-7ffc00002000 r-xp 00000000 00:00 0 [vdso]", false, 0, 0},
		{"7f0000002000-7f0000000000 r--p 00000000 fe:00 1 /x", false, 0, 0},
		{"garbage", false, 0, 0},
	} {
		start, ln, ok := readOnlyFileMapping([]byte(c.line))
		if ok != c.ok || start != c.start || ln != c.ln {
			t.Errorf("%q: got %#x %#x %v, want %#x %#x %v", c.line, start, ln, ok, c.start, c.ln, c.ok)
		}
	}
}

// mapFile writes content to path and maps it privately with prot; the mapping lasts the test.
func mapFile(t *testing.T, path string, content []byte, prot int) []byte {
	t.Helper()
	if err := os.WriteFile(path, content, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	data, err := syscall.Mmap(int(f.Fd()), 0, len(content), prot, syscall.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Munmap(data) })
	return data
}

// residentKB is the Rss of the process's mappings of the file named name.
func residentKB(t *testing.T, name string) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	total, in := 0, false
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if f := strings.Fields(line); len(f) > 0 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":") {
			in = len(f) >= 6 && filepath.Base(f[len(f)-1]) == name
			continue
		}
		if v, ok := strings.CutPrefix(line, "Rss:"); in && ok {
			kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err != nil {
				t.Fatal(fmt.Errorf("smaps Rss %q: %w", v, err))
			}
			total += kb
		}
	}
	return total
}
