package daemon

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoadConfig loads arbitrary bytes as a config file and validates what loads: one error
// or a config, never a panic. Seeds: testdata/fuzz/FuzzLoadConfig and the shipped configs.
// Run: go test -tags gocv_specific_modules,gocv_videoio -run '^$' -fuzz FuzzLoadConfig ./daemon/
func FuzzLoadConfig(f *testing.F) {
	for _, name := range []string{"demo.yaml", "example.yaml"} {
		if b, err := os.ReadFile(filepath.Join("..", "configs", name)); err == nil {
			f.Add(b)
		}
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "config.yaml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := LoadConfig(path)
		if err != nil {
			return
		}
		_ = cfg.Validate()
	})
}
