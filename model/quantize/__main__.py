"""Static INT8 quantization (QDQ) of an RT-DETR export, calibrated on a YOLO-format dataset's images.

    build/venv-perf/bin/python -m model.quantize --model build/models/seed-640.onnx \\
        --data data.yaml --out build/models/seed-640-int8.onnx --plugin build/amd64/libstardetr_carafe.so

Weights are int8 per output channel (symmetric), activations uint8 (asymmetric): U8S8, the operand
pair of x86's VNNI dot product (vpdpbusd) and of arm64's dot-product extension. Conv, MatMul, Gemm,
Mul, Add and Concat are quantized by default (--ops), chosen by measurement on seed-640 at 640, one
thread (stardetr bench): Conv alone 407 ms, Conv+MatMul+Gemm 336-362 ms, plus Mul+Add+Concat
(StarNet's star products and the necks' sums stay in int8 between convolutions, without
Quantize/Dequantize pairs and layout transposes around them) 281-288 ms; every op ONNX Runtime
can (Softmax, Sigmoid...) was slower again. int8 activations (S8S8) left most Convs unfused in
float32 on this ONNX Runtime. Among those, attention's activation-by-activation MatMuls and
Mul/Add/Concat of rank 5 or more stay float32 by rule (float32_by_rule; --no-rules quantizes them
too): 287 -> 267 ms on the same run; so does the RTDETRDecoder module, for accuracy (measured on the
trained demo model, README "INT8"). Weights use 7 of their 8 bits (onnxruntime's reduce_range;
--full-range for all 8): x86 CPUs without VNNI multiply the uint8 x int8 pairs with vpmaddubsw, whose
int16 sums saturate, and the same file runs on every CPU. The
mmcv::MMCVCARAFE nodes stay float32 (the plugin runs them, fed by DequantizeLinear); so do nodes
whose names start with a --keep-fp32 prefix. The result keeps the input's interface and metadata,
so `stardetr` runs it with no configuration change.

Progress goes to stderr; the one-line summary to stdout; a bad input exits 1 naming the file.
"""
import argparse
import logging
import os
import re
import sys
import time

import numpy as np

from model.quantize import calib

# Op types quantized by default (see the module docstring for why these).
OPS = ("Conv", "MatMul", "Gemm", "Mul", "Add", "Concat")


def fail(msg):
    print(f"quantize: error: {msg}", file=sys.stderr)
    sys.exit(1)


def float32_by_rule(proto):
    """Names of nodes among the quantized op types that stay float32 by rule, each rule measured on
    seed-640 at 640, one thread, side by side with float32 (README, "INT8"):

    - MatMuls of two activations (attention's Q·Kᵀ and A·V): ONNX Runtime cannot prepack either
      side, and the Softmax between them becomes a QLinearSoftmax 8x slower than the float one;
    - Mul, Add and Concat with outputs of rank 5 or more (deformable attention's sampling
      arithmetic, CARAFE's kernel normalisation): broadcasting QLinearAdd/QLinearMul are slower
      than float, and their Quantize/Dequantize pairs cost more than they save;
    - every node of the RTDETRDecoder module (the one holding `decoder/` and `enc_score_head/`:
      query selection, box refinement, heads), for accuracy: measured on the trained demo model
      (README, "INT8"), quantizing it cost 20-30 points of mAP50-95 whatever else was kept.
    """
    import onnx

    g = onnx.shape_inference.infer_shapes(proto).graph
    const = {i.name for i in g.initializer} | {o for n in g.node if n.op_type == "Constant" for o in n.output}
    for n in g.node:  # tied weights reach a MatMul through Identity nodes (in graph order)
        if n.op_type == "Identity" and n.input[0] in const:
            const.add(n.output[0])
    rank = {v.name: len(v.type.tensor_type.shape.dim) for v in list(g.value_info) + list(g.output)
            if v.type.tensor_type.HasField("shape")}
    decoders = {m.group(1) for n in g.node for m in [re.match(r"(/model\.\d+/)(?:decoder|enc_score_head)/", n.name)] if m}
    keep = []
    for n in g.node:
        if n.op_type == "MatMul" and not any(i in const for i in n.input):
            keep.append(n.name)
        elif n.op_type in ("Mul", "Add", "Concat") and rank.get(n.output[0], 0) > 4:
            keep.append(n.name)
        elif n.op_type in OPS and any(n.name.startswith(d) for d in decoders):
            keep.append(n.name)
    return keep


