"""Training, export, fork checkpoints and eval parity of the seed model with the real, pinned ultralytics.

Run by `make test-train` with build/venv/bin/python (scripts/setup installs ultralytics there) after
`make build plugin` (the tests compare against bin/stardetr with the CARAFE plugin). One training run is
shared by the tests (setUpModule): 16 synthetic images at 128, batch 8, so an epoch is two iterations;
it pauses after epoch 1 and is resumed for epoch 2, then ultralytics exports it.
"""
import contextlib
import io
import json
import os
import pickle
import random
import shutil
import subprocess
import sys
import tempfile
import types
import unittest
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[3]
BIN = ROOT / "bin" / "stardetr"
VENV_PY = sys.executable
SYS_PY = "/usr/bin/python3"  # Debian's: torch, no ultralytics
IMGSZ = 128
RUN = {}


def env():
    e = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"), OMP_WAIT_POLICY="PASSIVE",
             PYTHONPATH=str(ROOT), YOLO_OFFLINE="true", YOLO_AUTOINSTALL="false")
    e.setdefault("STARDETR_ONNXRUNTIME", str(next((ROOT / "third_party" / "onnxruntime").glob("*/x64/libonnxruntime.so.1"))))
    e.setdefault("STARDETR_PLUGIN", str(ROOT / "build" / "amd64" / "libstardetr_carafe.so"))
    return e


def run(args, python=None, check=True):
    cmd = ([python or VENV_PY, "-m"] if not str(args[0]).startswith("/") else []) + [str(a) for a in args]
    p = subprocess.run(cmd, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=600)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {p.returncode}\nstdout: {p.stdout[-2000:]}\nstderr: {p.stderr[-4000:]}")
    return p


def infer(onnx, image, conf=0.25):
    out = run([BIN, "infer", "--model", onnx, "--image", image, "--conf", conf, "--max-det", 300, "--json"]).stdout
    return json.loads(out)


def setUpModule():
    if not BIN.exists():
        raise RuntimeError(f"{BIN} not found: run `make build plugin` first")
    tmp = Path(tempfile.mkdtemp(prefix="stardetr-train-"))
    RUN["tmp"] = tmp
    data = Path(run(["model.data.synth", "--out", tmp / "data", "--n", 16, "--val", 4, "--imgsz", IMGSZ]).stdout.strip())
    RUN["data"] = data
    common = ["model.train", "--data", data, "--epochs", 2, "--imgsz", IMGSZ, "--batch", 8, "--device", "cpu",
              "--out", tmp / "runs", "--name", "seed"]
    RUN["first"] = run(common + ["--pause-after", 1])
    last = tmp / "runs" / "seed" / "weights" / "last.pt"
    RUN["paused_epoch"] = torch.load(last, map_location="cpu")["epoch"] if last.exists() else None
    RUN["second"] = run(common + ["--resume"])
    RUN["onnx"] = Path(RUN["second"].stdout.strip().splitlines()[-1])
    RUN["best"] = tmp / "runs" / "seed" / "weights" / "best.pt"
    # Two images of another size than the model's (640x360 -> stretched to 128, as ultralytics does).
    vid = tmp / "frames"
    run(["model.data.synth", "--out", vid, "--n", 2, "--val", 2, "--imgsz", 200])
    RUN["images"] = sorted((vid / "images" / "val").glob("*.jpg"))


def tearDownModule():
    if "tmp" in RUN:
        shutil.rmtree(RUN["tmp"], ignore_errors=True)


