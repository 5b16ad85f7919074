"""The INT8 models `make models` writes, and python -m model.quantize's handling of bad input.

Runs in build/venv-perf (onnxruntime's Python package, the same version as the runtime's library) with
the CARAFE plugin ($STARDETR_PLUGIN) and bin/stardetr (`make build`).
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np
import onnx

from model.quantize.__main__ import OPS, float32_by_rule, session
from model.reference import predict

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
MODELS = os.environ.get("STARDETR_MODELS") or os.path.join(REPO, "build", "models")
PLUGIN = os.environ.get("STARDETR_PLUGIN", "")
STARDETR = os.path.join(REPO, "bin", "stardetr")


def built(path, target):
    if not os.path.exists(path):
        raise AssertionError(f"{path} is missing: run `{target}` first")
    return path


class Int8Model(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.fp32 = onnx.load(built(os.path.join(MODELS, "tiny.onnx"), "make models"))
        cls.path = built(os.path.join(MODELS, "tiny-int8.onnx"), "make build/models/tiny-int8.onnx")
        cls.int8 = onnx.load(cls.path)
        built(PLUGIN, "make plugin")

    def test_only_the_chosen_ops_run_in_int8(self):
        nodes = self.int8.graph.node
        consumers = {}
        for n in nodes:
            for i in n.input:
                consumers.setdefault(i, []).append(n)
        inits = {i.name: i for i in self.int8.graph.initializer}
        # An op runs in int8 when its weights are stored in int8: a DequantizeLinear of an int8
        # initializer feeds it. (Dequantized activations also feed float ops such as CARAFE or Add.)
        int8_weights = {n.output[0] for n in nodes if n.op_type == "DequantizeLinear"
                        and n.input[0] in inits and inits[n.input[0]].data_type == onnx.TensorProto.INT8}
        PASS = ("Identity", "QuantizeLinear", "DequantizeLinear")  # a tied weight passes through these
        users = lambda v: [u for c in consumers.get(v, []) for u in (users(c.output[0]) if c.op_type in PASS else [c])]  # noqa: E731
        quantized = {c.op_type for w in int8_weights for c in users(w)}
        # Every op with weights (Conv, MatMul, Gemm) is quantized; others (Mul, Add, Concat) run
        # in int8 between them without weights of their own; nothing beyond OPS.
        self.assertLessEqual(quantized, set(OPS))
        self.assertEqual(quantized & {"Conv", "MatMul", "Gemm"}, {"Conv", "MatMul", "Gemm"} & {n.op_type for n in self.fp32.graph.node})
        self.assertGreater(sum(1 for n in self.int8.graph.node if n.op_type == "QuantizeLinear"), 0)


    def test_attention_matmuls_stay_float32(self):
        """The MatMuls of two activations (and rank-5+ Mul/Add/Concat) run in float32 after ONNX
        Runtime's QDQ fusions: no QLinearMatMul and no QLinearSoftmax in self-attention."""
        import onnxruntime as ort

        kept = float32_by_rule(self.fp32)
        attention = [n.name for n in self.fp32.graph.node if n.name in kept and n.op_type == "MatMul"]
        self.assertGreaterEqual(len(attention), 4)  # the encoder's and each decoder layer's Q·Kᵀ and A·V
        with tempfile.TemporaryDirectory() as tmp:
            so = ort.SessionOptions()
            so.register_custom_ops_library(PLUGIN)
            so.log_severity_level = 3
            so.optimized_model_filepath = os.path.join(tmp, "optimized.onnx")
            ort.InferenceSession(self.path, so, providers=["CPUExecutionProvider"])
            optimized = onnx.load(so.optimized_model_filepath).graph.node
        fused = {n.name: n.op_type for n in optimized}
        for name in kept:
            self.assertFalse(fused.get(name, "").startswith("QLinear"), (name, fused.get(name)))
        self.assertFalse([n.name for n in optimized if n.op_type == "QLinearSoftmax" and "self_attn" in n.name])
        self.assertIn(f"'float32_by_rule': {len(kept)}", {p.key: p.value for p in self.int8.metadata_props}["quantization"])

    def test_decoder_stays_float32(self):
        """The RTDETRDecoder module keeps float32 weights: none of its nodes is fed an int8 weight."""
        inits = {i.name: i for i in self.int8.graph.initializer}
        int8_weights = {n.output[0] for n in self.int8.graph.node if n.op_type == "DequantizeLinear"
                        and n.input[0] in inits and inits[n.input[0]].data_type == onnx.TensorProto.INT8}
        decoder = [n for n in self.int8.graph.node if n.name.startswith("/model.18/")]
        self.assertGreater(sum(1 for n in decoder if n.op_type in ("MatMul", "Gemm")), 10)
        fed = [n.name for n in decoder if int8_weights & set(n.input)]
        self.assertEqual(fed, [])
        self.assertTrue(int8_weights, "nothing else was quantized either")
        self.assertIn("7-bit range", {p.key: p.value for p in self.int8.metadata_props}["quantization"])

    def test_carafe_stays_float32_in_the_plugin(self):
        before = sorted((n.name, [a.SerializeToString() for a in n.attribute]) for n in self.fp32.graph.node if n.op_type == "MMCVCARAFE")
        after = sorted((n.name, [a.SerializeToString() for a in n.attribute]) for n in self.int8.graph.node if n.op_type == "MMCVCARAFE")
        self.assertEqual(len(before), 10)
        self.assertEqual(before, after)
        self.assertTrue(all(n.domain == "mmcv" for n in self.int8.graph.node if n.op_type == "MMCVCARAFE"))

    def test_interface_and_metadata_kept(self):
        meta = lambda m: {p.key: p.value for p in m.metadata_props}  # noqa: E731
        m32, m8 = meta(self.fp32), meta(self.int8)
        for k, v in m32.items():
            self.assertEqual(m8.get(k), v, k)
        self.assertIn("'format': 'QDQ'", m8["quantization"])
        self.assertEqual([i.name for i in self.int8.graph.input], ["images"])
        self.assertEqual([o.name for o in self.int8.graph.output], ["output0"])
        self.assertEqual(self.int8.graph.input[0].type.tensor_type.elem_type, onnx.TensorProto.FLOAT)

    def test_stardetr_infer_equals_onnxruntime(self):
        """`stardetr infer` on the INT8 model == onnxruntime (Python) + the reference pre/postprocess."""
        from PIL import Image

        built(STARDETR, "make build")
        # At the model's input size (no resize) and lossless, so both sides build the same tensor:
        # int8 amplifies a one-grey-level difference of two resize implementations into a
        # quantization step, which reorders the near-tied random-weight scores.
        im = Image.open(os.path.join(REPO, "model", "testdata", "frame.jpg")).convert("RGB").resize((128, 128))
        rgb = np.asarray(im)
        with tempfile.TemporaryDirectory() as tmp:
            png = os.path.join(tmp, "frame.png")
            Image.fromarray(rgb).save(png)
            out = subprocess.run([STARDETR, "infer", "--model", self.path, "--image", png, "--json", "--conf", "0.25",
                                  "--threads", "1", "--plugin", PLUGIN], capture_output=True, text=True, timeout=120)
        self.assertEqual(out.returncode, 0, out.stderr)
        got = json.loads(out.stdout)
        x = predict.preprocess(rgb, (128, 128))
        y = session(self.path, PLUGIN).run(["output0"], {"images": x})[0][0]
        want = predict.postprocess(y, rgb.shape[1], rgb.shape[0], conf=0.25, max_det=100)
        self.assertGreater(len(want), 0, "no reference detections: the comparison would be empty")
        self.assertEqual(len(got), len(want))
        for g, w in zip(got, want):
            self.assertEqual(g["class_id"], int(w[5]))
            self.assertAlmostEqual(g["score"], w[4], delta=1e-4)
            for k in range(4):
                self.assertAlmostEqual(g["box"][k], w[k], delta=0.02)

    def test_agreement_with_float32_is_reported(self):
        """Reports how far INT8 moves output0 from float32 on the golden inputs (random weights: no bound)."""
        x = np.load(os.path.join(MODELS, "tiny.npz"))["images"]
        a = session(os.path.join(MODELS, "tiny.onnx"), PLUGIN).run(["output0"], {"images": x})[0]
        b = session(self.path, PLUGIN).run(["output0"], {"images": x})[0]
        self.assertEqual(a.shape, b.shape)
        self.assertTrue(np.isfinite(b).all())
        corr = np.corrcoef(a[..., 4:].ravel(), b[..., 4:].ravel())[0, 1]
        print(f"\ntiny fp32 vs int8: max |Δbox| {np.abs(a[..., :4] - b[..., :4]).max():.3f}, score correlation {corr:.3f}",
              file=sys.stderr)


