package model_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stardetr/stardetr/internal/testenv"
	"github.com/stardetr/stardetr/model"
)

// helperEnv makes the test binary load one library with LoadRuntime in a fresh process and
// print the error: ONNX Runtime's environment is per process, so the failure paths of the
// first load cannot run in the process that already loaded the real library.
const helperEnv = "STARDETR_TEST_LOAD_RUNTIME"

func runHelper() int {
	_, err := model.LoadRuntime(os.Getenv(helperEnv))
	fmt.Printf("error: %v\n", err)
	return 0
}

func loadInFreshProcess(t *testing.T, lib string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+lib)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper process: %v\n%s", err, out)
	}
	return string(out)
}

// fakeORT is a library that answers OrtGetApiBase like ONNX Runtime 1.22 does: it knows
// C API versions up to 22 only.
const fakeORT = `
#include <stdint.h>
#include <stddef.h>
typedef struct { const void *(*GetApi)(uint32_t); const char *(*GetVersionString)(void); } api_base;
static const void *get_api(uint32_t v) { static int api; return v <= 22 ? (const void *)&api : NULL; }
static const char *version(void) { return "1.22.0"; }
static const api_base base = {get_api, version};
const api_base *OrtGetApiBase(void) { return &base; }
`

func TestLoadRuntimeExplainsWrongLibraries(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "fake.c")
	old := filepath.Join(dir, "libonnxruntime.so.1")
	if err := os.WriteFile(src, []byte(fakeORT), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cc", "-shared", "-fPIC", "-o", old, src).CombinedOutput(); err != nil {
		t.Fatalf("cc: %v\n%s", err, out)
	}
	notELF := filepath.Join(dir, "text.so")
	os.WriteFile(notELF, []byte("not a library"), 0o644)
	libm := ""
	for _, p := range []string{"/lib/x86_64-linux-gnu/libm.so.6", "/lib/aarch64-linux-gnu/libm.so.6", "/lib64/libm.so.6"} {
		if _, err := os.Stat(p); err == nil {
			libm = p
		}
	}
	cases := []struct {
		lib  string
		want []string
	}{
		{old, []string{"ONNX Runtime 1.22.0", "too old", ">= 1.25 (C API 25)", "onnxruntime-node"}},
		{notELF, []string{"cannot load the ONNX Runtime library", notELF}},
		{filepath.Join(dir, "missing.so"), []string{"missing.so", "no such file"}},
		{dir, []string{"is a directory"}},
	}
	if libm != "" {
		cases = append(cases, struct {
			lib  string
			want []string
		}{libm, []string{"not an ONNX Runtime library", "OrtGetApiBase"}})
	}
	for _, c := range cases {
		out := loadInFreshProcess(t, c.lib)
		for _, w := range c.want {
			if !strings.Contains(out, w) {
				t.Errorf("LoadRuntime(%s): %q does not contain %q", c.lib, strings.TrimSpace(out), w)
			}
		}
	}
	// The real library loads in a fresh process.
	if out := loadInFreshProcess(t, testenv.ONNXRuntime(t)); !strings.Contains(out, "error: <nil>") {
		t.Errorf("LoadRuntime(real library): %s", out)
	}
}

func TestLoadRuntimeIsProcessWide(t *testing.T) {
	lib := testenv.ONNXRuntime(t)
	a, err := model.LoadRuntime(lib)
	if err != nil {
		t.Fatal(err)
	}
	b, err := model.LoadRuntime(lib)
	if err != nil || a != b {
		t.Fatalf("second LoadRuntime = %p, %v; want the same Runtime %p", b, err, a)
	}
	if !strings.HasPrefix(a.Version(), "1.") {
		t.Errorf("Version() = %q", a.Version())
	}
	dir := t.TempDir()
	other := filepath.Join(dir, "libonnxruntime.so.1")
	data, _ := os.ReadFile(lib)
	os.WriteFile(other, data, 0o644)
	_, err = model.LoadRuntime(other)
	testenv.WantError(t, err, "already loaded from", "cannot also load")
}
