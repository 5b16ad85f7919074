"""The seed model's building blocks, written to match ultralytics' modules in inference mode.

Module and attribute names follow ultralytics (and the seed's StarNet/FreqFusion code) so that the
state_dict keys of this reference equal those of an ultralytics model of the same YAML: a state_dict
saved from a trained ultralytics model loads here unchanged. Dropout layers (all p=0 in the seed) and
training-only branches (denoising queries, auxiliary outputs) are left out: they hold no parameters,
except the denoising class embedding, which is kept because it is part of the checkpoint and of the
seed's parameter count.
"""
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .carafe import carafe


def autopad(k, p=None, d=1):
    """ultralytics' 'same' padding: k // 2 for dilation 1."""
    if d > 1:
        k = d * (k - 1) + 1
    if p is None:
        p = k // 2
    return p


class Conv(nn.Module):
    """ultralytics Conv: Conv2d (no bias) + BatchNorm2d + SiLU (or no activation when act is False)."""

    def __init__(self, c1, c2, k=1, s=1, p=None, g=1, d=1, act=True):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, autopad(k, p, d), groups=g, dilation=d, bias=False)
        self.bn = nn.BatchNorm2d(c2)
        self.act = nn.SiLU() if act is True else nn.Identity()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class Concat(nn.Module):
    def __init__(self, dimension=1):
        super().__init__()
        self.d = dimension

    def forward(self, x):
        return torch.cat(x, self.d)


# --- StarNet (the seed's backbone) -----------------------------------------------------------------


class ConvBN(nn.Sequential):
    """StarNet's Conv2d (with bias) + optional BatchNorm2d, no activation."""

    def __init__(self, c1, c2, k=1, s=1, p=0, g=1, with_bn=True):
        super().__init__()
        self.add_module("conv", nn.Conv2d(c1, c2, k, s, p, groups=g))
        if with_bn:
            self.add_module("bn", nn.BatchNorm2d(c2))


class StarBlock(nn.Module):
    """dwconv7x7+BN -> two 1x1 expansions multiplied (ReLU6(f1) * f2) -> 1x1+BN -> dwconv7x7, residual."""

    def __init__(self, dim, mlp_ratio=3):
        super().__init__()
        self.dwconv = ConvBN(dim, dim, 7, 1, 3, g=dim, with_bn=True)
        self.f1 = ConvBN(dim, mlp_ratio * dim, 1, with_bn=False)
        self.f2 = ConvBN(dim, mlp_ratio * dim, 1, with_bn=False)
        self.g = ConvBN(mlp_ratio * dim, dim, 1, with_bn=True)
        self.dwconv2 = ConvBN(dim, dim, 7, 1, 3, g=dim, with_bn=False)
        self.act = nn.ReLU6()

    def forward(self, x):
        y = self.dwconv(x)
        y = self.act(self.f1(y)) * self.f2(y)
        return x + self.dwconv2(self.g(y))


class StarNet(nn.Module):
    """StarNet returning its five feature maps: stem (/2), stage1 (/4), stage2 (/8), stage3 (/16), stage4 (/32)."""

    def __init__(self, base_dim=16, depths=(1, 1, 3, 1), mlp_ratio=3, stem_dim=32):
        super().__init__()
        self.stem = nn.Sequential(ConvBN(3, stem_dim, 3, 2, 1), nn.ReLU6())
        self.stages = nn.ModuleList()
        c = stem_dim
        for i, depth in enumerate(depths):
            dim = base_dim * 2**i
            blocks = [ConvBN(c, dim, 3, 2, 1)] + [StarBlock(dim, mlp_ratio) for _ in range(depth)]
            self.stages.append(nn.Sequential(*blocks))
            c = dim
        self.channels = [stem_dim] + [base_dim * 2**i for i in range(len(depths))]

    def forward(self, x):
        x = self.stem(x)
        out = [x]
        for stage in self.stages:
            x = stage(x)
            out.append(x)
        return out


# --- AIFI ----------------------------------------------------------------------------------------


