"""Checks a YOLO-format detection dataset before training, so that each bad input is one clear error.

ultralytics itself skips a corrupt label or image with a warning and trains on the rest; a training run
that silently drops data is worse than one that refuses to start, so model.train calls check_dataset
first. The same rules are applied by `stardetr eval` (daemon/eval.go).

Dataset YAML (ultralytics' detect format): ``path`` (default: the YAML's folder; relative: to the
YAML's folder), ``train`` and ``val`` (folders of images, relative to ``path``), ``names`` (a list, or a
mapping id -> name with ids 0..nc-1). Labels: for images/.../x.jpg, labels/.../x.txt (one object per
line: class cx cy w h, normalised to 0..1); a missing label file means an image without objects.
"""
from pathlib import Path

import yaml

IMAGE_SUFFIXES = {".bmp", ".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".dng", ".mpo", ".pfm"}


class DatasetError(ValueError):
    """A dataset problem; the message names the file (and line) and the fix."""


def load_data_yaml(path):
    """Reads a dataset YAML; returns dict(path, train, val, names: {id: name}, nc) with absolute folders."""
    p = Path(path)
    if not p.is_file():
        raise DatasetError(f"dataset {path}: no such file; give the data.yaml of a YOLO-format dataset "
                           "(python -m model.data.synth --out DIR writes one)")
    try:
        d = yaml.safe_load(p.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise DatasetError(f"dataset {path}: not readable as YAML ({e})") from e
    if not isinstance(d, dict):
        raise DatasetError(f"dataset {path}: expected a mapping with train, val and names")
    root = Path(d.get("path") or ".")
    if not root.is_absolute():
        root = (p.parent / root).resolve()
    names = d.get("names")
    if isinstance(names, list):
        names = dict(enumerate(names))
    if not isinstance(names, dict) or not names or sorted(names) != list(range(len(names))):
        raise DatasetError(f"dataset {path}: 'names' must list the class names (ids 0..nc-1), got {names!r}")
    out = {"path": root, "names": {int(k): str(v) for k, v in names.items()}, "nc": len(names)}
    for split in ("train", "val"):
        v = d.get(split)
        if not isinstance(v, str) or not v:
            raise DatasetError(f"dataset {path}: '{split}' must name a folder of images (relative to {root})")
        folder = Path(v) if Path(v).is_absolute() else root / v
        if not folder.is_dir():
            raise DatasetError(f"dataset {path}: {split} folder {folder} does not exist (key '{split}', "
                               f"relative to path {root})")
        out[split] = folder
    return out


def label_path(image):
    """ultralytics' img2label_paths: the last /images/ in the path becomes /labels/, the suffix .txt."""
    s = str(image)
    i = s.rfind("/images/")
    if i < 0:
        return Path(s).with_suffix(".txt")
    return Path(s[:i] + "/labels/" + s[i + len("/images/"):]).with_suffix(".txt")


def images_in(folder):
    return sorted(f for f in Path(folder).rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)


def check_labels(path, nc):
    """Returns the labels of one file as a list of (cls, cx, cy, w, h); raises DatasetError at file:line."""
    rows = []
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise DatasetError(f"{path}: cannot read the label file ({e.strerror})") from e
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        where = f"{path}:{n}"
        if len(parts) != 5:
            raise DatasetError(f"{where}: expected 5 values 'class cx cy w h', got {len(parts)}")
        try:
            cls = int(parts[0])
            box = [float(v) for v in parts[1:]]
        except ValueError as e:
            raise DatasetError(f"{where}: not numbers ({line.strip()!r}); expected 'class cx cy w h'") from e
        if cls < 0 or cls >= nc:
            raise DatasetError(f"{where}: class {cls} is outside 0..{nc - 1} (the dataset YAML names {nc} classes)")
        if any(not 0.0 <= v <= 1.0 for v in box):
            raise DatasetError(f"{where}: box {parts[1:]} has coordinates outside 0..1; YOLO labels are "
                               "normalised by the image width and height")
        rows.append((cls, *box))
    return rows


def check_image(path):
    from PIL import Image  # Debian's python3-pil, an ultralytics dependency

    try:
        with Image.open(path) as im:
            im.verify()
    except Exception as e:  # noqa: BLE001 - PIL raises many types for a bad file
        raise DatasetError(f"{path}: unreadable image ({type(e).__name__}: {e}); remove it or replace it") from e


def check_dataset(data_yaml):
    """Checks the YAML, every image and every label of train and val; returns load_data_yaml's dict plus counts."""
    d = load_data_yaml(data_yaml)
    for split in ("train", "val"):
        images = images_in(d[split])
        if not images:
            raise DatasetError(f"dataset {data_yaml}: {split} folder {d[split]} holds no images "
                               f"({', '.join(sorted(IMAGE_SUFFIXES))})")
        boxes = 0
        for img in images:
            check_image(img)
            lp = label_path(img)
            if lp.exists():
                boxes += len(check_labels(lp, d["nc"]))
        d[f"{split}_images"], d[f"{split}_boxes"] = len(images), boxes
    return d