class TrainTest(unittest.TestCase):
    def test_two_iterations_per_epoch_progress_checkpoint_and_resume(self):
        first = RUN["first"].stderr
        self.assertIn("train: epoch 1/2 iter 1/2", first)
        self.assertIn("train: epoch 1/2 iter 2/2", first)
        self.assertIn("ETA", first)
        self.assertIn("paused after epoch 1", first)
        self.assertEqual(RUN["paused_epoch"], 0, "the paused run's last.pt should hold epoch 0 with its optimizer")
        second = RUN["second"].stderr
        self.assertIn("Resuming training", second)
        self.assertIn("train: epoch 2/2 iter 2/2", second)
        self.assertNotIn("train: epoch 1/2", second)
        self.assertTrue(RUN["best"].exists())
        for line in (first + second).splitlines():
            if "train: epoch" in line:
                for part in line.split("train: epoch", 1)[1].split():
                    if "_loss=" in part:
                        self.assertTrue(np.isfinite(float(part.split("=")[1])), line)

    def test_gradients_reach_every_freqfusion_encoder(self):
        import model.ultralytics as mu
        from model.reference.modules import FreqFusion
        from ultralytics.nn.tasks import RTDETRDetectionModel

        torch.manual_seed(0)
        m = RTDETRDetectionModel(mu.SEED_YAML, nc=4, verbose=False).train()
        m.nc = 4  # the trainer sets it (set_model_attributes); the loss reads it
        imgs = torch.rand(2, 3, IMGSZ, IMGSZ)
        batch = {"img": imgs, "batch_idx": torch.tensor([0.0, 0.0, 1.0]), "cls": torch.tensor([[0.0], [2.0], [1.0]]),
                 "bboxes": torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.7, 0.6, 0.3, 0.2], [0.5, 0.5, 0.4, 0.4]])}
        loss, _ = m.loss(batch)
        self.assertTrue(torch.isfinite(loss).all())
        loss.sum().backward()
        ffs = [mod for mod in m.modules() if isinstance(mod, FreqFusion)]
        self.assertEqual(len(ffs), 2)
        for i, ff in enumerate(ffs):
            for name in ("content_encoder", "content_encoder2", "hr_channel_compressor", "lr_channel_compressor"):
                g = getattr(ff, name).weight.grad
                self.assertIsNotNone(g, f"FreqFusion {i} {name}: no gradient")
                self.assertTrue(torch.isfinite(g).all(), f"FreqFusion {i} {name}: gradient not finite")
                self.assertGreater(g.abs().sum().item(), 0, f"FreqFusion {i} {name}: zero gradient")

    def test_info_params_and_state_dict_match_reference(self):
        import model.ultralytics as mu
        from model.reference import seed
        from ultralytics import RTDETR

        y = RTDETR(mu.SEED_YAML)
        with contextlib.redirect_stdout(io.StringIO()):
            _, params, _, _ = y.model.info(verbose=True)
        self.assertEqual(params, 18716999)
        ref = seed.build(1).eval()
        sd = y.model.state_dict()
        self.assertEqual(list(sd), list(ref.state_dict()))
        ref.load_state_dict(sd)
        x = seed.synthetic_images(1, 160, 160)
        with torch.no_grad():
            np.testing.assert_allclose(y.model.eval()(x)[0].numpy(), ref(x).numpy(), atol=1e-5)


def match_sets(want, got, score_tol=2e-3, box_tol=1.5):
    """Fraction of want's detections with a distinct partner in got: same class, score and box within tolerance."""
    used = [False] * len(got)
    hit = 0
    for w in want:
        for j, g in enumerate(got):
            if used[j] or g["class_id"] != w["class_id"] or abs(g["score"] - w["score"]) > score_tol:
                continue
            if max(abs(a - b) for a, b in zip(g["box"], w["box"])) > box_tol:
                continue
            used[j] = True
            hit += 1
            break
    return hit / max(1, len(want))


def ultralytics_predict(weights, images, conf=0.25):
    code = (
        "import json,sys; import model.ultralytics; from ultralytics import RTDETR\n"
        "m=RTDETR(sys.argv[1]); out=[]\n"
        "for r in m.predict(sys.argv[3:], imgsz=int(sys.argv[2]), conf=%r, verbose=False, device='cpu'):\n"
        "  b=r.boxes; out.append([{'class_id':int(c),'score':float(s),'box':[float(v) for v in x]} for c,s,x in zip(b.cls,b.conf,b.xyxy)])\n"
        "print(json.dumps(out))\n" % conf)
    p = run([VENV_PY, "-c", code, weights, IMGSZ, *images])
    return json.loads(p.stdout.strip().splitlines()[-1])


class ExportTest(unittest.TestCase):
    def test_stardetr_infer_equals_ultralytics_predict(self):
        want = ultralytics_predict(RUN["best"], RUN["images"])
        for img, w in zip(RUN["images"], want):
            got = infer(RUN["onnx"], img)
            self.assertGreater(len(w), 0, f"{img}: ultralytics predicts nothing above 0.25; the test needs detections")
            self.assertGreaterEqual(match_sets(w, got), 0.99, f"{img}: ultralytics {w[:3]}... stardetr {got[:3]}...")
            self.assertGreaterEqual(match_sets(got, w), 0.99)

    def test_onnx_has_carafe_nodes_and_names(self):
        import onnx

        m = onnx.load(str(RUN["onnx"]), load_external_data=False)
        self.assertEqual(sum(n.op_type == "MMCVCARAFE" for n in m.graph.node), 10)
        meta = {p.key: p.value for p in m.metadata_props}
        self.assertEqual(meta["names"], "{0: 'red_disc', 1: 'blue_disc', 2: 'red_box', 3: 'blue_box'}")
        self.assertEqual({o.domain: o.version for o in m.opset_import}.get(""), 17)


