"""Building blocks shared by the text encoder and the backbone (see docs/model.md)."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def silu(x):
    # Written as x * sigmoid(x) so the ONNX export is Sigmoid·Mul (TensorRT friendly).
    return x * torch.sigmoid(x)


def gelu_tanh(x):
    return F.gelu(x, approximate="tanh")


def timestep_sinusoid(t: torch.Tensor, dim: int = 256, max_period: float = 10000.0):
    """DiT/ADM embedding of real-valued t: [cos(t*f_k), sin(t*f_k)], f_k = max_period^(-k/half).

    Computed in float64 and rounded to float32 so every implementation agrees to the last bit.
    t: [B] -> [B, dim]
    """
    half = dim // 2
    k = torch.arange(half, dtype=torch.float64)
    freqs = torch.exp(-math.log(max_period) * k / half)
    args = t.to(torch.float64)[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1).to(torch.float32)


def pos_embed_2d(dim: int, gh: int, gw: int) -> torch.Tensor:
    """Fixed 2-D sin-cos position embedding [gh*gw, dim]; token n = i*gw + j (row i, column j).

    emb[n] = concat(sincos(dim/2, j), sincos(dim/2, i)), sincos(d, p) = [sin(p*w_k), cos(p*w_k)],
    w_k = 10000^(-k/(d/2)), k < d/2. Computed in float64.
    """
    def sincos(d, pos):
        w = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = pos[:, None] * w[None]
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    ii, jj = np.meshgrid(np.arange(gh, dtype=np.float64), np.arange(gw, dtype=np.float64), indexing="ij")
    emb = np.concatenate([sincos(dim // 2, jj.reshape(-1)), sincos(dim // 2, ii.reshape(-1))], axis=1)
    return torch.from_numpy(emb).to(torch.float32)


class Attention(nn.Module):
    """Multi-head attention. Self: qkv = Linear(D, 3D). Cross: q = Linear(D, D), k, v = Linear(Dk, D).

    key_mask: [B, Nk] bool, True = real token. Masked keys get -inf before the softmax.
    """

    def __init__(self, dim: int, heads: int, kv_dim: int | None = None):
        super().__init__()
        self.heads = heads
        self.cross = kv_dim is not None
        if self.cross:
            self.q = nn.Linear(dim, dim)
            self.k = nn.Linear(kv_dim, dim)
            self.v = nn.Linear(kv_dim, dim)
        else:
            self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def split(self, x):  # [B, N, D] -> [B, h, N, D/h]
        B, N, D = x.shape
        return x.reshape(B, N, self.heads, D // self.heads).transpose(1, 2)

    def kv(self, ctx):
        """Per-prompt cross-attention keys/values: ctx [B, L, Dk] -> k, v [B, L, D]."""
        return self.k(ctx), self.v(ctx)

    def attend(self, q, k, v, key_mask=None):
        B, N, D = q.shape
        qh, kh, vh = self.split(q), self.split(k), self.split(v)
        s = (qh @ kh.transpose(-1, -2)) * (1.0 / math.sqrt(D // self.heads))  # [B, h, N, L]
        if key_mask is not None:
            s = s.masked_fill(~key_mask[:, None, None, :], float("-inf"))
        a = torch.softmax(s, dim=-1)
        o = (a @ vh).transpose(1, 2).reshape(B, N, D)
        return self.proj(o)

    def forward(self, x, key_mask=None, kv=None):
        if self.cross:
            k, v = kv
            return self.attend(self.q(x), k, v, key_mask)
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        return self.attend(q, k, v, key_mask)


class Mlp(nn.Module):
    def __init__(self, dim: int, ratio: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, dim * ratio)
        self.fc2 = nn.Linear(dim * ratio, dim)

    def forward(self, x):
        return self.fc2(gelu_tanh(self.fc1(x)))
