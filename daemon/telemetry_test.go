package daemon_test

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stardetr/stardetr/internal/testenv"
)

// ONNX Runtime 1.30's release build records telemetry events under
// $HOME/.cache/Microsoft/DeveloperTools/.onnxruntime/ for upload unless told not to. A check
// that loads and runs the model leaves nothing in a fresh home folder.
func TestNoTelemetry(t *testing.T) {
	bin := buildStardetr(t)
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "config.yaml")
	clip := filepath.Join(testenv.RepoRoot(t), "camera", "testdata", "testsrc-320x240-10fps.mp4")
	body := fmt.Sprintf("state_dir: %s/state\nmodel: {path: %s, threads: 1}\ncameras: [{name: a, url: %s}]\nmqtt: {brokers: [\"mqtt://127.0.0.1:1\"]}\nhttp: {listen: \"\"}\n",
		dir, testenv.Model(t, "tiny.onnx"), clip)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "check", "--config", cfg)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HOME=") && !strings.HasPrefix(kv, "XDG_CACHE_HOME=") && !strings.HasPrefix(kv, "ORT_DISABLE_TELEMETRY=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "HOME="+home)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "model") {
		t.Fatalf("check: %v\n%s", err, out)
	}
	var left []string
	_ = filepath.WalkDir(home, func(p string, _ fs.DirEntry, err error) error {
		if p != home {
			left = append(left, strings.TrimPrefix(p, home))
		}
		return err
	})
	if len(left) > 0 {
		t.Errorf("loading the model wrote into $HOME: %v", left)
	}
}
