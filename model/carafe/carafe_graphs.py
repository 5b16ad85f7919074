"""Builds the small ONNX graphs that exercise the CARAFE plugin (run with /usr/bin/python3,
Debian's python3-onnx and python3-numpy).

  carafe_graphs.py test DIR   graphs for the Go test, with inputs and numpy-computed expected
                              outputs as raw little-endian float32 files, listed in DIR/cases.json
  carafe_graphs.py bench DIR  for each FreqFusion call shape at 640 input: carafe_<id>.onnx (one
                              MMCVCARAFE node) and decomp_<id>.onnx (the same CARAFE in standard ONNX
                              ops, as an exporter writes it without a plugin), listed in DIR/shapes.txt
"""
import json
import math
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from carafe_numpy import carafe  # noqa: E402

OPSETS = [helper.make_opsetid("", 17), helper.make_opsetid("mmcv", 1)]


def carafe_node(k, g, s, name="carafe", inputs=("features", "masks"), output="output"):
    return helper.make_node("MMCVCARAFE", list(inputs), [output], name=name, domain="mmcv",
                            kernel_size=k, group_size=g, scale_factor=float(s))


def save(graph, path):
    model = helper.make_model(graph, opset_imports=OPSETS, producer_name="stardetr carafe_graphs.py")
    model.ir_version = 8
    onnx.save(model, path)


