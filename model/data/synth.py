"""Synthetic YOLO-format detection data (and a tracking clip) for training and testing the seed model.

    python -m model.data.synth --out DIR --n N --imgsz S [--val M] [--seed K]
    python -m model.data.synth --out DIR --video [--frames F] [--width W --height H]

A class is a shape *and* a colour (red/blue disc, red/blue box): a detector has to use colour, so feeding
it BGR where it was trained on RGB swaps red and blue and costs accuracy. Objects vary in size (6-35% of
the image side), overlap each other and are partly hidden by grey bars; the background is textured
(smooth noise, stripes, grain). An object hidden to more than 70% gets no label, the others keep the box
of the whole object. Green and yellow shapes are unlabelled distractors.

Writes DIR/images/{train,val}/*.jpg, DIR/labels/{train,val}/*.txt (class cx cy w h, normalised) and
DIR/data.yaml. --video writes DIR/clip.mp4 (objects moving, some on crossing paths) and DIR/gt.txt,
MOT-style: frame (1-based), track id, x, y, w, h (pixels), 1, class, visibility (0..1).
Progress goes to stderr, the data.yaml (or clip) path to stdout.
"""
import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

NAMES = ["red_disc", "blue_disc", "red_box", "blue_box"]
# RGB colours per class (drawn jittered); cv2 draws BGR, so they are reversed when drawing.
COLOURS = {"red": (220, 30, 30), "blue": (30, 60, 220)}
DISTRACTORS = [(40, 200, 40), (230, 210, 40)]  # green, yellow: no label
HIDDEN_DROP = 0.7