class TransformerEncoderLayer(nn.Module):
    """ultralytics TransformerEncoderLayer, post-norm (normalize_before=False), GELU."""

    def __init__(self, c1, cm=2048, num_heads=8):
        super().__init__()
        self.ma = nn.MultiheadAttention(c1, num_heads, dropout=0.0, batch_first=True)
        self.fc1 = nn.Linear(c1, cm)
        self.fc2 = nn.Linear(cm, c1)
        self.norm1 = nn.LayerNorm(c1)
        self.norm2 = nn.LayerNorm(c1)
        self.act = nn.GELU()

    def forward(self, src, pos):
        q = k = src + pos
        src = self.norm1(src + self.ma(q, k, value=src, need_weights=False)[0])
        return self.norm2(src + self.fc2(self.act(self.fc1(src))))


class AIFI(TransformerEncoderLayer):
    """Attention-based intra-scale feature interaction on a [B,C,H,W] map with a 2-D sin-cos position embedding."""

    def forward(self, x):
        c, h, w = x.shape[1:]
        pos = build_2d_sincos_position_embedding(w, h, c).to(device=x.device, dtype=x.dtype)
        y = super().forward(x.flatten(2).permute(0, 2, 1), pos)
        return y.permute(0, 2, 1).reshape(-1, c, h, w).contiguous()


def build_2d_sincos_position_embedding(w, h, embed_dim=256, temperature=10000.0):
    """ultralytics' embedding, [1, w*h, embed_dim].

    As in ultralytics, the grid is built with meshgrid(w, h, indexing='ij'), so row r of the embedding
    encodes (x = r // h, y = r % h) while the tokens are flattened row-major (y, x): the two orders agree
    only up to a transpose. Trained weights depend on this, so it is kept.
    """
    if embed_dim % 4:
        raise ValueError(f"AIFI: embedding dimension {embed_dim} must be divisible by 4")
    w, h = int(w), int(h)
    grid_w = torch.arange(w, dtype=torch.float32)
    grid_h = torch.arange(h, dtype=torch.float32)
    grid_w, grid_h = torch.meshgrid(grid_w, grid_h, indexing="ij")
    pos_dim = embed_dim // 4
    omega = torch.arange(pos_dim, dtype=torch.float32) / pos_dim
    omega = 1.0 / (temperature**omega)
    out_w = grid_w.flatten()[..., None] @ omega[None]
    out_h = grid_h.flatten()[..., None] @ omega[None]
    return torch.cat([torch.sin(out_w), torch.cos(out_w), torch.sin(out_h), torch.cos(out_h)], 1)[None]


# --- RepC3 ---------------------------------------------------------------------------------------


class RepConv(nn.Module):
    """Training-time RepConv: SiLU(conv3x3-bn(x) + conv1x1-bn(x)); no identity branch (bn=False)."""

    def __init__(self, c1, c2, k=3, s=1, p=1):
        super().__init__()
        self.conv1 = Conv(c1, c2, k, s, p=p, act=False)
        self.conv2 = Conv(c1, c2, 1, s, p=p - k // 2, act=False)
        self.act = nn.SiLU()

    def forward(self, x):
        return self.act(self.conv1(x) + self.conv2(x))


class RepC3(nn.Module):
    def __init__(self, c1, c2, n=3, e=1.0):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c1, c_, 1, 1)
        self.m = nn.Sequential(*[RepConv(c_, c_) for _ in range(n)])
        self.cv3 = Conv(c_, c2, 1, 1) if c_ != c2 else nn.Identity()

    def forward(self, x):
        return self.cv3(self.m(self.cv1(x)) + self.cv2(x))


# --- FreqFusion ----------------------------------------------------------------------------------


def hamming2d(m, n):
    return torch.tensor(np.outer(np.hamming(m), np.hamming(n)), dtype=torch.float32)


