//go:build linux

package pageout

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// Release advises MADV_PAGEOUT on every read-only mapping of a file (executable code, read-only
// data, symbol tables). Writable mappings are left alone: their written pages are anonymous
// copies, which paging out would only move to swap. A kernel without MADV_PAGEOUT (before
// Linux 5.4) returns errors.ErrUnsupported and nothing is changed.
func Release() (Result, error) {
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return Result{}, fmt.Errorf("reading the process's mappings: %w", err)
	}
	var r Result
	sc := bufio.NewScanner(bytes.NewReader(maps))
	for sc.Scan() {
		start, length, ok := readOnlyFileMapping(sc.Bytes())
		if !ok {
			continue
		}
		_, _, errno := unix.Syscall(unix.SYS_MADVISE, start, length, unix.MADV_PAGEOUT)
		switch {
		case errno == unix.EINVAL && r.Mappings == 0:
			return Result{}, fmt.Errorf("madvise(MADV_PAGEOUT): %w (needs Linux 5.4 or later)", errors.ErrUnsupported)
		case errno != 0:
			continue // a mapping that changed since maps was read, or one the kernel refuses: skip it
		}
		r.Mappings++
		r.Bytes += int64(length)
	}
	return r, nil
}

// readOnlyFileMapping parses one line of /proc/self/maps ("start-end perms offset dev inode
// path") and reports the range of a mapping that is backed by a file and not writable.
func readOnlyFileMapping(line []byte) (start, length uintptr, ok bool) {
	fields := bytes.Fields(line)
	if len(fields) < 6 || fields[5][0] != '/' || len(fields[1]) < 2 || fields[1][1] != '-' {
		return 0, 0, false
	}
	lo, hi, found := bytes.Cut(fields[0], []byte("-"))
	if !found {
		return 0, 0, false
	}
	a, err1 := strconv.ParseUint(string(lo), 16, 64)
	b, err2 := strconv.ParseUint(string(hi), 16, 64)
	if err1 != nil || err2 != nil || b <= a {
		return 0, 0, false
	}
	return uintptr(a), uintptr(b - a), true
}
