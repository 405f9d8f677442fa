"""SLAB simplified linear attention (Guo et al., 2024) for the backbone's image self-attention.

Per image and head (N = gh*gw tokens, d = head width, phi = ReLU):
  kv  = (1/N) sum_n phi(k_n)^T v_n                 [d, d]
  z   = (1/N) sum_n phi(k_n)                       [d]
  o_n = (phi(q_n) kv) / (phi(q_n) . z + 1e-6)      [d]        (the normaliser in fp32)
  o  += DWC(v)                                      depth-wise k x k conv over the token grid,
                                                    weights [d, 1, k, k] shared by all heads
  out = proj(o)
Cost O(N d^2) instead of O(N^2 d). No key mask: image self-attention has no padding.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

SLAB_EPS = 1e-6


def slab_core(q, k, v, heads: int, gh: int, gw: int, dwc_w, dwc_b):
    """q, k, v [B, N, D] (N = gh*gw) -> o [B, N, D], before the output projection."""
    B, N, D = q.shape
    d = D // heads
    split = lambda x: x.reshape(B, N, heads, d).transpose(1, 2)  # [B, h, N, d]
    qh, kh, vh = F.relu(split(q)), F.relu(split(k)), split(v)
    kv = (kh.transpose(-1, -2) @ vh) / N                 # [B, h, d, d]
    z = kh.mean(dim=-2, keepdim=True)                    # [B, h, 1, d]
    den = (qh * z).sum(-1, keepdim=True) + SLAB_EPS      # [B, h, N, 1]
    o = (qh @ kv) / den                                  # [B, h, N, d]
    img = vh.reshape(B * heads, gh, gw, d).permute(0, 3, 1, 2)  # [B*h, d, gh, gw]
    loc = F.conv2d(img, dwc_w, dwc_b, padding=dwc_w.shape[-1] // 2, groups=d)
    o = o + loc.permute(0, 2, 3, 1).reshape(B, heads, N, d)
    return o.transpose(1, 2).reshape(B, N, D)


class SlabAttention(nn.Module):
    """Self-attention with the SLAB kernel: qkv = Linear(D, 3D), dwc = depth-wise conv, proj."""

    def __init__(self, dim: int, heads: int, kernel: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.dwc = nn.Conv2d(dim // heads, dim // heads, kernel, padding=kernel // 2, groups=dim // heads)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, grid):
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        return self.proj(slab_core(q, k, v, self.heads, grid[0], grid[1], self.dwc.weight, self.dwc.bias))
