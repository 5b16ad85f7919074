"""The seed model `rtdetr-StarNet-FreqFusion.yaml` as a PyTorch module, plus a tiny variant for fast tests.

YAML layer indices (what `from` refers to): the backbone's five outputs are layers 0-4, the head starts
at 5. The seed's printed summary lists the backbone once, so its row i >= 1 is YAML layer i + 4;
`SUMMARY_ROWS` keeps that numbering. Parameters are held in `self.model`, a ModuleList with one entry
per summary row, so state_dict keys are those of the ultralytics model ("model.0.stem.0.conv.weight",
..., "model.18.dec_bbox_head.5.layers.2.bias").
"""
from dataclasses import dataclass

import torch
import torch.nn as nn

from . import checkpoint
from .checkpoint import CheckpointError  # noqa: F401 - re-exported for the CLIs
from .modules import AIFI, Concat, Conv, FreqFusion, RepC3, RTDETRDecoder, StarNet

STRIDE = 32


@dataclass(frozen=True)
class Arch:
    """Widths and depths of the seed architecture; SEED is the seed's, TINY the small test variant."""

    name: str
    base_dim: int = 16  # StarNet-S050
    depths: tuple = (1, 1, 3, 1)
    mlp_ratio: int = 3
    stem_dim: int = 32
    width: int = 256  # head channels (the YAML's 256)
    aifi_ffn: int = 1024
    aifi_heads: int = 8
    repc3_n: int = 3
    hd: int = 256
    nq: int = 300
    ndp: int = 4
    nh: int = 8
    ndl: int = 6
    d_ffn: int = 1024


SEED = Arch("seed")
# Same module types, a fraction of the channels. 300 queries need >= 300 encoder tokens, which an input
# of 128x128 gives (16*16 + 8*8 + 4*4 = 336), 64x64 does not (84).
TINY = Arch(
    "tiny", base_dim=8, depths=(1, 1, 1, 1), stem_dim=16, width=32, aifi_ffn=64, aifi_heads=4,
    repc3_n=1, hd=32, nh=4, ndl=2, d_ffn=64,
)
ARCHS = {"seed": SEED, "tiny": TINY}
DEFAULT_IMGSZ = {"seed": 640, "tiny": 128}

# (summary row, YAML layer, from, module name, seed params for nc=1) exactly as the seed's summary prints them.
SUMMARY_ROWS = [
    (0, "0-4", -1, "starnet_s050", 413472),
    (1, 5, -1, "Conv", 33280),
    (2, 6, -1, "AIFI", 789760),
    (3, 7, -1, "Conv", 66048),
    (4, 8, 2, "Conv", 8704),
    (5, 9, 3, "Conv", 16896),
    (6, 10, 7, "Conv", 66048),
    (7, 11, [9, -1], "FreqFusion", 52514),
    (8, 12, -1, "RepC3", 2101248),
    (9, 13, -1, "Conv", 66048),
    (10, 14, [8, -1], "FreqFusion", 52514),
    (11, 15, -1, "RepC3", 2101248),
    (12, 16, -1, "Conv", 590336),
    (13, 17, [-1, 13], "Concat", 0),
    (14, 18, -1, "RepC3", 2232320),
    (15, 19, -1, "Conv", 590336),
    (16, 20, [-1, 7], "Concat", 0),
    (17, 21, -1, "RepC3", 2232320),
    (18, 22, [15, 18, 21], "RTDETRDecoder", 7303907),
]
SEED_TOTAL_PARAMS = 18716999


class RTDETRStarNetFreqFusion(nn.Module):
    """Input images [N,3,H,W] (RGB, 0..1, H and W divisible by 32) -> output0 [N, nq, 4+nc]."""

    def __init__(self, nc=1, arch=SEED):
        super().__init__()
        if nc < 1:
            raise ValueError(f"nc must be >= 1, got {nc}")
        self.nc, self.arch = nc, arch
        a, c = arch, arch.width
        backbone = StarNet(a.base_dim, a.depths, a.mlp_ratio, a.stem_dim)
        ch = backbone.channels  # [stem, P2, P3, P4, P5]
        self.model = nn.ModuleList(
            [
                backbone,  # 0-4
                Conv(ch[4], c, 1, 1, None, 1, 1, False),  # 5 input_proj
                AIFI(c, a.aifi_ffn, a.aifi_heads),  # 6
                Conv(c, c, 1, 1),  # 7 Y5
                Conv(ch[2], c),  # 8 P3
                Conv(ch[3], c),  # 9 P4
                Conv(c, c),  # 10 P5
                FreqFusion([c, c]),  # 11 (hr 9, lr 10)
                RepC3(c, c, a.repc3_n),  # 12
                Conv(c, c, 1, 1),  # 13 Y4
                FreqFusion([c, c]),  # 14 (hr 8, lr 13)
                RepC3(c, c, a.repc3_n),  # 15 X3
                Conv(c, c, 3, 2),  # 16
                Concat(1),  # 17 (16, 13)
                RepC3(2 * c, c, a.repc3_n),  # 18 F4
                Conv(c, c, 3, 2),  # 19
                Concat(1),  # 20 (19, 7)
                RepC3(2 * c, c, a.repc3_n),  # 21 F5
                RTDETRDecoder(nc, (c, c, c), a.hd, a.nq, a.ndp, a.nh, a.ndl, a.d_ffn),  # 22
            ]
        )
        # ultralytics' initialize_weights gives every BatchNorm2d of a model it builds (the seed fork's
        # included) eps 1e-3: trained weights reproduce only with the same eps.
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eps, m.momentum = 1e-3, 0.03

    def forward(self, images):
        check_imgsz(images.shape[2:])
        m = self.model
        y = list(m[0](images))  # layers 0-4
        y.append(m[1](y[4]))  # 5
        y.append(m[2](y[5]))  # 6
        y.append(m[3](y[6]))  # 7
        y.append(m[4](y[2]))  # 8
        y.append(m[5](y[3]))  # 9
        y.append(m[6](y[7]))  # 10
        y.append(m[7]([y[9], y[10]]))  # 11
        y.append(m[8](y[11]))  # 12
        y.append(m[9](y[12]))  # 13
        y.append(m[10]([y[8], y[13]]))  # 14
        y.append(m[11](y[14]))  # 15
        y.append(m[12](y[15]))  # 16
        y.append(m[13]([y[16], y[13]]))  # 17
        y.append(m[14](y[17]))  # 18
        y.append(m[15](y[18]))  # 19
        y.append(m[16]([y[19], y[7]]))  # 20
        y.append(m[17](y[20]))  # 21
        return m[18]([y[15], y[18], y[21]])  # 22