class FreqFusion(nn.Module):
    """FreqFusion with the seed's defaults, fusing hr (stride s) and lr (stride 2s) maps: returns stride s.

    Defaults fixed by the seed: scale_factor 1, lowpass_kernel 5, highpass_kernel 3, up_group 1,
    encoder_kernel 3, dilation 1, semi_conv, comp_feat_upsample, use_high_pass, hr_residual,
    hamming_window, no feature_resample. CARAFE is called five times.
    """

    def __init__(self, channels, lowpass_kernel=5, highpass_kernel=3, up_group=1, encoder_kernel=3):
        super().__init__()
        hr_channels, lr_channels = channels
        self.lowpass_kernel = lowpass_kernel
        self.highpass_kernel = highpass_kernel
        self.up_group = up_group
        cc = (hr_channels + lr_channels) // 8
        self.compressed_channels = cc
        self.hr_channel_compressor = nn.Conv2d(hr_channels, cc, 1)
        self.lr_channel_compressor = nn.Conv2d(lr_channels, cc, 1)
        pad = (encoder_kernel - 1) // 2
        self.content_encoder = nn.Conv2d(cc, lowpass_kernel**2 * up_group, encoder_kernel, padding=pad)
        self.content_encoder2 = nn.Conv2d(cc, highpass_kernel**2 * up_group, encoder_kernel, padding=pad)
        self.register_buffer("hamming_lowpass", hamming2d(lowpass_kernel, lowpass_kernel)[None, None])
        self.register_buffer("hamming_highpass", hamming2d(highpass_kernel, highpass_kernel)[None, None])

    def kernel_normalizer(self, mask, kernel, hamming):
        """Softmax over each group's k*k taps, times the Hamming window, renormalised to sum 1.

        Same arithmetic as the seed's kernel_normalizer, written without its permutes.
        """
        n, mc, h, w = mask.shape
        groups = mc // (kernel * kernel)
        mask = F.softmax(mask.reshape(n, groups, kernel * kernel, h, w), dim=2)
        mask = mask * hamming.reshape(1, 1, kernel * kernel, 1, 1)
        mask = mask / mask.sum(dim=2, keepdim=True)
        return mask.reshape(n, mc, h, w)

    def forward(self, x):
        hr_feat, lr_feat = x
        kl, kh, g = self.lowpass_kernel, self.highpass_kernel, self.up_group
        comp_hr = self.hr_channel_compressor(hr_feat)
        comp_lr = self.lr_channel_compressor(lr_feat)
        size = comp_hr.shape[-2:]

        mask_hr_hr = self.content_encoder2(comp_hr)
        mask_hr_init = self.kernel_normalizer(mask_hr_hr, kh, self.hamming_highpass)
        comp_hr = comp_hr + comp_hr - carafe(comp_hr, mask_hr_init, kh, g, 1)

        mask_lr_hr = self.content_encoder(comp_hr)
        mask_lr_init = self.kernel_normalizer(mask_lr_hr, kl, self.hamming_lowpass)
        mask_lr_lr = carafe(self.content_encoder(comp_lr), mask_lr_init, kl, g, 2)
        mask_lr = mask_lr_hr + F.interpolate(mask_lr_lr, size=size, mode="nearest")

        mask_lr_init = self.kernel_normalizer(mask_lr, kl, self.hamming_lowpass)
        mask_hr_lr = carafe(self.content_encoder2(comp_lr), mask_lr_init, kl, g, 2)
        mask_hr = mask_hr_hr + F.interpolate(mask_hr_lr, size=size, mode="nearest")

        mask_lr = self.kernel_normalizer(mask_lr, kl, self.hamming_lowpass)
        lr_up = carafe(lr_feat, mask_lr, kl, g, 2)

        mask_hr = self.kernel_normalizer(mask_hr, kh, self.hamming_highpass)
        hr_feat = hr_feat - carafe(hr_feat, mask_hr, kh, g, 1) + hr_feat
        return hr_feat + lr_up


# --- RT-DETR decoder -----------------------------------------------------------------------------


