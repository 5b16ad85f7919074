// Package mapfile maps whole files read-only, for the model's bytes that ONNX Runtime reads
// in place (model.memory.map_weights) and for the bare host that measures the same.
package mapfile

import (
	"fmt"
	"os"
	"syscall"
)

// ReadOnly maps all of path read-only and private; release the mapping with Unmap. A missing
// file's error wraps fs.ErrNotExist.
func ReadOnly(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() || st.Size() == 0 || int64(int(st.Size())) != st.Size() {
		return nil, fmt.Errorf("%s: cannot map a file of mode %v and size %d", path, st.Mode(), st.Size())
	}
	data, err := syscall.Mmap(int(f.Fd()), 0, int(st.Size()), syscall.PROT_READ, syscall.MAP_PRIVATE)
	if err != nil {
		return nil, fmt.Errorf("mapping %s: %w", path, err)
	}
	return data, nil
}

// Unmap releases a mapping ReadOnly made.
func Unmap(data []byte) error { return syscall.Munmap(data) }
