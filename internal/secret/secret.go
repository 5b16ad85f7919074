// Package secret reads secrets (passwords) from files, refusing files that everyone may read.
package secret

import (
	"fmt"
	"os"
	"strings"
)

// Read returns the file's content without its trailing newline. A file readable by everyone
// is refused: the secret would not be one.
func Read(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("cannot read %s: %w", path, err)
	}
	if st.IsDir() {
		return "", fmt.Errorf("%s is a directory, not a file", path)
	}
	if st.Mode().Perm()&0o004 != 0 {
		return "", fmt.Errorf("%s is readable by everyone (mode %04o): run chmod 600 %s", path, st.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("cannot read %s: %w", path, err)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}
