"""Checkpoints of the seed model (the seed fork's, stock ultralytics') as a stock ultralytics model.

model.reference.checkpoint reads the file without executing it; here its weights go, strictly, into the
seed model that stock ultralytics builds (model.ultralytics), and save_ultralytics writes that model as a
stock ultralytics checkpoint, which ultralytics' trainer, validator, predictor and exporter all take.
"""
from pathlib import Path

import torch

from ..reference.checkpoint import CheckpointError, check_keys, nc_of, read
from . import SEED_YAML


def load_seed_model(path, nc=None, yaml_path=SEED_YAML):
    """The seed model (ultralytics RTDETRDetectionModel, float32, eval) with a checkpoint's weights and names.

    yaml_path builds another variant of the seed's modules instead (the demo YAML); a variant's YAML
    fixes nc, and a checkpoint with another class count is one CheckpointError naming both."""
    from ultralytics.nn.tasks import RTDETRDetectionModel, yaml_model_load

    sd, names, info = read(path)
    if nc is None:
        nc = nc_of(sd) or (len(names) if names else None)
    if nc is None:
        raise CheckpointError(f"checkpoint {path}: cannot tell the class count (no 'model.18.enc_score_head.weight'); "
                              "it is not a checkpoint of the seed model (rtdetr-StarNet-FreqFusion)")
    # The YAML as a dict with its nc and scale set, so that ultralytics builds it without log lines
    # ("Overriding model.yaml nc", "no model scale passed"): the CLIs print one line per error.
    cfg = yaml_model_load(yaml_path)
    if yaml_path != SEED_YAML and cfg.get("nc") != nc:
        raise CheckpointError(f"checkpoint {path} has {nc} classes ({', '.join(map(str, names.values())) if names else 'no names'}) "
                              f"but {yaml_path} has nc: {cfg.get('nc')}; export it with the YAML it was trained with")
    cfg["nc"], cfg["scale"] = nc, "l"
    model = RTDETRDetectionModel(cfg, nc=nc, verbose=False)
    check_keys(path, model.state_dict(), sd, f"the model {Path(yaml_path).stem} with nc={nc} ({info['class']})")
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd.items()})
    model.names = names if names and len(names) == nc else {i: f"class{i}" for i in range(nc)}
    model.nc = nc
    return model.float().eval(), info


def save_ultralytics(model, out, imgsz=640):
    """Writes model as a stock ultralytics checkpoint (fp16, like ultralytics' own) that RTDETR(out) loads."""
    import copy
    from datetime import datetime

    import ultralytics

    m = copy.deepcopy(model).half()
    for p in m.parameters():
        p.requires_grad = False
    ckpt = {
        "date": datetime.now().isoformat(),
        "version": ultralytics.__version__,
        "epoch": -1,
        "best_fitness": None,
        "model": m,
        "ema": None,
        "updates": None,
        "optimizer": None,
        "train_args": {"task": "detect", "imgsz": imgsz, "model": "rtdetr-StarNet-FreqFusion.yaml"},
    }
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, out)
    return Path(out)
