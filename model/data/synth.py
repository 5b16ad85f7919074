"""Synthetic YOLO-format detection data (and a tracking clip) for training and testing the seed model.

    python -m model.data.synth --out DIR --n N --imgsz S [--val M] [--seed K] [--style default|alt]
    python -m model.data.synth --out DIR --video [--still] [--frames F] [--width W --height H]

A class is a shape *and* a colour (red/blue disc, red/blue box): a detector has to use colour, so feeding
it BGR where it was trained on RGB swaps red and blue and costs accuracy. Objects vary in size (6-35% of
the image side), overlap each other and are partly hidden by grey bars; the background is textured
(smooth noise, stripes, grain). An object hidden to more than 70% gets no label, the others keep the box
of the whole object. Green and yellow shapes are unlabelled distractors.

So that a model trained on it finds the shapes in images it did not draw, the images (not the --video
clip, which stays plain) vary: backgrounds (texture, gradient, tiles, clutter of lines and outlines),
edges (anti-aliased or hard, outlined, shaded objects), brightness and contrast, blur, sensor noise and
JPEG quality (30-95). --style alt draws a second, differently made set for checking generalisation:
other backgrounds (multi-octave tinted noise, rings, soft blobs, vignetting), colours jittered in HSV
instead of per channel, other sizes and aspects (8-40% of the side, aspect 0.5-2), signal-dependent
and chroma noise, motion or defocus blur, JPEG quality 25-70, occluders of other colours. Same classes.

Writes DIR/images/{train,val}/*.jpg, DIR/labels/{train,val}/*.txt (class cx cy w h, normalised) and
DIR/data.yaml. --video writes DIR/clip.mp4 (objects moving, some on crossing paths; with --still, a still
picture that shapes cross now and then, as a fixed camera sees a driveway) and DIR/gt.txt, MOT-style:
frame (1-based), track id, x, y, w, h (pixels), 1, class, visibility (0..1).
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


def grain(rng, img, sigma):
    return img + rng.normal(0, sigma, size=img.shape).astype(np.float32)


def greyish(img, keep):
    """Mixes each pixel towards its grey: keep=0.35 leaves a faint colour (no region looks like a class)."""
    return keep * img + (1 - keep) * img.mean(axis=2, keepdims=True)


def background_varied(rng, h, w):
    """The training style's backgrounds: the plain texture, a gradient, tiles or clutter, with lines on top."""
    kind = int(rng.integers(0, 4))
    if kind == 0:
        img = background(rng, h, w).astype(np.float32)
    elif kind == 1:  # linear gradient between two greys (slightly tinted), with grain
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        a = rng.uniform(0, 2 * np.pi)
        t = (xx * np.cos(a) + yy * np.sin(a)) / max(h, w)
        t = (t - t.min()) / max(1e-6, float(t.max() - t.min()))
        c0, c1 = rng.uniform(30, 230, size=3), rng.uniform(30, 230, size=3)
        img = c0[None, None] * (1 - t[..., None]) + c1[None, None] * t[..., None]
        img = greyish(grain(rng, img.astype(np.float32), rng.uniform(2, 10)), 0.35)
    elif kind == 2:  # tiles (checkerboard) of two greys, random cell size, soft
        cell = int(rng.integers(max(3, min(h, w) // 24), max(5, min(h, w) // 4)))
        yy, xx = np.mgrid[0:h, 0:w]
        check = ((yy // cell + xx // cell) % 2).astype(np.float32)
        g0, g1 = rng.uniform(50, 210, size=2)
        img = np.repeat((g0 + (g1 - g0) * check)[..., None], 3, axis=2)
        img = grain(rng, img + rng.uniform(-15, 15, size=3).astype(np.float32), rng.uniform(2, 8))
    else:  # clutter: the texture with outlines of rectangles and circles in greys
        img = background(rng, h, w).astype(np.float32)
        for _ in range(int(rng.integers(3, 10))):
            g = float(rng.uniform(0, 255))
            x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
            r = int(rng.integers(3, max(4, min(h, w) // 4)))
            th = int(rng.integers(1, 3))
            if rng.random() < 0.5:
                cv2.circle(img, (x, y), r, (g, g, g), th, lineType=cv2.LINE_AA)
            else:
                cv2.rectangle(img, (x, y), (x + r, y + int(r * rng.uniform(0.5, 2))), (g, g, g), th)
    for _ in range(int(rng.integers(0, 4))):  # long straight edges across the image
        g = float(rng.uniform(0, 255))
        p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        p2 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.line(img, p1, p2, (g, g, g), int(rng.integers(1, 4)), lineType=cv2.LINE_AA)
    return np.clip(img, 0, 255).astype(np.uint8)


def value_noise(rng, h, w, octaves=4):
    """Multi-octave smooth noise in 0..1 (cubic-upsampled random grids)."""
    acc = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        cells = 2 ** (o + 1)
        small = rng.uniform(0, 1, size=(cells + 1, cells + 1)).astype(np.float32)
        acc += amp * cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= 0.55
    acc /= total
    return (acc - acc.min()) / max(1e-6, float(acc.max() - acc.min()))


def background_alt(rng, h, w):
    """The alt style's backgrounds: tinted fractal noise, rings, or soft blobs; then vignetting."""
    kind = int(rng.integers(0, 3))
    tint = rng.uniform(0.85, 1.15, size=3).astype(np.float32)  # warm/cool cast, as a camera's white balance
    if kind == 0:
        n = value_noise(rng, h, w)
        img = (40 + 180 * n)[..., None] * tint
    elif kind == 1:  # rings (wood, ripples) around a random centre
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        cy, cx = rng.uniform(-h, 2 * h), rng.uniform(-w, 2 * w)
        r = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
        period = rng.uniform(5, 25)
        n = 0.5 + 0.5 * np.sin(r * 2 * np.pi / period + 3 * value_noise(rng, h, w, 3))
        img = (70 + 120 * n)[..., None] * tint
    else:  # soft blobs of grey on a flat grey
        img = np.full((h, w, 3), rng.uniform(60, 200), np.float32)
        for _ in range(int(rng.integers(4, 12))):
            g = float(rng.uniform(20, 240))
            cv2.circle(img, (int(rng.integers(0, w)), int(rng.integers(0, h))),
                       int(rng.integers(3, max(4, min(h, w) // 3))), (g, g, g), -1)
        k = 2 * int(rng.integers(1, max(2, min(h, w) // 20))) + 1
        img = cv2.GaussianBlur(img, (k, k), 0) * tint
    img = greyish(img, 0.5)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    d2 = ((yy - h / 2) / h) ** 2 + ((xx - w / 2) / w) ** 2
    img *= (1 - rng.uniform(0.2, 0.8) * d2)[..., None]  # vignetting
    return np.clip(img, 0, 255).astype(np.uint8)


def jitter_hsv(rng, rgb):
    """The alt style's colour jitter: hue +-10 degrees, saturation 0.65-1 and value 0.6-1 of the base."""
    hsv = cv2.cvtColor(np.uint8([[rgb]]), cv2.COLOR_RGB2HSV)[0, 0].astype(np.float32)
    hsv[0] = (hsv[0] + rng.uniform(-5, 5)) % 180
    hsv[1] *= rng.uniform(0.65, 1.0)
    hsv[2] *= rng.uniform(0.6, 1.0)
    return tuple(int(c) for c in cv2.cvtColor(np.uint8([[np.clip(hsv, 0, 255)]]), cv2.COLOR_HSV2RGB)[0, 0])


def finish_default(rng, img):
    """The training style's camera: brightness/contrast, blur, grain; returns the JPEG quality to write."""
    f = img.astype(np.float32)
    if rng.random() < 0.5:
        f = f * rng.uniform(0.7, 1.3) + rng.uniform(-30, 30)
    if rng.random() < 0.3:
        f = cv2.GaussianBlur(f, (0, 0), rng.uniform(0.3, 1.5))
    if rng.random() < 0.3:
        f = grain(rng, f, rng.uniform(1, 8))
    return np.clip(f, 0, 255).astype(np.uint8), int(rng.integers(30, 96))


def finish_alt(rng, img):
    """The alt style's camera: gamma, motion or defocus blur, shot and chroma noise; JPEG quality 25-70."""
    f = img.astype(np.float32) / 255
    f = f ** rng.uniform(0.7, 1.4)
    r = rng.random()
    if r < 0.3:  # motion blur along a random direction
        k = int(rng.integers(3, 8))
        kern = np.zeros((k, k), np.float32)
        kern[k // 2, :] = 1
        rot = cv2.getRotationMatrix2D(((k - 1) / 2, (k - 1) / 2), rng.uniform(0, 180), 1)
        kern = cv2.warpAffine(kern, rot, (k, k))
        f = cv2.filter2D(f, -1, kern / max(1e-6, float(kern.sum())))
    elif r < 0.5:
        f = cv2.GaussianBlur(f, (0, 0), rng.uniform(0.5, 1.2))
    h, w = f.shape[:2]
    f = f + rng.normal(0, 1, size=f.shape).astype(np.float32) * np.sqrt(f * rng.uniform(0.0005, 0.004))
    chroma = rng.normal(0, rng.uniform(0.005, 0.03), size=(max(2, h // 4), max(2, w // 4), 3)).astype(np.float32)
    f = f + cv2.resize(chroma, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.clip(f * 255, 0, 255).astype(np.uint8), int(rng.integers(25, 71))


def jitter(rng, rgb):
    return tuple(int(np.clip(c + rng.integers(-25, 26), 0, 255)) for c in rgb)


def draw_shape(img, mask, shape, box, rgb, aa=False):
    """Draws a disc (ellipse) or an axis-aligned box filling box=(x1,y1,x2,y2); marks its pixels in mask.

    aa draws the disc's edge anti-aliased in img (the mask stays hard)."""
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    bgr = rgb[::-1]
    for target, colour in ((img, bgr), (mask, 1)):
        if shape == "disc":
            centre = ((x1 + x2) // 2, (y1 + y2) // 2)
            axes = (max(1, (x2 - x1) // 2), max(1, (y2 - y1) // 2))
            line = cv2.LINE_AA if aa and target is img else cv2.LINE_8
            cv2.ellipse(target, centre, axes, 0, 0, 360, colour, -1, lineType=line)
        else:
            cv2.rectangle(target, (x1, y1), (x2 - 1, y2 - 1), colour, -1)


def restyle_object(rng, img, m, shape, box):
    """The varied styles' object edges: a dark or light outline, a brightness ramp across the object."""
    if rng.random() < 0.3:
        axis = int(rng.integers(0, 2))  # 0: ramp down the rows, 1: across the columns
        ramp = np.linspace(rng.uniform(0.7, 1.0), rng.uniform(1.0, 1.3), img.shape[axis], dtype=np.float32)
        ramp = ramp[:, None, None] if axis == 0 else ramp[None, :, None]
        shaded = np.clip(img.astype(np.float32) * ramp, 0, 255).astype(np.uint8)
        img[m > 0] = shaded[m > 0]
    if rng.random() < 0.25:
        g = int(rng.choice([int(rng.integers(0, 60)), int(rng.integers(190, 256))]))
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        if shape == "disc":
            cv2.ellipse(img, ((x1 + x2) // 2, (y1 + y2) // 2), (max(1, (x2 - x1) // 2), max(1, (y2 - y1) // 2)),
                        0, 0, 360, (g, g, g), 1, lineType=cv2.LINE_AA)
        else:
            cv2.rectangle(img, (x1, y1), (x2 - 1, y2 - 1), (g, g, g), 1)


def random_object(rng, h, w, size=(0.06, 0.35), aspect=(0.7, 1.4)):
    side = min(h, w)
    bw = rng.uniform(*size) * side
    bh = bw * rng.uniform(*aspect)
    bw, bh = min(bw, w - 2), min(bh, h - 2)
    x1 = rng.uniform(0, w - bw)
    y1 = rng.uniform(0, h - bh)
    return (x1, y1, x1 + bw, y1 + bh)


def render(rng, objects, h, w, bars, style=None):
    """objects: (class or None for a distractor, shape, rgb, box) drawn in order (later ones on top).

    style None: the plain look (the --video clip); "default" and "alt" vary backgrounds and edges (the
    camera effects come after, in write_split). Returns the image (BGR) and, per object, the fraction of
    its pixels left visible.
    """
    img = {None: background, "default": background_varied, "alt": background_alt}[style](rng, h, w)
    masks = []
    for cls, shape, rgb, box in objects:
        m = np.zeros((h, w), np.uint8)
        draw_shape(img, m, shape, box, rgb, aa=style is not None and rng.random() < 0.5)
        if style is not None:
            restyle_object(rng, img, m, shape, box)
        masks.append(m)
    cover = np.zeros((h, w), np.uint8)
    for x1, y1, x2, y2 in bars:
        if style == "alt":  # occluders of any dull colour, not only grey
            colour = tuple(int(c) for c in greyish(rng.uniform(40, 220, size=(1, 1, 3)), 0.6)[0, 0])
        else:
            grey = int(rng.integers(90, 170))
            colour = (grey, grey, grey)
        cv2.rectangle(img, (x1, y1), (x2, y2), colour, -1)
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


def sample_objects(rng, h, w, style="default"):
    objects = []
    if style == "alt":
        colour_of, geometry = jitter_hsv, {"size": (0.08, 0.40), "aspect": (0.5, 2.0)}
    else:
        # Half the images have objects as tall or wide as stretching a 16:9 frame to a square input makes
        # them (the demo clip's 640x360 -> 160x160 turns a disc into an ellipse 1.8 times as tall as wide).
        colour_of, geometry = jitter, {} if rng.random() < 0.5 else {"aspect": (0.45, 2.2)}
    for _ in range(int(rng.integers(1, 6))):
        cls = int(rng.integers(0, len(NAMES)))
        colour, shape = NAMES[cls].split("_")
        objects.append((cls, shape, colour_of(rng, COLOURS[colour]), random_object(rng, h, w, **geometry)))
    for _ in range(int(rng.integers(0, 3))):
        shape = "disc" if rng.random() < 0.5 else "box"
        objects.append((None, shape, colour_of(rng, DISTRACTORS[int(rng.integers(0, 2))]),
                        random_object(rng, h, w, **geometry)))
    rng.shuffle(objects)
    return objects


def write_split(rng, out, split, n, imgsz, style="default"):
    (out / "images" / split).mkdir(parents=True, exist_ok=True)
    (out / "labels" / split).mkdir(parents=True, exist_ok=True)
    finish = finish_alt if style == "alt" else finish_default
    for i in range(n):
        objects = sample_objects(rng, imgsz, imgsz, style)
        img, visible = render(rng, objects, imgsz, imgsz, random_bars(rng, imgsz, imgsz), style)
        img, quality = finish(rng, img)
        name = f"{split}_{i:05d}"
        cv2.imwrite(str(out / "images" / split / f"{name}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, quality])
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


def write_dataset(out, n, imgsz, n_val, seed, style="default"):
    out = Path(out).resolve()
    rng = np.random.default_rng(seed)
    write_split(rng, out, "train", n, imgsz, style)
    write_split(rng, out, "val", n_val, imgsz, style)
    names = "".join(f"  {i}: {name}\n" for i, name in enumerate(NAMES))
    data = out / "data.yaml"
    data.write_text(f"# written by python -m model.data.synth (seed {seed}, imgsz {imgsz}, style {style})\n"
                    f"path: {out}\ntrain: images/train\nval: images/val\nnames:\n{names}")
    return data


def clip_writer(out, fps, w, h):
    """OUT/clip.mp4 (MP4, mp4v) opened for writing w x h frames: (its path, the writer)."""
    path = out / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"{path}: OpenCV cannot write MP4 (mp4v) here")
    return path, writer


def write_clip_truth(out, gt):
    """A clip's MOT ground truth (OUT/gt.txt, one line per box) and class names (OUT/names.txt)."""
    (out / "gt.txt").write_text("\n".join(gt) + "\n")
    (out / "names.txt").write_text("\n".join(NAMES) + "\n")


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
    path, writer = clip_writer(out, fps, w, h)
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
    write_clip_truth(out, gt)
    return path


# The still clip's visits: (start as a fraction of the clip, [(class, row as a fraction of the height,
# direction: 1 left to right, -1 right to left)]), each crossing the frame in STILL_CROSS seconds: three
# visits of 4 s in 2 minutes (10, 50 and 90 s), the last two shapes at once, so the picture is still 90%
# of the time.
STILL_VISITS = [(1 / 12, [(0, 0.55, 1)]), (5 / 12, [(3, 0.6, -1)]), (9 / 12, [(2, 0.3, 1), (1, 0.7, -1)])]
STILL_CROSS = 4.0


def write_still_video(out, frames, w, h, fps, seed):
    """A mostly still clip, as a fixed camera sees a driveway: one unchanging picture with sensor noise,
    where the shapes of STILL_VISITS enter from one side, cross and leave. Ground truth as write_video's,
    boxes clipped to the frame, visibility the share of the shape inside it."""
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    still = background(np.random.default_rng(seed + 1), h, w)
    tracks = []
    for start, shapes in STILL_VISITS:
        for cls, row, direction in shapes:
            colour, shape = NAMES[cls].split("_")
            bw = rng.uniform(0.18, 0.24) * min(w, h)
            bh = bw * rng.uniform(0.9, 1.1)
            first = int(round(start * frames))  # 0-based frame of entry
            span = STILL_CROSS * fps  # frames to cross from outside one edge to outside the other
            tracks.append({"id": len(tracks) + 1, "cls": cls, "shape": shape, "rgb": jitter(rng, COLOURS[colour]),
                           "size": (bw, bh), "y": row * h - bh / 2, "first": first, "span": span,
                           "x0": -bw if direction > 0 else w, "vx": direction * (w + bw) / span})
    path, writer = clip_writer(out, fps, w, h)
    gt = []
    noise = np.random.default_rng(seed + 2)
    mask = np.zeros((h, w), np.uint8)  # draw_shape's mask, not needed here
    for f in range(frames):
        img = still.copy()
        for t in tracks:
            k = f - t["first"]
            if not 0 <= k <= t["span"]:
                continue
            x1 = t["x0"] + k * t["vx"]
            box = (x1, t["y"], x1 + t["size"][0], t["y"] + t["size"][1])
            draw_shape(img, mask, t["shape"], box, t["rgb"])
            cx1, cx2 = max(0.0, box[0]), min(float(w), box[2])
            if cx2 - cx1 >= 1:
                vis = (cx2 - cx1) / (box[2] - box[0])
                gt.append(f"{f + 1},{t['id']},{cx1:.2f},{box[1]:.2f},{cx2 - cx1:.2f},{box[3] - box[1]:.2f},1,{t['cls']},{vis:.3f}")
        writer.write(np.clip(grain(noise, img, 2.0), 0, 255).astype(np.uint8))
    writer.release()
    write_clip_truth(out, gt)
    return path


def write_clip_frames(out, clips, every, imgsz, seed, frames=300, w=640, h=360):
    """Adds the frames of `clips` tracking clips (seeds seed, seed+1, ...; every `every`-th frame) to
    OUT/images/train as the daemon feeds them to the model: decoded from the MP4 and stretched to
    imgsz x imgsz. Labels from the clips' ground truth (shapes at least 1 - HIDDEN_DROP visible)."""
    import tempfile

    out = Path(out).resolve()
    (out / "images" / "train").mkdir(parents=True, exist_ok=True)
    (out / "labels" / "train").mkdir(parents=True, exist_ok=True)
    added = 0
    for clip_seed in range(seed, seed + clips):
        with tempfile.TemporaryDirectory() as tmp:
            write_video(tmp, frames, w, h, 10.0, clip_seed)
            gt = {}
            for line in (Path(tmp) / "gt.txt").read_text().split():
                f, _, x, y, bw, bh, _, cls, vis = line.split(",")
                gt.setdefault(int(f), []).append((int(cls), float(x), float(y), float(bw), float(bh), float(vis)))
            cap = cv2.VideoCapture(str(Path(tmp) / "clip.mp4"))
            f = 0
            while True:
                ok, img = cap.read()
                if not ok:
                    break
                f += 1
                if (f - 1) % every:
                    continue
                name = f"clip{clip_seed}_{f:04d}"
                cv2.imwrite(str(out / "images" / "train" / f"{name}.jpg"),
                            cv2.resize(img, (imgsz, imgsz), interpolation=cv2.INTER_AREA))
                lines = [f"{c} {(x + bw / 2) / w:.6f} {(y + bh / 2) / h:.6f} {bw / w:.6f} {bh / h:.6f}"
                         for c, x, y, bw, bh, vis in gt.get(f, []) if vis >= 1 - HIDDEN_DROP]
                (out / "labels" / "train" / f"{name}.txt").write_text("".join(line + "\n" for line in lines))
                added += 1
            cap.release()
        print(f"synth: clip {clip_seed - seed + 1}/{clips}", file=sys.stderr, flush=True)
    return added


def write_negatives(out, n, imgsz, seed, w=640, h=360):
    """Adds n shape-free pictures of the --video clips' look (the plain textured background, seeds seed,
    seed+1, ..., sensor noise) to OUT/images/train, w x h stretched to imgsz as the daemon feeds a
    camera's frames to the model, each with an empty label file: a still picture is not a shape."""
    out = Path(out).resolve()
    (out / "images" / "train").mkdir(parents=True, exist_ok=True)
    (out / "labels" / "train").mkdir(parents=True, exist_ok=True)
    for s in range(seed, seed + n):
        rng = np.random.default_rng(s)
        img = np.clip(grain(rng, background(rng, h, w), 2.0), 0, 255).astype(np.uint8)
        cv2.imwrite(str(out / "images" / "train" / f"neg{s}.jpg"),
                    cv2.resize(img, (imgsz, imgsz), interpolation=cv2.INTER_AREA), [cv2.IMWRITE_JPEG_QUALITY, 90])
        (out / "labels" / "train" / f"neg{s}.txt").write_text("")
    return n


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m model.data.synth", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--n", type=int, default=64, help="training images")
    p.add_argument("--val", type=int, default=None, help="validation images (default: n/4, at least 2)")
    p.add_argument("--imgsz", type=int, default=640, help="image side in pixels")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--style", choices=("default", "alt"), default="default",
                   help="default: the training look; alt: a differently drawn set to check generalisation")
    p.add_argument("--video", action="store_true", help="write a tracking clip + MOT ground truth instead")
    p.add_argument("--still", action="store_true",
                   help="with --video: a still picture that shapes cross now and then (still 90%% of the time)")
    p.add_argument("--frames", type=int, default=100)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=360)
    p.add_argument("--fps", type=float, default=10.0)
    p.add_argument("--clips", type=int, default=0, metavar="N",
                   help="add the frames of N tracking clips (640x360, seeds --seed...) to OUT's training images, "
                        "stretched to --imgsz as the daemon feeds them (the demo model's training data)")
    p.add_argument("--clip-every", type=int, default=10, metavar="K", help="with --clips: every K-th frame")
    p.add_argument("--negatives", type=int, default=0, metavar="N",
                   help="add N shape-free pictures of the clips' look (seeds --seed...) to OUT's training images, "
                        "stretched to --imgsz, with empty labels (hard negatives for a still camera)")
    a = p.parse_args(argv)
    if a.negatives:
        if a.negatives < 1 or a.imgsz < 32:
            p.error("--negatives must be >= 1 and --imgsz >= 32")
        n = write_negatives(a.out, a.negatives, a.imgsz, a.seed)
        print(f"{Path(a.out).resolve()}: {n} shape-free pictures added to images/train")
        return 0
    if a.clips:
        if a.clips < 1 or a.clip_every < 1 or a.imgsz < 32:
            p.error("--clips and --clip-every must be >= 1 and --imgsz >= 32")
        n = write_clip_frames(a.out, a.clips, a.clip_every, a.imgsz, a.seed)
        print(f"{Path(a.out).resolve()}: {n} clip frames added to images/train")
        return 0
    if a.video:
        if a.frames < 1 or a.width < 64 or a.height < 64:
            p.error("--frames must be >= 1 and --width/--height >= 64")
        print((write_still_video if a.still else write_video)(a.out, a.frames, a.width, a.height, a.fps, a.seed))
        return 0
    if a.n < 1 or a.imgsz < 32:
        p.error("--n must be >= 1 and --imgsz >= 32")
    n_val = a.val if a.val is not None else max(2, a.n // 4)
    print(write_dataset(a.out, a.n, a.imgsz, n_val, a.seed, a.style))
    return 0


if __name__ == "__main__":
    sys.exit(main())
