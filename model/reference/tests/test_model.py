"""The seed architecture: exact parameter counts, module details, determinism, bad input."""
import os
import tempfile
import unittest

import numpy as np
import torch
import torch.nn as nn

from model.reference import modules, seed


class ParameterCountTest(unittest.TestCase):
    def test_every_layer_matches_the_seed_summary(self):
        model = seed.RTDETRStarNetFreqFusion(nc=1, arch=seed.SEED)
        for row, layer, frm, name, want in seed.SUMMARY_ROWS:
            with self.subTest(row=row, layer=layer, module=name):
                self.assertEqual(type(model.model[row]).__name__, {"starnet_s050": "StarNet"}.get(name, name))
                self.assertEqual(seed.count_params(model.model[row]), want)
        self.assertEqual(seed.count_params(model), seed.SEED_TOTAL_PARAMS)
        self.assertEqual(seed.SEED_TOTAL_PARAMS, 18_716_999)

    def test_decoder_grows_with_nc(self):
        # Each class adds one weight row + bias to 7 score heads and one embedding row of hd.
        for nc in (1, 2, 80):
            model = seed.RTDETRStarNetFreqFusion(nc=nc, arch=seed.SEED)
            self.assertEqual(seed.count_params(model.model[18]), 7_303_907 + (nc - 1) * (7 * 257 + 256))

    def test_state_dict_keys_follow_ultralytics(self):
        keys = seed.RTDETRStarNetFreqFusion(1, seed.TINY).state_dict().keys()
        for key in (
            "model.0.stem.0.conv.weight",
            "model.0.stages.2.1.dwconv.bn.running_var",
            "model.2.ma.in_proj_weight",
            "model.7.hamming_lowpass",
            "model.8.m.0.conv1.conv.weight",
            "model.18.input_proj.0.1.weight",
            "model.18.decoder.layers.1.cross_attn.sampling_offsets.weight",
            "model.18.denoising_class_embed.weight",
            "model.18.dec_bbox_head.1.layers.2.bias",
        ):
            self.assertIn(key, keys)


class ModuleTest(unittest.TestCase):
    def test_repc3_has_identity_cv3_when_widths_match(self):
        self.assertIsInstance(modules.RepC3(256, 256, 3).cv3, nn.Identity)
        self.assertIsInstance(modules.RepC3(512, 256, 3).cv3, nn.Identity)

    def test_kernel_normalizer_equals_the_seed_formulation(self):
        ff = modules.FreqFusion([16, 16])
        rng = torch.Generator().manual_seed(3)
        for k, ham in ((5, ff.hamming_lowpass), (3, ff.hamming_highpass)):
            mask = torch.randn(2, k * k, 4, 6, generator=rng)
            n, mc, h, w = mask.shape
            # The seed's own sequence of views and permutes.
            m = mask.view(n, 1, -1, h, w).softmax(dim=2).view(n, 1, k, k, h, w)
            m = m.permute(0, 1, 4, 5, 2, 3).reshape(n, -1, k, k) * ham
            m = m / m.sum(dim=(-1, -2), keepdim=True)
            want = m.view(n, 1, h, w, -1).permute(0, 1, 4, 2, 3).reshape(n, -1, h, w)
            torch.testing.assert_close(ff.kernel_normalizer(mask, k, ham), want)

    def test_hamming_window_is_numpy_outer(self):
        ff = modules.FreqFusion([16, 16])
        np.testing.assert_allclose(ff.hamming_lowpass[0, 0].numpy(), np.outer(np.hamming(5), np.hamming(5)), rtol=1e-6)

    def test_anchors(self):
        anchors, valid = modules.RTDETRDecoder.generate_anchors([[4, 6], [2, 3]])
        self.assertEqual(tuple(anchors.shape), (1, 30, 4))
        # Level 1 boxes have w=h=0.1; every level's centres lie strictly inside (eps 1e-2) here.
        self.assertTrue(bool(valid.all()))
        torch.testing.assert_close(torch.sigmoid(anchors[0, 0]), torch.tensor([0.5 / 6, 0.5 / 4, 0.05, 0.05]))
        torch.testing.assert_close(torch.sigmoid(anchors[0, 24]), torch.tensor([0.5 / 3, 0.5 / 2, 0.1, 0.1]))
        # A level whose boxes reach 1 - eps is invalid and filled with inf, as in ultralytics.
        anchors, valid = modules.RTDETRDecoder.generate_anchors([[2, 2]] * 6)
        self.assertFalse(bool(valid[0, -1, 0]))
        self.assertTrue(torch.isinf(anchors[0, -1]).all())

    def test_position_embedding(self):
        pe = modules.build_2d_sincos_position_embedding(3, 2, 8)
        self.assertEqual(tuple(pe.shape), (1, 6, 8))
        # Row r encodes x = r // h, y = r % h (ultralytics' meshgrid(w, h, indexing='ij')).
        r = 5
        x, y = r // 2, r % 2
        omega = 1.0 / 10000 ** (np.arange(2) / 2)
        want = np.concatenate([np.sin(x * omega), np.cos(x * omega), np.sin(y * omega), np.cos(y * omega)])
        np.testing.assert_allclose(pe[0, r].numpy(), want, rtol=1e-6)


class ModelTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        torch.set_num_threads(2)
        cls.model = seed.build(nc=2, arch="tiny", seed=0)
        cls.images = seed.synthetic_images(2, 128, 160, seed=5)

    def test_output_shape_and_ranges(self):
        with torch.no_grad():
            out = self.model(self.images)
        self.assertEqual(tuple(out.shape), (2, 300, 6))
        self.assertTrue(bool(torch.isfinite(out).all()))
        self.assertTrue(bool(((out >= 0) & (out <= 1)).all()), "boxes and scores are sigmoid outputs")
        # The stand-in weights give scores spread over 0..1, not one value.
        self.assertGreater(float(out[..., 4:].std()), 0.05)

    def test_deterministic(self):
        with torch.no_grad():
            a = self.model(self.images)
            b = self.model(self.images)
            other = seed.build(nc=2, arch="tiny", seed=0)
            c = other(self.images)
        self.assertTrue(torch.equal(a, b))
        self.assertTrue(torch.equal(a, c))
        for (k, v), (k2, v2) in zip(self.model.state_dict().items(), other.state_dict().items()):
            self.assertEqual(k, k2)
            self.assertTrue(torch.equal(v, v2), k)

    def test_batch_items_are_independent(self):
        with torch.no_grad():
            both = self.model(self.images)
            first = self.model(self.images[:1])
        torch.testing.assert_close(both[:1], first, rtol=1e-4, atol=1e-5)

    def test_size_not_divisible_by_32_is_refused(self):
        with self.assertRaisesRegex(ValueError, r"100x128 is not divisible by 32.*use e\.g\. 96x128"):
            self.model(torch.zeros(1, 3, 100, 128))

    def test_too_small_input_is_refused(self):
        with self.assertRaisesRegex(ValueError, "fewer than the 300 queries"):
            self.model(torch.zeros(1, 3, 64, 64))


class CheckpointTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)

    def path(self, name):
        return os.path.join(self.dir.name, name)

    def test_round_trip(self):
        src = seed.build(nc=2, arch="tiny", seed=3)
        torch.save({"model": src.state_dict()}, self.path("ckpt.pt"))
        self.assertEqual(seed.infer_nc(self.path("ckpt.pt")), 2)
        dst = seed.load_checkpoint(seed.RTDETRStarNetFreqFusion(2, seed.TINY), self.path("ckpt.pt")).eval()
        x = seed.synthetic_images(1, 128, 128)
        with torch.no_grad():
            self.assertTrue(torch.equal(src(x), dst(x)))

    def test_shape_mismatch_names_key_and_both_shapes(self):
        torch.save(seed.RTDETRStarNetFreqFusion(2, seed.TINY).state_dict(), self.path("nc2.pt"))
        with self.assertRaises(seed.CheckpointError) as cm:
            seed.load_checkpoint(seed.RTDETRStarNetFreqFusion(3, seed.TINY), self.path("nc2.pt"))
        msg = str(cm.exception)
        self.assertIn("wrong shapes: model.18.denoising_class_embed.weight [2, 32] (model [3, 32])", msg)
        self.assertIn("--nc", msg)

    def test_missing_and_unexpected_keys(self):
        sd = seed.RTDETRStarNetFreqFusion(1, seed.TINY).state_dict()
        missing = dict(sd)
        del missing["model.5.conv.weight"]
        torch.save(missing, self.path("missing.pt"))
        with self.assertRaisesRegex(seed.CheckpointError, r"missing keys: model.5.conv.weight;"):
            seed.load_checkpoint(seed.RTDETRStarNetFreqFusion(1, seed.TINY), self.path("missing.pt"))
        extra = dict(sd)
        extra["model.23.weight"] = torch.zeros(2)
        torch.save(extra, self.path("extra.pt"))
        with self.assertRaisesRegex(seed.CheckpointError, r"unexpected keys: model.23.weight;"):
            seed.load_checkpoint(seed.RTDETRStarNetFreqFusion(1, seed.TINY), self.path("extra.pt"))

    def test_architecture_mismatch(self):
        torch.save(seed.RTDETRStarNetFreqFusion(1, seed.TINY).state_dict(), self.path("tiny.pt"))
        with self.assertRaisesRegex(seed.CheckpointError, r"wrong shapes: model.0.stem.0.conv.weight \[16, 3, 3, 3\] \(model \[32, 3, 3, 3\]\)"):
            seed.load_checkpoint(seed.RTDETRStarNetFreqFusion(1, seed.SEED), self.path("tiny.pt"))

    def test_not_a_checkpoint(self):
        with open(self.path("junk.pt"), "w") as f:
            f.write("not a checkpoint")
        with self.assertRaisesRegex(seed.CheckpointError, "not a PyTorch checkpoint"):
            seed.load_checkpoint(seed.RTDETRStarNetFreqFusion(1, seed.TINY), self.path("junk.pt"))


if __name__ == "__main__":
    unittest.main()
