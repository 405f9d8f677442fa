"""CSWin cross-shaped window self-attention with LePE (Dong et al., 2022) for the backbone.

Per image (token grid gh x gw, N = gh*gw, D = heads*d, heads even, stripe width sw):
  heads [0, heads/2)       attend within horizontal stripes: rows [s*sw, min((s+1)*sw, gh)), all columns
  heads [heads/2, heads)   attend within vertical stripes:   columns [s*sw, min((s+1)*sw, gw)), all rows
  (the last stripe is shorter when sw does not divide the grid)
  o_n = softmax(q_n K_w^T / sqrt(d)) V_w + LePE(v)_n     (K_w, V_w: the tokens of n's window w)
  LePE: depth-wise k x k conv of v over the window's own sub-grid (zero outside the window),
        weights [D, 1, k, k], bias [D] (one filter per channel, as CSWin's get_v)
  out = proj(o)
Cost O(N * sw * (gh + gw) * d) instead of O(N^2 d).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def _windows(gh: int, gw: int, stripe: int, vertical: bool):
    """(row slice, column slice) of each stripe window, in order."""
    if vertical:
        return [(slice(0, gh), slice(s, min(s + stripe, gw))) for s in range(0, gw, stripe)]
    return [(slice(s, min(s + stripe, gh)), slice(0, gw)) for s in range(0, gh, stripe)]


def cswin_core(q, k, v, heads: int, gh: int, gw: int, stripe: int, lepe_w, lepe_b):
    """q, k, v [B, N, D] (N = gh*gw) -> o [B, N, D], before the output projection."""
    B, N, D = q.shape
    d = D // heads
    half = (heads // 2) * d
    qg, kg, vg = (t.reshape(B, gh, gw, D) for t in (q, k, v))
    out = torch.empty(B, gh, gw, D, dtype=q.dtype)
    pad = lepe_w.shape[-1] // 2
    for vertical, (c0, c1) in ((False, (0, half)), (True, (half, D))):
        nh = (c1 - c0) // d
        for rs, cs in _windows(gh, gw, stripe, vertical):
            qw, kw, vw = (t[:, rs, cs, c0:c1] for t in (qg, kg, vg))  # [B, wh, ww, Dc]
            wh, ww = qw.shape[1], qw.shape[2]
            split = lambda x: x.reshape(B, wh * ww, nh, d).transpose(1, 2)  # [B, nh, L, d]
            s = (split(qw) @ split(kw).transpose(-1, -2)) * (1.0 / math.sqrt(d))  # [B, nh, L, L]
            o = (s.softmax(-1) @ split(vw)).transpose(1, 2).reshape(B, wh, ww, c1 - c0)
            img = vw.permute(0, 3, 1, 2)  # [B, Dc, wh, ww]
            loc = F.conv2d(img, lepe_w[c0:c1], lepe_b[c0:c1], padding=pad, groups=c1 - c0)
            out[:, rs, cs, c0:c1] = o + loc.permute(0, 2, 3, 1)
    return out.reshape(B, N, D)


class CSWinAttention(nn.Module):
    """Self-attention within cross-shaped stripes: qkv = Linear(D, 3D), lepe = depth-wise conv, proj."""

    def __init__(self, dim: int, heads: int, stripe: int, kernel: int):
        super().__init__()
        self.heads, self.stripe = heads, stripe
        self.qkv = nn.Linear(dim, 3 * dim)
        self.lepe = nn.Conv2d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, grid):
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        return self.proj(cswin_core(q, k, v, self.heads, grid[0], grid[1], self.stripe,
                                    self.lepe.weight, self.lepe.bias))
