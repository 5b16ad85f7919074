"""CARAFE's training kernels from libstardetr_carafe (model/carafe), called through ctypes by CarafeFunction.

The library is the one the ONNX Runtime plugin is: $STARDETR_PLUGIN, else build/<goarch>/libstardetr_carafe.so
(`make plugin`). CUDA tensors use libstardetr_carafe_cuda.so (`make cuda-plugin`) or libstardetr_carafe_train_cuda.so
(`make cuda-train-lib`): $STARDETR_CUDA_PLUGIN, else $STARDETR_PLUGIN when it is a CUDA build, else the one next to
the CPU library. What cannot run natively (no
library, a dtype or device it lacks) returns None, and CarafeFunction falls back to autograd through the
PyTorch definition; each missing library is reported once, as a RuntimeWarning naming the path and the fix.

Native paths: CPU float32 forward and backward (the best kernel this CPU has, torch.get_num_threads()
threads); CPU float64 backward (the reference kernel, for gradcheck); CUDA float32, and float16/bfloat16
computed in float32 (autocast), forward and backward on the current stream.
"""
import ctypes
import os
import platform
import threading
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
_GOARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
_ERR_LEN = 512
_lock = threading.Lock()
_libs = {}  # "cpu" / "cuda" -> ctypes.CDLL or None (tried and failed)

_P, _I64, _F, _I = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float, ctypes.c_int
_DIMS = [_I64] * 6 + [_F, _I64, _I64]  # n, c, h, w, groups, k, scale, ho, wo
_SIGNATURES = {
    "cpu": {
        "stardetr_carafe_forward": [ctypes.c_char_p, _P, _P, _P] + _DIMS + [_I, ctypes.c_char_p, ctypes.c_size_t],
        "stardetr_carafe_backward": [ctypes.c_char_p, _P, _P, _P, _P, _P] + _DIMS + [_I, ctypes.c_char_p, ctypes.c_size_t],
        "stardetr_carafe_backward_f64": [_P, _P, _P, _P, _P] + _DIMS + [_I, ctypes.c_char_p, ctypes.c_size_t],
    },
    "cuda": {
        "stardetr_carafe_cuda_train_forward": [_P, _P, _P, _P] + _DIMS + [ctypes.c_char_p, ctypes.c_size_t],
        "stardetr_carafe_cuda_backward": [_P, _P, _P, _P, _P, _P] + _DIMS + [ctypes.c_char_p, ctypes.c_size_t],
    },
}


def library_path(kind="cpu"):
    """Where the CPU ("cpu") or CUDA ("cuda") library is looked for."""
    plugin = os.environ.get("STARDETR_PLUGIN", "")
    cpu = Path(plugin) if plugin else ROOT / "build" / _GOARCH.get(platform.machine().lower(), platform.machine()) / "libstardetr_carafe.so"
    if kind == "cpu":
        return str(cpu)
    if os.environ.get("STARDETR_CUDA_PLUGIN"):
        return os.environ["STARDETR_CUDA_PLUGIN"]
    if "cuda" in cpu.name:
        return str(cpu)
    # The ONNX Runtime plugin's CUDA build (make cuda-plugin), else the training-only one (make cuda-train-lib,
    # which scripts/gpu check builds on a GPU machine without Go).
    full, train = cpu.with_name("libstardetr_carafe_cuda.so"), cpu.with_name("libstardetr_carafe_train_cuda.so")
    return str(full if full.exists() or not train.exists() else train)


def _load(kind):
    with _lock:
        if kind in _libs:
            return _libs[kind]
        path, lib = library_path(kind), None
        try:
            lib = ctypes.CDLL(path)
            for name, argtypes in _SIGNATURES[kind].items():
                fn = getattr(lib, name)  # AttributeError: a library from before the training kernels
                fn.argtypes, fn.restype = argtypes, ctypes.c_int
        except (OSError, AttributeError) as e:
            fix = "make plugin" if kind == "cpu" else "make cuda-train-lib"
            warnings.warn(f"CARAFE: {path}: {e}; training falls back to autograd through the PyTorch definition "
                          f"(slower): run `{fix}` or set STARDETR_{'' if kind == 'cpu' else 'CUDA_'}PLUGIN", RuntimeWarning)
            lib = None
        _libs[kind] = lib
        return lib


