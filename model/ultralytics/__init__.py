"""The seed's modules (StarNet-S050, FreqFusion and, through it, CARAFE) registered with stock ultralytics.

``import model.ultralytics`` is all it takes: afterwards ``ultralytics.RTDETR(SEED_YAML)`` builds the seed
model, trains, validates, predicts and exports it, with the pinned ultralytics from PyPI (see
scripts/versions.env) and no file of ultralytics edited or copied. The modules themselves are
model/reference's, so the reference, training and export share one implementation of each.

Stock ultralytics cannot express the seed's YAML in two places, and this module bridges both around its
own ``parse_model`` rather than replacing it:

- ``starnet_s050`` is one module with five outputs (layers 0-4). Its row is handed to ultralytics as five
  ``Index`` rows that only carry the channel counts; afterwards the five are replaced by the one StarNet
  module at row 0, and the forward pass (``_forward_rows``) spreads its outputs over layers 0-4. This is
  the seed fork's layout, so state_dict keys are equal ("model.0.stem...", "model.1." .. "model.18.").
- ``FreqFusion`` takes two inputs and must know both channel counts. ultralytics' only branch with a list
  ``from`` and output channels ``ch[f[-1]]`` is CBFuse's, and string arguments are looked up among
  parse_model's locals, so the row goes in as a CBFuse row whose arguments are ``"ch"`` and ``"f"``,
  while ``tasks.CBFuse`` is, for the length of the call, a builder that makes a FreqFusion from them.
"""
import os
from pathlib import Path

# No network at run time: ultralytics must neither pip-install nor probe the internet.
os.environ.setdefault("YOLO_AUTOINSTALL", "false")
os.environ.setdefault("YOLO_OFFLINE", "true")

import logging  # noqa: E402
import sys  # noqa: E402

import torch  # noqa: E402
import ultralytics  # noqa: E402
from ultralytics.nn import tasks  # noqa: E402

# ultralytics logs to stdout; the project's CLIs keep stdout for their results, so its log goes to stderr.
for _h in logging.getLogger("ultralytics").handlers:
    if isinstance(_h, logging.StreamHandler):
        _h.setStream(sys.stderr)

from ..reference.modules import FreqFusion, StarNet  # noqa: E402

PINNED = "8.3.112"  # scripts/versions.env ULTRALYTICS_VERSION; the bridge below relies on its parse_model
SEED_YAML = str(Path(__file__).with_name("rtdetr-StarNet-FreqFusion.yaml"))
# The compact demo variant (same module types and layout, narrower; see README "The demo model").
DEMO_YAML = str(Path(__file__).with_name("rtdetr-StarNet-FreqFusion-demo.yaml"))

if ultralytics.__version__ != PINNED:
    raise ImportError(
        f"model.ultralytics needs ultralytics {PINNED}, found {ultralytics.__version__} at "
        f"{Path(ultralytics.__file__).parent}: run scripts/setup (it installs the pinned version into build/venv)"
    )


def starnet_s050():
    """StarNet-S050: base 16, depths (1, 1, 3, 1), MLP ratio 3, stem 32 channels; outputs 32, 16, 32, 64, 128."""
    return StarNet(base_dim=16, depths=(1, 1, 3, 1), mlp_ratio=3, stem_dim=32)


# Backbones a YAML may name at row 0 (one module, one output per level).
BACKBONES = {"starnet_s050": starnet_s050}

_FREQFUSION = "__stardetr_FreqFusion__"  # marks a FreqFusion row passed through the CBFuse branch


class _CBFuseOrFreqFusion:
    """Stands in for tasks.CBFuse during parse_model: builds FreqFusion for marked rows, CBFuse otherwise."""

    def __new__(cls, *args):
        if args and args[0] == _FREQFUSION:
            ch, f, *rest = args[1:]
            return FreqFusion([ch[x] for x in f], *rest)
        return _stock_cbfuse(*args)


_stock_parse_model = tasks.parse_model
_stock_cbfuse = tasks.CBFuse


def parse_model(d, ch, verbose=True):
    """ultralytics' parse_model, with the seed's backbone row and FreqFusion rows bridged (see the module doc)."""
    d = dict(d)
    backbone, name = None, None
    rows = d["backbone"]
    if len(rows) == 1 and rows[0][2] in BACKBONES:
        name = rows[0][2]
        backbone = BACKBONES[name](*rows[0][3])
        d["backbone"] = [[-1, 1, "Index", [c, i]] for i, c in enumerate(backbone.channels)]
    d["head"] = [
        [f, n, "CBFuse", [_FREQFUSION, "ch", "f", *args]] if m == "FreqFusion" else [f, n, m, args]
        for f, n, m, args in d["head"]
    ]
    tasks.CBFuse = _CBFuseOrFreqFusion
    try:
        layers, save = _stock_parse_model(d, ch, verbose)
    finally:
        tasks.CBFuse = _stock_cbfuse
    for m in layers:
        if isinstance(m, FreqFusion):
            m.type = "FreqFusion"
    if backbone is None:
        return layers, save
    n = len(backbone.channels)
    backbone.i, backbone.f, backbone.type = 0, -1, name
    backbone.np = sum(p.numel() for p in backbone.parameters())
    backbone.outputs = n  # marks the multi-output row for _forward_rows
    return torch.nn.Sequential(backbone, *list(layers)[n:]), save


def _forward_rows(model, x, rows):
    """Runs rows in order; a multi-output backbone fills layers 0..n-1. Returns (last output, layer outputs)."""
    y = []
    for m in rows:
        if m.f != -1:
            x = y[m.f] if isinstance(m.f, int) else [x if j == -1 else y[j] for j in m.f]
        if getattr(m, "outputs", 0):
            outs = m(x)
            y.extend(outs)
            x = outs[-1]
            continue
        x = m(x)
        y.append(x if m.i in model.save else None)
    return x, y


def _has_backbone_row(model):
    return len(model.model) > 0 and getattr(model.model[0], "outputs", 0) > 0


_stock_predict_once = tasks.BaseModel._predict_once
_stock_rtdetr_predict = tasks.RTDETRDetectionModel.predict


def _predict_once(self, x, profile=False, visualize=False, embed=None):
    if not _has_backbone_row(self):
        return _stock_predict_once(self, x, profile, visualize, embed)
    return _forward_rows(self, x, self.model)[0]


def _rtdetr_predict(self, x, profile=False, visualize=False, batch=None, augment=False, embed=None):
    if not _has_backbone_row(self):
        return _stock_rtdetr_predict(self, x, profile, visualize, batch, augment, embed)
    _, y = _forward_rows(self, x, self.model[:-1])
    head = self.model[-1]
    return head([y[j] for j in head.f], batch)


tasks.parse_model = parse_model
tasks.BaseModel._predict_once = _predict_once
tasks.RTDETRDetectionModel.predict = _rtdetr_predict
tasks.starnet_s050 = starnet_s050  # parse_model resolves module names in tasks' namespace
tasks.FreqFusion = FreqFusion
