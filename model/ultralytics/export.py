"""Export a seed-model checkpoint to ONNX through ultralytics' own exporter.

    build/venv/bin/python -m model.ultralytics.export --weights best.pt --imgsz 640 --out model.onnx

--weights takes a checkpoint written by stock ultralytics with model.ultralytics, or by the seed's fork
(ultralytics.nn.AddModules.*, fp16, ema): it is read without executing it (model.reference.checkpoint),
its weights and class names go into the seed model stock ultralytics builds, and ultralytics exports
that (format onnx, opset 17, no onnxslim: the graph stardetr runs, with ten mmcv::MMCVCARAFE nodes).
Progress on stderr, the ONNX path on stdout.
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


def export_any(weights, imgsz, out, batch=1, dynamic=False):
    """Any seed checkpoint (fork or stock) -> converted stock checkpoint in a temp folder -> ONNX at out."""
    from .checkpoint import load_seed_model, save_ultralytics

    model, info = load_seed_model(weights)
    print(f"export: {weights}: {info['class']}, {info['dtype']}, nc={model.nc}, names={model.names}",
          file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        pt = save_ultralytics(model, Path(tmp) / (Path(out).stem + ".pt"), imgsz)
        return export_checkpoint(pt, imgsz, out, batch, dynamic)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m model.ultralytics.export", description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", required=True, help="checkpoint (ultralytics best.pt/last.pt or the seed fork's)")
    p.add_argument("--imgsz", type=int, default=640, help="input size (a multiple of 32)")
    p.add_argument("--out", required=True, help="ONNX file to write")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--dynamic", action="store_true", help="symbolic batch and spatial axes")
    a = p.parse_args(argv)
    if a.imgsz < 32 or a.imgsz % 32:
        p.error(f"--imgsz {a.imgsz}: must be a positive multiple of 32")
    from . import SEED_YAML  # noqa: F401 - registers the seed modules (and fails clearly without ultralytics)
    from ..reference.checkpoint import CheckpointError

    try:
        path = export_any(a.weights, a.imgsz, a.out, a.batch, a.dynamic)
    except CheckpointError as e:
        print(f"model.ultralytics.export: {e}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
