package daemon_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stardetr/stardetr/internal/testenv"
)

// model.batch above 1 needs a model with a dynamic batch axis: check and run say so, naming
// the key and the fix; with such a model check accepts it.
func TestModelBatchNeedsDynamicBatch(t *testing.T) {
	bin := buildStardetr(t)
	dir := t.TempDir()
	clip := filepath.Join(testenv.RepoRoot(t), "camera", "testdata", "testsrc-320x240-10fps.mp4")
	write := func(model string) string {
		p := filepath.Join(dir, "config.yaml")
		body := fmt.Sprintf(`state_dir: %s/state
model: {path: %s, threads: 1, batch: 4, batch_wait: 10ms}
cameras:
  - {name: a, url: %s}
  - {name: b, url: %s}
mqtt: {brokers: ["mqtt://127.0.0.1:1"]}
http: {listen: ""}
`, dir, testenv.Model(t, model), clip, clip)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfg := write("tiny.onnx")
	for _, cmd := range []string{"check", "run"} {
		out, err := exec.Command(bin, cmd, "--config", cfg).CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
			t.Fatalf("%s with batch 4 on a fixed-batch model: exit %v, want 1\n%s", cmd, err, out)
		}
		testenv.WantError(t, fmt.Errorf("%s", out), "model.batch", "fixed batch of 1", "dynamic")
	}
	if out, err := exec.Command(bin, "check", "--config", write("tiny-dynamic.onnx")).CombinedOutput(); err != nil {
		t.Fatalf("check with batch 4 on a dynamic-batch model: %v\n%s", err, out)
	}
}
