package model

import (
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// TensorRTProviderLib is the library of ONNX Runtime's TensorRT execution provider, which a GPU
// build of ONNX Runtime ships next to libonnxruntime.so.
const TensorRTProviderLib = "libonnxruntime_providers_tensorrt.so"

// rebuildHint is how to get a TensorRT plugin that fits the device.
const rebuildHint = "rebuild it on this device against its TensorRT (`make cuda-plugin`, or `make deb PKG_CUDA_PLUGIN=1` for the package) or set model.tensorrt.plugin to one built for it"

// CheckTensorRTPlugin checks that the TensorRT plugin library at plugin can serve ONNX
// Runtime's TensorRT provider of the ONNX Runtime library ortLib, and loads it.
//
// ONNX Runtime loads trt_extra_plugin_lib_paths itself, but a library that fails to load there
// costs only a warning in its log, after which TensorRT builds its engines without the plugin.
// So stardetr checks first and says why, with the fix: the file is an ELF shared library for this
// machine that links TensorRT's libnvinfer; it links the same libnvinfer major (the same TensorRT
// major version) as the provider library next to ortLib, when that is present (a plugin built
// against TensorRT 8 on a TensorRT 10 system, or the other way round, cannot register with the
// provider's TensorRT); and the dynamic loader opens it (the loader's own message otherwise, e.g.
// a missing libnvinfer.so.8 or libcudart.so.12). A library that loads stays loaded for the
// process: it has registered its creator with TensorRT, and ONNX Runtime's own dlopen of the same
// file then finds it loaded.
func CheckTensorRTPlugin(plugin, ortLib string) error {
	need, err := nvinferOf(plugin)
	if err != nil {
		return fmt.Errorf("model.tensorrt.plugin: %w", err)
	}
	if need == "" {
		return fmt.Errorf("model.tensorrt.plugin: %s does not link TensorRT (no libnvinfer.so.N among its needed libraries): it is not a TensorRT plugin; use libstardetr_carafe_trt.so (`make cuda-plugin` where TensorRT is installed)", plugin)
	}
	provider := filepath.Join(filepath.Dir(ortLib), TensorRTProviderLib)
	if _, err := os.Stat(provider); err == nil {
		have, err := nvinferOf(provider)
		if err != nil {
			return fmt.Errorf("ONNX Runtime's TensorRT provider: %w", err)
		}
		if have != "" && have != need {
			return fmt.Errorf("model.tensorrt.plugin: %s was built for TensorRT %s (it links %s) but ONNX Runtime's TensorRT provider %s uses TensorRT %s (%s): %s",
				plugin, trtMajor(need), need, provider, trtMajor(have), have, rebuildHint)
		}
	}
	if err := loadTRTPlugin(plugin); err != nil {
		return fmt.Errorf("model.tensorrt.plugin: loading %s: %v: %s (it needs %s and the CUDA runtime it was built with)", plugin, err, rebuildHint, need)
	}
	return nil
}

// nvinferOf returns the libnvinfer.so.N that the ELF shared library at path needs ("" for none),
// after checking that it is one for this machine.
func nvinferOf(path string) (string, error) {
	f, err := elf.Open(path)
	if err != nil {
		if os.IsNotExist(err) {
			return "", fmt.Errorf("%s does not exist", path)
		}
		return "", fmt.Errorf("%s is not a shared library (%v)", path, err)
	}
	defer f.Close()
	if want := elfMachine(); f.Machine != want {
		return "", fmt.Errorf("%s is a %v library; this machine needs %v (%s)", path, f.Machine, want, runtime.GOARCH)
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		return "", fmt.Errorf("%s: reading its needed libraries: %v", path, err)
	}
	for _, l := range libs {
		if strings.HasPrefix(l, "libnvinfer.so.") {
			return l, nil
		}
	}
	return "", nil
}

func trtMajor(soname string) string { return strings.TrimPrefix(soname, "libnvinfer.so.") }

func elfMachine() elf.Machine {
	switch runtime.GOARCH {
	case "arm64":
		return elf.EM_AARCH64
	case "amd64":
		return elf.EM_X86_64
	}
	return elf.EM_NONE
}