class MLP(nn.Module):
    def __init__(self, input_dim, hidden_dim, output_dim, num_layers):
        super().__init__()
        self.num_layers = num_layers
        h = [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(nn.Linear(n, k) for n, k in zip([input_dim] + h, h + [output_dim]))

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = F.relu(layer(x)) if i < self.num_layers - 1 else layer(x)
        return x


def inverse_sigmoid(x, eps=1e-5):
    x = x.clamp(min=0, max=1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


def multi_scale_deformable_attn(value, shapes, sampling_locations, attention_weights):
    """Deformable attention through F.grid_sample (bilinear, zero padding, align_corners False)."""
    bs, _, num_heads, embed_dims = value.shape
    _, num_queries, _, num_levels, num_points, _ = sampling_locations.shape
    value_list = value.split([h * w for h, w in shapes], dim=1)
    grids = 2 * sampling_locations - 1
    sampled = []
    for level, (h, w) in enumerate(shapes):
        v = value_list[level].flatten(2).transpose(1, 2).reshape(bs * num_heads, embed_dims, h, w)
        grid = grids[:, :, :, level].transpose(1, 2).flatten(0, 1)
        sampled.append(F.grid_sample(v, grid, mode="bilinear", padding_mode="zeros", align_corners=False))
    attention_weights = attention_weights.transpose(1, 2).reshape(bs * num_heads, 1, num_queries, num_levels * num_points)
    out = (torch.stack(sampled, dim=-2).flatten(-2) * attention_weights).sum(-1)
    return out.view(bs, num_heads * embed_dims, num_queries).transpose(1, 2).contiguous()


class MSDeformAttn(nn.Module):
    def __init__(self, d_model=256, n_levels=4, n_heads=8, n_points=4):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"MSDeformAttn: d_model {d_model} must be divisible by n_heads {n_heads}")
        self.d_model, self.n_levels, self.n_heads, self.n_points = d_model, n_levels, n_heads, n_points
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)

    def forward(self, query, refer_bbox, value, shapes):
        bs, len_q = query.shape[:2]
        len_v = value.shape[1]
        value = self.value_proj(value).view(bs, len_v, self.n_heads, self.d_model // self.n_heads)
        offsets = self.sampling_offsets(query).view(bs, len_q, self.n_heads, self.n_levels, self.n_points, 2)
        weights = self.attention_weights(query).view(bs, len_q, self.n_heads, self.n_levels * self.n_points)
        weights = F.softmax(weights, -1).view(bs, len_q, self.n_heads, self.n_levels, self.n_points)
        # refer_bbox is [bs, len_q, 1, 4] (cx, cy, w, h): offsets are scaled by half the box size.
        add = offsets / self.n_points * refer_bbox[:, :, None, :, None, 2:] * 0.5
        locations = refer_bbox[:, :, None, :, None, :2] + add
        return self.output_proj(multi_scale_deformable_attn(value, shapes, locations, weights))


class DeformableTransformerDecoderLayer(nn.Module):
    def __init__(self, d_model=256, n_heads=8, d_ffn=1024, n_levels=4, n_points=4):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, n_heads, dropout=0.0)
        self.norm1 = nn.LayerNorm(d_model)
        self.cross_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.norm2 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.norm3 = nn.LayerNorm(d_model)

    def forward(self, embed, refer_bbox, feats, shapes, query_pos):
        q = k = embed + query_pos
        tgt = self.self_attn(q.transpose(0, 1), k.transpose(0, 1), embed.transpose(0, 1), need_weights=False)[0]
        embed = self.norm1(embed + tgt.transpose(0, 1))
        tgt = self.cross_attn(embed + query_pos, refer_bbox.unsqueeze(2), feats, shapes)
        embed = self.norm2(embed + tgt)
        return self.norm3(embed + self.linear2(F.relu(self.linear1(embed))))


class DeformableTransformerDecoder(nn.Module):
    def __init__(self, layers, eval_idx=-1):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.eval_idx = eval_idx if eval_idx >= 0 else len(layers) + eval_idx

    def forward(self, embed, refer_bbox, feats, shapes, bbox_head, score_head, pos_mlp):
        output = embed
        refer_bbox = refer_bbox.sigmoid()
        for i, layer in enumerate(self.layers):
            output = layer(output, refer_bbox, feats, shapes, pos_mlp(refer_bbox))
            refined = torch.sigmoid(bbox_head[i](output) + inverse_sigmoid(refer_bbox))
            if i == self.eval_idx:
                return refined, score_head[i](output)
            refer_bbox = refined
        raise AssertionError("unreachable: eval_idx is within the layers")


