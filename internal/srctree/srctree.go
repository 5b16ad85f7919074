// Package srctree answers the two questions asked of a stardetr source tree by the library
// search (a binary run from the tree) and by the tests: where is its root, and which version
// does scripts/versions.env pin for a dependency.
package srctree

import (
	"os"
	"path/filepath"
	"strings"
)

// Root walks up from dir to the folder holding go.mod; "" when there is none.
func Root(dir string) string {
	for {
		if st, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil && !st.IsDir() {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// Pinned returns the value of key (e.g. "ORT_VERSION") in root's scripts/versions.env, the one
// place versions are pinned; "" when the file or the key is missing.
func Pinned(root, key string) string {
	b, err := os.ReadFile(filepath.Join(root, "scripts", "versions.env"))
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), key+"="); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
