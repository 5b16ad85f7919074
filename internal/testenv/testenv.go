// Package testenv finds the real runtime pieces that stardetr's tests use: the ONNX Runtime
// library that scripts/setup extracts, the CARAFE plugin that `make plugin` builds and the
// reference models that `make models` exports. A missing piece fails the test with the make
// target that produces it; tests never skip silently.
package testenv

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stardetr/stardetr/internal/srctree"
)

// RepoRoot returns the directory holding go.mod, found by walking up from the working directory.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("testenv: working directory: %v", err)
	}
	root := srctree.Root(dir)
	if root == "" {
		t.Fatalf("testenv: no go.mod above %s", dir)
	}
	return root
}

// find returns the path from the environment variable env, or def relative to the repo root,
// and fails the test naming the make target when the file is absent.
func find(t testing.TB, env, def, target string) string {
	t.Helper()
	p := os.Getenv(env)
	if p == "" {
		p = filepath.Join(RepoRoot(t), def)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("testenv: %s not found (%v): run `%s` first, or set %s", p, err, target, env)
	}
	return p
}

// ORTArch is the folder name onnxruntime-node uses for this architecture.
func ORTArch() string {
	if runtime.GOARCH == "arm64" {
		return "arm64"
	}
	return "x64"
}

// ONNXRuntime returns the path of the ONNX Runtime shared library (STARDETR_ONNXRUNTIME).
func ONNXRuntime(t testing.TB) string {
	t.Helper()
	return find(t, "STARDETR_ONNXRUNTIME",
		filepath.Join("third_party", "onnxruntime", ortVersion(t), ORTArch(), "libonnxruntime.so.1"), "make setup")
}

// Plugin returns the path of the CARAFE custom-op library (STARDETR_PLUGIN).
func Plugin(t testing.TB) string {
	t.Helper()
	return find(t, "STARDETR_PLUGIN",
		filepath.Join("build", runtime.GOARCH, "libstardetr_carafe.so"), "make plugin")
}

// Model returns the path of a file under the exported models folder (STARDETR_MODELS).
func Model(t testing.TB, name string) string {
	t.Helper()
	dir := os.Getenv("STARDETR_MODELS")
	if dir == "" {
		dir = filepath.Join(RepoRoot(t), "build", "models")
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("testenv: model %s not found (%v): run `make models` first, or set STARDETR_MODELS", p, err)
	}
	return p
}

// ortVersion reads ORT_VERSION from scripts/versions.env, the one place versions are pinned.
func ortVersion(t testing.TB) string {
	t.Helper()
	v := srctree.Pinned(RepoRoot(t), "ORT_VERSION")
	if v == "" {
		t.Fatalf("testenv: ORT_VERSION missing from scripts/versions.env")
	}
	return v
}

// WantError fails the test unless err is an error whose text contains every part: the
// project's errors name the thing that is wrong and the fix, and tests check both.
func WantError(t testing.TB, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one naming %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not name %q", err, p)
		}
	}
}

// Python is the interpreter with the reference model's dependencies (Debian's python3-torch,
// -onnx, -numpy, GStreamer's bindings): $STARDETR_PYTHON, else Debian's /usr/bin/python3,
// which the Makefile's PY names too (a python3 earlier on PATH may lack them).
func Python() string {
	if p := os.Getenv("STARDETR_PYTHON"); p != "" {
		return p
	}
	return "/usr/bin/python3"
}

// WaitFor polls cond until it holds and fails the test naming what it waited for once limit
// has passed: the one way stardetr's tests wait for a state another goroutine or process
// reaches (never a bare sleep). The poll interval is short next to every limit used.
func WaitFor(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Poll(limit, 10*time.Millisecond, cond) {
		t.Fatalf("waited %v for %s", limit, what)
	}
}

// Poll is WaitFor for a test that handles the timeout itself (to report more, or to go on):
// it calls cond at once and then every interval until cond holds or limit has passed, and
// says whether cond held. A long interval suits a cond that costs something (a scrape).
func Poll(limit, interval time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(limit)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		<-tick.C
	}
	return true
}
