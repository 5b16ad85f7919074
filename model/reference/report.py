"""Parameter and FLOP report of the seed model, one line per row of the seed's summary.

    /usr/bin/python3 -m model.reference.report --nc 1 --imgsz 640

GFLOPs are 2 x multiply-accumulates for one image. Two totals are printed: the ultralytics/thop
convention (Conv2d and Linear modules only, which is what ultralytics' model summary reports) and
everything (plus attention matmuls, CARAFE and grid_sample's bilinear taps).
"""
import argparse
import sys
from collections import defaultdict

import torch
import torch.nn as nn

from . import modules, seed
from .export import parse_imgsz


class FlopCounter:
    """Counts MACs per summary row with forward hooks; 'conv_linear' and 'other' are kept apart."""

    def __init__(self, model):
        self.model = model
        self.macs = defaultdict(lambda: {"conv_linear": 0, "other": 0})
        self.row = None
        self.hooks = []

    def add(self, kind, n):
        self.macs[self.row][kind] += int(n)

    def conv(self, m, inp, out):
        self.add("conv_linear", out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1])

    def linear(self, m, inp, out):
        self.add("conv_linear", out.numel() * m.in_features)

    def mha(self, m, inp, out):
        q, k = inp[0], inp[1]
        lq, lk = q.shape[0] * q.shape[1], k.shape[0] * k.shape[1]  # tokens (batch 1 either layout)
        e = m.embed_dim
        self.add("conv_linear", (lq + 2 * lk) * e * e + lq * e * e)  # in_proj and out_proj (thop misses these)
        self.add("other", 2 * lq * (lk // max(1, q.shape[0] if m.batch_first else q.shape[1])) * e)

    def __enter__(self):
        for row, _, _, _, _ in seed.SUMMARY_ROWS:
            sub = self.model.model[row]
            self.hooks.append(sub.register_forward_pre_hook(lambda m, i, row=row: setattr(self, "row", row)))
            for m in sub.modules():
                if isinstance(m, nn.Conv2d):
                    self.hooks.append(m.register_forward_hook(self.conv))
                elif isinstance(m, nn.Linear):
                    self.hooks.append(m.register_forward_hook(self.linear))
                elif isinstance(m, nn.MultiheadAttention):
                    self.hooks.append(m.register_forward_hook(self.mha))
        self.orig_carafe, self.orig_grid = modules.carafe, modules.F.grid_sample

        def carafe(f, m, k, g, s):
            out = self.orig_carafe(f, m, k, g, s)
            self.add("other", out.numel() * k * k)
            return out

        def grid_sample(x, grid, **kw):
            out = self.orig_grid(x, grid, **kw)
            self.add("other", out.numel() * 4)
            return out

        modules.carafe = carafe
        modules.F.grid_sample = grid_sample
        return self

    def __exit__(self, *exc):
        modules.carafe = self.orig_carafe
        modules.F.grid_sample = self.orig_grid
        for h in self.hooks:
            h.remove()


def report(nc=1, imgsz=(640, 640), arch="seed"):
    """Returns (rows, totals): rows of (row, layer, from, name, params, gflops_thop, gflops_all)."""
    model = seed.RTDETRStarNetFreqFusion(nc, seed.ARCHS[arch]).eval()
    with FlopCounter(model) as fc, torch.no_grad():
        model(torch.zeros(1, 3, *imgsz))
    rows = []
    for r, layer, frm, name, params in seed.summary(model):
        m = fc.macs.get(r, {"conv_linear": 0, "other": 0})
        rows.append((r, layer, frm, name, params, 2 * m["conv_linear"] / 1e9, 2 * (m["conv_linear"] + m["other"]) / 1e9))
    totals = (seed.count_params(model), sum(r[5] for r in rows), sum(r[6] for r in rows))
    return rows, totals


def main(argv=None):
    p = argparse.ArgumentParser(prog="python3 -m model.reference.report", description=__doc__.split("\n")[0])
    p.add_argument("--nc", type=int, default=1)
    p.add_argument("--imgsz", type=parse_imgsz, default=[640, 640], help="N or H,W, multiples of 32")
    p.add_argument("--arch", choices=sorted(seed.ARCHS), default="seed")
    args = p.parse_args(argv)
    if args.nc < 1:
        p.error(f"--nc {args.nc}: must be >= 1")
    torch.set_num_threads(2)
    rows, (params, g_thop, g_all) = report(args.nc, args.imgsz, args.arch)
    print(f"{'':>3} {'layer':>5} {'from':>14} {'params':>10} {'GFLOPs':>8} {'GFLOPs*':>8}  module")
    for r, layer, frm, name, n, gt, ga in rows:
        print(f"{r:>3} {str(layer):>5} {str(frm):>14} {n:>10,} {gt:>8.3f} {ga:>8.3f}  {name}")
    h, w = args.imgsz
    print(f"{args.arch} nc={args.nc} imgsz={h}x{w}: {len(rows)} rows, {params:,} parameters, "
          f"{g_thop:.2f} GFLOPs (Conv2d+Linear, ultralytics/thop convention), "
          f"{g_all:.2f} GFLOPs* (+ attention, CARAFE, grid_sample)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