def matches(name, patterns):
    import fnmatch

    return any(fnmatch.fnmatchcase(name, p + "*") for p in patterns)


def quantize(model_path, images, out_path, plugin, keep_fp32=(), calib_method="minmax", log=None, op_types=OPS, rules=True,
             reduce_range=True):
    """Writes the QDQ model to out_path; returns (quantized node count, kept-fp32 node names).
    rules: also keep float32_by_rule's nodes float32. reduce_range: weights in 7 bits (see --full-range)."""
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization import calibrate as ort_calibrate

    log = log or (lambda *a: None)
    proto = onnx.load(model_path)
    meta = {p.key: p.value for p in proto.metadata_props}
    inp = proto.graph.input[0]
    dims = [d.dim_value for d in inp.type.tensor_type.shape.dim]
    imgsz = (dims[2], dims[3])
    keep = [n.name for n in proto.graph.node if n.domain in ("", "ai.onnx") and matches(n.name, keep_fp32)]
    by_rule = [n for n in float32_by_rule(proto) if n not in keep] if rules else []
    keep += by_rule

    # onnxruntime 1.30's calibrator builds its own SessionOptions and has no hook for a custom-op
    # library; the model cannot run without the CARAFE plugin, so the session factory is wrapped.
    base_create = ort_calibrate.CalibraterBase.create_inference_session

    def create_with_plugin(self):
        real = ort.InferenceSession

        def session(path, sess_options=None, providers=None, **kw):
            sess_options = sess_options or ort.SessionOptions()
            sess_options.register_custom_ops_library(plugin)
            return real(path, sess_options=sess_options, providers=providers, **kw)

        ort_calibrate.onnxruntime.InferenceSession = session
        try:
            return base_create(self)
        finally:
            ort_calibrate.onnxruntime.InferenceSession = real

    reader = calib.Reader(images, imgsz, log)
    ort_calibrate.CalibraterBase.create_inference_session = create_with_plugin
    try:
        quantize_static(
            model_path,
            out_path,
            reader,
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=reduce_range,
            calibrate_method={"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile}[calib_method],
            nodes_to_exclude=keep,
            op_types_to_quantize=list(op_types),
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True, "CalibTensorRangeSymmetric": False},
            calibration_providers=["CPUExecutionProvider"],
        )
    finally:
        ort_calibrate.CalibraterBase.create_inference_session = base_create

    q = onnx.load(out_path)
    # Keep the export's metadata (names, imgsz, stride) so the runtime reads the same contract.
    del q.metadata_props[:]
    for k, v in meta.items():
        q.metadata_props.add(key=k, value=v)
    q.metadata_props.add(key="quantization", value=str({"format": "QDQ", "activations": "uint8", "weights": "int8 per channel" + (", 7-bit range" if reduce_range else ""), "ops": list(op_types), "calibration_images": len(images), "method": calib_method, "float32_by_rule": len(by_rule)}))
    onnx.save(q, out_path)
    nq = sum(1 for n in q.graph.node if n.op_type == "QuantizeLinear")
    return nq, keep


def session(model_path, plugin, threads=1):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.register_custom_ops_library(plugin)
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    return ort.InferenceSession(model_path, so, providers=["CPUExecutionProvider"])


