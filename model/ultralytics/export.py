"""Export a seed-model checkpoint to ONNX through ultralytics' own exporter.

    build/venv/bin/python -m model.ultralytics.export --weights best.pt --imgsz 640 --out model.onnx
    build/venv/bin/python -m model.ultralytics.export --parts model/weights/demo --model demo --imgsz 160 --out demo.onnx

--weights takes a checkpoint written by stock ultralytics with model.ultralytics, or by the seed's fork
(ultralytics.nn.AddModules.*, fp16, ema): it is read without executing it (model.reference.checkpoint),
its weights and class names go into the seed model stock ultralytics builds, and ultralytics exports
that (format onnx, opset 17, no onnxslim: the graph stardetr runs, with ten mmcv::MMCVCARAFE nodes).
Progress on stderr, the ONNX path on stdout.

--parts takes fp16 weight parts (model.ultralytics.weights: DIR/manifest.json and its parts) instead:
a missing or altered part is one error naming the part and the checksum mismatch. --model picks the
architecture (seed, demo or a YAML of the seed's modules); its nc must be the weights' class count.
--random-if-missing, with --parts, exports random weights (nc and names from model.data.synth) when DIR
has no manifest.json at all, with a warning: the demo's route before trained weights are committed.
"""
import argparse
import contextlib
import shutil
import sys
import tempfile
from pathlib import Path

OPSET = 17


def quiet_stdout():
    """Keeps stdout for results while ultralytics runs: its progress bars and prints go to stderr
    (its log already does, see model.ultralytics)."""
    return contextlib.redirect_stdout(sys.stderr)


def export_checkpoint(ultralytics_pt, imgsz, out=None, batch=1, dynamic=False):
    """Exports a stock-ultralytics checkpoint of the seed model with ultralytics' exporter; returns the ONNX path."""
    from ultralytics import RTDETR

    with quiet_stdout():
        onnx_path = RTDETR(str(ultralytics_pt)).export(
            format="onnx", opset=OPSET, imgsz=imgsz, batch=batch, dynamic=dynamic, simplify=False, half=False,
            device="cpu")
    onnx_path = Path(onnx_path)
    if out is not None and Path(out).resolve() != onnx_path.resolve():
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(onnx_path), out)
        onnx_path = Path(out)
    return onnx_path


def export_any(weights, imgsz, out, batch=1, dynamic=False, yaml_path=None):
    """Any seed checkpoint (fork or stock) -> converted stock checkpoint in a temp folder -> ONNX at out."""
    from . import SEED_YAML
    from .checkpoint import load_seed_model, save_ultralytics

    model, info = load_seed_model(weights, yaml_path=yaml_path or SEED_YAML)
    print(f"export: {weights}: {info['class']}, {info['dtype']}, nc={model.nc}, names={model.names}",
          file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        pt = save_ultralytics(model, Path(tmp) / (Path(out).stem + ".pt"), imgsz)
        return export_checkpoint(pt, imgsz, out, batch, dynamic)


def export_random(yaml_path, imgsz, out, batch=1, dynamic=False):
    """The YAML's model with random weights (seed 0), named after model.data.synth's classes."""
    import torch
    from ultralytics.nn.tasks import RTDETRDetectionModel, yaml_model_load

    from ..data.synth import NAMES
    from .checkpoint import save_ultralytics

    torch.manual_seed(0)
    cfg = yaml_model_load(yaml_path)
    cfg["nc"], cfg["scale"] = len(NAMES), "l"
    model = RTDETRDetectionModel(cfg, nc=len(NAMES), verbose=False).float().eval()
    model.names, model.nc = dict(enumerate(NAMES)), len(NAMES)
    with tempfile.TemporaryDirectory() as tmp:
        pt = save_ultralytics(model, Path(tmp) / (Path(out).stem + ".pt"), imgsz)
        return export_checkpoint(pt, imgsz, out, batch, dynamic)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m model.ultralytics.export", description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--weights", help="checkpoint (ultralytics best.pt/last.pt or the seed fork's)")
    src.add_argument("--parts", help="folder of fp16 weight parts with manifest.json (model.ultralytics.weights)")
    p.add_argument("--model", default="seed", metavar="seed|demo|YAML", help="the architecture of the weights")
    p.add_argument("--random-if-missing", action="store_true",
                   help="with --parts: random weights (and a warning) when the folder has no manifest.json")
    p.add_argument("--imgsz", type=int, default=640, help="input size (a multiple of 32)")
    p.add_argument("--out", required=True, help="ONNX file to write")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--dynamic", action="store_true", help="symbolic batch and spatial axes")
    a = p.parse_args(argv)
    if a.imgsz < 32 or a.imgsz % 32:
        p.error(f"--imgsz {a.imgsz}: must be a positive multiple of 32")
    from . import DEMO_YAML, SEED_YAML  # registers the seed modules (and fails clearly without ultralytics)
    from ..reference.checkpoint import CheckpointError
    from .weights import join

    yaml_path = {"seed": SEED_YAML, "demo": DEMO_YAML}.get(a.model, a.model)
    if not Path(yaml_path).is_file():
        p.error(f"--model {a.model}: no such YAML (seed, demo or a path)")
    try:
        if a.parts is None:
            path = export_any(a.weights, a.imgsz, a.out, a.batch, a.dynamic, yaml_path)
        elif a.random_if_missing and not (Path(a.parts) / "manifest.json").exists():
            print(f"export: warning: {a.parts} has no manifest.json (no trained weights committed yet): exporting "
                  f"{Path(yaml_path).stem} with random weights", file=sys.stderr, flush=True)
            path = export_random(yaml_path, a.imgsz, a.out, a.batch, a.dynamic)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                joined = join(a.parts, Path(tmp) / "weights.pt")
                path = export_any(joined, a.imgsz, a.out, a.batch, a.dynamic, yaml_path)
    except CheckpointError as e:
        print(f"model.ultralytics.export: {e}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