# The seed fork's module names for this project's module classes (the rest are stock ultralytics names,
# which the fork shares).
FORK_NAMES = {"StarNet": ("ultralytics.nn.AddModules.starnet", "StarNet"),
              "StarBlock": ("ultralytics.nn.AddModules.starnet", "Block"),
              "ConvBN": ("ultralytics.nn.AddModules.starnet", "ConvBN"),
              "FreqFusion": ("ultralytics.nn.AddModules.FreqFusion", "FreqFusion")}


def write_fork_checkpoint(src_pt, out):
    """Pickles src_pt's model as the seed fork saves it: classes under ultralytics.nn.AddModules.*, fp16, 'ema'."""
    ckpt = torch.load(src_pt, map_location="cpu")
    model = ckpt["model"].half()
    fakes, made = {}, {}
    for mod in model.modules():
        cls = type(mod)
        if cls.__name__ in FORK_NAMES and cls.__module__.startswith("model."):
            modname, name = FORK_NAMES[cls.__name__]
            if cls not in made:
                made[cls] = type(name, (cls,), {"__module__": modname, "__qualname__": name})
                fakes.setdefault(modname, types.ModuleType(modname))
                setattr(fakes[modname], name, made[cls])
            mod.__class__ = made[cls]
    saved = {k: sys.modules.get(k) for k in fakes}
    sys.modules.update(fakes)
    try:
        fork = {"date": "2025-01-01", "version": "8.2.50", "epoch": -1, "best_fitness": np.float64(0.5),
                "model": None, "ema": model, "updates": 10, "optimizer": None,
                "train_args": {"model": "rtdetr-StarNet-FreqFusion.yaml", "save_dir": Path("/runs/train")}}
        torch.save(fork, out)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    raw = Path(out).read_bytes()
    return raw


