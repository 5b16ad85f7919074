"""CARAFE's vectorised PyTorch forward against an independent loop, its ONNX node, and the native training
kernels (libstardetr_carafe through carafe_lib: $STARDETR_PLUGIN, `make plugin`) against autograd of the
definition."""
import contextlib
import io
import itertools
import os
import unittest
import warnings
from unittest import mock

import numpy as np
import onnx
import torch

from model.reference import carafe_lib
from model.reference.carafe import carafe, carafe_forward, decomposition


def carafe_loop(feat, mask, k, g, s):
    """mmcv's naive kernel written as plain loops (numpy, float64)."""
    n, c, h, w = feat.shape
    out = np.zeros((n, c, h * s, w * s))
    r = (k - 1) // 2
    cpg = c // g
    for b, ph, pw in itertools.product(range(n), range(h * s), range(w * s)):
        sy, sx = ph // s, pw // s
        for ch in range(c):
            grp = ch // cpg
            acc = 0.0
            for i in range(k):
                y = sy + i - r
                if y < 0 or y >= h:
                    continue
                for j in range(k):
                    x = sx + j - r
                    if x < 0 or x >= w:
                        continue
                    acc += mask[b, (grp * k + i) * k + j, ph, pw] * feat[b, ch, y, x]
            out[b, ch, ph, pw] = acc
    return out


class CarafeForwardTest(unittest.TestCase):
    def test_matches_loop_on_odd_shapes(self):
        rng = np.random.default_rng(7)
        cases = []
        for g, k, s in itertools.product((1, 2, 4), (1, 3, 5), (1, 2)):
            c = {1: 5, 2: 6, 4: 12}[g]  # C not a multiple of 8
            cases.append((2 if (g + k + s) % 2 else 1, c, 5, 7, g, k, s))  # H != W
        cases.append((1, 3, 1, 4, 1, 5, 2))  # kernel larger than the image
        for n, c, h, w, g, k, s in cases:
            with self.subTest(n=n, c=c, h=h, w=w, g=g, k=k, s=s):
                feat = rng.standard_normal((n, c, h, w))
                mask = rng.standard_normal((n, g * k * k, h * s, w * s))  # not normalised: no renormalisation
                want = carafe_loop(feat, mask, k, g, s)
                got = carafe_forward(torch.tensor(feat, dtype=torch.float32), torch.tensor(mask, dtype=torch.float32), k, g, s)
                self.assertEqual(tuple(got.shape), want.shape)
                np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)

    def test_double_precision_is_exact(self):
        rng = np.random.default_rng(1)
        feat, mask = rng.standard_normal((1, 4, 3, 6)), rng.standard_normal((1, 2 * 9, 6, 12))
        got = carafe_forward(torch.tensor(feat), torch.tensor(mask), 3, 2, 2)
        np.testing.assert_allclose(got.numpy(), carafe_loop(feat, mask, 3, 2, 2), rtol=1e-12, atol=1e-12)

    def test_bad_arguments_are_named(self):
        f = torch.zeros(1, 6, 4, 4)
        cases = [
            ((f, torch.zeros(1, 9, 8, 8), 2, 1, 2), "kernel_size"),
            ((f, torch.zeros(1, 36, 8, 8), 3, 4, 2), "group_size 4"),
            ((f, torch.zeros(1, 9, 8, 8), 3, 1, 1.5), "scale_factor"),
            ((f, torch.zeros(1, 9, 8, 7), 3, 1, 2), "masks must have shape [1, 9, 8, 8]"),
        ]
        for args, text in cases:
            with self.subTest(text=text), self.assertRaisesRegex(ValueError, text.replace("[", r"\[")):
                carafe_forward(*args)


class CarafeBackwardTest(unittest.TestCase):
    def test_gradcheck_float64(self):
        # Finite differences (float64) are the independent reference for the backward pass.
        cases = [(1, 3, 3, 5, 1, 3, 1), (2, 6, 3, 5, 2, 3, 2), (1, 4, 5, 3, 2, 5, 2), (1, 6, 3, 3, 3, 1, 2)]
        for n, c, h, w, g, k, s in cases:
            with self.subTest(n=n, c=c, h=h, w=w, g=g, k=k, s=s):
                gen = torch.Generator().manual_seed(n * 100 + c * 10 + k)
                feat = torch.randn(n, c, h, w, dtype=torch.float64, generator=gen, requires_grad=True)
                mask = torch.randn(n, g * k * k, h * s, w * s, dtype=torch.float64, generator=gen, requires_grad=True)
                self.assertTrue(torch.autograd.gradcheck(lambda f, m: carafe(f, m, k, g, s), (feat, mask)))

    def test_grad_of_one_input_only(self):
        feat = torch.randn(1, 2, 3, 3, dtype=torch.float64, requires_grad=True)
        mask = torch.randn(1, 9, 6, 6, dtype=torch.float64)
        carafe(feat, mask, 3, 1, 2).sum().backward()
        # d(sum out)/d feat[y,x] = sum of the mask taps that read (y,x): checked against the loop's adjoint.
        want = np.zeros((1, 2, 3, 3))
        for ph, pw, i, j in itertools.product(range(6), range(6), range(3), range(3)):
            y, x = ph // 2 + i - 1, pw // 2 + j - 1
            if 0 <= y < 3 and 0 <= x < 3:
                want[0, :, y, x] += mask[0, i * 3 + j, ph, pw].item()
        np.testing.assert_allclose(feat.grad.numpy(), want, rtol=1e-12, atol=1e-12)


