"""Calibration frames for static quantization: images of a YOLO-format dataset, preprocessed exactly as
the runtime does (model.reference.predict: stretch resize, RGB, /255)."""
import os

import numpy as np

from model.reference.predict import preprocess

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class DataError(Exception):
    """A dataset YAML or image that cannot be used; the message names the file and the fix."""


def _split_images(root, entry, yaml_path):
    entries = entry if isinstance(entry, list) else [entry]
    found = []
    for e in entries:
        p = e if os.path.isabs(e) else os.path.join(root, e)
        if os.path.isdir(p):
            for dirpath, _, files in os.walk(p):
                found += [os.path.join(dirpath, f) for f in files if f.lower().endswith(IMAGE_EXTS)]
        elif os.path.isfile(p) and p.endswith(".txt"):
            with open(p) as f:
                for line in f:
                    line = line.strip()
                    if line:
                        found.append(line if os.path.isabs(line) else os.path.join(root, line))
        else:
            raise DataError(f"{yaml_path}: {e!r} resolves to {p}, which is neither a folder of images nor a .txt list")
    return sorted(found)


def dataset_images(yaml_path, limit):
    """Up to limit image paths from the dataset's train split (val when train has none), spread evenly."""
    import yaml

    if not os.path.isfile(yaml_path):
        raise DataError(f"{yaml_path}: dataset YAML not found: give the data.yaml of a YOLO-format dataset")
    try:
        with open(yaml_path) as f:
            cfg = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise DataError(f"{yaml_path}: not valid YAML: {e}") from None
    if not isinstance(cfg, dict) or not (cfg.get("train") or cfg.get("val")):
        raise DataError(f"{yaml_path}: needs a 'train' or 'val' key naming image folders (YOLO dataset format)")
    base = os.path.dirname(os.path.abspath(yaml_path))
    root = cfg.get("path") or base
    if not os.path.isabs(root):
        root = os.path.join(base, root)
    images = []
    for split in ("train", "val"):
        if cfg.get(split):
            images = _split_images(root, cfg[split], yaml_path)
            if images:
                break
    if not images:
        raise DataError(f"{yaml_path}: no images (.jpg/.png/.bmp/.webp) under its train or val split")
    if len(images) > limit:
        step = len(images) / limit
        images = [images[int(i * step)] for i in range(limit)]
    return images


def load_rgb(path):
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read the image: {e}") from None


class Reader:
    """onnxruntime.quantization.CalibrationDataReader over image paths (one frame per call)."""

    def __init__(self, images, imgsz, log=None):
        self.images, self.imgsz, self.log, self.i = images, imgsz, log or (lambda *a: None), 0

    def get_next(self):
        if self.i >= len(self.images):
            return None
        path = self.images[self.i]
        self.i += 1
        if self.i % 16 == 0 or self.i == len(self.images):
            self.log(f"calibration image {self.i}/{len(self.images)}")
        return {"images": preprocess(load_rgb(path), self.imgsz)}

    def rewind(self):
        self.i = 0
