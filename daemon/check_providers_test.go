package daemon_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/stardetr/stardetr/internal/testenv"
)

// `stardetr check` says how many nodes ran on each execution provider in the model's warm-up
// run (from ONNX Runtime's profile): here all of the demo's tiny model, CARAFE included, on the
// CPU. On TensorRT it adds the number of TensorRT engines (model.ReadProfile's test covers the
// TensorRT provider's records).
func TestCheckReportsNodesPerProvider(t *testing.T) {
	bin := buildStardetr(t)
	dir := t.TempDir()
	clip := filepath.Join(testenv.RepoRoot(t), "camera", "testdata", "testsrc-320x240-10fps.mp4")
	p := filepath.Join(dir, "config.yaml")
	body := fmt.Sprintf(`state_dir: %s/state
model: {path: %s, plugin: %s, threads: 1, providers: [cpu]}
cameras:
  - {name: a, url: %s}
mqtt: {brokers: ["mqtt://127.0.0.1:1"]}
http: {listen: ""}
`, dir, testenv.Model(t, "tiny.onnx"), testenv.Plugin(t), clip)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir() // check profiles into a folder of its own under $TMPDIR and removes it
	cmd := exec.Command(bin, "check", "--config", p)
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("check: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`model: nodes per provider in the warm-up run: CPUExecutionProvider (\d+)\n`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("check output has no nodes-per-provider line:\n%s", out)
	}
	if n, _ := strconv.Atoi(string(m[1])); n < 10 {
		t.Errorf("%d nodes on the CPU; the tiny model has far more", n)
	}
	if regexp.MustCompile(`TensorRT engines`).Match(out) {
		t.Errorf("a CPU session reports TensorRT engines:\n%s", out)
	}
	if left, _ := os.ReadDir(tmp); len(left) > 0 {
		t.Errorf("check left %d files in $TMPDIR, e.g. %s", len(left), left[0].Name())
	}
}
