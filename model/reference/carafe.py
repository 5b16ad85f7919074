"""CARAFE (content-aware reassembly of features) with mmcv's semantics, exportable as mmcv::MMCVCARAFE.

The definition is mmcv's naive kernel (carafe_naive in mmcv's CUDA ops): for output pixel (ph, pw) the source
centre is (ph // s, pw // s); channel c belongs to group c // (C / G); taps outside the image count as
zero; the mask weights are used as given (no renormalisation).
"""
import contextlib
import contextvars

import torch
import torch.nn.functional as F

from . import carafe_lib

_standard_ops = contextvars.ContextVar("carafe_standard_ops", default=False)
_decomposition = contextvars.ContextVar("carafe_decomposition", default=False)


def check_args(features, masks, kernel_size, group_size, scale_factor):
    """Raises ValueError naming the first argument that breaks the operator's contract."""
    if features.dim() != 4 or masks.dim() != 4:
        raise ValueError(f"carafe: features and masks must be 4-D NCHW, got {tuple(features.shape)} and {tuple(masks.shape)}")
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"carafe: kernel_size must be odd and >= 1, got {kernel_size}")
    s = int(scale_factor)
    if s != scale_factor or s < 1:
        raise ValueError(f"carafe: scale_factor must be an integer >= 1, got {scale_factor}")
    n, c, h, w = features.shape
    if group_size < 1 or c % group_size:
        raise ValueError(f"carafe: group_size {group_size} must divide the {c} feature channels")
    want = (n, group_size * kernel_size * kernel_size, h * s, w * s)
    if tuple(masks.shape) != want:
        raise ValueError(f"carafe: masks must have shape {list(want)} (N, G*k*k, H*s, W*s), got {list(masks.shape)}")
    return s


def carafe_forward(features, masks, kernel_size, group_size, scale_factor):
    """Vectorised pure-PyTorch CARAFE forward: [N,C,H,W] x [N,G*k*k,H*s,W*s] -> [N,C,H*s,W*s]."""
    s = check_args(features, masks, kernel_size, group_size, scale_factor)
    n, c, h, w = features.shape
    k, g = kernel_size, group_size
    kk = k * k
    # unfold pads with zeros, which is exactly "taps outside the image are skipped".
    taps = F.unfold(features, k, padding=(k - 1) // 2).view(n, g, c // g, kk, h, w)
    # One broadcast multiply-add per tap (an einsum here becomes thousands of tiny bmm calls).
    if s == 1:
        # Kept apart from the general case: its unit axes break torch 1.13's ONNX export (peephole pass).
        m = masks.view(n, g, kk, h, w)
        out = taps[:, :, :, 0] * m[:, :, None, 0]
        for t in range(1, kk):
            out = out + taps[:, :, :, t] * m[:, :, None, t]
        return out.reshape(n, c, h, w)
    # Output pixel (y*s+a, x*s+b) reads source (y, x): split the mask's output grid into (y, a, x, b).
    m = masks.view(n, g, kk, h, s, w, s)
    out = taps[:, :, :, 0, :, None, :, None] * m[:, :, None, 0]
    for t in range(1, kk):
        out = out + taps[:, :, :, t, :, None, :, None] * m[:, :, None, t]
    return out.reshape(n, c, h * s, w * s)


class CarafeFunction(torch.autograd.Function):
    """CARAFE as one autograd node, exported to ONNX as one mmcv::MMCVCARAFE node (mmcv's CARAFEFunction contract).

    With native=True (carafe() passes it when autograd records the call, i.e. in training) the forward and
    the backward run libstardetr_carafe's kernels (carafe_lib), which model/carafe tests against their C
    reference and tests/test_carafe.py against this module's definition. Otherwise, and wherever the
    kernels cannot run (no library, another dtype or device), the forward is carafe_forward and the backward
    differentiates carafe_forward itself (unfold, multiply, add are all differentiable), recomputed from the
    saved inputs, so nothing large is kept between forward and backward. Inference and export never take
    the native path: their numbers and graphs are the definition's.
    """

    @staticmethod
    def symbolic(g, features, masks, kernel_size, group_size, scale_factor, native=False):
        return g.op(
            "mmcv::MMCVCARAFE",
            features,
            masks,
            kernel_size_i=int(kernel_size),
            group_size_i=int(group_size),
            scale_factor_f=float(scale_factor),
        )

    @staticmethod
    def forward(ctx, features, masks, kernel_size, group_size, scale_factor, native=False):
        s = check_args(features, masks, kernel_size, group_size, scale_factor)
        ctx.args = (kernel_size, group_size, s)
        ctx.native = native
        out = carafe_lib.forward(features, masks, kernel_size, group_size, s) if native else None
        ctx.save_for_backward(features, masks)
        return out if out is not None else carafe_forward(features, masks, kernel_size, group_size, scale_factor)

    @staticmethod
    def backward(ctx, grad_out):
        features, masks = ctx.saved_tensors
        need_f, need_m = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if ctx.native and (need_f or need_m):
            grads = carafe_lib.backward(features, masks, grad_out, need_f, need_m, *ctx.args)
            if grads is not None:
                return grads[0], grads[1], None, None, None, None
        with torch.enable_grad():
            f = features.detach().requires_grad_(need_f)
            m = masks.detach().requires_grad_(need_m)
            out = carafe_forward(f, m, *ctx.args)
            wrt = [t for t in (f, m) if t.requires_grad]
            grads = iter(torch.autograd.grad(out, wrt, grad_out) if wrt else ())
        gf = next(grads) if need_f else None
        gm = next(grads) if need_m else None
        return gf, gm, None, None, None, None


@contextlib.contextmanager
def decomposition():
    """Inside it, carafe() in training uses autograd through carafe_forward even where the native kernels
    could run: the comparison of the two paths (tests, make bench-train)."""
    token = _decomposition.set(True)
    try:
        yield
    finally:
        _decomposition.reset(token)


@contextlib.contextmanager
def standard_ops():
    """Inside it, carafe() runs, and exports, as the plain PyTorch ops of carafe_forward (unfold,
    multiply, add) instead of one mmcv::MMCVCARAFE node: the graph a user without stardetr's plugin
    can run in any ONNX Runtime or OpenVINO (make bench-peers times them)."""
    token = _standard_ops.set(True)
    try:
        yield
    finally:
        _standard_ops.reset(token)


def carafe(features, masks, kernel_size, group_size, scale_factor):
    if _standard_ops.get():
        return carafe_forward(features, masks, kernel_size, group_size, scale_factor)
    # Native kernels where autograd records the call (training), unless decomposition() asks otherwise.
    native = (torch.is_grad_enabled() and (features.requires_grad or masks.requires_grad)
              and not _decomposition.get() and not torch.onnx.is_in_onnx_export())
    return CarafeFunction.apply(features, masks, kernel_size, group_size, scale_factor, native)
