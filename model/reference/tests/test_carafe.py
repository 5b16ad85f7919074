"""CARAFE's vectorised PyTorch forward against an independent loop, and its ONNX node."""
import io
import itertools
import unittest
import warnings

import numpy as np
import onnx
import torch

from model.reference.carafe import carafe, carafe_forward


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
