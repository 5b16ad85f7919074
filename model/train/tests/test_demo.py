"""The demo model's path without training: the synthetic data's styles, model.train's --model/--hyp
checks, and the export from weight parts (`make models`) with its bad inputs.

Run by `make test-train` with build/venv/bin/python. Nothing here trains: the checkpoints are the
demo YAML's model with random weights, saved as stock ultralytics checkpoints.
"""
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from model.train.tests.test_train import env  # noqa: E402

TMP = {}


def run(args, check=True):
    p = subprocess.run([sys.executable, "-m"] + [str(a) for a in args], cwd=ROOT, env=env(),
                       capture_output=True, text=True, timeout=300)
    if check and p.returncode != 0:
        raise AssertionError(f"{args} exited {p.returncode}\nstdout: {p.stdout[-2000:]}\nstderr: {p.stderr[-4000:]}")
    return p


def demo_checkpoint(out, nc):
    """The demo YAML's model with random weights and nc classes, as a stock ultralytics checkpoint."""
    code = ("import sys, torch; import model.ultralytics as u\n"
            "from ultralytics.nn.tasks import RTDETRDetectionModel, yaml_model_load\n"
            "from model.ultralytics.checkpoint import save_ultralytics\n"
            "nc = int(sys.argv[2]); torch.manual_seed(0)\n"
            "cfg = yaml_model_load(u.DEMO_YAML); cfg['nc'], cfg['scale'] = nc, 'l'\n"
            "m = RTDETRDetectionModel(cfg, nc=nc, verbose=False); m.names = {i: f'c{i}' for i in range(nc)}\n"
            "save_ultralytics(m, sys.argv[1], 160)\n")
    p = subprocess.run([sys.executable, "-c", code, str(out), str(nc)], cwd=ROOT, env=env(), capture_output=True,
                       text=True, timeout=300)
    if p.returncode != 0:
        raise AssertionError(p.stderr[-3000:])
    return out


def setUpModule():
    TMP["dir"] = Path(tempfile.mkdtemp(prefix="stardetr-demo-"))


def tearDownModule():
    shutil.rmtree(TMP["dir"], ignore_errors=True)