class ForkCheckpointTest(unittest.TestCase):
    def test_fork_checkpoint_converts_and_reproduces(self):
        tmp = RUN["tmp"]
        fork = tmp / "fork_best.pt"
        raw = write_fork_checkpoint(RUN["best"], fork)
        self.assertIn(b"ultralytics.nn.AddModules.FreqFusion", raw)
        self.assertIn(b"ultralytics.nn.AddModules.starnet", raw)
        self.assertNotIn(b"model.reference", raw)
        out = tmp / "fork.onnx"
        p = run(["model.ultralytics.export", "--weights", fork, "--imgsz", IMGSZ, "--out", out])
        self.assertEqual(p.stdout.strip(), str(out))
        self.assertIn("torch.float16", p.stderr)
        # Without ultralytics and without the fork: Debian's python exports through model/reference.
        ref = tmp / "fork-ref.onnx"
        p = run(["model.reference.export", "--weights", fork, "--imgsz", IMGSZ, "--nc", 4, "--out", ref], python=SYS_PY)
        for img in RUN["images"]:
            want = infer(RUN["onnx"], img)
            self.assertEqual(infer(out, img), want, f"{img}: the fork checkpoint's export differs from the original's")
            got = infer(ref, img)
            self.assertEqual([d["label"] for d in got][:5], [d["label"] for d in want][:5])
            self.assertGreaterEqual(match_sets(want, got), 0.99)

    def test_wrong_architecture_lists_keys(self):
        from model.reference import seed

        bad = RUN["tmp"] / "tiny.pt"
        sd = seed.build(nc=2, arch="tiny").state_dict()
        sd["model.23.weight"] = torch.zeros(2)
        torch.save({"model": sd}, bad)
        p = run(["model.ultralytics.export", "--weights", bad, "--imgsz", IMGSZ, "--out", RUN["tmp"] / "x.onnx"],
                check=False)
        self.assertEqual(p.returncode, 2, p.stderr)
        err = p.stderr.strip().splitlines()
        self.assertEqual(len(err), 1, p.stderr)
        self.assertIn(f"checkpoint {bad} is not the model rtdetr-StarNet-FreqFusion with nc=2", err[0])
        self.assertIn("wrong shapes: model.0.stem.0.conv.weight [16, 3, 3, 3] (model [32, 3, 3, 3])", err[0])
        self.assertIn("unexpected keys:", err[0])
        self.assertIn("missing keys:", err[0])

    def test_pickle_with_foreign_global_runs_nothing(self):
        marker = RUN["tmp"] / "pwned"

        class Evil:
            def __reduce__(self):
                return (os.system, (f"touch {marker}",))

        bad = RUN["tmp"] / "evil.pt"
        torch.save({"model": Evil(), "ema": None}, bad)
        p = run(["model.ultralytics.export", "--weights", bad, "--imgsz", IMGSZ, "--out", RUN["tmp"] / "x.onnx"],
                check=False)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertFalse(marker.exists(), "the pickle's os.system ran")
        err = p.stderr.strip().splitlines()
        self.assertEqual(len(err), 1, p.stderr)
        self.assertIn("posix.system", err[0])


    def test_stock_checkpoints_read_as_torch_load_reads_them(self):
        # The reader builds tensors itself (issue #23): ultralytics' own best.pt and last.pt read back the
        # same tensors and names as torch.load with ultralytics installed.
        from model.reference import checkpoint

        for name in ("best.pt", "last.pt"):
            path = RUN["best"].parent / name
            with self.subTest(checkpoint=name):
                ckpt = torch.load(path, map_location="cpu")
                model = next(ckpt[k] for k in ("ema", "model") if ckpt.get(k) is not None)
                sd, names, info = checkpoint.read(path)
                want = model.state_dict()
                self.assertEqual(list(sd), list(want))
                for k, v in want.items():
                    self.assertTrue(v.dtype == sd[k].dtype and torch.equal(v, sd[k]), k)
                self.assertEqual(names, model.names)
                self.assertEqual(info["class"], f"{type(model).__module__}.{type(model).__name__}")

    def test_checkpoint_that_calls_through_a_pointer_runs_nothing(self):
        # Issue #23 finding 1 through ultralytics' exporter and the trainer: torch 1.13's
        # UntypedStorage(16, allocator=0x414141414140) called through that address (exit -11).
        from model.reference.tests import craft

        bad = RUN["tmp"] / "allocator.pt"
        bad.write_bytes(craft.allocator_pointer())
        for args in (["model.ultralytics.export", "--weights", bad, "--imgsz", IMGSZ, "--out", RUN["tmp"] / "x.onnx"],
                     ["model.train", "--data", RUN["data"], "--weights", bad, "--epochs", 1, "--imgsz", IMGSZ,
                      "--out", RUN["tmp"] / "runs", "--name", "bad", "--no-export"]):
            with self.subTest(cli=args[0]):
                p = run(args, check=False)
                self.assertEqual(p.returncode, 2, p.stderr)
                err = [line for line in p.stderr.strip().splitlines() if not line.startswith("train: dataset")]
                self.assertEqual(len(err), 1, p.stderr)
                self.assertIn(f"checkpoint {bad}: holds no model or state_dict", err[0])
                self.assertIn("'w' is a torch.UntypedStorage object", err[0])


def write_eval_set(out, weights):
    """A val set whose labels are the trained model's own top detections, moved and resized a little, plus
    objects it misses: the mAP is then clearly above zero (a two-iteration model's mAP on real labels is ~0),
    and different at IoU 0.5 and 0.95. The set tests that stardetr and ultralytics score alike."""
    run(["model.data.synth", "--out", out, "--n", 1, "--val", 12, "--imgsz", IMGSZ, "--seed", 5])
    images = sorted((out / "images" / "val").glob("*.jpg"))
    preds = ultralytics_predict(weights, images, conf=0.0)
    rng = random.Random(3)
    for img, dets in zip(images, preds):
        lines = []
        dets = sorted(dets, key=lambda d: -d["score"])  # ultralytics' predictor keeps query order
        for d in dets[:4]:
            x1, y1, x2, y2 = (v / IMGSZ for v in d["box"])
            w, h = x2 - x1, y2 - y1
            dx, dy, sw, sh = (rng.uniform(-0.12, 0.12) for _ in range(4))
            cx, cy = (x1 + x2) / 2 + dx * w, (y1 + y2) / 2 + dy * h
            w, h = w * (1 + sw), h * (1 + sh)
            cx, cy = min(max(cx, w / 2), 1 - w / 2), min(max(cy, h / 2), 1 - h / 2)
            lines.append(f"{d['class_id']} {cx:.6f} {cy:.6f} {min(w, 1):.6f} {min(h, 1):.6f}")
        if rng.random() < 0.5 and dets:
            lines.append(f"{dets[0]['class_id']} 0.2 0.8 0.1 0.1")  # an object nothing detects well
        (out / "labels" / "val" / (img.stem + ".txt")).write_text("\n".join(lines) + "\n")
    return out / "data.yaml"


