"""The exported ONNX graphs: contract, custom nodes, metadata, goldens, and `make models`' outputs.

The graphs `make models` wrote are read from $STARDETR_MODELS (default build/models); a missing one
fails naming the target that makes it.
"""
import ast
import contextlib
import io
import os
import tempfile
import unittest

import numpy as np
import onnx
import torch

from model.reference import export, predict, seed

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
MODELS = os.environ.get("STARDETR_MODELS") or os.path.join(REPO, "build", "models")


def built(name):
    path = os.path.join(MODELS, name)
    if not os.path.exists(path):
        raise AssertionError(f"{path} is missing: run `make models` first")
    return path


def check_graph(test, proto, nc, imgsz, dynamic=False):
    """The export contract shared by every graph."""
    test.assertEqual([(o.domain, o.version) for o in proto.opset_import if o.domain in ("", "ai.onnx")], [("", 17)])
    (inp,) = proto.graph.input
    test.assertEqual(inp.name, "images")
    dims = inp.type.tensor_type.shape.dim
    test.assertEqual(inp.type.tensor_type.elem_type, onnx.TensorProto.FLOAT)
    test.assertEqual([d.dim_value for d in dims[1:]], [3, *imgsz])
    test.assertEqual(bool(dims[0].dim_param), dynamic, "batch axis symbolic exactly when exported --dynamic")
    (out,) = proto.graph.output
    test.assertEqual(out.name, "output0")
    carafes = [n for n in proto.graph.node if n.op_type == "MMCVCARAFE"]
    test.assertEqual(len(carafes), 10, "five CARAFE calls per FreqFusion, two FreqFusions")
    for n in carafes:
        test.assertEqual(n.domain, "mmcv")
        attrs = {a.name: (a.type, onnx.helper.get_attribute_value(a)) for a in n.attribute}
        test.assertEqual(set(attrs), {"kernel_size", "group_size", "scale_factor"})
        test.assertEqual(attrs["kernel_size"][0], onnx.AttributeProto.INT)
        test.assertEqual(attrs["group_size"], (onnx.AttributeProto.INT, 1))
        test.assertEqual(attrs["scale_factor"][0], onnx.AttributeProto.FLOAT)
        test.assertIn((attrs["kernel_size"][1], attrs["scale_factor"][1]), {(3, 1.0), (5, 2.0)})
    ks = [onnx.helper.get_attribute_value(a) for n in carafes for a in n.attribute if a.name == "kernel_size"]
    test.assertEqual(ks.count(5), 6, "three k=5 (s=2) and two k=3 (s=1) per FreqFusion")
    # Every other node is a standard ONNX op that ONNX Runtime implements itself.
    for n in proto.graph.node:
        if n.op_type != "MMCVCARAFE":
            test.assertIn(n.domain, ("", "ai.onnx"), n.name)
            test.assertTrue(onnx.defs.has(n.op_type, ""), f"{n.name}: {n.op_type} is not a standard ONNX op")
    ops = {n.op_type for n in proto.graph.node}
    test.assertIn("GridSample", ops)
    test.assertIn("TopK", ops)
    onnx.checker.check_model(proto)
    meta = {p.key: p.value for p in proto.metadata_props}
    for key in ("names", "imgsz", "stride", "task", "batch", "description", "version"):
        test.assertIn(key, meta)
    names = ast.literal_eval(meta["names"])
    test.assertEqual(sorted(names), list(range(nc)))
    test.assertEqual(ast.literal_eval(meta["imgsz"]), list(imgsz))
    test.assertEqual(ast.literal_eval(meta["stride"]), 32)
    test.assertEqual(meta["task"], "detect")
    return meta


class BuiltModelsTest(unittest.TestCase):
    """What `make models` wrote."""

    def test_seed_640(self):
        proto = onnx.load(built("seed-640.onnx"), load_external_data=False)
        meta = check_graph(self, proto, 1, [640, 640])
        self.assertEqual(meta["names"], "{0: 'person'}")
        self.assertEqual(meta["imgsz"], "[640, 640]")
        n_params = sum(int(np.prod(t.dims)) for t in proto.graph.initializer)
        # The weights are inside the file. Fewer than the model's 18.7M: the exporter folds each BatchNorm into
        # its conv and drops what inference never reads (denoising embedding, the first five score heads).
        self.assertGreater(n_params, 18_000_000)
        self.assertLess(n_params, seed.SEED_TOTAL_PARAMS)

    def test_tiny(self):
        meta = check_graph(self, onnx.load(built("tiny.onnx")), 2, [128, 128])
        self.assertEqual(meta["names"], "{0: 'person', 1: 'car'}")
        check_graph(self, onnx.load(built("tiny-dynamic.onnx")), 2, [128, 128], dynamic=True)

    def test_goldens_reproduce_in_a_fresh_process(self):
        torch.set_num_threads(2)
        for name, nc, arch, imgsz, batch in (("seed-160", 1, "seed", 160, 1), ("tiny", 2, "tiny", 128, 1), ("tiny-dynamic", 2, "tiny", 128, 2)):
            with self.subTest(golden=name):
                data = np.load(built(name + ".npz"))
                self.assertEqual(data["images"].shape, (batch, 3, imgsz, imgsz))
                self.assertEqual(data["images"].dtype, np.float32)
                self.assertEqual(data["output0"].shape, (batch, 300, 4 + nc))
                self.assertTrue(0 <= data["images"].min() and data["images"].max() <= 1)
                model = seed.build(nc, arch, 0)
                with torch.no_grad():
                    out = model(torch.from_numpy(data["images"])).numpy()
                np.testing.assert_allclose(out, data["output0"], rtol=1e-5, atol=1e-6)


class ExportTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)

    def run_cli(self, *args):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = export.main(list(args))
            except SystemExit as e:
                code = e.code
        return code, out.getvalue(), err.getvalue()

    def test_cli_writes_model_golden_and_prints_path(self):
        onnx_path = os.path.join(self.dir.name, "t.onnx")
        npz = os.path.join(self.dir.name, "t.npz")
        code, out, err = self.run_cli("--arch", "tiny", "--nc", "3", "--names", "a,b,c", "--imgsz", "128,160",
                                      "--out", onnx_path, "--golden", npz, "--seed", "4")
        self.assertEqual(code, 0, err)
        self.assertIn(f"wrote {onnx_path}", out)
        meta = check_graph(self, onnx.load(onnx_path), 3, [128, 160])
        self.assertEqual(meta["names"], "{0: 'a', 1: 'b', 2: 'c'}")
        self.assertEqual(meta["imgsz"], "[128, 160]")
        data = np.load(npz)
        self.assertEqual(data["output0"].shape, (1, 300, 7))

    def test_cli_loads_weights(self):
        weights = os.path.join(self.dir.name, "w.pt")
        torch.save(seed.build(2, "tiny", 9).state_dict(), weights)
        npz = os.path.join(self.dir.name, "w.npz")
        code, out, err = self.run_cli("--arch", "tiny", "--weights", weights, "--out", os.path.join(self.dir.name, "w.onnx"), "--golden", npz)
        self.assertEqual(code, 0, err)
        self.assertIn("weights w.pt", out)
        with torch.no_grad():
            want = seed.build(2, "tiny", 9)(torch.from_numpy(np.load(npz)["images"])).numpy()
        np.testing.assert_allclose(np.load(npz)["output0"], want, rtol=1e-6, atol=1e-7)

    def test_cli_refuses_bad_input(self):
        path = os.path.join(self.dir.name, "x.onnx")
        code, _, err = self.run_cli("--arch", "tiny", "--imgsz", "100", "--out", path)
        self.assertEqual(code, 2)
        self.assertIn("multiples of 32", err)
        code, _, err = self.run_cli("--arch", "tiny", "--nc", "2", "--names", "a", "--out", path)
        self.assertEqual(code, 2)
        self.assertIn("exactly nc=2", err)
        weights = os.path.join(self.dir.name, "w.pt")
        torch.save(seed.RTDETRStarNetFreqFusion(2, seed.TINY).state_dict(), weights)
        code, _, err = self.run_cli("--arch", "tiny", "--nc", "1", "--weights", weights, "--out", path)
        self.assertEqual(code, 2)
        self.assertIn("wrong shapes: model.18.denoising_class_embed.weight [2, 32] (model [1, 32])", err)
        self.assertFalse(os.path.exists(path))


class PredictTest(unittest.TestCase):
    def test_postprocess_follows_rtdetr_predictor(self):
        out = np.array([
            [0.5, 0.5, 0.2, 0.4, 0.10, 0.90],  # class 1, 0.9
            [0.25, 0.75, 0.1, 0.1, 0.30, 0.20],  # class 0, 0.3
            [0.5, 0.5, 1.0, 1.0, 0.26, 0.01],  # class 0, 0.26
            [0.1, 0.1, 0.1, 0.1, 0.25, 0.00],  # 0.25 is not > 0.25
        ])
        rows = predict.postprocess(out, 200, 100, conf=0.25, max_det=10)
        np.testing.assert_allclose(rows, [
            [80, 30, 120, 70, 0.9, 1],
            [40, 70, 60, 80, 0.3, 0],
            [0, 0, 200, 100, 0.26, 0],
        ])
        self.assertEqual(len(predict.postprocess(out, 200, 100, conf=0.25, max_det=2)), 2)
        only0 = predict.postprocess(out, 200, 100, conf=0.25, classes=[0])
        self.assertEqual(list(only0[:, 5]), [0, 0])
        js = predict.detections_json(out, 200, 100, {0: "person", 1: "car"}, conf=0.5)
        self.assertEqual(ast.literal_eval(js), [{"class_id": 1, "label": "car", "score": 0.9, "box": [80.0, 30.0, 120.0, 70.0]}])

    def test_resize_bilinear_half_pixel(self):
        img = np.arange(4, dtype=np.float64).reshape(1, 4, 1) * 10  # one row: 0 10 20 30
        np.testing.assert_allclose(predict.resize_bilinear(img, 1, 2)[0, :, 0], [5, 25])  # downscale: pairs' centres
        np.testing.assert_allclose(predict.resize_bilinear(img, 1, 8)[0, :, 0], [0, 2.5, 7.5, 12.5, 17.5, 22.5, 27.5, 30])


if __name__ == "__main__":
    unittest.main()
