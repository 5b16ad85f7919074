"""CLEAR MOT and identity metrics with py-motmetrics, the MOT challenge's reference implementation.

Reads "frame kind id class x1 y1 x2 y2" lines on stdin (kind g: ground truth, h: hypothesis), matches
at IoU >= 0.5 between boxes of the same class only, and prints the metrics as one JSON object.
"""
import collections
import json
import sys

import numpy as np
import motmetrics as mm

frames = collections.defaultdict(lambda: {"g": ([], [], []), "h": ([], [], [])})
for line in sys.stdin:
    f, kind, i, c, x1, y1, x2, y2 = line.split()
    ids, classes, boxes = frames[int(f)][kind]
    ids.append(int(i))
    classes.append(int(c))
    boxes.append([float(x1), float(y1), float(x2) - float(x1), float(y2) - float(y1)])
acc = mm.MOTAccumulator(auto_id=True)
for f in sorted(frames):
    (gi, gc, gb), (hi, hc, hb) = frames[f]["g"], frames[f]["h"]
    d = mm.distances.iou_matrix(np.array(gb).reshape(-1, 4), np.array(hb).reshape(-1, 4), max_iou=0.5)
    if d.size:
        d[np.array(gc)[:, None] != np.array(hc)[None, :]] = np.nan  # another class never matches
    acc.update(gi, hi, d)
m = mm.metrics.create().compute(acc, metrics=["num_objects", "num_predictions", "num_misses", "num_false_positives",
                                               "num_switches", "mota", "idf1", "idtp"])
print(json.dumps({k: float(m[k].iloc[0]) for k in m}))
