"""CARAFE (content-aware reassembly of features) with mmcv's semantics, exportable as mmcv::MMCVCARAFE.

The definition is mmcv's naive kernel (carafe_naive in mmcv's CUDA ops): for output pixel (ph, pw) the source
centre is (ph // s, pw // s); channel c belongs to group c // (C / G); taps outside the image count as
zero; the mask weights are used as given (no renormalisation).
"""
import contextlib
import contextvars

import torch
import torch.nn.functional as F

_standard_ops = contextvars.ContextVar("carafe_standard_ops", default=False)


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
    """Forward in PyTorch; exported to ONNX as one mmcv::MMCVCARAFE node (mmcv's CARAFEFunction contract).

    Training needs the backward too: it differentiates carafe_forward itself (unfold, multiply, add are
    all differentiable), recomputed from the saved inputs, so the forward, the backward and the export
    come from this one definition and nothing large is kept between forward and backward.
    """

    @staticmethod
    def symbolic(g, features, masks, kernel_size, group_size, scale_factor):
        return g.op(
            "mmcv::MMCVCARAFE",
            features,
            masks,
            kernel_size_i=int(kernel_size),
            group_size_i=int(group_size),
            scale_factor_f=float(scale_factor),
        )

    @staticmethod
    def forward(ctx, features, masks, kernel_size, group_size, scale_factor):
        ctx.save_for_backward(features, masks)
        ctx.args = (kernel_size, group_size, scale_factor)
        return carafe_forward(features, masks, kernel_size, group_size, scale_factor)

    @staticmethod
    def backward(ctx, grad_out):
        features, masks = ctx.saved_tensors
        with torch.enable_grad():
            f = features.detach().requires_grad_(ctx.needs_input_grad[0])
            m = masks.detach().requires_grad_(ctx.needs_input_grad[1])
            out = carafe_forward(f, m, *ctx.args)
            wrt = [t for t in (f, m) if t.requires_grad]
            grads = iter(torch.autograd.grad(out, wrt, grad_out) if wrt else ())
        gf = next(grads) if ctx.needs_input_grad[0] else None
        gm = next(grads) if ctx.needs_input_grad[1] else None
        return gf, gm, None, None, None


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
    return CarafeFunction.apply(features, masks, kernel_size, group_size, scale_factor)
