package libsearch_test

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/stardetr/stardetr/internal/libsearch"
	"github.com/stardetr/stardetr/internal/testenv"
)

func touch(t *testing.T, path string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLocatorOrder(t *testing.T) {
	root := t.TempDir()
	touch(t, filepath.Join(root, "go.mod"))
	os.WriteFile(filepath.Join(root, "scripts", "versions.env"), nil, 0o644)
	touch(t, filepath.Join(root, "scripts", "versions.env"))
	os.WriteFile(filepath.Join(root, "scripts", "versions.env"), []byte("# pins\nORT_VERSION=9.9.9\n"), 0o644)
	arch := "x64"
	if runtime.GOARCH == "arm64" {
		arch = "arm64"
	}
	exe := filepath.Join(root, "bin", "stardetr")
	touch(t, exe)
	system := filepath.Join(root, "usr-lib")
	env := map[string]string{}
	loc := libsearch.Locator{Executable: exe, Getenv: func(k string) string { return env[k] }, SystemDir: system}

	// Nothing anywhere: the error lists every place in order.
	_, err := loc.ONNXRuntime("")
	var nf *libsearch.NotFoundError
	if !errors.As(err, &nf) {
		t.Fatalf("err = %v; want NotFoundError", err)
	}
	want := []string{
		filepath.Join(root, "bin", libsearch.ORTLibName),
		filepath.Join(root, "build", runtime.GOARCH, libsearch.ORTLibName),
		filepath.Join(root, "third_party", "onnxruntime", "9.9.9", arch, libsearch.ORTLibName),
		filepath.Join(system, libsearch.ORTLibName),
	}
	if len(nf.Looked) != len(want) {
		t.Fatalf("looked in %q; want %q", nf.Looked, want)
	}
	for i := range want {
		if nf.Looked[i] != want[i] {
			t.Errorf("looked[%d] = %q; want %q", i, nf.Looked[i], want[i])
		}
	}
	testenv.WantError(t, err, "ONNX Runtime library not found", "make setup")

	// Each place, from last to first, takes over once it has the file.
	for i := len(want) - 1; i >= 0; i-- {
		touch(t, want[i])
		if got, err := loc.ONNXRuntime(""); err != nil || got != want[i] {
			t.Errorf("with %s present: got %q, %v", want[i], got, err)
		}
	}
	envLib := touch(t, filepath.Join(root, "env", libsearch.ORTLibName))
	env["STARDETR_ONNXRUNTIME"] = envLib
	if got, _ := loc.ONNXRuntime(""); got != envLib {
		t.Errorf("with $STARDETR_ONNXRUNTIME: got %q", got)
	}
	cfgLib := touch(t, filepath.Join(root, "cfg", "lib.so"))
	if got, _ := loc.ONNXRuntime(cfgLib); got != cfgLib {
		t.Errorf("configured: got %q", got)
	}
	_, err = loc.ONNXRuntime(filepath.Join(root, "nope.so"))
	testenv.WantError(t, err, "nope.so (configured)")
	env["STARDETR_ONNXRUNTIME"] = filepath.Join(root, "gone.so")
	if got, _ := loc.ONNXRuntime(""); got != want[0] {
		t.Errorf("with a stale $STARDETR_ONNXRUNTIME: got %q; want the next place", got)
	}

	// The plugin: build/<goarch>/ of the tree above the binary.
	_, err = loc.Plugin("")
	testenv.WantError(t, err, "CARAFE plugin not found", filepath.Join(root, "build", runtime.GOARCH, libsearch.PluginLibName), "make plugin")
	p := touch(t, filepath.Join(root, "build", runtime.GOARCH, libsearch.PluginLibName))
	if got, _ := loc.Plugin(""); got != p {
		t.Errorf("plugin: got %q; want %q", got, p)
	}
}

func TestTRTPluginIsOptional(t *testing.T) {
	root := t.TempDir()
	touch(t, filepath.Join(root, "go.mod"))
	exe := touch(t, filepath.Join(root, "bin", "stardetr"))
	system := filepath.Join(root, "usr-lib")
	env := map[string]string{}
	loc := libsearch.Locator{Executable: exe, Getenv: func(k string) string { return env[k] }, SystemDir: system}

	// Not configured and nowhere: no plugin, no error (TensorRT then runs without it).
	if got, err := loc.TRTPlugin(""); got != "" || err != nil {
		t.Fatalf("nothing present: got %q, %v; want \"\", nil", got, err)
	}
	// The package's place, then the source tree's build folder, then the environment.
	sys := touch(t, filepath.Join(system, libsearch.TRTPluginLibName))
	if got, err := loc.TRTPlugin(""); got != sys || err != nil {
		t.Errorf("packaged: got %q, %v; want %q", got, err, sys)
	}
	built := touch(t, filepath.Join(root, "build", runtime.GOARCH, libsearch.TRTPluginLibName))
	if got, _ := loc.TRTPlugin(""); got != built {
		t.Errorf("built: got %q; want %q", got, built)
	}
	envLib := touch(t, filepath.Join(root, "env", "trt.so"))
	env["STARDETR_TRT_PLUGIN"] = envLib
	if got, _ := loc.TRTPlugin(""); got != envLib {
		t.Errorf("$STARDETR_TRT_PLUGIN: got %q; want %q", got, envLib)
	}
	// Configured and missing: an error naming the path and the key.
	_, err := loc.TRTPlugin(filepath.Join(root, "nope.so"))
	testenv.WantError(t, err, "TensorRT CARAFE plugin not found", "nope.so (configured)", "model.tensorrt.plugin", "make cuda-plugin")
}