class RTDETRDecoder(nn.Module):
    """ultralytics RTDETRDecoder in inference mode: returns [N, nq, 4 + nc] (cx,cy,w,h in 0..1, sigmoid scores)."""

    def __init__(self, nc=80, ch=(512, 1024, 2048), hd=256, nq=300, ndp=4, nh=8, ndl=6, d_ffn=1024, eval_idx=-1):
        super().__init__()
        self.hidden_dim, self.nl, self.nc, self.num_queries = hd, len(ch), nc, nq
        self.input_proj = nn.ModuleList(nn.Sequential(nn.Conv2d(x, hd, 1, bias=False), nn.BatchNorm2d(hd)) for x in ch)
        layers = [DeformableTransformerDecoderLayer(hd, nh, d_ffn, self.nl, ndp) for _ in range(ndl)]
        self.decoder = DeformableTransformerDecoder(layers, eval_idx)
        self.denoising_class_embed = nn.Embedding(nc, hd)  # training only; part of checkpoints and counts
        self.query_pos_head = MLP(4, 2 * hd, hd, num_layers=2)
        self.enc_output = nn.Sequential(nn.Linear(hd, hd), nn.LayerNorm(hd))
        self.enc_score_head = nn.Linear(hd, nc)
        self.enc_bbox_head = MLP(hd, hd, 4, num_layers=3)
        self.dec_score_head = nn.ModuleList(nn.Linear(hd, nc) for _ in range(ndl))
        self.dec_bbox_head = nn.ModuleList(MLP(hd, hd, 4, num_layers=3) for _ in range(ndl))

    @staticmethod
    def generate_anchors(shapes, grid_size=0.05, dtype=torch.float32, device="cpu", eps=1e-2):
        anchors = []
        for i, (h, w) in enumerate(shapes):
            sy = torch.arange(end=h, dtype=dtype, device=device)
            sx = torch.arange(end=w, dtype=dtype, device=device)
            grid_y, grid_x = torch.meshgrid(sy, sx, indexing="ij")
            grid_xy = torch.stack([grid_x, grid_y], -1)
            valid_wh = torch.tensor([w, h], dtype=dtype, device=device)
            grid_xy = (grid_xy.unsqueeze(0) + 0.5) / valid_wh
            wh = torch.ones_like(grid_xy) * grid_size * (2.0**i)
            anchors.append(torch.cat([grid_xy, wh], -1).view(-1, h * w, 4))
        anchors = torch.cat(anchors, 1)
        valid_mask = ((anchors > eps) & (anchors < 1 - eps)).all(-1, keepdim=True)
        anchors = torch.log(anchors / (1 - anchors))
        anchors = anchors.masked_fill(~valid_mask, float("inf"))
        return anchors, valid_mask

    def forward(self, x):
        feats, shapes = [], []
        for proj, feat in zip(self.input_proj, x):
            feat = proj(feat)
            h, w = feat.shape[2:]
            feats.append(feat.flatten(2).permute(0, 2, 1))
            shapes.append([int(h), int(w)])
        feats = torch.cat(feats, 1)
        tokens = sum(h * w for h, w in shapes)
        if tokens < self.num_queries:
            raise ValueError(
                f"RTDETRDecoder: the input gives {tokens} encoder tokens, fewer than the {self.num_queries} queries; "
                "use a larger input size"
            )

        bs = feats.shape[0]
        anchors, valid_mask = self.generate_anchors(shapes, dtype=feats.dtype, device=feats.device)
        features = self.enc_output(valid_mask * feats)
        scores = self.enc_score_head(features)
        topk_ind = torch.topk(scores.max(-1).values, self.num_queries, dim=1).indices.view(-1)
        batch_ind = torch.arange(end=bs, dtype=topk_ind.dtype).unsqueeze(-1).repeat(1, self.num_queries).view(-1)
        top_k_features = features[batch_ind, topk_ind].view(bs, self.num_queries, -1)
        top_k_anchors = anchors[:, topk_ind].view(bs, self.num_queries, -1)
        refer_bbox = self.enc_bbox_head(top_k_features) + top_k_anchors

        bboxes, logits = self.decoder(
            top_k_features, refer_bbox, feats, shapes, self.dec_bbox_head, self.dec_score_head, self.query_pos_head
        )
        return torch.cat((bboxes, logits.sigmoid()), -1)
