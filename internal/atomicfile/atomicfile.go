// Package atomicfile replaces small state files so that a crash leaves either the old or the
// new content, never a torn one.
package atomicfile

import (
	"os"
)

// Write replaces path with data through a temporary file in the same folder: write, fsync,
// rename. Call Sync on the folder afterwards where the rename itself must survive a power loss.
func Write(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(tmp) // on a full disk a partial temporary file would hold on to space
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

// Sync fsyncs a file, or a folder (making renames and new files in it durable).
func Sync(path string) error {
	d, err := os.Open(path)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
