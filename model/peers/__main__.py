"""Times one peer runtime on the seed model; prints one JSON line {"min_ms", "median_ms", "runs", "info"}.

    build/venv/bin/python      -m model.peers ultralytics --imgsz 640 --threads 1 --runs 5
    build/venv-perf/bin/python -m model.peers ort --model M-standard.onnx --threads 1 --runs 5
    build/venv-perf/bin/python -m model.peers openvino --model M-standard.onnx --threads 1 --runs 5

ultralytics: its own predict() (letterbox-free RT-DETR preprocessing, PyTorch eager forward, postprocess)
on a 1280x720 frame, with the seed YAML built through model.ultralytics (random weights: speed only).
ort / openvino: one inference of an export whose CARAFE is standard ONNX ops (model.reference.export
--carafe standard), on a preprocessed frame: the runtime alone. scripts/bench-peers runs each in its own
process and prints the table. Progress goes to stderr.
"""
import argparse
import json
import statistics
import sys
import time

import numpy as np


def frame():
    """The same deterministic 1280x720 BGR test pattern for every peer."""
    y, x = np.mgrid[0:720, 0:1280]
    img = np.stack([(x * 255 // 1280), (y * 255 // 720), (x ^ y) & 0xFF], axis=-1).astype(np.uint8)
    img[180:540, 320:640] = 255
    return img


def timed(fn, runs, warmup=1):
    for _ in range(warmup):
        fn()
    took = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        took.append((time.perf_counter() - t0) * 1e3)
    return {"min_ms": min(took), "median_ms": statistics.median(took), "runs": runs}


def run_ultralytics(args):
    import torch

    import model.ultralytics as mu
    from ultralytics import RTDETR

    torch.set_num_threads(args.threads)
    m = RTDETR(str(mu.SEED_YAML))
    img = frame()
    res = timed(lambda: m.predict(img, imgsz=args.imgsz, verbose=False, device="cpu"), args.runs)
    cfg = torch.__config__.show()
    blas = next((l.split("=", 1)[1].strip(" ,") for l in cfg.replace(",", "\n").splitlines() if "BLAS_INFO" in l), "unknown")
    res["info"] = f"ultralytics predict, PyTorch {torch.__version__} eager, BLAS {blas}, oneDNN {torch.backends.mkldnn.is_available()}"
    return res


def preprocessed(imgsz):
    from model.reference.predict import preprocess

    return preprocess(frame()[:, :, ::-1].copy(), (imgsz, imgsz))


def run_ort(args):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    so.log_severity_level = 3
    s = ort.InferenceSession(args.model, so, providers=["CPUExecutionProvider"])
    x = preprocessed(args.imgsz)
    res = timed(lambda: s.run(["output0"], {"images": x}), args.runs)
    res["info"] = f"ONNX Runtime {ort.__version__} (Python), CARAFE as standard ops"
    return res


def run_openvino(args):
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(args.model, "CPU", {"INFERENCE_NUM_THREADS": args.threads, "PERFORMANCE_HINT": "LATENCY"})
    req = compiled.create_infer_request()
    x = preprocessed(args.imgsz)
    res = timed(lambda: req.infer({"images": x}), args.runs)
    res["info"] = f"OpenVINO {ov.__version__}, CARAFE as standard ops"
    return res


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m model.peers", description=__doc__.split("\n")[0])
    p.add_argument("peer", choices=("ultralytics", "ort", "openvino"))
    p.add_argument("--model", default="", help="ONNX export with standard-op CARAFE (ort, openvino)")
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args(argv)
    if args.peer != "ultralytics" and not args.model:
        print(f"peers: {args.peer} needs --model (an export with --carafe standard)", file=sys.stderr)
        return 2
    print(f"peers: {args.peer}, {args.threads} thread(s), {args.runs} run(s)", file=sys.stderr, flush=True)
    res = {"ultralytics": run_ultralytics, "ort": run_ort, "openvino": run_openvino}[args.peer](args)
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
