"""Reference pre- and post-processing (ultralytics' RTDETRPredictor) for golden detections.

    # decode a golden file's output0 (item 0) for a 1280x720 frame
    /usr/bin/python3 -m model.reference.predict --output-npz build/models/tiny.npz --orig-size 1280,720 \\
        --names person,car --conf 0.25
    # run the PyTorch reference on an image (binary PPM P6, or .npy HxWx3 uint8 RGB)
    /usr/bin/python3 -m model.reference.predict --image frame.ppm --arch tiny --nc 2 --imgsz 128

Prints a JSON list of {class_id, label, score, box: [x1, y1, x2, y2]} in frame pixels.
"""
import argparse
import json
import sys

import numpy as np


def resize_bilinear(img, out_h, out_w):
    """OpenCV INTER_LINEAR on an HxWxC array: half-pixel centres, edge pixels clamped.

    OpenCV computes in fixed point for uint8 images, so results may differ from this float version by
    one grey level; the runtime's tests compare with that tolerance.
    """
    in_h, in_w = img.shape[:2]
    src = img.astype(np.float64)

    def axis(n_out, n_in):
        x = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
        x0 = np.floor(x)
        frac = x - x0
        x0 = x0.astype(np.int64)
        lo = np.clip(x0, 0, n_in - 1)
        hi = np.clip(x0 + 1, 0, n_in - 1)
        # OpenCV clamps the coordinate itself at the left edge (x < 0 -> weight all on pixel 0).
        frac = np.where(x < 0, 0.0, frac)
        return lo, hi, frac

    y0, y1, fy = axis(out_h, in_h)
    x0, x1, fx = axis(out_w, in_w)
    top = src[y0][:, x0] * (1 - fx)[None, :, None] + src[y0][:, x1] * fx[None, :, None]
    bot = src[y1][:, x0] * (1 - fx)[None, :, None] + src[y1][:, x1] * fx[None, :, None]
    return top * (1 - fy)[:, None, None] + bot * fy[:, None, None]


def preprocess(rgb, imgsz):
    """HxWx3 uint8 RGB frame -> float32 [1,3,H,W] in 0..1 (stretch resize, no letterbox padding)."""
    h, w = imgsz
    resized = resize_bilinear(rgb, h, w)
    if rgb.dtype == np.uint8:
        resized = np.clip(np.rint(resized), 0, 255)
    return (resized.transpose(2, 0, 1)[None] / 255.0).astype(np.float32)


def postprocess(output0, orig_w, orig_h, conf=0.25, max_det=300, classes=None):
    """One image's output0 [300, 4+nc] -> rows [x1, y1, x2, y2, score, class] in frame pixels.

    ultralytics' RTDETRPredictor.postprocess: max score and its class per query, keep score > conf,
    optional class filter, sort by score descending (stable), cut to max_det, xywh -> xyxy, x scaled by
    the frame width and y by its height.
    """
    out = np.asarray(output0, dtype=np.float64)
    if out.ndim != 2 or out.shape[1] < 5:
        raise ValueError(f"output0 for one image must be [queries, 4+nc], got {list(out.shape)}")
    boxes, scores = out[:, :4], out[:, 4:]
    cls = scores.argmax(1)
    score = scores.max(1)
    keep = score > conf
    if classes is not None:
        keep &= np.isin(cls, list(classes))
    idx = np.nonzero(keep)[0]
    idx = idx[np.argsort(-score[idx], kind="stable")][:max_det]
    cx, cy, w, h = boxes[idx].T
    xyxy = np.stack([(cx - w / 2) * orig_w, (cy - h / 2) * orig_h, (cx + w / 2) * orig_w, (cy + h / 2) * orig_h], 1)
    return np.concatenate([xyxy, score[idx, None], cls[idx, None].astype(np.float64)], 1)


def detections_json(output0, orig_w, orig_h, names=None, conf=0.25, max_det=300, classes=None):
    """The detections of one image as the JSON list the MQTT payload carries."""
    dets = []
    for x1, y1, x2, y2, score, c in postprocess(output0, orig_w, orig_h, conf, max_det, classes):
        c = int(c)
        label = names.get(c, f"class{c}") if names else f"class{c}"
        dets.append({"class_id": c, "label": label, "score": float(score), "box": [float(x1), float(y1), float(x2), float(y2)]})
    return json.dumps(dets)


def read_image(path):
    """HxWx3 uint8 RGB from a binary PPM (P6, maxval 255) or an .npy array."""
    if path.endswith(".npy"):
        img = np.load(path)
    else:
        with open(path, "rb") as f:
            data = f.read()
        fields, pos = [], 0
        while len(fields) < 4:
            while data[pos:pos + 1].isspace():
                pos += 1
            if data[pos:pos + 1] == b"#":
                pos = data.index(b"\n", pos) + 1
                continue
            end = pos
            while not data[end:end + 1].isspace():
                end += 1
            fields.append(data[pos:end])
            pos = end
        if fields[0] != b"P6" or int(fields[3]) != 255:
            raise ValueError(f"{path}: only binary PPM (P6, maxval 255) or .npy images are read")
        w, h = int(fields[1]), int(fields[2])
        img = np.frombuffer(data[pos + 1:pos + 1 + w * h * 3], dtype=np.uint8).reshape(h, w, 3)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"{path}: need an HxWx3 uint8 RGB image, got {img.shape} {img.dtype}")
    return img


def main(argv=None):
    from .export import parse_imgsz

    p = argparse.ArgumentParser(prog="python3 -m model.reference.predict", description=__doc__.split("\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--output-npz", help="decode output0 from this npz (as written by export --golden)")
    src.add_argument("--image", help="run the reference model on this image (P6 PPM or HxWx3 uint8 .npy)")
    p.add_argument("--index", type=int, default=0, help="batch item of --output-npz")
    p.add_argument("--orig-size", default="", help="W,H of the frame (default: the image's, or the npz input's)")
    p.add_argument("--names", default="", help="comma-separated class names")
    p.add_argument("--conf", type=float, default=0.25)
    p.add_argument("--max-det", type=int, default=300)
    p.add_argument("--classes", default="", help="comma-separated class ids to keep")
    p.add_argument("--arch", default="seed")
    p.add_argument("--nc", type=int, default=1)
    p.add_argument("--imgsz", type=parse_imgsz, default=None)
    p.add_argument("--weights", default="")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    names = {i: n.strip() for i, n in enumerate(args.names.split(","))} if args.names else None
    classes = [int(c) for c in args.classes.split(",")] if args.classes else None
    if args.output_npz:
        data = np.load(args.output_npz)
        out = data["output0"][args.index]
        fh, fw = data["images"].shape[2:]
    else:
        import torch

        from . import seed as seedmod

        rgb = read_image(args.image)
        fh, fw = rgb.shape[:2]
        imgsz = args.imgsz or [seedmod.DEFAULT_IMGSZ[args.arch]] * 2
        if args.weights:
            model = seedmod.load_checkpoint(seedmod.RTDETRStarNetFreqFusion(args.nc, seedmod.ARCHS[args.arch]), args.weights).eval()
        else:
            model = seedmod.build(args.nc, args.arch, args.seed)
        with torch.no_grad():
            out = model(torch.from_numpy(preprocess(rgb, imgsz)))[0].numpy()
    if args.orig_size:
        fw, fh = (int(v) for v in args.orig_size.split(","))
    print(detections_json(out, fw, fh, names, args.conf, args.max_det, classes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
