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

// The command refuses what tracking and access settings cannot run, naming the key: a zone
// class the model does not have (known only once the model is loaded: check lists it, run
// exits 1 before starting anything), and a non-loopback http.listen without http.auth.
func TestRunRefusesBadTrackingConfig(t *testing.T) {
	bin := buildStardetr(t)
	dir := t.TempDir()
	clip := filepath.Join(testenv.RepoRoot(t), "camera", "testdata", "testsrc-320x240-10fps.mp4")
	write := func(extra string) string {
		p := filepath.Join(dir, "config.yaml")
		body := fmt.Sprintf(`state_dir: %s/state
model: {path: %s, threads: 1}
cameras:
  - name: front
    url: %s
    track: {enabled: true}
    zones:
      - name: gate
        polygon: [[0, 0], [1, 0], [1, 1]]
        classes: [unicorn]
mqtt: {brokers: ["mqtt://127.0.0.1:1"]}
%s`, dir, testenv.Model(t, "tiny.onnx"), clip, extra)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfg := write("http: {listen: \"127.0.0.1:0\"}\n")
	out, err := exec.Command(bin, "check", "--config", cfg).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("check: exit %v, want 1\n%s", err, out)
	}
	testenv.WantError(t, fmt.Errorf("%s", out), `cameras[0].zones[0].classes[0]: "unicorn" is not a class of the model`, "person", "car")
	out, err = exec.Command(bin, "run", "--config", cfg).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("run: exit %v, want 1\n%s", err, out)
	}
	testenv.WantError(t, fmt.Errorf("%s", out), "not started", "cameras[0].zones[0].classes[0]", "unicorn", "is not a class of the model")
	if strings.Contains(string(out), "http listening") || strings.Contains(string(out), "stardetr running") {
		t.Errorf("run started something before refusing:\n%s", out)
	}

	cfg = write("http: {listen: \"0.0.0.0:0\"}\n")
	out, err = exec.Command(bin, "run", "--config", cfg).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
		t.Fatalf("run on 0.0.0.0 without auth: exit %v, want 2\n%s", err, out)
	}
	testenv.WantError(t, fmt.Errorf("%s", out), `http.listen: "0.0.0.0:0" is reachable from other machines`, "http.auth.password_file", "reverse proxy")
}
