"""Detail refiner: a light U-Net with layered timestep injection, dual attention and CARAFE upsampling.

Input concat[x_t, eps_s] (2C channels) -> r (C channels). The refiner's output only reaches the
prediction through the high-pass projection (eps_d = HP(r)), see model.py.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .layers import silu

GN_EPS = 1e-5


class ResBlock(nn.Module):
    """h = conv1(SiLU(GN1(x))); timestep injection; h = conv2(SiLU(GN2(h))); h += skip(x);
    dual attention: out = h * sigmoid(att_c(avgpool(h)))[:, :, None, None] * sigmoid(att_s(h)).

    mode 'film'   (encoder):    (scale, shift) = t_proj(SiLU(c)); h = h*(1+scale) + shift
    mode 'concat' (bottleneck): m = t_proj(c) [B, Ct] broadcast to [B, Ct, H, W]; h = t_mix(concat[h, m])
    mode 'gated'  (decoder):    (scale, shift, g) = t_proj(SiLU(c)); h = h + sigmoid(g)*(h*(1+scale)+shift - h)
    """

    def __init__(self, cin, cout, groups, cond_dim, mode, time_channels):
        super().__init__()
        self.mode = mode
        self.norm1 = nn.GroupNorm(groups, cin, eps=GN_EPS)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        if mode == "film":
            self.t_proj = nn.Linear(cond_dim, 2 * cout)
        elif mode == "gated":
            self.t_proj = nn.Linear(cond_dim, 3 * cout)
        elif mode == "concat":
            self.t_proj = nn.Linear(cond_dim, time_channels)
            self.t_mix = nn.Conv2d(cout + time_channels, cout, 1)
        else:
            raise ValueError(mode)
        self.norm2 = nn.GroupNorm(groups, cout, eps=GN_EPS)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None
        self.att_c = nn.Linear(cout, cout)
        self.att_s = nn.Conv2d(cout, cout, 1)

    def forward(self, x, c):
        h = self.conv1(silu(self.norm1(x)))
        if self.mode == "film":
            scale, shift = self.t_proj(silu(c)).chunk(2, dim=-1)
            h = h * (1 + scale[..., None, None]) + shift[..., None, None]
        elif self.mode == "gated":
            scale, shift, g = self.t_proj(silu(c)).chunk(3, dim=-1)
            mod = h * (1 + scale[..., None, None]) + shift[..., None, None]
            h = h + torch.sigmoid(g)[..., None, None] * (mod - h)
        else:
            m = self.t_proj(c)[..., None, None].expand(-1, -1, h.shape[2], h.shape[3])
            h = self.t_mix(torch.cat([h, m], dim=1))
        h = self.conv2(silu(self.norm2(h)))
        h = h + (self.skip(x) if self.skip is not None else x)
        a_c = torch.sigmoid(self.att_c(h.mean(dim=(2, 3))))[..., None, None]  # [B, C, 1, 1]
        a_s = torch.sigmoid(self.att_s(h))  # [B, C, H, W]
        return h * (a_c * a_s)


class Carafe(nn.Module):
    """Content-aware reassembly of features, upsampling by `scale`.

    w = softmax_k(pixel_shuffle(enc(comp(x))))  [B, k_up^2, sH, sW]
    out[b, c, Y, X] = sum_{i,j} w[b, i*k_up + j, Y, X] * x[b, c, Y//s + i - k_up//2, X//s + j - k_up//2]
    (zero outside the image).
    """

    def __init__(self, channels, k_up, k_enc, scale, compress):
        super().__init__()
        self.k_up, self.scale = k_up, scale
        self.comp = nn.Conv2d(channels, compress, 1)
        self.enc = nn.Conv2d(compress, scale * scale * k_up * k_up, k_enc, padding=k_enc // 2)

    def weights(self, x):
        w = F.pixel_shuffle(self.enc(self.comp(x)), self.scale)  # [B, k^2, sH, sW]
        return torch.softmax(w, dim=1)

    def forward(self, x):
        B, C, H, W = x.shape
        k, s = self.k_up, self.scale
        w = self.weights(x).reshape(B, k * k, H, s, W, s)  # output pixel (y*s + a, x*s + b)
        patches = F.unfold(x, k, padding=k // 2).reshape(B, C, k * k, H, W)
        out = torch.einsum("bckhw,bkhawd->bchawd", patches, w)  # [B, C, H, s, W, s]
        return out.reshape(B, C, H * s, W * s)


class Refiner(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        r, C = cfg["refiner"], cfg["image"]["channels"]
        D = cfg["backbone"]["width"]
        chans = [r["base_channels"] * m for m in r["channel_mult"]]
        g, ct, cf = r["groups"], r["time_channels"], r["carafe"]
        self.conv_in = nn.Conv2d(2 * C, r["base_channels"], 3, padding=1)
        self.enc = nn.ModuleList()
        self.down = nn.ModuleList()
        cin = r["base_channels"]
        for i, ch in enumerate(chans):
            self.enc.append(ResBlock(cin, ch, g, D, "film", ct))
            if i < len(chans) - 1:
                self.down.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
            cin = ch
        self.mid = ResBlock(chans[-1], chans[-1], g, D, "concat", ct)
        self.up = nn.ModuleList()
        self.fuse = nn.ModuleList()
        self.dec = nn.ModuleList()
        # decoder level i (from len-2 down to 0) is stored at index len-2-i
        for i in range(len(chans) - 2, -1, -1):
            self.up.append(Carafe(chans[i + 1], cf["k_up"], cf["k_enc"], cf["scale"], cf["compress"]))
            self.fuse.append(nn.Conv2d(chans[i + 1] + chans[i], chans[i], 1))
            self.dec.append(ResBlock(chans[i], chans[i], g, D, "gated", ct))
        self.norm_out = nn.GroupNorm(g, chans[0], eps=GN_EPS)
        self.conv_out = nn.Conv2d(chans[0], C, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x_t, eps_s, c):
        """x_t, eps_s [B, C, H, W]; c [B, D] -> r [B, C, H, W]."""
        h = self.conv_in(torch.cat([x_t, eps_s], dim=1))
        skips = []
        for i, blk in enumerate(self.enc):
            h = blk(h, c)
            if i < len(self.down):
                skips.append(h)
                h = self.down[i](h)
        h = self.mid(h, c)
        for up, fuse, dec in zip(self.up, self.fuse, self.dec):
            h = fuse(torch.cat([up(h), skips.pop()], dim=1))
            h = dec(h, c)
        return self.conv_out(silu(self.norm_out(h)))