def background(rng, h, w):
    """Textured background: smooth colour noise, stripes at a random angle, fine grain."""
    small = rng.uniform(60, 200, size=(max(2, h // 40), max(2, w // 40), 3)).astype(np.float32)
    img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a, period = rng.uniform(0, np.pi), rng.uniform(6, 30)
    stripes = 25 * np.sin((xx * np.cos(a) + yy * np.sin(a)) * 2 * np.pi / period)
    img += stripes[..., None] * rng.uniform(0.3, 1.0, size=3).astype(np.float32)
    img += rng.normal(0, 8, size=img.shape).astype(np.float32)
    # Keep the background greyish so that no region looks like a class colour.
    grey = img.mean(axis=2, keepdims=True)
    img = 0.35 * img + 0.65 * grey
    return np.clip(img, 0, 255).astype(np.uint8)


def jitter(rng, rgb):
    return tuple(int(np.clip(c + rng.integers(-25, 26), 0, 255)) for c in rgb)


def draw_shape(img, mask, shape, box, rgb):
    """Draws a disc (ellipse) or an axis-aligned box filling box=(x1,y1,x2,y2); marks its pixels in mask."""
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    bgr = rgb[::-1]
    for target, colour in ((img, bgr), (mask, 1)):
        if shape == "disc":
            centre = ((x1 + x2) // 2, (y1 + y2) // 2)
            axes = (max(1, (x2 - x1) // 2), max(1, (y2 - y1) // 2))
            cv2.ellipse(target, centre, axes, 0, 0, 360, colour, -1, lineType=cv2.LINE_8)
        else:
            cv2.rectangle(target, (x1, y1), (x2 - 1, y2 - 1), colour, -1)


def random_object(rng, h, w):
    side = min(h, w)
    bw = rng.uniform(0.06, 0.35) * side
    bh = bw * rng.uniform(0.7, 1.4)
    bw, bh = min(bw, w - 2), min(bh, h - 2)
    x1 = rng.uniform(0, w - bw)
    y1 = rng.uniform(0, h - bh)
    return (x1, y1, x1 + bw, y1 + bh)


def render(rng, objects, h, w, bars):
    """objects: (class or None for a distractor, shape, rgb, box) drawn in order (later ones on top).

    Returns the image (BGR) and, per object, the fraction of its pixels left visible.
    """
    img = background(rng, h, w)
    masks = []
    for cls, shape, rgb, box in objects:
        m = np.zeros((h, w), np.uint8)
        draw_shape(img, m, shape, box, rgb)
        masks.append(m)
    cover = np.zeros((h, w), np.uint8)
    for x1, y1, x2, y2 in bars:
        grey = int(rng.integers(90, 170))
        cv2.rectangle(img, (x1, y1), (x2, y2), (grey, grey, grey), -1)
        cv2.rectangle(cover, (x1, y1), (x2, y2), 1, -1)
    visible = []
    for i, m in enumerate(masks):
        hidden = cover.copy()
        for later in masks[i + 1:]:
            hidden |= later
        area = int(m.sum())
        visible.append(float((m & (1 - hidden)).sum()) / area if area else 0.0)
    return img, visible


def random_bars(rng, h, w):
    bars = []
    for _ in range(int(rng.integers(0, 3))):
        if rng.random() < 0.5:
            x = int(rng.integers(0, w)); bw = int(rng.integers(3, max(4, w // 12)))
            bars.append((x, 0, x + bw, h - 1))
        else:
            y = int(rng.integers(0, h)); bh = int(rng.integers(3, max(4, h // 12)))
            bars.append((0, y, w - 1, y + bh))
    return bars


def sample_objects(rng, h, w):
    objects = []
    for _ in range(int(rng.integers(1, 6))):
        cls = int(rng.integers(0, len(NAMES)))
        colour, shape = NAMES[cls].split("_")
        objects.append((cls, shape, jitter(rng, COLOURS[colour]), random_object(rng, h, w)))
    for _ in range(int(rng.integers(0, 3))):
        shape = "disc" if rng.random() < 0.5 else "box"
        objects.append((None, shape, jitter(rng, DISTRACTORS[int(rng.integers(0, 2))]), random_object(rng, h, w)))
    rng.shuffle(objects)
    return objects


def write_split(rng, out, split, n, imgsz):
    (out / "images" / split).mkdir(parents=True, exist_ok=True)
    (out / "labels" / split).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        objects = sample_objects(rng, imgsz, imgsz)
        img, visible = render(rng, objects, imgsz, imgsz, random_bars(rng, imgsz, imgsz))
        name = f"{split}_{i:05d}"
        cv2.imwrite(str(out / "images" / split / f"{name}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
        lines = []
        for (cls, _, _, (x1, y1, x2, y2)), vis in zip(objects, visible):
            if cls is None or vis < 1 - HIDDEN_DROP:
                continue
            x1, y1 = max(0.0, x1), max(0.0, y1)
            x2, y2 = min(float(imgsz), x2), min(float(imgsz), y2)
            lines.append(f"{cls} {(x1 + x2) / 2 / imgsz:.6f} {(y1 + y2) / 2 / imgsz:.6f} "
                         f"{(x2 - x1) / imgsz:.6f} {(y2 - y1) / imgsz:.6f}")
        (out / "labels" / split / f"{name}.txt").write_text("".join(line + "\n" for line in lines))
        if (i + 1) % 100 == 0 or i + 1 == n:
            print(f"synth: {split} {i + 1}/{n}", file=sys.stderr, flush=True)


def write_dataset(out, n, imgsz, n_val, seed):
    out = Path(out).resolve()
    rng = np.random.default_rng(seed)
    write_split(rng, out, "train", n, imgsz)
    write_split(rng, out, "val", n_val, imgsz)
    names = "".join(f"  {i}: {name}\n" for i, name in enumerate(NAMES))
    data = out / "data.yaml"
    data.write_text(f"# written by python -m model.data.synth (seed {seed}, imgsz {imgsz})\n"
                    f"path: {out}\ntrain: images/train\nval: images/val\nnames:\n{names}")
    return data


def write_video(out, frames, w, h, fps, seed):
    """A clip of objects moving in straight lines (bouncing off the edges), two pairs on crossing paths."""
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tracks = []
    for tid in range(1, 7):
        cls = (tid - 1) % len(NAMES)
        colour, shape = NAMES[cls].split("_")
        size = rng.uniform(0.12, 0.22) * min(w, h)
        if tid <= 4:  # pairs 1-2 and 3-4 start on opposite sides of one row and cross mid-clip
            y = h * (0.3 if tid <= 2 else 0.7) - size / 2
            x = 0.0 if tid % 2 else w - size
            vx = (w - size) / frames * (1 if tid % 2 else -1)
            pos, vel = np.array([x, y]), np.array([vx, rng.uniform(-0.3, 0.3)])
        else:
            pos = np.array([rng.uniform(0, w - size), rng.uniform(0, h - size)])
            vel = rng.uniform(-4, 4, size=2)
        tracks.append({"id": tid, "cls": cls, "shape": shape, "rgb": jitter(rng, COLOURS[colour]),
                       "size": np.array([size, size * rng.uniform(0.8, 1.2)]), "pos": pos, "vel": vel})
    path = out / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"{path}: OpenCV cannot write MP4 (mp4v) here")
    gt = []
    for f in range(1, frames + 1):
        objects = []
        for t in tracks:
            x1, y1 = t["pos"]
            objects.append((t["cls"], t["shape"], t["rgb"], (x1, y1, x1 + t["size"][0], y1 + t["size"][1])))
        # A generator seeded the same every frame draws the same textured background under the objects.
        img, visible = render(np.random.default_rng(seed + 1), objects, h, w, [])
        writer.write(img)
        for t, (_, _, _, (x1, y1, x2, y2)), vis in zip(tracks, objects, visible):
            gt.append(f"{f},{t['id']},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},1,{t['cls']},{vis:.3f}")
        for t in tracks:
            t["pos"] = t["pos"] + t["vel"]
            for k, lim in ((0, w), (1, h)):
                if t["pos"][k] < 0 or t["pos"][k] + t["size"][k] > lim:
                    t["vel"][k] = -t["vel"][k]
                    t["pos"][k] = float(np.clip(t["pos"][k], 0, lim - t["size"][k]))
    writer.release()
    (out / "gt.txt").write_text("\n".join(gt) + "\n")
    (out / "names.txt").write_text("\n".join(NAMES) + "\n")
    return path


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m model.data.synth", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--n", type=int, default=64, help="training images")
    p.add_argument("--val", type=int, default=None, help="validation images (default: n/4, at least 2)")
    p.add_argument("--imgsz", type=int, default=640, help="image side in pixels")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--video", action="store_true", help="write a tracking clip + MOT ground truth instead")
    p.add_argument("--frames", type=int, default=100)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=360)
    p.add_argument("--fps", type=float, default=10.0)
    a = p.parse_args(argv)
    if a.video:
        if a.frames < 1 or a.width < 64 or a.height < 64:
            p.error("--frames must be >= 1 and --width/--height >= 64")
        print(write_video(a.out, a.frames, a.width, a.height, a.fps, a.seed))
        return 0
    if a.n < 1 or a.imgsz < 32:
        p.error("--n must be >= 1 and --imgsz >= 32")
    n_val = a.val if a.val is not None else max(2, a.n // 4)
    print(write_dataset(a.out, a.n, a.imgsz, n_val, a.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
