"""ultralytics' own metrics for a set of detections: the independent reference of yoloval's tests.

Reads a JSON list of sets on stdin, each {"names": [...], "images": [{"preds": [[x1,y1,x2,y2,score,cls], ...]
(sorted by score, highest first), "truth": [[cls,x1,y1,x2,y2], ...]}]}; scores every image with
DetectionValidator's _process_batch (box_iou + match_predictions) and each set with DetMetrics
(ap_per_class), exactly as ultralytics' val does; writes a list of {"mean": [p, r, map50, map],
"classes": {id: [p, r, map50, map]}} to stdout.
Run with build/venv/bin/python (ultralytics pinned in scripts/versions.env).
"""
import contextlib
import json
import sys

import numpy as np
import torch

# ultralytics logs to stdout (on a fresh machine: that it created its settings file); stdout
# carries only the JSON answer.
with contextlib.redirect_stdout(sys.stderr):
    from ultralytics.models.yolo.detect import DetectionValidator
    from ultralytics.utils.metrics import DetMetrics

    v = DetectionValidator(args={"plots": False})


def score(doc):
    stats = dict(tp=[], conf=[], pred_cls=[], target_cls=[])
    for img in doc["images"]:
        preds = torch.tensor(img["preds"] or [], dtype=torch.float32).reshape(-1, 6)
        truth = torch.tensor(img["truth"] or [], dtype=torch.float32).reshape(-1, 5)
        cls, boxes = truth[:, 0], truth[:, 1:]
        tp = torch.zeros(len(preds), v.niou, dtype=torch.bool)
        if len(preds) and len(truth):
            tp = v._process_batch(preds, boxes, cls)
        if len(preds) == 0 and len(truth) == 0:
            continue
        stats["tp"].append(tp)
        stats["conf"].append(preds[:, 4])
        stats["pred_cls"].append(preds[:, 5])
        stats["target_cls"].append(cls)
    s = {k: torch.cat(x, 0).numpy() for k, x in stats.items()}
    m = DetMetrics(names=dict(enumerate(doc["names"])))
    m.process(s["tp"], s["conf"], s["pred_cls"], s["target_cls"])
    out = {"mean": [float(x) for x in m.box.mean_results()],
           "classes": {str(int(c)): [float(x) for x in m.box.class_result(i)] for i, c in enumerate(m.box.ap_class_index)}}
    return out


json.dump([score(doc) for doc in json.load(sys.stdin)], sys.stdout)
