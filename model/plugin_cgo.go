package model

// The only cgo of package model: it asks shared libraries for their version with dlopen
// before ONNX Runtime is initialised, so that a wrong library is reported by what it is
// rather than by how it fails. Ownership: every handle opened here is closed here, except an
// ONNX Runtime library that passed the probe, which stays loaded for the process (the
// binding dlopens the same file next, and ONNX Runtime is not built to be unloaded), and a
// TensorRT plugin that loaded (loadTRTPlugin): it registered itself with TensorRT when it
// loaded, and unloading it would leave TensorRT holding its creator.

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

// The first two members of ONNX Runtime's OrtApiBase (onnxruntime_c_api.h); stable since 1.0.
typedef struct {
	const void *(*GetApi)(uint32_t version);
	const char *(*GetVersionString)(void);
} sd_ort_api_base;

typedef const sd_ort_api_base *(*sd_get_api_base_fn)(void);
typedef const char *(*sd_version_fn)(void);

static void sd_copy(char *dst, size_t n, const char *src) {
	if (n == 0) return;
	if (src == NULL) src = "";
	strncpy(dst, src, n - 1);
	dst[n - 1] = 0;
}

// sd_probe_ort: 0 the library offers C API `api`; 1 dlopen failed; 2 it exports no
// OrtGetApiBase; 3 it is too old for `api`. ver receives its version string when known.
static int sd_probe_ort(const char *path, uint32_t api, char *ver, size_t vlen, char *err, size_t elen) {
	dlerror();
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) {
		sd_copy(err, elen, dlerror());
		return 1;
	}
	sd_get_api_base_fn get = (sd_get_api_base_fn)dlsym(h, "OrtGetApiBase");
	if (get == NULL) {
		sd_copy(err, elen, dlerror());
		dlclose(h);
		return 2;
	}
	const sd_ort_api_base *base = get();
	if (base == NULL) {
		sd_copy(err, elen, "OrtGetApiBase returned NULL");
		dlclose(h);
		return 2;
	}
	sd_copy(ver, vlen, base->GetVersionString());
	if (base->GetApi(api) == NULL) {
		dlclose(h);
		return 3;
	}
	return 0;
}

// sd_plugin_version: 0 ok; 1 dlopen failed; 2 the symbol is missing.
static int sd_plugin_version(const char *path, char *ver, size_t vlen, char *err, size_t elen) {
	dlerror();
	void *h = dlopen(path, RTLD_LAZY | RTLD_LOCAL);
	if (h == NULL) {
		sd_copy(err, elen, dlerror());
		return 1;
	}
	sd_version_fn fn = (sd_version_fn)dlsym(h, "stardetr_carafe_version");
	if (fn == NULL) {
		sd_copy(err, elen, dlerror());
		dlclose(h);
		return 2;
	}
	sd_copy(ver, vlen, fn());
	dlclose(h);
	return 0;
}

// sd_load_keep: 0 the library loaded (and stays loaded: never closed); 1 dlopen failed.
static int sd_load_keep(const char *path, char *err, size_t elen) {
	dlerror();
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) {
		sd_copy(err, elen, dlerror());
		return 1;
	}
	return 0;
}
*/
import "C"

import (
	"errors"
	"unsafe"
)

// ortAPIVersion is the ONNX Runtime C API version that onnxruntime_go v1.30.0 requests
// (ORT_API_VERSION in its onnxruntime_c_api.h); ONNX Runtime 1.N offers API N.
const ortAPIVersion = 25

type ortProbe int

const (
	ortProbeOK ortProbe = iota
	ortProbeOpenFailed
	ortProbeNotORT
	ortProbeTooOld
)

// probeORT opens the library at path and asks it for its version and for C API ortAPIVersion.
func probeORT(path string) (res ortProbe, version, detail string) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var ver, msg [256]C.char
	rc := C.sd_probe_ort(cpath, C.uint32_t(ortAPIVersion), &ver[0], C.size_t(len(ver)), &msg[0], C.size_t(len(msg)))
	return ortProbe(rc), C.GoString(&ver[0]), C.GoString(&msg[0])
}

// pluginVersion opens the CARAFE plugin at path and returns stardetr_carafe_version().
func pluginVersion(path string) (version string, detail string, ok bool) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var ver, msg [256]C.char
	rc := C.sd_plugin_version(cpath, &ver[0], C.size_t(len(ver)), &msg[0], C.size_t(len(msg)))
	if rc != 0 {
		return "", C.GoString(&msg[0]), false
	}
	return C.GoString(&ver[0]), "", true
}

// loadTRTPlugin opens a TensorRT plugin library the way ONNX Runtime's TensorRT provider does
// (dlopen, RTLD_NOW) and keeps it loaded; the error is the dynamic loader's message.
func loadTRTPlugin(path string) error {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var msg [512]C.char
	if C.sd_load_keep(cpath, &msg[0], C.size_t(len(msg))) != 0 {
		return errors.New(C.GoString(&msg[0]))
	}
	return nil
}
