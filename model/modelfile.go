package model

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/stardetr/stardetr/model/internal/onnxpb"
)

// parseError is a model file that could be read but is not an ONNX model.
type parseError struct{ err error }

func (e *parseError) Error() string { return e.err.Error() }

// readModel parses what Open needs from the ONNX file at path and hashes it. The file is
// mapped read-only, not read: its bytes (75 MB for the seed model) never reach the Go heap,
// where they would stay resident long after the session is built (Go returns freed heap to the
// system only slowly), and onnxpb.Parse copies every string it keeps, so nothing refers to the
// mapping once it is unmapped here.
func readModel(path string) (m *onnxpb.Model, sum [sha256.Size]byte, size int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, sum, 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, sum, 0, err
	}
	size = st.Size()
	if !st.Mode().IsRegular() {
		return nil, sum, size, fmt.Errorf("%s is not a regular file", path)
	}
	if size == 0 {
		return nil, sum, 0, &parseError{errors.New("the file is empty")}
	}
	if int64(int(size)) != size {
		return nil, sum, size, fmt.Errorf("%s is too large to map (%d bytes)", path, size)
	}
	data, err := syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_PRIVATE)
	if err != nil {
		return nil, sum, size, fmt.Errorf("mapping %s: %w", path, err)
	}
	defer func() {
		if uerr := syscall.Munmap(data); uerr != nil && err == nil {
			err = fmt.Errorf("unmapping %s: %w", path, uerr)
		}
	}()
	if m, err = onnxpb.Parse(data); err != nil {
		return nil, sum, size, &parseError{err}
	}
	return m, sha256.Sum256(data), size, nil
}
