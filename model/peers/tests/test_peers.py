"""The standard-op CARAFE export the peers run computes what stardetr's plugin export does."""
import os
import unittest

import numpy as np
import onnx
import onnxruntime as ort

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
MODELS = os.environ.get("STARDETR_MODELS") or os.path.join(REPO, "build", "models")
PLUGIN = os.environ.get("STARDETR_PLUGIN", "")


def built(name, target):
    path = os.path.join(MODELS, name)
    if not os.path.exists(path):
        raise AssertionError(f"{path} is missing: run `{target}` first")
    return path


class StandardOpExport(unittest.TestCase):
    def test_equals_the_plugin_export(self):
        std = built("tiny-standard.onnx", "make build/models/tiny-standard.onnx")
        plug = built("tiny.onnx", "make models")
        proto = onnx.load(std)
        self.assertFalse([n for n in proto.graph.node if n.domain == "mmcv"], "a standard-op export has mmcv nodes")
        x = np.random.RandomState(0).rand(2, 3, 128, 128).astype(np.float32)
        so = ort.SessionOptions()
        so.log_severity_level = 3
        plain = ort.InferenceSession(std, so, providers=["CPUExecutionProvider"])  # no plugin registered
        so2 = ort.SessionOptions()
        so2.register_custom_ops_library(PLUGIN)
        so2.log_severity_level = 3
        with_plugin = ort.InferenceSession(plug, so2, providers=["CPUExecutionProvider"])
        for i in range(2):
            a = plain.run(["output0"], {"images": x[i:i + 1]})[0]
            b = with_plugin.run(["output0"], {"images": x[i:i + 1]})[0]
            self.assertLess(float(np.abs(a - b).max()), 1e-4)


if __name__ == "__main__":
    unittest.main()
