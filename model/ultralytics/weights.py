"""Seed-model weights as fp16 parts small enough to commit and carry: split and join.

    python -m model.ultralytics.weights split --weights best.pt --out model/weights/demo [--part-mib 15]
    python -m model.ultralytics.weights join --parts model/weights/demo --out demo.pt

split reads any seed checkpoint (model.reference.checkpoint: the fork's, ultralytics', a state_dict),
saves {"model": fp16 state_dict, "names": {...}} with torch.save, and cuts the file into parts
DIR/weights.pt.partNN of at most --part-mib MiB, with DIR/manifest.json (sizes, sha256 of each part and
of the whole). join checks the hashes and writes the .pt back; every tool taking --weights reads it.
"""
import argparse
import hashlib
import io
import json
import sys
from pathlib import Path

import torch

from ..reference.checkpoint import CheckpointError, read

MiB = 1 << 20


def split(weights, out_dir, part_mib=15):
    sd, names, info = read(weights)
    blob = io.BytesIO()
    torch.save({"model": {k: v.half() if v.is_floating_point() else v for k, v in sd.items()}, "names": names}, blob)
    data = blob.getvalue()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("weights.pt.part*"):
        old.unlink()
    size = int(part_mib * MiB)
    parts = []
    for i in range(0, len(data), size):
        chunk = data[i:i + size]
        name = f"weights.pt.part{len(parts):02d}"
        (out / name).write_bytes(chunk)
        parts.append({"file": name, "bytes": len(chunk), "sha256": hashlib.sha256(chunk).hexdigest()})
    manifest = {"source": str(weights), "dtype": "float16", "names": names, "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(), "parts": parts}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return out / "manifest.json"


def join(parts_dir, out):
    d = Path(parts_dir)
    try:
        manifest = json.loads((d / "manifest.json").read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"weights {d}: no readable manifest.json ({e}); split them with "
                              "python -m model.ultralytics.weights split") from e
    data = bytearray()
    for p in manifest["parts"]:
        f = d / p["file"]
        try:
            chunk = f.read_bytes()
        except OSError as e:
            raise CheckpointError(f"weights {f}: missing part ({e.strerror})") from e
        got = hashlib.sha256(chunk).hexdigest()
        if got != p["sha256"]:
            raise CheckpointError(f"weights {f}: checksum mismatch: sha256 {got[:16]}..., {d / 'manifest.json'} "
                                  f"says {p['sha256'][:16]}...: the part is damaged or was changed; check it out again")
        data += chunk
    if hashlib.sha256(data).hexdigest() != manifest["sha256"]:
        raise CheckpointError(f"weights {d}: the joined parts do not match the manifest's sha256")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_bytes(bytes(data))
    return Path(out)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m model.ultralytics.weights", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("split")
    s.add_argument("--weights", required=True)
    s.add_argument("--out", required=True, help="folder for the parts and manifest.json")
    s.add_argument("--part-mib", type=float, default=15)
    j = sub.add_parser("join")
    j.add_argument("--parts", required=True, help="folder with manifest.json")
    j.add_argument("--out", required=True, help=".pt file to write")
    a = p.parse_args(argv)
    try:
        print(split(a.weights, a.out, a.part_mib) if a.cmd == "split" else join(a.parts, a.out))
    except CheckpointError as e:
        print(f"model.ultralytics.weights: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
