"""make bench-train: one training step (ultralytics' RTDETRDetectionModel.loss, forward and backward) of the seed
model and of the compact demo variant, with CARAFE's native kernels and with autograd through its PyTorch
definition, side by side in one run, and CARAFE's share of each step from the PyTorch profiler.

    build/venv/bin/python -m model.train.bench_carafe [--rounds 3] [--models seed,demo]

Steps of the two paths alternate (decomposition, native, decomposition, ...), so a change of the machine's load
reaches both; the first round is a warm-up. The time per step is the median of the timed rounds; CARAFE's share
is the time inside CarafeFunction (forward) and CarafeFunctionBackward (backward) over a profiled step, one after
each timed step, the median share of them reported (with that step's CARAFE seconds). The demo variant is model/ultralytics/rtdetr-StarNet-FreqFusion-demo.yaml when the tree has it, else the
narrower variant of issue 20 built here (head width 128, AIFI 256/4 heads, RepC3 n=1, decoder hidden 128,
4 heads, 3 layers, 300 queries, feed-forward 512). Goal (issue 20): CARAFE <= 5% of the step.
"""
import argparse
import contextlib
import copy
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import yaml

import model.ultralytics  # noqa: F401  (registers the seed's modules with ultralytics)
from model.reference import carafe_lib
from model.reference.carafe import decomposition
from model.ultralytics import SEED_YAML
from ultralytics.nn.tasks import RTDETRDetectionModel

DEMO_YAML = Path(SEED_YAML).with_name("rtdetr-StarNet-FreqFusion-demo.yaml")
CARAFE_EVENTS = ("CarafeFunction", "CarafeFunctionBackward")


def narrow_variant():
    """The seed's YAML with issue 20's narrower widths (its 2,800,948-parameter measurement at nc=1)."""
    d = yaml.safe_load(Path(SEED_YAML).read_text())
    head = []
    for row in d["head"]:
        f, n, m, args = copy.deepcopy(row)
        if m == "Conv":
            args[0] = 128
        elif m == "AIFI":
            args = [256, 4]
        elif m == "RepC3":
            n, args = 1, [128]
        elif m == "RTDETRDecoder":
            args = ["nc", 128, 300, 4, 4, 3, 512]  # feed-forward 512: 2,799,016 parameters (the 2,800,948)
        head.append([f, n, m, args])
    d["head"] = head
    return d


def build(cfg, nc):
    with contextlib.redirect_stdout(None):
        net = RTDETRDetectionModel(cfg, nc=nc, verbose=False)
    net.nc = nc  # what ultralytics' trainer sets from the dataset
    return net.train()


def make_batch(batch, imgsz, nc, gen):
    """Images and three boxes per image (normalised xywh), the layout ultralytics' dataloader gives the loss."""
    nb = 3 * batch
    xy = 0.2 + 0.6 * torch.rand(nb, 2, generator=gen)
    wh = 0.05 + 0.3 * torch.rand(nb, 2, generator=gen)
    return {"img": torch.rand(batch, 3, imgsz, imgsz, generator=gen),
            "batch_idx": torch.arange(batch).repeat_interleave(3).float(),
            "cls": torch.randint(0, nc, (nb, 1), generator=gen).float(), "bboxes": torch.cat([xy, wh], 1)}


def step(net, data, native):
    net.zero_grad(set_to_none=True)
    with contextlib.nullcontext() if native else decomposition():
        loss, _ = net.loss(data)
        loss.backward()
    return loss.item()


def profiled(net, data, native):
    """(step seconds, CARAFE seconds, CARAFE calls) of one step under the profiler."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        step(net, data, native)
        wall = time.perf_counter() - t0
    events = {e.key: e for e in prof.key_averages() if e.key in CARAFE_EVENTS}
    carafe = sum(e.cpu_time_total for e in events.values()) / 1e6
    return wall, carafe, events["CarafeFunction"].count if "CarafeFunction" in events else 0


def bench(name, cfg, nc, imgsz, batch, rounds, out):
    net = build(cfg, nc)
    params = sum(p.numel() for p in net.parameters())
    data = make_batch(batch, imgsz, nc, torch.Generator().manual_seed(0))
    times, prof = {False: [], True: []}, {False: [], True: []}
    for r in range(rounds + 1):
        for native in (False, True):
            t0 = time.perf_counter()
            step(net, data, native)
            if r:  # round 0 warms up
                times[native].append(time.perf_counter() - t0)
                prof[native].append(profiled(net, data, native))
    rows = {}
    for native in (False, True):
        # The profiled step with the median CARAFE share (one preempted CARAFE call must not decide it).
        wall, carafe, calls = sorted(prof[native], key=lambda x: x[1] / x[0])[len(prof[native]) // 2]
        rows[native] = (statistics.median(times[native]), wall, carafe, calls)
    for native in (False, True):
        med, wall, carafe, calls = rows[native]
        print(f"{name:<5} {imgsz:>5} {batch:>5} {params:>10,} {'native' if native else 'decomposition':<13} "
              f"{med:>8.2f} {min(times[native]):>8.2f} {carafe:>9.3f} {100 * carafe / wall:>7.1f}% {calls:>5}",
              file=out, flush=True)
    print(f"{name:<5} native / decomposition: step time x{rows[True][0] / rows[False][0]:.2f}, "
          f"CARAFE time x{rows[True][2] / rows[False][2]:.3f}", file=out, flush=True)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m model.train.bench_carafe", description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=3, help="timed steps per path and model, after one warm-up (default 3)")
    p.add_argument("--models", default="seed,demo", help="comma-separated: seed, demo (default both)")
    p.add_argument("--seed-imgsz", type=int, default=256)
    p.add_argument("--seed-batch", type=int, default=4)
    p.add_argument("--demo-imgsz", type=int, default=256)
    p.add_argument("--demo-batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2") or 2))
    a = p.parse_args(argv)
    models = [m.strip() for m in a.models.split(",") if m.strip()]
    bad = [m for m in models if m not in ("seed", "demo")]
    if bad or a.rounds < 1:
        p.error(f"--models {a.models}: seed and/or demo; --rounds >= 1")
    torch.set_num_threads(max(1, a.threads))
    if carafe_lib._load("cpu") is None:
        print(f"bench-train: no CARAFE library at {carafe_lib.library_path()}: run `make plugin`", file=sys.stderr)
        return 1
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    print(f"bench-train: {cpu}, {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"load average {os.getloadavg()[0]:.1f} at start; {carafe_lib.library_path()}", flush=True)
    print(f"{'model':<5} {'imgsz':>5} {'batch':>5} {'params':>10} {'CARAFE':<13} {'median s':>8} {'min s':>8} "
          f"{'CARAFE s':>9} {'share':>8} {'calls':>5}", flush=True)
    for m in models:
        if m == "seed":
            bench("seed", SEED_YAML, 1, a.seed_imgsz, a.seed_batch, a.rounds, sys.stdout)
        else:
            cfg, nc = (str(DEMO_YAML), yaml.safe_load(DEMO_YAML.read_text())["nc"]) if DEMO_YAML.exists() else (narrow_variant(), 1)
            print(f"demo: {DEMO_YAML.name if DEMO_YAML.exists() else 'issue 20 narrower variant (no demo YAML in this tree)'}",
                  flush=True)
            bench("demo", cfg, nc, a.demo_imgsz, a.demo_batch, a.rounds, sys.stdout)
    print(f"load average {os.getloadavg()[0]:.1f} at the end. CARAFE share: time inside CarafeFunction and "
          "CarafeFunctionBackward over a profiled step, median of the rounds (goal <= 5%).", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