def native_shapes():
    """carafe_test.h's generator at smaller sizes: G in {1,2,4} x k in {1,3,5,7} x s in {1,2,3}, N=2, channels
    per group not a multiple of any vector width, odd H != W (kernel larger than the image included)."""
    cpgs, hws = (3, 5, 2, 7), ((7, 11), (5, 3), (9, 6), (1, 6), (4, 9))
    shapes = []
    for combo, (g, k, s) in enumerate(itertools.product((1, 2, 4), (1, 3, 5, 7), (1, 2, 3))):
        h, w = hws[combo % 5]
        shapes.append((2, g * cpgs[combo % 4], h, w, g, k, s))
    return shapes


def inputs(n, c, h, w, g, k, s, dtype, seed, contiguous=True):
    """Features, masks and an upstream gradient; non-contiguous ones are permuted and strided views."""
    gen = torch.Generator().manual_seed(seed)
    if contiguous:
        f = torch.randn(n, c, h, w, dtype=dtype, generator=gen)
        m = torch.randn(n, g * k * k, h * s, w * s, dtype=dtype, generator=gen)
    else:
        f = torch.randn(n, h, c, w, dtype=dtype, generator=gen).permute(0, 2, 1, 3)
        m = torch.randn(n, g * k * k, h * s, 2 * w * s, dtype=dtype, generator=gen)[..., ::2]
    go = torch.randn(n, c, h * s, w * s, dtype=dtype, generator=gen)
    return f.requires_grad_(), m.requires_grad_(), go


def grads(f, m, go, k, g, s, native):
    """Output and gradients of features and masks through the native path or the decomposition."""
    f, m = f.detach().requires_grad_(), m.detach().requires_grad_()
    with contextlib.nullcontext() if native else decomposition():
        out = carafe(f, m, k, g, s)
    out.backward(go)
    return out.detach(), f.grad, m.grad