def check_imgsz(hw):
    """Refuses spatial sizes the model cannot take, saying why."""
    h, w = (int(v) for v in hw)
    if h <= 0 or w <= 0 or h % STRIDE or w % STRIDE:
        raise ValueError(
            f"input size {h}x{w} is not divisible by {STRIDE}: the model downsamples 5 times by 2 and "
            f"FreqFusion needs each level exactly twice the next; use e.g. "
            f"{max(STRIDE, round(h / STRIDE) * STRIDE)}x{max(STRIDE, round(w / STRIDE) * STRIDE)}"
        )


def build(nc=1, arch="seed", seed=0):
    """Builds the model in eval mode with deterministic random weights (see init_random)."""
    a = ARCHS[arch] if isinstance(arch, str) else arch
    torch.manual_seed(seed)
    model = RTDETRStarNetFreqFusion(nc, a)
    init_random(model, seed)
    return model.eval()


@torch.no_grad()
def init_random(model, seed, imgsz=160, batch=2):
    """Deterministic stand-in weights that keep activations in a trained network's range.

    PyTorch's default initialisation (seeded), then every BatchNorm's running mean and variance set from
    a forward pass over a fixed synthetic batch, so no layer's output explodes or vanishes; the score
    heads get a bias spread so that the sigmoid scores cover 0..1 rather than sitting at one value.
    """
    g = torch.Generator().manual_seed(seed)
    images = synthetic_images(batch, imgsz, imgsz, seed)
    model.eval()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average: one batch sets the stats exactly
        bn.train()
    model(images)
    for bn in bns:
        bn.momentum = 0.03
        bn.eval()
        bn.num_batches_tracked.zero_()
        # Affine parameters stay at 1/0 by default; give them some spread so BN is not an identity.
        bn.weight.copy_(1 + 0.1 * torch.randn(bn.weight.shape, generator=g))
        bn.bias.copy_(0.1 * torch.randn(bn.bias.shape, generator=g))
    dec = model.model[18]
    for head in list(dec.dec_score_head) + [dec.enc_score_head]:
        head.bias.copy_(torch.randn(head.bias.shape, generator=g))
    model.eval()


def synthetic_images(n, h, w, seed=0):
    """A smooth, seeded RGB batch in [0,1]: blobs and gradients, so features are not noise."""
    g = torch.Generator().manual_seed(seed + 1)
    yy = torch.linspace(0, 1, h).view(1, 1, h, 1)
    xx = torch.linspace(0, 1, w).view(1, 1, 1, w)
    out = torch.zeros(n, 3, h, w)
    for i in range(n):
        img = 0.3 * (xx + yy).expand(1, 3, h, w) / 2
        for _ in range(6):
            cy, cx = torch.rand(2, generator=g)
            sy, sx = 0.03 + 0.15 * torch.rand(2, generator=g)
            color = torch.rand(3, generator=g).view(1, 3, 1, 1)
            blob = torch.exp(-(((yy - cy) / sy) ** 2 + ((xx - cx) / sx) ** 2))
            img = img * (1 - blob) + color * blob
        out[i] = img[0]
    return out.clamp(0, 1)


def count_params(module):
    return sum(p.numel() for p in module.parameters())


def summary(model):
    """Rows (row, yaml layer, from, name, params) of this model, in the seed summary's order."""
    return [(r, layer, frm, name, count_params(model.model[r])) for r, layer, frm, name, _ in SUMMARY_ROWS]


def load_checkpoint(model, path):
    """Loads a checkpoint into model: a state_dict (bare or under 'model'/'ema'/'state_dict'), or an
    ultralytics or seed-fork checkpoint (read without executing it, see checkpoint.read).

    Raises CheckpointError listing every key that is missing, unexpected or of the wrong shape.
    """
    sd, _, info = checkpoint.read(path)
    checkpoint.check_keys(path, model.state_dict(), sd,
                          f"the {model.arch.name} architecture with nc={model.nc} ({info['class']}); pass --nc and --arch")
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd.items()})
    return model


def infer_nc(path):
    """nc from a checkpoint's encoder score head, or None if it cannot be told."""
    try:
        sd, _, _ = checkpoint.read(path)
    except CheckpointError:
        return None  # load_checkpoint reports it properly
    return checkpoint.nc_of(sd)
