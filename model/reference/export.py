"""Export the seed model to ONNX the way ultralytics exports `rtdetr-StarNet-FreqFusion.yaml`.

    /usr/bin/python3 -m model.reference.export --out build/models/seed-640.onnx --imgsz 640 --nc 1
    /usr/bin/python3 -m model.reference.export --arch tiny --imgsz 128 --nc 2 --names person,car \\
        --out build/models/tiny.onnx --golden build/models/tiny.npz

The graph: input `images` float32 [N,3,H,W], output `output0` [N,300,4+nc], opset 17, ten
mmcv::MMCVCARAFE nodes, deformable attention as GridSample. Metadata as ultralytics writes it: every
value is str() of a Python object (`names` -> "{0: 'person'}", `imgsz` -> "[640, 640]").
Weights come from --weights (a state_dict) or, without it, from --seed (deterministic stand-ins).
--golden writes an npz with a deterministic `images` batch and PyTorch's `output0` for it.
"""
import argparse
import contextlib
import datetime
import os
import sys
import time
import warnings

import numpy as np
import torch

from . import checkpoint
from . import carafe as carafemod
from . import seed as seedmod

OPSET = 17
ULTRALYTICS_VERSION = "8.3.40"  # the metadata layout written is that of ultralytics 8.3.x
GOLDEN_SEED = 1234


def parse_imgsz(text):
    parts = [p for p in text.replace("x", ",").split(",") if p.strip()]
    try:
        vals = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--imgsz {text!r}: give one integer (640) or H,W (480,640)") from None
    if len(vals) == 1:
        vals = vals * 2
    if len(vals) != 2:
        raise argparse.ArgumentTypeError(f"--imgsz {text!r}: give one integer (640) or H,W (480,640)")
    h, w = vals
    if h <= 0 or w <= 0 or h % seedmod.STRIDE or w % seedmod.STRIDE:
        raise argparse.ArgumentTypeError(
            f"--imgsz {text!r}: height and width must be positive multiples of {seedmod.STRIDE} "
            "(the model downsamples by 32 and FreqFusion needs each level exactly twice the next)"
        )
    return [h, w]


def parse_names(text, nc):
    if not text:
        return {i: f"class{i}" for i in range(nc)}
    names = [n.strip() for n in text.split(",")]
    if len(names) != nc or any(not n for n in names):
        raise ValueError(f"--names {text!r}: give exactly nc={nc} non-empty comma-separated names")
    return dict(enumerate(names))


def metadata(names, imgsz, batch, description, dynamic):
    date = os.environ.get("SOURCE_DATE_EPOCH")
    when = datetime.datetime.fromtimestamp(int(date), datetime.timezone.utc) if date else datetime.datetime.now()
    meta = {
        "description": description,
        "author": "stardetr model/reference",
        "date": when.isoformat(),
        "version": ULTRALYTICS_VERSION,
        "license": "AGPL-3.0 License (https://ultralytics.com/license)",
        "docs": "https://docs.ultralytics.com",
        "stride": seedmod.STRIDE,
        "task": "detect",
        "batch": batch,
        "imgsz": list(imgsz),
        "names": names,
        "args": {"batch": batch, "half": False, "dynamic": dynamic, "simplify": False, "opset": OPSET},
    }
    return {k: str(v) for k, v in meta.items()}


def export_onnx(model, path, imgsz, batch=1, dynamic=False, names=None, description=""):
    """Writes the ONNX file; returns the onnx.ModelProto written."""
    import onnx

    h, w = imgsz
    seedmod.check_imgsz((h, w))
    model.eval()
    dummy = torch.zeros(batch, 3, h, w)
    axes = {"images": {0: "batch"}, "output0": {0: "batch"}} if dynamic else None
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with torch.no_grad(), warnings.catch_warnings():
        # Tracer warnings about Python ints taken from shapes are expected: the spatial size is fixed per
        # export (as in ultralytics), and CARAFE's output shape is unknown to ONNX shape inference.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*mmcv::MMCVCARAFE.*")
        warnings.filterwarnings("ignore", message=".*shape inference.*")
        warnings.filterwarnings("ignore", message=".*_graph_op.*", category=FutureWarning)
        # topk indices are never negative, which is what that warning is about.
        warnings.filterwarnings("ignore", message="Exporting aten::index operator.*")
        torch.onnx.export(
            model,
            dummy,
            tmp,
            opset_version=OPSET,
            input_names=["images"],
            output_names=["output0"],
            dynamic_axes=axes,
            do_constant_folding=True,
            custom_opsets={"mmcv": 1},
        )
    proto = onnx.load(tmp)
    names = names if names is not None else {i: f"class{i}" for i in range(model.nc)}
    for k, v in metadata(names, imgsz, batch, description, dynamic).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(proto, tmp)
    os.replace(tmp, path)
    return proto


