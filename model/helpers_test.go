package model_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stardetr/stardetr/internal/libsearch"
	"github.com/stardetr/stardetr/internal/testenv"
	"github.com/stardetr/stardetr/model"
)

const python = "/usr/bin/python3"

// testModels is the folder of the graphs testdata/testmodels.py builds for this test run.
var testModels string

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(runHelper())
	}
	dir, err := os.MkdirTemp("", "stardetr-model-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if out, err := exec.Command(python, "testdata/testmodels.py", dir).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "testdata/testmodels.py: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	testModels = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func testModel(name string) string { return filepath.Join(testModels, name+".onnx") }

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// testConfig runs path on one CPU thread with the real ONNX Runtime library.
func testConfig(t testing.TB, path string) model.Config {
	cfg := model.DefaultConfig()
	cfg.Path = path
	cfg.ONNXRuntime = testenv.ONNXRuntime(t)
	cfg.Threads = 1
	return cfg
}

// noLibs finds nothing: the plugin must come from the config.
var noLibs = libsearch.Locator{}

func openDetector(t testing.TB, cfg model.Config) *model.Detector {
	t.Helper()
	d, err := model.OpenWith(context.Background(), cfg, t.TempDir(), testLogger(t), libsearch.DefaultLocator())
	if err != nil {
		t.Fatalf("Open(%s): %v", cfg.Path, err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return d
}

func writeFloats(t testing.TB, path string, v []float32) {
	t.Helper()
	b := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFloats(t testing.TB, path string) []float32 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	v := make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v
}

func runPython(t testing.TB, args ...string) []byte {
	t.Helper()
	return runPythonIn(t, "", args...)
}

// runPythonIn runs python in dir (the repository root, so that model.reference imports);
// dir "" keeps the working directory and PYTHONPATH.
func runPythonIn(t testing.TB, dir string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(python, args...)
	cmd.Env = append(os.Environ(), "OMP_NUM_THREADS=1", "OMP_WAIT_POLICY=PASSIVE")
	if dir != "" {
		cmd.Dir = dir
		cmd.Env = append(cmd.Env, "PYTHONPATH="+dir)
	}
	out, err := cmd.Output()
	if err != nil {
		stderr := ""
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("%s %s: %v\n%s", python, strings.Join(args, " "), err, stderr)
	}
	return out
}
