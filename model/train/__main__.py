"""Train the seed model (rtdetr-StarNet-FreqFusion) with stock ultralytics, then export it to ONNX.

    build/venv/bin/python -m model.train --data D.yaml --epochs N --imgsz S --batch B --device cpu|0
        [--model seed|demo|Y.yaml] [--hyp KEY=VALUE ...]
        [--weights best.pt] [--resume] [--out build/train] [--name NAME] [--pause-after K]

--model picks the architecture: the seed (default), the compact demo variant
(model/ultralytics/rtdetr-StarNet-FreqFusion-demo.yaml) or another YAML of the seed's modules; a YAML
other than the seed's must have the dataset's nc (the seed's nc is a placeholder that the data sets).
--hyp passes ultralytics training arguments (lr0=0.0002 optimizer=AdamW cos_lr=True mosaic=0 ...),
values in YAML syntax; a key ultralytics does not know is an error. A resumed run keeps the first
run's arguments (ultralytics stores them in last.pt).

The dataset is checked first (model.data.check: one error naming the file and line, instead of
ultralytics skipping bad labels). ultralytics' RTDETR trainer does the training; one progress line per
iteration (epoch, iteration, losses, seconds per iteration, ETA) goes to stderr next to ultralytics' log.
At the end ultralytics' exporter writes OUT/NAME/weights/best.onnx (opset 17), whose path is printed
on stdout; `stardetr infer`/`check`/`eval` take it.

--weights starts from a checkpoint: ultralytics' or the seed fork's (read without executing it, names
kept). --resume continues OUT/NAME/weights/last.pt where it stopped (a killed run, or --pause-after K,
which stops after epoch K with the checkpoint written, as an interruption would).
"""
import argparse
import os
import sys
import time
from pathlib import Path

import yaml

from ..data.check import DatasetError, check_dataset


class Paused(Exception):
    """Raised from ultralytics' on_model_save callback to stop after an epoch, leaving last.pt resumable."""


def progress_callbacks(model, out=sys.stderr):
    """Adds callbacks printing one line per iteration: epoch, iteration, losses, s/it and ETA."""
    state = {"t0": None, "done": 0, "it": 0, "last": None}

    def epoch_start(trainer):
        state["it"] = 0
        if state["t0"] is None:
            state["t0"] = time.time()

    def batch_end(trainer):
        now = time.time()
        state["it"] += 1
        state["done"] += 1
        nb = len(trainer.train_loader)
        remaining = (trainer.epochs - trainer.epoch - 1) * nb + (nb - state["it"])
        per_it = (now - state["t0"]) / state["done"]
        losses = " ".join(f"{n}={float(v):.4g}" for n, v in zip(trainer.loss_names, trainer.tloss.reshape(-1)))
        eta = time.strftime("%H:%M:%S", time.gmtime(per_it * remaining))
        # The newline ends the line of ultralytics' progress bar, which it redraws with carriage returns.
        print(f"\ntrain: epoch {trainer.epoch + 1}/{trainer.epochs} iter {state['it']}/{nb} {losses} "
              f"{now - (state['last'] or state['t0']):.2f}s/it (mean {per_it:.2f}) ETA {eta}", file=out, flush=True)
        state["last"] = now

    model.add_callback("on_train_epoch_start", epoch_start)
    model.add_callback("on_train_batch_end", batch_end)


def parse_hyp(items):
    """--hyp KEY=VALUE items -> {key: value} (YAML values); unknown keys and bad items raise ValueError."""
    from ..ultralytics import SEED_YAML  # noqa: F401 - sets ultralytics offline before it loads
    from ultralytics.cfg import DEFAULT_CFG_DICT

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--hyp {item!r}: expected KEY=VALUE, e.g. --hyp lr0=0.0002")
        if key not in DEFAULT_CFG_DICT:
            raise ValueError(f"--hyp {item!r}: {key!r} is not an ultralytics training argument "
                             "(see ultralytics/cfg/default.yaml)")
        if key in ("data", "epochs", "imgsz", "batch", "device", "workers", "project", "name", "seed", "time",
                   "resume", "model"):
            raise ValueError(f"--hyp {item!r}: {key} has its own option (--{key})")
        try:
            out[key] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise ValueError(f"--hyp {item!r}: the value is not valid YAML ({e})") from e
    return out


