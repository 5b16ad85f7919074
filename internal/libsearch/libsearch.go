// Package libsearch finds the shared libraries stardetr loads at run time (the ONNX Runtime
// library and the CARAFE plugin) in the places a source tree, the .deb and the configuration
// put them, and says every place it looked when it finds nothing.
package libsearch

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/stardetr/stardetr/internal/srctree"
)

// File names of the runtime pieces, as scripts/setup and `make plugin` produce them and as
// the .deb installs them.
const (
	ORTLibName    = "libonnxruntime.so.1"
	PluginLibName = "libstardetr_carafe.so"
	// TRTPluginLibName is the TensorRT plugin MMCVCARAFE (`make cuda-plugin` where TensorRT is
	// installed; the Jetson package).
	TRTPluginLibName = "libstardetr_carafe_trt.so"
	// SystemLibDir is where the package installs both libraries.
	SystemLibDir = "/usr/lib/stardetr"
)

// NotFoundError says which piece was not found and every place that was searched.
type NotFoundError struct {
	What   string
	Looked []string
	Hint   string
}

func (e *NotFoundError) Error() string {
	msg := fmt.Sprintf("%s not found (looked in: %s)", e.What, strings.Join(e.Looked, ", "))
	if e.Hint != "" {
		msg += ": " + e.Hint
	}
	return msg
}

// Locator finds the ONNX Runtime library and the CARAFE plugin: the configured path, then the
// environment, then next to the executable, then the build folders of the source tree that
// holds the executable (or the working directory), then SystemLibDir.
type Locator struct {
	Executable string              // the running binary; "" skips the places relative to it
	WorkDir    string              // "" skips the source tree above the working directory
	Getenv     func(string) string // nil reads nothing from the environment
	SystemDir  string
}

// DefaultLocator looks where the running process is.
func DefaultLocator() Locator {
	exe, _ := os.Executable()
	if exe != "" {
		if r, err := filepath.EvalSymlinks(exe); err == nil {
			exe = r
		}
	}
	wd, _ := os.Getwd()
	return Locator{Executable: exe, WorkDir: wd, Getenv: os.Getenv, SystemDir: SystemLibDir}
}

// ONNXRuntime returns the ONNX Runtime library to load; configured wins when set.
func (l Locator) ONNXRuntime(configured string) (string, error) {
	return l.find("ONNX Runtime library", configured, "STARDETR_ONNXRUNTIME", ORTLibName, l.ortRepoPaths,
		"run `make setup` in the source tree, install the stardetr package, or set model.onnxruntime / --onnxruntime / STARDETR_ONNXRUNTIME")
}

// Plugin returns the CARAFE plugin library to load; configured wins when set.
func (l Locator) Plugin(configured string) (string, error) {
	return l.find("CARAFE plugin", configured, "STARDETR_PLUGIN", PluginLibName, func(root string) []string {
		return []string{filepath.Join(root, "build", runtime.GOARCH, PluginLibName)}
	}, "run `make plugin` in the source tree, install the stardetr package, or set model.plugin / --plugin / STARDETR_PLUGIN")
}

// TRTPlugin returns the TensorRT plugin library to hand to ONNX Runtime's TensorRT provider;
// configured wins when set (and must exist). Unlike the other two it is optional: "" and no
// error when it is not configured and found nowhere.
func (l Locator) TRTPlugin(configured string) (string, error) {
	p, err := l.find("TensorRT CARAFE plugin", configured, "STARDETR_TRT_PLUGIN", TRTPluginLibName, func(root string) []string {
		return []string{filepath.Join(root, "build", runtime.GOARCH, TRTPluginLibName)}
	}, "build it where TensorRT is installed (`make cuda-plugin`), install the Jetson package built with `make deb PKG_CUDA_PLUGIN=1`, or set model.tensorrt.plugin / STARDETR_TRT_PLUGIN")
	if err != nil && configured == "" {
		return "", nil
	}
	return p, err
}

func (l Locator) find(what, configured, env, name string, repo func(root string) []string, hint string) (string, error) {
	if configured != "" {
		if isFile(configured) {
			return configured, nil
		}
		return "", &NotFoundError{What: what, Looked: []string{configured + " (configured)"}, Hint: hint}
	}
	var looked []string
	try := func(p string) bool {
		looked = append(looked, p)
		return isFile(p)
	}
	if l.Getenv != nil {
		if p := l.Getenv(env); p != "" {
			if try(p) {
				return p, nil
			}
			looked[len(looked)-1] += " ($" + env + ")"
		}
	}
	var roots []string
	if l.Executable != "" {
		if p := filepath.Join(filepath.Dir(l.Executable), name); try(p) {
			return p, nil
		}
		if r := srctree.Root(filepath.Dir(l.Executable)); r != "" {
			roots = append(roots, r)
		}
	}
	if l.WorkDir != "" {
		if r := srctree.Root(l.WorkDir); r != "" && (len(roots) == 0 || roots[0] != r) {
			roots = append(roots, r)
		}
	}
	for _, r := range roots {
		for _, p := range repo(r) {
			if try(p) {
				return p, nil
			}
		}
	}
	if l.SystemDir != "" {
		if p := filepath.Join(l.SystemDir, name); try(p) {
			return p, nil
		}
	}
	return "", &NotFoundError{What: what, Looked: looked, Hint: hint}
}

// ortRepoPaths lists where a source tree keeps the ONNX Runtime library: build/<goarch>/,
// then third_party/onnxruntime/<ORT_VERSION>/<arch>/ with the version pinned in
// scripts/versions.env (any version present when that file cannot be read).
func (l Locator) ortRepoPaths(root string) []string {
	arch := "x64"
	if runtime.GOARCH == "arm64" {
		arch = "arm64"
	}
	paths := []string{filepath.Join(root, "build", runtime.GOARCH, ORTLibName)}
	if v := srctree.Pinned(root, "ORT_VERSION"); v != "" {
		return append(paths, filepath.Join(root, "third_party", "onnxruntime", v, arch, ORTLibName))
	}
	found, _ := filepath.Glob(filepath.Join(root, "third_party", "onnxruntime", "*", arch, ORTLibName))
	if len(found) == 0 {
		return append(paths, filepath.Join(root, "third_party", "onnxruntime", "<version>", arch, ORTLibName))
	}
	return append(paths, found[len(found)-1])
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}
