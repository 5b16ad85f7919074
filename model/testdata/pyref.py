"""Independent reference computations for the model package's tests (numpy/torch, run with
/usr/bin/python3). Not stardetr code: each subcommand re-implements what ultralytics and
OpenCV do, so the Go results are checked against something other than themselves.

  resize BGR.raw H W OH OW OUT.raw
      OpenCV INTER_LINEAR semantics (half-pixel centres, src = (dst+0.5)*scale-0.5, clamped
      at the borders) in float64, then BGR->RGB, /255, CHW float32: the model input that
      ultralytics' LetterBox(auto=False, scale_fill=True) + ToTensor produce.
  postprocess OUT0.raw Q NC FRAME_W FRAME_H CONF MAX_DET [CLASSES,...]
      ultralytics' RTDETRPredictor.postprocess on output0 (float32 [1,Q,4+NC]); prints JSON
      rows [x1, y1, x2, y2, score, class].
  postprocess-many CASES.json
      postprocess for each argument list in CASES.json (torch is imported once).
"""
import json
import sys

import numpy as np


def resize_linear(img, oh, ow):
    h, w, _ = img.shape

    def axis(n_out, n_in):
        scale = n_in / n_out
        f = (np.arange(n_out) + 0.5) * scale - 0.5
        i0 = np.floor(f).astype(np.int64)
        frac = f - i0
        frac[i0 < 0] = 0
        i0[i0 < 0] = 0
        over = i0 >= n_in - 1
        i0[over] = n_in - 1
        frac[over] = 0
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, frac

    y0, y1, fy = axis(oh, h)
    x0, x1, fx = axis(ow, w)
    img = img.astype(np.float64)
    top = img[y0][:, x0] * (1 - fx)[None, :, None] + img[y0][:, x1] * fx[None, :, None]
    bot = img[y1][:, x0] * (1 - fx)[None, :, None] + img[y1][:, x1] * fx[None, :, None]
    return top * (1 - fy)[:, None, None] + bot * fy[:, None, None]


def cmd_resize(raw, h, w, oh, ow, out):
    img = np.fromfile(raw, dtype=np.uint8).reshape(int(h), int(w), 3)
    r = resize_linear(img, int(oh), int(ow))
    chw = (r[:, :, ::-1] / 255.0).transpose(2, 0, 1).astype(np.float32)
    chw.tofile(out)


def cmd_postprocess(raw, q, nc, fw, fh, conf, max_det, classes=None):
    print(json.dumps(postprocess(raw, q, nc, fw, fh, conf, max_det, classes)))


def cmd_postprocess_many(cases):
    """cases: a JSON file holding a list of postprocess argument lists; prints a list of results."""
    with open(cases) as f:
        print(json.dumps([postprocess(*c) for c in json.load(f)]))


def postprocess(raw, q, nc, fw, fh, conf, max_det, classes=None):
    import torch
    q, nc = int(q), int(nc)
    preds = torch.from_numpy(np.fromfile(raw, dtype=np.float32).reshape(1, q, 4 + nc))
    bboxes, scores = preds.split((4, nc), dim=-1)
    bbox = bboxes[0].clone()
    xy, wh = bbox[..., :2], bbox[..., 2:] / 2
    bbox = torch.cat([xy - wh, xy + wh], dim=-1)
    max_score, cls = scores[0].max(-1, keepdim=True)
    idx = max_score.squeeze(-1) > float(conf)
    if classes:
        wanted = torch.tensor([int(c) for c in classes.split(",")])
        idx = (cls == wanted).any(1) & idx
    pred = torch.cat([bbox, max_score, cls.float()], dim=-1)[idx]
    pred = pred[pred[:, 4].argsort(descending=True)][: int(max_det)]
    pred[..., [0, 2]] *= float(fw)
    pred[..., [1, 3]] *= float(fh)
    return pred.tolist()


if __name__ == "__main__":
    {"resize": cmd_resize, "postprocess": cmd_postprocess, "postprocess-many": cmd_postprocess_many}[sys.argv[1]](*sys.argv[2:])