class EvalParityTest(unittest.TestCase):
    def test_stardetr_eval_matches_ultralytics_val(self):
        data = write_eval_set(RUN["tmp"] / "evalset", RUN["best"])
        code = ("import json,sys; import model.ultralytics; from ultralytics import RTDETR\n"
                "m=RTDETR(sys.argv[1]).val(data=sys.argv[2], imgsz=int(sys.argv[3]), batch=4, plots=False, device='cpu', verbose=False)\n"
                "b=m.box; print(json.dumps({'mean':[float(x) for x in b.mean_results()], 'classes':{str(int(c)):[float(x) for x in b.class_result(i)] for i,c in enumerate(b.ap_class_index)}}))\n")
        want = json.loads(run([VENV_PY, "-c", code, RUN["best"], data, IMGSZ]).stdout.strip().splitlines()[-1])
        got = json.loads(run([BIN, "eval", "--model", RUN["onnx"], "--data", data, "--json"]).stdout)
        print(f"\neval parity: stardetr mAP50 {got['map50']:.4f} mAP50-95 {got['map50_95']:.4f}; "
              f"ultralytics {want['mean'][2]:.4f} {want['mean'][3]:.4f}", file=sys.stderr)
        self.assertGreater(want["mean"][2], 0.2, "the eval set should give a clearly non-zero mAP50")
        self.assertLessEqual(abs(got["map50"] - want["mean"][2]), 0.005)
        self.assertLessEqual(abs(got["map50_95"] - want["mean"][3]), 0.005)
        self.assertEqual(sorted(str(c["class_id"]) for c in got["classes"]), sorted(want["classes"]))
        for c in got["classes"]:
            w = want["classes"][str(c["class_id"])]
            self.assertLessEqual(abs(c["map50"] - w[2]), 0.01, c)
            self.assertLessEqual(abs(c["map50_95"] - w[3]), 0.01, c)


class BadInputTest(unittest.TestCase):
    """Each bad input: one line on stderr naming the file (and line), exit != 0, for model.train and stardetr eval."""

    def dataset(self, name):
        d = RUN["tmp"] / "bad" / name
        shutil.copytree(RUN["data"].parent, d, ignore=shutil.ignore_patterns("*.cache"))
        text = RUN["data"].read_text().replace(str(RUN["data"].parent), str(d))
        (d / "data.yaml").write_text(text)
        return d

    def expect(self, data, *fragments):
        p = run(["model.train", "--data", data, "--epochs", 1, "--imgsz", IMGSZ, "--out", RUN["tmp"] / "bad-runs"], check=False)
        self.assertEqual(p.returncode, 2, p.stderr)
        lines = p.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, p.stderr)
        for f in fragments:
            self.assertIn(str(f), lines[0])
        if "unreadable image" in fragments:
            return  # stardetr eval reads images only after loading the model: it reports them there
        q = run([BIN, "eval", "--model", RUN["onnx"], "--data", data], check=False)
        self.assertEqual(q.returncode, 1, q.stderr)
        lines = q.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, q.stderr)
        for f in fragments[:2]:
            self.assertIn(str(f), lines[0])

    def test_missing_yaml(self):
        self.expect(RUN["tmp"] / "nope.yaml", RUN["tmp"] / "nope.yaml")

    def test_yaml_pointing_nowhere(self):
        d = self.dataset("nowhere")
        (d / "data.yaml").write_text((d / "data.yaml").read_text().replace("val: images/val", "val: images/gone"))
        self.expect(d / "data.yaml", d / "images" / "gone", "does not exist")

    def test_class_out_of_range(self):
        d = self.dataset("cls")
        label = d / "labels" / "val" / "val_00001.txt"
        label.write_text("0 0.5 0.5 0.1 0.1\n7 0.5 0.5 0.2 0.2\n")
        self.expect(d / "data.yaml", f"{label}:2", "class 7 is outside 0..3")

    def test_coordinates_out_of_range(self):
        d = self.dataset("coords")
        label = d / "labels" / "val" / "val_00000.txt"
        label.write_text("1 1.5 0.5 0.1 0.1\n")
        self.expect(d / "data.yaml", f"{label}:1", "outside 0..1")

    def test_unreadable_image(self):
        d = self.dataset("image")
        img = d / "images" / "train" / "train_00003.jpg"
        img.write_bytes(b"not a jpeg")
        self.expect(d / "data.yaml", img, "unreadable image")


if __name__ == "__main__":
    unittest.main()
