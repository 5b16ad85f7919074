package model

import (
	"fmt"
	"os"
	"strings"
	"sync"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/stardetr/stardetr/internal/libsearch"
)

// Runtime is the process's ONNX Runtime environment. onnxruntime_go keeps one environment
// per process in package-level state, so stardetr mirrors it with one Runtime value that
// owns it: LoadRuntime with the library already loaded returns that Runtime, with another
// library it fails. The environment lives as long as the process: the daemon loads one
// library once, and the OS reclaims it at exit.
type Runtime struct {
	lib     string
	version string
	open    int // Detectors using the environment
}

// ortEnv guards the one environment onnxruntime_go allows per process.
var ortEnv struct {
	mu sync.Mutex
	rt *Runtime
}

// LoadRuntime loads the ONNX Runtime library at lib and creates the environment, or returns
// the Runtime already loaded from the same file.
func LoadRuntime(lib string) (*Runtime, error) {
	ortEnv.mu.Lock()
	defer ortEnv.mu.Unlock()
	if rt := ortEnv.rt; rt != nil {
		if sameFile(rt.lib, lib) {
			return rt, nil
		}
		return nil, fmt.Errorf("ONNX Runtime is already loaded from %s in this process; cannot also load %s: use one library", rt.lib, lib)
	}
	if st, err := os.Stat(lib); err != nil {
		return nil, fmt.Errorf("ONNX Runtime library %s: %w", lib, err)
	} else if st.IsDir() {
		return nil, fmt.Errorf("ONNX Runtime library %s is a directory: give the path of %s", lib, libsearch.ORTLibName)
	}
	switch res, version, detail := probeORT(lib); res {
	case ortProbeOpenFailed:
		return nil, fmt.Errorf("cannot load the ONNX Runtime library %s: %s", lib, detail)
	case ortProbeNotORT:
		return nil, fmt.Errorf("%s is not an ONNX Runtime library (%s)", lib, detail)
	case ortProbeTooOld:
		return nil, tooOldError(lib, version)
	}
	// ONNX Runtime's release builds (1.30) start a telemetry system that records usage events
	// (session creations, with a device id) in a database under
	// $HOME/.cache/Microsoft/DeveloperTools/.onnxruntime/ and uploads them over HTTPS. stardetr
	// sends nothing anywhere but to its own broker: ORT_DISABLE_TELEMETRY, read when the
	// environment starts, keeps the system from starting at all, and DisableTelemetry stops
	// events should a build ignore the variable.
	if err := os.Setenv("ORT_DISABLE_TELEMETRY", "1"); err != nil {
		return nil, fmt.Errorf("turning off ONNX Runtime's telemetry: %w", err)
	}
	ort.SetSharedLibraryPath(lib)
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		return nil, mapInitError(lib, err)
	}
	if err := ort.DisableTelemetry(); err != nil {
		_ = ort.DestroyEnvironment()
		return nil, fmt.Errorf("turning off ONNX Runtime's telemetry: %w", err)
	}
	rt := &Runtime{lib: lib, version: ort.GetVersion()}
	ortEnv.rt = rt
	return rt, nil
}

// minORTVersion is the oldest ONNX Runtime that offers ortAPIVersion.
var minORTVersion = fmt.Sprintf("1.%d", ortAPIVersion)

func tooOldError(lib, found string) error {
	if found == "" {
		found = "an unknown version"
	}
	return fmt.Errorf("ONNX Runtime %s at %s is too old: stardetr needs ONNX Runtime >= %s (C API %d); "+
		"use the library that `make setup` extracts (npm onnxruntime-node, third_party/onnxruntime/), the one the stardetr package installs in %s, "+
		"or on a Jetson a GPU build >= %s", found, lib, minORTVersion, ortAPIVersion, libsearch.SystemLibDir, minORTVersion)
}

// mapInitError turns onnxruntime_go's initialisation failures into what happened and the fix.
func mapInitError(lib string, err error) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "Error setting ORT API base: 2"),
		strings.Contains(msg, "requested API version"):
		res, version, _ := probeORT(lib)
		if res == ortProbeOK {
			version = ""
		}
		return tooOldError(lib, version)
	case strings.Contains(msg, "Error loading ONNX shared library"):
		return fmt.Errorf("cannot load the ONNX Runtime library %s: %w", lib, err)
	}
	return fmt.Errorf("initialising ONNX Runtime from %s: %w", lib, err)
}

// Library is the path the library was loaded from.
func (r *Runtime) Library() string { return r.lib }

// Version is the version the library reports.
func (r *Runtime) Version() string { return r.version }

// acquire and release count the Detectors that use the environment.
func (r *Runtime) acquire() error {
	ortEnv.mu.Lock()
	defer ortEnv.mu.Unlock()
	r.open++
	return nil
}

func (r *Runtime) release() {
	ortEnv.mu.Lock()
	defer ortEnv.mu.Unlock()
	r.open--
}

func sameFile(a, b string) bool {
	if a == b {
		return true
	}
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}

// PluginVersion loads the CARAFE plugin at path and returns what its
// stardetr_carafe_version() reports.
func PluginVersion(path string) (string, error) {
	v, detail, ok := pluginVersion(path)
	if !ok {
		return "", fmt.Errorf("%s: %s", path, detail)
	}
	return v, nil
}