def tree_digest(folder):
    """sha256 over the images and labels (data.yaml names the folder, which differs)."""
    h = hashlib.sha256()
    for f in sorted(Path(folder).rglob("*")):
        if f.is_file() and f.suffix in (".jpg", ".txt"):
            h.update(str(f.relative_to(folder)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()


class SynthStyleTest(unittest.TestCase):
    def synth(self, name, *extra):
        out = TMP["dir"] / name
        return Path(run(["model.data.synth", "--out", out, "--n", 6, "--val", 6, "--imgsz", 96, *extra]).stdout.strip())

    def test_deterministic_per_seed_and_style(self):
        for style in ("default", "alt"):
            a = self.synth(f"{style}-a", "--style", style, "--seed", 3)
            b = self.synth(f"{style}-b", "--style", style, "--seed", 3)
            self.assertEqual(tree_digest(a.parent), tree_digest(b.parent), style)
        c = self.synth("default-c", "--seed", 4)
        self.assertNotEqual(tree_digest(c.parent), tree_digest(TMP["dir"] / "default-a"))

    def test_styles_draw_differently(self):
        d = self.synth("d", "--seed", 4)
        a = self.synth("a", "--style", "alt", "--seed", 4)
        img_d = cv2.imread(str(d.parent / "images" / "val" / "val_00000.jpg"))
        img_a = cv2.imread(str(a.parent / "images" / "val" / "val_00000.jpg"))
        self.assertEqual(img_d.shape, img_a.shape)
        self.assertGreater(float(np.abs(img_d.astype(int) - img_a.astype(int)).mean()), 10)
        self.assertIn("style alt", a.read_text())
        # Every label is a known class with a box inside the image, in both styles.
        for data in (d, a):
            for f in (data.parent / "labels").rglob("*.txt"):
                for line in f.read_text().splitlines():
                    c, *box = line.split()
                    self.assertIn(int(c), range(4), f)
                    cx, cy, w, h = map(float, box)
                    self.assertTrue(0 <= cx - w / 2 + 1e-6 and cx + w / 2 <= 1 + 1e-6 and w > 0, line)
                    self.assertTrue(0 <= cy - h / 2 + 1e-6 and cy + h / 2 <= 1 + 1e-6 and h > 0, line)

    def test_clip_frames_labels_lie_on_their_shapes(self):
        """--clips: each label's box, on the stretched frame, holds its class's colour at its centre."""
        out = TMP["dir"] / "clips"
        p = run(["model.data.synth", "--out", out, "--clips", 1, "--clip-every", 50, "--imgsz", 160, "--seed", 5])
        self.assertIn("6 clip frames added", p.stdout)
        frames = sorted((out / "images" / "train").glob("clip5_*.jpg"))
        self.assertEqual(len(frames), 6)
        checked = 0
        for f in frames:
            img = cv2.imread(str(f))
            self.assertEqual(img.shape, (160, 160, 3))
            for line in (out / "labels" / "train" / f"{f.stem}.txt").read_text().splitlines():
                c, cx, cy, w, h = line.split()
                b, g, r = (int(v) for v in img[int(float(cy) * 160), int(float(cx) * 160)])
                red = int(c) in (0, 2)  # red_disc, red_box
                self.assertGreater(r - b if red else b - r, 40, f"{f.name}: {line}: BGR {(b, g, r)} at the centre")
                checked += 1
        self.assertGreater(checked, 20)

    def test_still_clip_is_still_between_visits(self):
        """--video --still: frames without a shape are the same picture (noise only); a ground-truth box holds
        its class's colour at its centre; the visits are in the ground truth, one track each."""
        out = TMP["dir"] / "still"
        run(["model.data.synth", "--out", out, "--video", "--still", "--frames", 240, "--seed", 3])
        rows = [line.split(",") for line in (out / "gt.txt").read_text().split()]
        by_frame = {}
        for f, tid, x, y, w, h, _, c, vis in rows:
            by_frame.setdefault(int(f), []).append((int(tid), int(c), float(x), float(y), float(w), float(h), float(vis)))
        self.assertEqual(sorted({r[0] for rs in by_frame.values() for r in rs}), [1, 2, 3, 4])
        cap = cv2.VideoCapture(str(out / "clip.mp4"))
        frames = []
        while True:
            ok, img = cap.read()
            if not ok:
                break
            frames.append(img.astype(np.int16))
        self.assertEqual(len(frames), 240)
        empty = [i for i in range(240) if i + 1 not in by_frame]
        self.assertGreater(len(empty), 240 // 3)
        for i in empty[1:]:
            diff = np.abs(frames[i] - frames[empty[0]])
            self.assertLess(float(diff.mean()), 4.0, f"frame {i + 1} differs from frame {empty[0] + 1} without a shape")
        checked = 0
        for f, objs in by_frame.items():
            for tid, c, x, y, w, h, vis in objs:
                if vis < 0.5:
                    continue
                b, g, r = (int(v) for v in frames[f - 1][int(y + h / 2), int(x + w / 2)])
                self.assertGreater(r - b if c in (0, 2) else b - r, 40, f"frame {f} track {tid}: BGR {(b, g, r)}")
                checked += 1
        self.assertGreater(checked, 20)

    def test_negatives_have_empty_labels(self):
        out = TMP["dir"] / "neg"
        p = run(["model.data.synth", "--out", out, "--negatives", 3, "--imgsz", 160, "--seed", 7])
        self.assertIn("3 shape-free pictures added", p.stdout)
        for s in (7, 8, 9):
            img = cv2.imread(str(out / "images" / "train" / f"neg{s}.jpg"))
            self.assertEqual(img.shape, (160, 160, 3))
            self.assertEqual((out / "labels" / "train" / f"neg{s}.txt").read_text(), "")

    def test_bad_style(self):
        p = run(["model.data.synth", "--out", TMP["dir"] / "bad", "--style", "photo"], check=False)
        self.assertEqual(p.returncode, 2)
        self.assertIn("--style: invalid choice: 'photo'", p.stderr)
        self.assertFalse((TMP["dir"] / "bad").exists())


class TrainOptionsTest(unittest.TestCase):
    """--model and --hyp: each bad value is one line on stderr, exit 2, before anything trains."""

    @classmethod
    def setUpClass(cls):
        cls.data = Path(run(["model.data.synth", "--out", TMP["dir"] / "train-data", "--n", 2, "--val", 2,
                             "--imgsz", 64]).stdout.strip())

    def expect(self, extra, *fragments):
        runs = TMP["dir"] / "runs"
        p = run(["model.train", "--data", self.data, "--epochs", 1, "--imgsz", 64, "--out", runs, *extra], check=False)
        self.assertEqual(p.returncode, 2, p.stderr)
        lines = p.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, p.stderr)
        for f in fragments:
            self.assertIn(str(f), lines[0])
        self.assertFalse((runs / "seed").exists(), "a run was started")

    def test_demo_yaml_nc_differs_from_data(self):
        y = TMP["dir"] / "demo-nc2.yaml"
        y.write_text((ROOT / "model/ultralytics/rtdetr-StarNet-FreqFusion-demo.yaml").read_text()
                     .replace("nc: 4 ", "nc: 2 "))
        self.expect(["--model", y], y, "nc: 2", self.data, "4 classes")

    def test_unknown_hyp(self):
        self.expect(["--hyp", "lr00=0.1"], "lr00", "not an ultralytics training argument")

    def test_hyp_without_value(self):
        self.expect(["--hyp", "lr0"], "expected KEY=VALUE")

    def test_hyp_with_own_option(self):
        self.expect(["--hyp", "epochs=3"], "--epochs")


class ExportFromPartsTest(unittest.TestCase):
    """model.ultralytics.export --parts (what `make models` runs): the bad inputs, one line each, exit 2."""

    @classmethod
    def setUpClass(cls):
        cls.parts = TMP["dir"] / "parts"
        pt = demo_checkpoint(TMP["dir"] / "demo-random.pt", 4)
        run(["model.ultralytics.weights", "split", "--weights", pt, "--out", cls.parts, "--part-mib", 1])
        cls.manifest = json.loads((cls.parts / "manifest.json").read_text())

    def copy(self, name):
        d = TMP["dir"] / name
        shutil.rmtree(d, ignore_errors=True)
        shutil.copytree(self.parts, d)
        return d

    def expect(self, args, *fragments):
        out = TMP["dir"] / "out.onnx"
        p = run(["model.ultralytics.export", *args, "--imgsz", 160, "--out", out], check=False)
        self.assertEqual(p.returncode, 2, p.stderr)
        lines = p.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, p.stderr)
        for f in fragments:
            self.assertIn(str(f), lines[0])
        self.assertFalse(out.exists())

    def test_parts_are_small(self):
        self.assertGreater(len(self.manifest["parts"]), 1)
        for p in self.manifest["parts"]:
            self.assertLessEqual((self.parts / p["file"]).stat().st_size, 1 << 20)

    def test_missing_part(self):
        d = self.copy("missing")
        victim = d / self.manifest["parts"][1]["file"]
        victim.unlink()
        self.expect(["--parts", d, "--model", "demo"], victim, "missing part")

    def test_altered_part(self):
        d = self.copy("altered")
        victim = d / self.manifest["parts"][0]["file"]
        data = bytearray(victim.read_bytes())
        data[1000] ^= 0xFF
        victim.write_bytes(bytes(data))
        self.expect(["--parts", d, "--model", "demo"], victim, "checksum mismatch",
                    self.manifest["parts"][0]["sha256"][:16])

    def test_demo_yaml_nc_differs_from_weights(self):
        d = TMP["dir"] / "parts-nc2"
        run(["model.ultralytics.weights", "split", "--weights", demo_checkpoint(TMP["dir"] / "nc2.pt", 2), "--out", d])
        self.expect(["--parts", d, "--model", "demo"], "has 2 classes", "rtdetr-StarNet-FreqFusion-demo.yaml has nc: 4")

    def test_missing_manifest_without_fallback(self):
        d = self.copy("nomanifest")
        (d / "manifest.json").unlink()
        self.expect(["--parts", d, "--model", "demo"], d, "no readable manifest.json")


if __name__ == "__main__":
    unittest.main()