def write_golden(model_path, plugin, golden_input, out):
    """The INT8 model's output0 on a golden input, computed by onnxruntime (Python) for the Go tests."""
    images = np.load(golden_input)["images"]
    s = session(model_path, plugin)
    outs = [s.run(["output0"], {"images": images[i:i + 1]})[0] for i in range(images.shape[0])]
    tmp = out + ".tmp.npz"
    np.savez(tmp, images=images.astype(np.float32), output0=np.concatenate(outs).astype(np.float32))
    os.replace(tmp, out)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m model.quantize", description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="float32 ONNX export (ultralytics or model.reference)")
    p.add_argument("--data", required=True, help="YOLO-format dataset YAML; calibration images from its train (or val) split")
    p.add_argument("--out", required=True, help="where to write the INT8 ONNX model")
    p.add_argument("--plugin", default=os.environ.get("STARDETR_PLUGIN", ""), help="CARAFE plugin library (default $STARDETR_PLUGIN)")
    p.add_argument("--calib", type=int, default=64, help="number of calibration images (default 64)")
    p.add_argument("--method", choices=("minmax", "percentile"), default="minmax", help="calibration method")
    p.add_argument("--ops", default=",".join(OPS), help=f"comma-separated op types to quantize (default {','.join(OPS)})")
    p.add_argument("--keep-fp32", default="", help="comma-separated node-name prefixes (fnmatch patterns) kept float32")
    p.add_argument("--no-rules", action="store_true", help="quantize attention MatMuls, rank-5+ Mul/Add/Concat and the decoder too (see float32_by_rule)")
    p.add_argument("--full-range", action="store_true",
                   help="weights use all 8 bits; by default 7 (reduce_range): x86 CPUs without VNNI multiply uint8 x int8 "
                        "pairs into int16 sums that saturate (vpmaddubsw), which cost the demo model 8 points of mAP50-95")
    p.add_argument("--golden-input", default="", help="an .npz with `images` (make models' goldens) to run the result on")
    p.add_argument("--golden", default="", help="write --golden-input's images and the INT8 model's output0 (onnxruntime) here")
    args = p.parse_args(argv)

    if not os.path.isfile(args.model):
        fail(f"--model {args.model}: no such file")
    if not args.plugin or not os.path.isfile(args.plugin):
        fail(f"--plugin {args.plugin or '(empty)'}: the CARAFE plugin library is needed to calibrate: run `make plugin` or set STARDETR_PLUGIN")
    if args.calib < 1:
        fail(f"--calib {args.calib}: give at least 1 image")
    try:
        images = calib.dataset_images(args.data, args.calib)
    except calib.DataError as e:
        fail(str(e))
    keep = tuple(s for s in args.keep_fp32.split(",") if s)
    ops = tuple(s for s in args.ops.split(",") if s)
    if bool(args.golden) != bool(args.golden_input):
        fail("--golden and --golden-input go together")
    if args.golden_input and not os.path.isfile(args.golden_input):
        fail(f"--golden-input {args.golden_input}: no such file (run `make models`)")
    # onnxruntime's quantizer warns through the root logger about every bias it leaves float and
    # suggests a pre-processing pass that cannot run on a graph with custom ops.
    logging.getLogger().setLevel(logging.ERROR)
    t0 = time.time()
    log = lambda msg: print(f"quantize: {msg}", file=sys.stderr, flush=True)  # noqa: E731
    log(f"calibrating {args.model} on {len(images)} images from {args.data}")
    try:
        nq, kept = quantize(args.model, images, args.out, args.plugin, keep, args.method, log, ops, rules=not args.no_rules,
                              reduce_range=not args.full_range)
    except calib.DataError as e:
        fail(str(e))
    except Exception as e:  # onnxruntime/onnx raise many types; one line naming the model
        fail(f"{args.model}: quantization failed: {e}")
    if args.golden:
        write_golden(args.out, args.plugin, args.golden_input, args.golden)
        log(f"wrote {args.golden}")
    print(f"wrote {args.out}: {nq} tensors quantized to int8, {len(kept)} nodes kept float32, "
          f"{len(images)} calibration images, {time.time() - t0:.1f}s")


if __name__ == "__main__":
    main()