class BadInput(unittest.TestCase):
    def run_quantize(self, *args):
        return subprocess.run([sys.executable, "-m", "model.quantize", *args], capture_output=True, text=True, cwd=REPO, timeout=120)

    def test_each_bad_input_gets_one_line_naming_it(self):
        tiny = os.path.join(MODELS, "tiny.onnx")
        with tempfile.TemporaryDirectory() as tmp:
            def yaml(name, text):
                p = os.path.join(tmp, name)
                with open(p, "w") as f:
                    f.write(text)
                return p

            os.makedirs(os.path.join(tmp, "imgs"))
            with open(os.path.join(tmp, "imgs", "broken.jpg"), "wb") as f:
                f.write(b"not a jpeg")
            os.makedirs(os.path.join(tmp, "empty"))
            out = os.path.join(tmp, "out.onnx")
            cases = [
                (["--model", tiny, "--data", os.path.join(tmp, "nope.yaml")], "nope.yaml: dataset YAML not found"),
                (["--model", tiny, "--data", yaml("nosplit.yaml", "names: {0: a}\n")], "nosplit.yaml: needs a 'train' or 'val' key"),
                (["--model", tiny, "--data", yaml("gone.yaml", "train: missing\n")], "gone.yaml: 'missing' resolves to"),
                (["--model", tiny, "--data", yaml("empty.yaml", "train: empty\n")], "empty.yaml: no images"),
                (["--model", tiny, "--data", yaml("bad.yaml", "train: [unclosed\n")], "bad.yaml: not valid YAML"),
                (["--model", tiny, "--data", yaml("broken.yaml", "train: imgs\n")], "broken.jpg: cannot read the image"),
                (["--model", os.path.join(tmp, "none.onnx"), "--data", "x"], "--model " + os.path.join(tmp, "none.onnx")),
            ]
            for args, want in cases:
                r = self.run_quantize(*args, "--out", out, "--plugin", PLUGIN)
                self.assertEqual(r.returncode, 1, (args, r.stderr))
                lines = [l for l in r.stderr.splitlines() if l.startswith("quantize: error: ")]
                self.assertEqual(len(lines), 1, r.stderr)
                self.assertIn(want, lines[0])
                self.assertFalse(os.path.exists(out), "a failed run left an output file")
            r = self.run_quantize("--model", tiny, "--data", "x", "--out", out, "--plugin", os.path.join(tmp, "no.so"))
            self.assertEqual(r.returncode, 1)
            self.assertIn("make plugin", r.stderr)


if __name__ == "__main__":
    unittest.main()
