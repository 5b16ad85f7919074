package daemon_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stardetr/stardetr/internal/testenv"
)

// An image that is none of the formats stardetr reads in the val set stops `stardetr eval`
// with exit 1 and one error that names the file, not a panic or a silent zero.
func TestEvalNamesUnreadableImage(t *testing.T) {
	bin := buildStardetr(t)
	dir := t.TempDir()
	for _, sub := range []string{"images/val", "labels/val"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	good, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "model", "testdata", "frame.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"images/val/a.jpg": good,
		"labels/val/a.txt": []byte("0 0.5 0.5 0.2 0.4\n"),
		"images/val/b.jpg": []byte("not a jpeg"),
		"labels/val/b.txt": []byte("1 0.3 0.3 0.1 0.1\n"),
		"data.yaml":        []byte(fmt.Sprintf("path: %s\ntrain: images/val\nval: images/val\nnames:\n  0: person\n  1: car\n", dir)),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command(bin, "eval", "--model", testenv.Model(t, "tiny.onnx"), "--data", filepath.Join(dir, "data.yaml")).CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 1 {
		t.Fatalf("eval with an undecodable image: %v, want exit 1\n%s", err, out)
	}
	if s := string(out); !strings.Contains(s, "b.jpg: unknown image format") || strings.Contains(s, "panic") {
		t.Errorf("eval's error does not name the image it cannot decode:\n%s", s)
	}
}
