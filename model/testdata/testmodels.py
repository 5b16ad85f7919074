"""Small ONNX graphs with the ultralytics RT-DETR contract (images -> output0), built from
standard ops with onnx.helper, for the model package's tests of metadata parsing, shape
checks and bad inputs. Run by the Go tests: /usr/bin/python3 testmodels.py OUTDIR.

The graph: AveragePool 8x8 over images [N,3,H,W] -> [N,3,H/8,W/8] -> [N,Q,3] (Q = H*W/64)
-> MatMul W[3,4+nc] + b -> Sigmoid -> output0 [N,Q,4+nc]. Every query's boxes and scores
depend on one 8x8 patch of the image, so preprocessing errors change the detections.
"""
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

NC = 2


def weights(nc):
    rng = np.random.default_rng(7)
    w = rng.normal(0, 3, size=(3, 4 + nc)).astype(np.float32)
    b = rng.normal(0, 1, size=(4 + nc,)).astype(np.float32)
    return w, b


def graph(in_shape, out_shape, nc=NC, in_name="images", out_name="output0", transpose_out=False,
          carafe=None, out_rank2=False):
    w, b = weights(nc)
    nodes = [helper.make_node("AveragePool", [in_name], ["pooled"], kernel_shape=[8, 8], strides=[8, 8])]
    feat = "pooled"
    if carafe is not None:
        # mask [N,1,h,w] = sigmoid(mean over channels); k=1,s=1,G=1 CARAFE(feat, mask) == feat*mask.
        nodes += [
            helper.make_node("ReduceMean", ["pooled"], ["mean"], axes=[1], keepdims=1),
            helper.make_node("Sigmoid", ["mean"], ["mask"]),
        ]
        if carafe == "mmcv":
            nodes.append(helper.make_node("MMCVCARAFE", ["pooled", "mask"], ["fused"], domain="mmcv",
                                          kernel_size=1, group_size=1, scale_factor=1.0))
        else:
            nodes.append(helper.make_node("Mul", ["pooled", "mask"], ["fused"]))
        feat = "fused"
    nodes += [
        helper.make_node("Reshape", [feat, "shape3"], ["flat"]),          # [N,3,Q]
        helper.make_node("Transpose", ["flat"], ["tokens"], perm=[0, 2, 1]),  # [N,Q,3]
        helper.make_node("MatMul", ["tokens", "W"], ["mm"]),
        helper.make_node("Add", ["mm", "B"], ["logits"]),
    ]
    last = "logits"
    if transpose_out:
        nodes.append(helper.make_node("Transpose", ["logits"], ["logits_t"], perm=[0, 2, 1]))
        last = "logits_t"
    if out_rank2:
        nodes.append(helper.make_node("Reshape", [last, "shape2"], ["logits_2"]))
        last = "logits_2"
    nodes.append(helper.make_node("Sigmoid", [last], [out_name]))
    inits = [
        numpy_helper.from_array(np.array([0, 3, -1], dtype=np.int64), "shape3"),
        numpy_helper.from_array(np.array([-1, 4 + nc], dtype=np.int64), "shape2"),
        numpy_helper.from_array(w, "W"),
        numpy_helper.from_array(b, "B"),
    ]
    g = helper.make_graph(
        nodes, "stardetr_test", [helper.make_tensor_value_info(in_name, TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, out_shape)], inits)
    opsets = [helper.make_opsetid("", 16)]
    if carafe == "mmcv":
        opsets.append(helper.make_opsetid("mmcv", 1))
    m = helper.make_model(g, opset_imports=opsets, producer_name="stardetr-test")
    m.ir_version = 8
    return m


def meta(m, **kv):
    for k, v in kv.items():
        e = m.metadata_props.add()
        e.key, e.value = k, v
    return m


def ultra(m, nc=NC, imgsz="[64, 64]", task="detect"):
    names = {0: "person", 1: "car's \"best\""}
    names = {i: names.get(i, "c%d" % i) for i in range(nc)}
    return meta(m, description="stardetr test", stride="32", task=task, batch="1", imgsz=imgsz,
                names=str(names), args=str({"batch": 1, "half": False, "nms": None, "conf": 0.25}))


def main(out):
    q = 64  # 64x64 input, 8x8 pooling
    models = {
        "good": ultra(graph([1, 3, 64, 64], [1, q, 4 + NC])),
        # Like a real ultralytics export of the CARAFE model: dynamic axes, symbolic output.
        "dynamic": ultra(graph(["batch", 3, "height", "width"], ["batch", "anchors", "outputs"])),
        "dynamic_nometa": graph(["batch", 3, "height", "width"], ["batch", "anchors", "outputs"]),
        "nometa": graph([1, 3, 64, 64], [1, q, 4 + NC]),
        "segment": ultra(graph([1, 3, 64, 64], [1, q, 4 + NC]), task="segment"),
        "yolo": ultra(graph([1, 3, 64, 64], [1, 4 + NC, q], transpose_out=True)),
        "rank2": ultra(graph([1, 3, 64, 64], [q, 4 + NC], out_rank2=True)),
        "badinput": ultra(graph([1, 3, 64, 64], [1, q, 4 + NC], in_name="x")),
        "badoutput": ultra(graph([1, 3, 64, 64], [1, q, 4 + NC], out_name="boxes")),
        "batch4": ultra(graph([4, 3, 64, 64], [4, q, 4 + NC])),
        "badnames": meta(graph([1, 3, 64, 64], [1, q, 4 + NC]), names="{0: person}"),
        # As torch exports the seed model: fixed input, output0 symbolic past the custom node.
        "mmcv": ultra(graph([1, 3, 64, 64], ["batch", "anchors", "outputs"], carafe="mmcv")),
        "mmcv_equiv": ultra(graph([1, 3, 64, 64], ["batch", "anchors", "outputs"], carafe="mul")),
        "mmcv_dynamic": ultra(graph(["batch", 3, "height", "width"], ["batch", "anchors", "outputs"], carafe="mmcv")),
    }
    for name, m in models.items():
        onnx.save(m, "%s/%s.onnx" % (out, name))


if __name__ == "__main__":
    main(sys.argv[1])