class CarafeNativeTest(unittest.TestCase):
    """The native path (what training runs) against autograd through carafe_forward."""

    @classmethod
    def setUpClass(cls):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a missing library raises its RuntimeWarning here, naming it and the fix
            carafe_lib._load("cpu")

    def setUp(self):
        # Count the native calls: a test of the native path must not pass through the fallback.
        self.calls = {"forward": 0, "backward": 0}
        for name in ("forward", "backward"):
            real = getattr(carafe_lib, name)

            def counted(*a, _real=real, _name=name):
                r = _real(*a)
                self.calls[_name] += r is not None
                return r
            patcher = mock.patch.object(carafe_lib, name, counted)
            patcher.start()
            self.addCleanup(patcher.stop)

    def test_float64_backward_equals_autograd_of_the_definition(self):
        for i, (n, c, h, w, g, k, s) in enumerate(native_shapes()):
            for contiguous in (True, False):
                with self.subTest(n=n, c=c, h=h, w=w, g=g, k=k, s=s, contiguous=contiguous):
                    f, m, go = inputs(n, c, h, w, g, k, s, torch.float64, i, contiguous)
                    before = self.calls["backward"]
                    _, gf, gm = grads(f, m, go, k, g, s, True)
                    self.assertEqual(self.calls["backward"], before + 1)
                    _, wf, wm = grads(f, m, go, k, g, s, False)
                    np.testing.assert_allclose(gf.numpy(), wf.numpy(), rtol=1e-12, atol=1e-12)
                    np.testing.assert_allclose(gm.numpy(), wm.numpy(), rtol=1e-12, atol=1e-12)

    def test_gradcheck_float64(self):
        # Finite differences of the definition against the native backward, in fast mode (random projections
        # of the Jacobian: a full Jacobian of k=7 s=3 takes half a minute even at 2x3 pixels). The full-mode
        # gradchecks of CarafeBackwardTest run the native backward too.
        for i, (n, c, h, w, g, k, s) in enumerate(native_shapes()):
            for contiguous in (True, False):
                with self.subTest(n=n, c=c, h=h, w=w, g=g, k=k, s=s, contiguous=contiguous):
                    f, m, _ = inputs(n, c, h, w, g, k, s, torch.float64, 100 + i, contiguous)
                    before = self.calls["backward"]
                    self.assertTrue(torch.autograd.gradcheck(lambda a, b: carafe(a, b, k, g, s), (f, m), fast_mode=True))
                    self.assertGreater(self.calls["backward"], before)

    def test_float32_native_equals_decomposition(self):
        shapes = native_shapes() + [(2, 64, 12, 10, 1, 3, 1), (2, 96, 6, 5, 1, 5, 2), (1, 25, 6, 6, 1, 5, 2)]
        for i, (n, c, h, w, g, k, s) in enumerate(shapes):
            for contiguous in (True, False):
                with self.subTest(n=n, c=c, h=h, w=w, g=g, k=k, s=s, contiguous=contiguous):
                    f, m, go = inputs(n, c, h, w, g, k, s, torch.float32, 200 + i, contiguous)
                    before = dict(self.calls)
                    got = grads(f, m, go, k, g, s, True)
                    self.assertEqual((self.calls["forward"], self.calls["backward"]),
                                     (before["forward"] + 1, before["backward"] + 1))
                    want = grads(f, m, go, k, g, s, False)
                    # float32 sums in another order: the error is relative to the sum of |terms|, bounded
                    # here by the same gradients of |inputs|.
                    fa, ma, ga = f.detach().abs(), m.detach().abs(), go.abs()
                    bound = grads(fa, ma, ga, k, g, s, False)
                    for name, a, b, mag in zip(("out", "grad features", "grad masks"), got, want, bound):
                        err = ((a - b).abs() / (1 + mag)).max().item() if a.numel() else 0.0
                        self.assertLess(err, 1e-5, name)

    def test_grad_of_one_input_only(self):
        f, m, go = inputs(2, 6, 5, 7, 2, 3, 2, torch.float32, 7)
        for wrt in ("features", "masks"):
            with self.subTest(wrt=wrt):
                a = f.detach().requires_grad_(wrt == "features")
                b = m.detach().requires_grad_(wrt == "masks")
                carafe(a, b, 3, 2, 2).backward(go)
                _, wf, wm = grads(f, m, go, 3, 2, 2, False)
                got, want, other = (a.grad, wf, b.grad) if wrt == "features" else (b.grad, wm, a.grad)
                self.assertIsNone(other)
                np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-5)

    def test_inference_and_export_stay_on_the_definition(self):
        f, m, _ = inputs(1, 4, 3, 5, 1, 3, 2, torch.float32, 3)
        with torch.no_grad():
            out = carafe(f, m, 3, 1, 2)
        self.assertEqual(self.calls, {"forward": 0, "backward": 0})
        self.assertTrue(torch.equal(out, carafe_forward(f.detach(), m.detach(), 3, 1, 2)))

    def test_missing_library_falls_back_with_one_warning(self):
        f, m, go = inputs(2, 6, 5, 7, 2, 3, 2, torch.float32, 11)
        with mock.patch.dict(os.environ, {"STARDETR_PLUGIN": "/nonexistent/libstardetr_carafe.so"}), \
                mock.patch.dict(carafe_lib._libs, clear=True), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            got = [grads(f, m, go, 3, 2, 2, True) for _ in range(2)]
        self.assertEqual(self.calls, {"forward": 0, "backward": 0})
        msgs = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
        self.assertEqual(len(msgs), 1, msgs)
        self.assertIn("/nonexistent/libstardetr_carafe.so", msgs[0])
        self.assertIn("make plugin", msgs[0])
        want = grads(f, m, go, 3, 2, 2, False)
        for a, b in zip(got[1], want):
            self.assertTrue(torch.equal(a, b))


class CarafeExportTest(unittest.TestCase):
    def test_symbolic_emits_mmcv_node(self):
        class M(torch.nn.Module):
            def forward(self, f, m):
                return carafe(f, m, 5, 2, 2)

        buf = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(M(), (torch.randn(1, 4, 3, 5), torch.randn(1, 50, 6, 10)), buf, opset_version=17)
        model = onnx.load_from_string(buf.getvalue())
        nodes = [n for n in model.graph.node if n.op_type == "MMCVCARAFE"]
        self.assertEqual(len(nodes), 1)
        self.assertEqual(nodes[0].domain, "mmcv")
        attrs = {a.name: a for a in nodes[0].attribute}
        self.assertEqual(attrs["kernel_size"].type, onnx.AttributeProto.INT)
        self.assertEqual(attrs["kernel_size"].i, 5)
        self.assertEqual(attrs["group_size"].type, onnx.AttributeProto.INT)
        self.assertEqual(attrs["group_size"].i, 2)
        self.assertEqual(attrs["scale_factor"].type, onnx.AttributeProto.FLOAT)
        self.assertEqual(attrs["scale_factor"].f, 2.0)
        self.assertEqual(len(nodes[0].input), 2)


if __name__ == "__main__":
    unittest.main()
