"""One training step of the seed model through ultralytics' RTDETRDetectionModel.loss with CARAFE's native kernels
(libstardetr_carafe, `make plugin`) and with autograd through its PyTorch definition: the same loss and gradients.

Run by `make test-train` (build/venv/bin/python, the pinned ultralytics)."""
import contextlib
import unittest
import warnings
from unittest import mock

import torch

import model.ultralytics  # noqa: F401  (registers the seed's modules with ultralytics)
from model.reference import carafe_lib
from model.reference.carafe import decomposition
from model.ultralytics import SEED_YAML
from ultralytics.nn.tasks import RTDETRDetectionModel

IMGSZ, BATCH = 128, 2  # 128: the decoder picks 300 queries from the 336 anchors of strides 8, 16, 32


def batch(gen):
    """Images and two boxes per image (normalised xywh), the layout ultralytics' dataloader gives the loss."""
    img = torch.rand(BATCH, 3, IMGSZ, IMGSZ, generator=gen)
    xy = 0.25 + 0.5 * torch.rand(2 * BATCH, 2, generator=gen)
    wh = 0.1 + 0.3 * torch.rand(2 * BATCH, 2, generator=gen)
    return {"img": img, "batch_idx": torch.arange(BATCH).repeat_interleave(2).float(),
            "cls": torch.zeros(2 * BATCH, 1), "bboxes": torch.cat([xy, wh], 1)}


def step(net, data, native):
    """Loss and gradients of one step; the decoder's denoising queries are drawn from a fixed seed."""
    net.zero_grad(set_to_none=True)
    torch.manual_seed(1)
    with contextlib.nullcontext() if native else decomposition():
        loss, items = net.loss(data)
    loss.backward()
    return loss.detach(), items, {n: p.grad.detach().clone() for n, p in net.named_parameters() if p.grad is not None}


class SeedTrainingStepTest(unittest.TestCase):
    def test_native_and_decomposition_give_the_same_step(self):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no library: its RuntimeWarning names it and `make plugin`
            carafe_lib._load("cpu")
        torch.manual_seed(0)
        with contextlib.redirect_stdout(None):
            net = RTDETRDetectionModel(SEED_YAML, nc=1, verbose=False)
        net.nc = 1  # what ultralytics' trainer sets from the dataset
        net.train()
        data = batch(torch.Generator().manual_seed(2))

        calls = {"forward": 0, "backward": 0}
        real = {name: getattr(carafe_lib, name) for name in calls}

        def counter(name):
            def counted(*a):
                r = real[name](*a)
                calls[name] += r is not None
                return r
            return counted

        with mock.patch.object(carafe_lib, "forward", counter("forward")), \
                mock.patch.object(carafe_lib, "backward", counter("backward")):
            got = step(net, data, native=True)
            self.assertEqual(calls, {"forward": 10, "backward": 10}, "the seed calls CARAFE ten times, all native")
            want = step(net, data, native=False)
            self.assertEqual(calls, {"forward": 10, "backward": 10}, "decomposition() must not reach the kernels")

        torch.testing.assert_close(got[0], want[0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(got[1], want[1], rtol=1e-5, atol=1e-6)
        self.assertEqual(got[2].keys(), want[2].keys())
        self.assertTrue(any("content_encoder" in name for name in got[2]), "FreqFusion's mask encoders get gradients")
        # float32 sums in another order, through ~60 layers: the gradients agree to ~4e-5 of their norm. A conv bias
        # followed by BatchNorm has a gradient of exactly 0 in exact arithmetic, so its float32 value is rounding
        # noise (~1e-6 against a largest gradient norm of ~1e2): the bound has a floor at 1e-6 of that norm.
        floor = 1e-6 * max(w.norm().item() for w in want[2].values())
        for name, g in got[2].items():
            w = want[2][name]
            with self.subTest(param=name):
                self.assertLessEqual((g - w).norm().item(), 1e-3 * w.norm().item() + floor)

if __name__ == "__main__":
    unittest.main()