def tensor(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def carafe_graph(path, k, g, s, fshape, mshape, oshape, name="carafe"):
    graph = helper.make_graph([carafe_node(k, g, s, name)], "carafe",
                              [tensor("features", fshape), tensor("masks", mshape)], [tensor("output", oshape)])
    save(graph, path)


def decomposition_graph(path, n, c, h, w, k, g, s):
    """CARAFE in standard ops: zero Pad, k*k Slices stacked (unfold), Gather of the source rows and
    columns (nearest upsampling), Mul by the masks and ReduceSum over the taps."""
    r, ho, wo, kk = (k - 1) // 2, math.floor(h * s), math.floor(w * s), k * k
    inits, nodes = [], []

    def const(name, values, dtype=np.int64):
        if name not in {t.name for t in inits}:
            inits.append(numpy_helper.from_array(np.array(values, dtype=dtype), name))
        return name

    nodes.append(helper.make_node("Pad", ["features", const("pads", [0, 0, r, r, 0, 0, r, r])], ["padded"]))
    taps = []
    for i in range(k):
        for j in range(k):
            t = "tap_%d_%d" % (i, j)
            nodes.append(helper.make_node("Slice", ["padded", const(t + "_s", [i, j]), const(t + "_e", [i + h, j + w]),
                                                    const("axes23", [2, 3])], [t]))
            nodes.append(helper.make_node("Unsqueeze", [t, const("axis2", [2])], [t + "_u"]))
            taps.append(t + "_u")
    nodes.append(helper.make_node("Concat", taps, ["unfolded"], axis=2))  # [N,C,kk,H,W]
    nodes.append(helper.make_node("Gather", ["unfolded", const("rows", np.floor(np.arange(ho) / s))], ["up_h"], axis=3))
    nodes.append(helper.make_node("Gather", ["up_h", const("cols", np.floor(np.arange(wo) / s))], ["up"], axis=4))
    nodes.append(helper.make_node("Reshape", ["up", const("fshape", [n, g, c // g, kk, ho, wo])], ["up_g"]))
    nodes.append(helper.make_node("Reshape", ["masks", const("mshape", [n, g, 1, kk, ho, wo])], ["masks_g"]))
    nodes.append(helper.make_node("Mul", ["up_g", "masks_g"], ["weighted"]))
    nodes.append(helper.make_node("ReduceSum", ["weighted", const("axis3", [3])], ["summed"], keepdims=0))
    nodes.append(helper.make_node("Reshape", ["summed", const("oshape", [n, c, ho, wo])], ["output"]))
    graph = helper.make_graph(nodes, "carafe_decomposition",
                              [tensor("features", [n, c, h, w]), tensor("masks", [n, g * kk, ho, wo])],
                              [tensor("output", [n, c, ho, wo])], initializer=inits)
    save(graph, path)


def test_graphs(out):
    rng = np.random.default_rng(7)
    cases = []
    # (name, n, c, h, w, k, g, s, dynamic input dims)
    for name, n, c, h, w, k, g, s, dyn in [
        ("k5_g2_s2", 2, 6, 5, 7, 5, 2, 2, False),
        ("k3_g1_s1_dynamic", 2, 13, 9, 6, 3, 1, 1, True),
        ("k7_g4_s3", 1, 8, 4, 3, 7, 4, 3, False),
        ("k5_s2_256ch", 1, 256, 20, 20, 5, 1, 2, False),
    ]:
        ho, wo = math.floor(h * s), math.floor(w * s)
        fshape, mshape, oshape = [n, c, h, w], [n, g * k * k, ho, wo], [n, c, ho, wo]
        if dyn:
            carafe_graph(os.path.join(out, name + ".onnx"), k, g, s, ["N", "C", "H", "W"], ["N", "M", "HO", "WO"],
                         ["N", "C", "HO", "WO"], name="carafe_" + name)
        else:
            carafe_graph(os.path.join(out, name + ".onnx"), k, g, s, fshape, mshape, oshape, name="carafe_" + name)
        feat = rng.uniform(-1, 1, fshape).astype(np.float32)
        masks = rng.uniform(-1, 1, mshape).astype(np.float32)
        for suffix, a in (("features", feat), ("masks", masks), ("expected", carafe(feat, masks, k, g, s))):
            a.astype("<f4").tofile(os.path.join(out, "%s.%s.bin" % (name, suffix)))
        cases.append({"name": name, "features": fshape, "masks": mshape, "output": oshape})
    # Output shape left out of the graph: the plugin's shape inference must supply it.
    graph = helper.make_graph([carafe_node(5, 2, 2, "carafe_noshape")], "carafe",
                              [tensor("features", [2, 6, 5, 7]), tensor("masks", [2, 50, 10, 14])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, None)])
    save(graph, os.path.join(out, "output_shape_inferred.onnx"))
    # Graphs the plugin must refuse, with the node name and the rule in the error. Input dims are
    # symbolic so the shapes reach the kernel.
    dyn = (["N", "C", "H", "W"], ["N", "M", "HO", "WO"], ["N", "C", "HO", "WO"])
    carafe_graph(os.path.join(out, "bad_even_k.onnx"), 4, 1, 2, *dyn, name="bad_even_k")
    carafe_graph(os.path.join(out, "bad_shapes.onnx"), 3, 2, 2, *dyn, name="bad_shapes")
    with open(os.path.join(out, "cases.json"), "w") as f:
        json.dump(cases, f, indent=1)


# FreqFusion at 640 input: P4 level hr 40x40 / lr 20x20, P3 level hr 80x80 / lr 40x40.
# (id, c, h, w, k, s) per call; G = 1, N = 1.
def bench_shapes():
    shapes = []
    for level, hr, lr in (("p4", 40, 20), ("p3", 80, 40)):
        shapes += [
            (level + "_1_hr64_k3s1", 64, hr, hr, 3, 1),
            (level + "_2_mask25_k5s2", 25, lr, lr, 5, 2),
            (level + "_3_hp9_k5s2", 9, lr, lr, 5, 2),
            (level + "_4_lr256_k5s2", 256, lr, lr, 5, 2),
            (level + "_5_hr256_k3s1", 256, hr, hr, 3, 1),
        ]
    return shapes


def bench_graphs(out):
    with open(os.path.join(out, "shapes.txt"), "w") as f:
        for sid, c, h, w, k, s in bench_shapes():
            ho, wo = h * s, w * s
            carafe_graph(os.path.join(out, "carafe_%s.onnx" % sid), k, 1, s, [1, c, h, w], [1, k * k, ho, wo],
                         [1, c, ho, wo])
            decomposition_graph(os.path.join(out, "decomp_%s.onnx" % sid), 1, c, h, w, k, 1, s)
            f.write("%s %d %d %d %d %d %d\n" % (sid, c, h, w, 1, k, s))


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("test", "bench"):
        sys.exit("usage: carafe_graphs.py test|bench DIR")
    os.makedirs(sys.argv[2], exist_ok=True)
    (test_graphs if sys.argv[1] == "test" else bench_graphs)(sys.argv[2])
