package daemon_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stardetr/stardetr/internal/testenv"
)

// ONNX Runtime 1.30's release build records telemetry events under
// $HOME/.cache/Microsoft/DeveloperTools/.onnxruntime/ for upload unless told not to. A check
// that loads and runs the model leaves nothing in a fresh home folder.
func TestNoTelemetry(t *testing.T) {
	e := newStartupEnv(t, buildStardetr(t), testenv.NewMosquitto(t, ""), testenv.FreePort(t))
	home := filepath.Join(e.dir, "home")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	// Later entries win over the test's own environment: a fresh home and cache folder, and
	// no ORT_DISABLE_TELEMETRY of the caller's.
	code, out := e.runToExitEnv(t, []string{"HOME=" + home, "XDG_CACHE_HOME=" + filepath.Join(home, ".cache"), "ORT_DISABLE_TELEMETRY="}, "check")
	if code != 0 || !strings.Contains(out, "model") {
		t.Fatalf("check: exit %d\n%s", code, out)
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