def resolved_data_yaml(d, dest):
    """ultralytics resolves a relative 'path' against its datasets folder, not the YAML's: write absolute paths."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(yaml.safe_dump({"path": str(d["path"]), "train": str(d["train"]), "val": str(d["val"]),
                                    "names": d["names"]}, sort_keys=False))
    return dest


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m model.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="dataset YAML (YOLO format)")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--imgsz", type=int, default=640, help="training and export size (a multiple of 32)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--device", default="cpu", help="cpu, or a CUDA device index such as 0")
    p.add_argument("--weights", default="", help="start from this checkpoint (ultralytics' or the seed fork's)")
    p.add_argument("--resume", action="store_true", help="continue OUT/NAME/weights/last.pt")
    p.add_argument("--out", default="build/train", help="folder of training runs")
    p.add_argument("--name", default="seed", help="run name: results in OUT/NAME")
    p.add_argument("--workers", type=int, default=None, help="data-loader workers (default 0 on cpu, 8 on CUDA)")
    p.add_argument("--time", type=float, default=0, metavar="HOURS",
                   help="train for this long instead (ultralytics fits the epochs to it)")
    p.add_argument("--pause-after", type=int, default=0, metavar="K", help="stop after epoch K (resume later)")
    p.add_argument("--no-export", action="store_true", help="skip the ONNX export")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default="seed", metavar="seed|demo|YAML",
                   help="architecture: the seed (default), the compact demo variant, or a YAML of the seed's modules")
    p.add_argument("--hyp", action="append", default=[], metavar="KEY=VALUE",
                   help="an ultralytics training argument (repeatable), e.g. lr0=0.0002 cos_lr=True mosaic=0")
    a = p.parse_args(argv)
    if a.imgsz < 32 or a.imgsz % 32:
        p.error(f"--imgsz {a.imgsz}: must be a positive multiple of 32")
    if a.epochs < 1 or a.batch < 1:
        p.error("--epochs and --batch must be >= 1")

    def fail(msg):
        print(f"model.train: {msg}", file=sys.stderr)
        return 2

    try:
        hyp = parse_hyp(a.hyp)
    except ValueError as e:
        return fail(e)

    try:
        d = check_dataset(a.data)
    except DatasetError as e:
        return fail(e)
    here = Path(__file__).resolve().parents[1] / "ultralytics"
    model_yaml = {"seed": here / "rtdetr-StarNet-FreqFusion.yaml",
                  "demo": here / "rtdetr-StarNet-FreqFusion-demo.yaml"}.get(a.model, Path(a.model))
    if a.model != "seed" and not a.resume:
        try:
            yaml_nc = yaml.safe_load(model_yaml.read_text()).get("nc")
        except (OSError, yaml.YAMLError, AttributeError) as e:
            return fail(f"--model {model_yaml}: not a readable model YAML ({e})")
        if yaml_nc != d["nc"]:
            return fail(f"--model {model_yaml} has nc: {yaml_nc} but the dataset {a.data} has {d['nc']} classes; "
                        f"set nc: {d['nc']} in the YAML or train on a dataset with {yaml_nc} classes")
    model_yaml = str(model_yaml)
    print(f"train: dataset {a.data}: {d['nc']} classes, train {d['train_images']} images / {d['train_boxes']} boxes, "
          f"val {d['val_images']} / {d['val_boxes']}", file=sys.stderr, flush=True)
    run = Path(a.out).resolve() / a.name
    last = run / "weights" / "last.pt"
    if a.resume and not last.is_file():
        return fail(f"--resume: {last} does not exist; start a run with the same --out/--name first")

    from ..ultralytics import SEED_YAML  # noqa: F401 - registers the seed modules with ultralytics
    from ..ultralytics.checkpoint import load_seed_model, save_ultralytics
    from ..ultralytics.export import export_checkpoint, quiet_stdout
    from ..reference.checkpoint import CheckpointError
    from ultralytics import RTDETR
    import ultralytics.engine.trainer as trainer_mod

    if a.device != "cpu":
        # ultralytics' AMP self-test downloads yolo11n.pt; offline (scripts/gpu) it cannot, and CUDA AMP
        # is trusted instead (it is what the check concludes when it cannot download, too).
        trainer_mod.check_amp = lambda model: True
    workers = a.workers if a.workers is not None else (0 if a.device == "cpu" else 8)
    data_yaml = resolved_data_yaml(d, run.parent / f"{a.name}-data.yaml")
    if a.resume:
        model = RTDETR(str(last))
        args = {"resume": True, "device": a.device, "workers": workers}
    else:
        start = model_yaml
        if a.weights:
            try:
                seed_model, info = load_seed_model(a.weights, yaml_path=SEED_YAML if a.model == "seed" else model_yaml)
            except CheckpointError as e:
                return fail(e)
            if seed_model.nc != d["nc"]:
                print(f"train: warning: {a.weights} has nc={seed_model.nc}, the dataset {d['nc']}: the class "
                      "heads start fresh", file=sys.stderr)
            start = str(save_ultralytics(seed_model, run.parent / f"{a.name}-init.pt", a.imgsz))
        model = RTDETR(start)
        args = {"data": str(data_yaml), "epochs": a.epochs, "imgsz": a.imgsz, "batch": a.batch, "device": a.device,
                "workers": workers, "project": str(run.parent), "name": a.name, "exist_ok": True, "plots": False,
                "seed": a.seed, "verbose": True}
        if a.time:
            args["time"] = a.time
        args.update(hyp)
    progress_callbacks(model)
    if a.pause_after:
        def pause(trainer):
            if trainer.epoch + 1 >= a.pause_after and trainer.epoch + 1 < trainer.epochs:
                raise Paused()

        model.add_callback("on_model_save", pause)
    t0 = time.time()
    try:
        with quiet_stdout():
            model.train(**args)
    except Paused:
        print(f"train: paused after epoch {a.pause_after}; {last} written, continue with --resume",
              file=sys.stderr, flush=True)
        print(last)
        return 0
    print(f"train: done in {time.time() - t0:.0f}s", file=sys.stderr, flush=True)
    best = run / "weights" / "best.pt"
    if not best.is_file():
        best = last
    if a.no_export:
        print(best)
        return 0
    onnx_path = export_checkpoint(best, a.imgsz)
    print(f"train: exported {onnx_path}", file=sys.stderr, flush=True)
    print(onnx_path)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    sys.exit(main())