def golden(model, path, imgsz, batch=1, seed=GOLDEN_SEED):
    """Saves `images` (seeded synthetic batch) and PyTorch's `output0` for it."""
    h, w = imgsz
    images = seedmod.synthetic_images(batch, h, w, seed)
    with torch.no_grad():
        out = model(images)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp.npz"
    np.savez(tmp, images=images.numpy().astype(np.float32), output0=out.numpy().astype(np.float32))
    os.replace(tmp, path)
    return images, out


def main(argv=None):
    p = argparse.ArgumentParser(prog="python3 -m model.reference.export", description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="ONNX file to write")
    p.add_argument("--arch", choices=sorted(seedmod.ARCHS), default="seed", help="seed (the seed's YAML) or tiny")
    p.add_argument("--nc", type=int, default=None, help="number of classes (default: from --weights, else 1)")
    p.add_argument("--names", default="", help="comma-separated class names, nc of them (default class0,...)")
    p.add_argument("--imgsz", type=parse_imgsz, default=None, help="N or H,W, multiples of 32 (default 640 seed, 128 tiny)")
    p.add_argument("--batch", type=int, default=1, help="batch size of the traced graph")
    p.add_argument("--dynamic", action="store_true", help="make the batch axis symbolic")
    p.add_argument("--weights", default="", help="checkpoint: a state_dict, or an ultralytics or seed-fork best.pt (read without executing it); without it weights come from --seed")
    p.add_argument("--seed", type=int, default=0, help="random seed of the stand-in weights")
    p.add_argument("--golden", default="", help="also write inputs and PyTorch outputs to this .npz")
    p.add_argument("--golden-batch", type=int, default=None, help="batch of the golden input (default --batch)")
    p.add_argument("--save-weights", default="", help="also write the state_dict used to this file")
    p.add_argument("--carafe", choices=("plugin", "standard"), default="plugin",
                   help="plugin: one mmcv::MMCVCARAFE node per call (what stardetr runs); standard: CARAFE as plain "
                        "ONNX ops, for runtimes without the plugin (make bench-peers)")
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2") or 2))
    args = p.parse_args(argv)

    torch.set_num_threads(max(1, args.threads))
    imgsz = args.imgsz or [seedmod.DEFAULT_IMGSZ[args.arch]] * 2
    if args.batch < 1:
        p.error(f"--batch {args.batch}: must be >= 1")
    nc = args.nc
    if nc is None:
        nc = (seedmod.infer_nc(args.weights) if args.weights else None) or 1
    if nc < 1:
        p.error(f"--nc {nc}: must be >= 1")
    try:
        names = parse_names(args.names, nc)
    except ValueError as e:
        p.error(str(e))
    if args.weights and not args.names:
        try:
            _, ck_names, _ = checkpoint.read(args.weights)
        except checkpoint.CheckpointError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        if ck_names and len(ck_names) == nc:
            names = ck_names  # an ultralytics or fork checkpoint carries its class names

    t0 = time.time()
    arch = seedmod.ARCHS[args.arch]
    print(f"building {arch.name} architecture, nc={nc}, imgsz={imgsz}", flush=True)
    if args.weights:
        model = seedmod.RTDETRStarNetFreqFusion(nc, arch)
        try:
            seedmod.load_checkpoint(model, args.weights)
        except seedmod.CheckpointError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        model.eval()
        source = f"weights {os.path.basename(args.weights)}"
    else:
        model = seedmod.build(nc, arch, args.seed)
        source = f"random weights, seed {args.seed}"
    print(f"  {seedmod.count_params(model):,} parameters ({source}) in {time.time() - t0:.1f}s", flush=True)
    if args.save_weights:
        torch.save(model.state_dict(), args.save_weights)
        print(f"  state_dict -> {args.save_weights}", flush=True)

    description = f"stardetr reference rtdetr-StarNet-FreqFusion ({arch.name} architecture, {source})"
    t1 = time.time()
    print(f"exporting ONNX opset {OPSET} (batch {args.batch}{', dynamic' if args.dynamic else ''})", flush=True)
    if args.carafe == "standard":
        description += ", CARAFE as standard ONNX ops"
    try:
        with carafemod.standard_ops() if args.carafe == "standard" else contextlib.nullcontext():
            proto = export_onnx(model, args.out, imgsz, args.batch, args.dynamic, names, description)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    n_carafe = sum(1 for n in proto.graph.node if n.op_type == "MMCVCARAFE")
    size = os.path.getsize(args.out)
    print(f"  {len(proto.graph.node)} nodes, {n_carafe} MMCVCARAFE, {size / 1e6:.1f} MB in {time.time() - t1:.1f}s", flush=True)
    print(f"wrote {args.out}", flush=True)

    if args.golden:
        t2 = time.time()
        gb = args.golden_batch or args.batch
        golden(model, args.golden, imgsz, gb)
        print(f"wrote {args.golden} (images [{gb},3,{imgsz[0]},{imgsz[1]}], output0) in {time.time() - t2:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