def _check(rc, err, what):
    if rc != 0:
        raise RuntimeError(f"CARAFE {what}: libstardetr_carafe returned {rc}: {err.value.decode(errors='replace')}")


def _dims(features, masks, k, g, s):
    n, c, h, w = features.shape
    return [n, c, h, w, g, k, float(s), masks.shape[2], masks.shape[3]]


def _cuda_ok(*tensors):
    return all(t.is_cuda and t.dtype in (torch.float32, torch.float16, torch.bfloat16) for t in tensors)


def _stream(t):
    return ctypes.c_void_p(torch.cuda.current_stream(t.device).cuda_stream)


def forward(features, masks, k, g, s):
    """The CARAFE output computed natively, or None where that is not possible (see the module's doc)."""
    if features.device != masks.device:
        return None
    if features.device.type == "cpu" and features.dtype == masks.dtype == torch.float32:
        lib = _load("cpu")
        if lib is None:
            return None
        f, m = features.contiguous(), masks.contiguous()
        out = torch.empty((f.shape[0], f.shape[1], m.shape[2], m.shape[3]), dtype=torch.float32)
        err = ctypes.create_string_buffer(_ERR_LEN)
        rc = lib.stardetr_carafe_forward(b"best", f.data_ptr(), m.data_ptr(), out.data_ptr(), *_dims(f, m, k, g, s),
                                         torch.get_num_threads(), err, _ERR_LEN)
        _check(rc, err, "forward")
        return out
    if _cuda_ok(features, masks):
        lib = _load("cuda")
        if lib is None:
            return None
        dtype = torch.result_type(features, masks)
        f, m = features.float().contiguous(), masks.float().contiguous()
        out = torch.empty((f.shape[0], f.shape[1], m.shape[2], m.shape[3]), dtype=torch.float32, device=f.device)
        err = ctypes.create_string_buffer(_ERR_LEN)
        with torch.cuda.device(f.device):
            rc = lib.stardetr_carafe_cuda_train_forward(_stream(f), f.data_ptr(), m.data_ptr(), out.data_ptr(),
                                                        *_dims(f, m, k, g, s), err, _ERR_LEN)
        _check(rc, err, "CUDA forward")
        return out.to(dtype)
    return None


def backward(features, masks, grad_out, need_features, need_masks, k, g, s):
    """(grad of features or None, grad of masks or None) computed natively, or None where that is not possible."""
    dev = features.device
    if masks.device != dev or grad_out.device != dev:
        return None
    cpu32 = dev.type == "cpu" and features.dtype == masks.dtype == grad_out.dtype == torch.float32
    cpu64 = dev.type == "cpu" and features.dtype == masks.dtype == grad_out.dtype == torch.float64
    cuda = _cuda_ok(features, masks, grad_out)
    if not (cpu32 or cpu64 or cuda):
        return None
    lib = _load("cuda" if cuda else "cpu")
    if lib is None:
        return None
    work = torch.float32 if cpu32 or cuda else torch.float64
    f, m, go = (t.to(work).contiguous() for t in (features, masks, grad_out))
    gf = torch.empty_like(f) if need_features else None
    gm = torch.empty_like(m) if need_masks else None
    ptr = lambda t: t.data_ptr() if t is not None else None  # noqa: E731
    args = [f.data_ptr(), m.data_ptr(), go.data_ptr(), ptr(gf), ptr(gm)] + _dims(f, m, k, g, s)
    err = ctypes.create_string_buffer(_ERR_LEN)
    if cuda:
        with torch.cuda.device(dev):
            rc = lib.stardetr_carafe_cuda_backward(_stream(f), *args, err, _ERR_LEN)
    elif cpu32:
        rc = lib.stardetr_carafe_backward(b"best", *args, torch.get_num_threads(), err, _ERR_LEN)
    else:
        rc = lib.stardetr_carafe_backward_f64(*args, torch.get_num_threads(), err, _ERR_LEN)
    _check(rc, err, "backward")
    return (gf.to(features.dtype) if gf is not None else None, gm.to(masks.dtype) if gm is not None else None)
