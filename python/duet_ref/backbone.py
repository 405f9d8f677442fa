"""Semantic backbone: a DiT with adaLN-Zero, text cross-attention and a per-channel semantic gate."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .cswin_attention import CSWinAttention
from .layers import Attention, Mlp, pos_embed_2d, silu
from .repbn import ProgressiveNorm
from .slab_attention import SlabAttention


def modulate(x, shift, scale):
    return x * (1 + scale[:, None]) + shift[:, None]


def ln_plain(x):  # LayerNorm without affine, eps 1e-6
    return F.layer_norm(x, x.shape[-1:], eps=1e-6)


def block_attention(b) -> list:
    """backbone.attention: one kind for every block, or a list with one kind per block."""
    a = b["attention"]
    return list(a) if isinstance(a, list) else [a] * b["depth"]


def block_norms(b) -> list:
    """backbone.norm: layernorm | repbn for every block, or a list with one per block."""
    a = b["norm"]
    return list(a) if isinstance(a, list) else [a] * b["depth"]


def identity(x):
    return x


def ln_plain_late(x):
    """ln_plain looked up when called (onnx_export swaps the module's ln_plain during export)."""
    return ln_plain(x)


class DiTBlock(nn.Module):
    """norm = "repbn": training (repbn_folded False) uses repbn.ProgressiveNorm for norm1, ln_c and
    norm2; an exported model (repbn_folded True) has them folded away (identity)."""

    def __init__(self, dim, heads, ratio, text_dim, attention="softmax", slab_kernel=5, norm="layernorm",
                 repbn_folded=False, cswin_stripe=1, cswin_kernel=3):
        super().__init__()
        self.ada = nn.Linear(dim, 6 * dim)
        self.kind = attention
        if attention == "slab_linear":
            self.attn = SlabAttention(dim, heads, slab_kernel)
        elif attention == "cswin":
            self.attn = CSWinAttention(dim, heads, cswin_stripe, cswin_kernel)
        else:
            self.attn = Attention(dim, heads)
        if norm == "repbn" and repbn_folded:
            self.norm1 = self.norm2 = self.ln_c = identity
        elif norm == "repbn":
            self.norm1, self.norm2 = ProgressiveNorm(dim), ProgressiveNorm(dim)
            self.ln_c = ProgressiveNorm(dim, nn.LayerNorm(dim, eps=1e-6))
        else:
            self.norm1 = self.norm2 = ln_plain_late
            self.ln_c = nn.LayerNorm(dim, eps=1e-6)
        self.cross = Attention(dim, heads, kv_dim=text_dim)
        self.sem_gate = nn.Linear(text_dim, dim)
        self.mlp = Mlp(dim, ratio)
        nn.init.zeros_(self.ada.weight)
        nn.init.zeros_(self.ada.bias)

    def forward(self, x, c, kv, key_mask, sem, grid):
        """x [B, N, D]; c [B, D]; kv = (k, v) [B, L, D]; key_mask [B, L]; sem = sigmoid(G(p)) [B, D];
        grid = (gh, gw), N = gh*gw."""
        sh1, sc1, g1, sh2, sc2, g2 = self.ada(silu(c)).chunk(6, dim=-1)
        xm = modulate(self.norm1(x), sh1, sc1)
        x = x + g1[:, None] * (self.attn(xm) if self.kind == "softmax" else self.attn(xm, grid))
        x = x + sem[:, None] * self.cross(self.ln_c(x), key_mask=key_mask, kv=kv)
        x = x + g2[:, None] * self.mlp(modulate(self.norm2(x), sh2, sc2))
        return x


class FinalLayer(nn.Module):
    def __init__(self, dim, out):
        super().__init__()
        self.ada = nn.Linear(dim, 2 * dim)
        self.linear = nn.Linear(dim, out)
        for m in (self.ada, self.linear):
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)

    def forward(self, x, c):
        shift, scale = self.ada(silu(c)).chunk(2, dim=-1)
        return self.linear(modulate(ln_plain(x), shift, scale))


class Backbone(nn.Module):
    def __init__(self, cfg, repbn_folded=False):
        super().__init__()
        b, im, t = cfg["backbone"], cfg["image"], cfg["text"]
        self.p, self.C = b["patch"], im["channels"]
        D = b["width"]
        self.patch = nn.Conv2d(self.C, D, b["patch"], stride=b["patch"])
        kinds, norms = block_attention(b), block_norms(b)
        self.blocks = nn.ModuleList([DiTBlock(D, b["heads"], b["mlp_ratio"], t["width"], kinds[i], b["slab_kernel"],
                                              norms[i], repbn_folded, b["cswin_stripe"], b["cswin_kernel"])
                                     for i in range(b["depth"])])
        self.final = FinalLayer(D, b["patch"] ** 2 * self.C)
        self.grid = (im["height"] // self.p, im["width"] // self.p)
        self.register_buffer("pos", pos_embed_2d(D, *self.grid), persistent=False)

    def prompt_kv(self, e):
        """Per-prompt cross-attention K/V of every block: list of (k, v), each [B, L, D]."""
        return [blk.cross.kv(e) for blk in self.blocks]

    def forward(self, x, c, kvs, key_mask, p_text, return_blocks=False, cache=None):
        """x [B, C, H, W] -> eps_s [B, C, H, W]. cache: a cache.BackboneCache (the span of blocks
        it decides to reuse is replaced by its cached residual; outs then holds the blocks run)."""
        B, C, H, W = x.shape
        gh, gw = H // self.p, W // self.p
        h = self.patch(x).flatten(2).transpose(1, 2)  # [B, N, D]
        pos = self.pos if (gh, gw) == self.grid else pos_embed_2d(h.shape[-1], gh, gw).to(h)
        h = h + pos[None]
        outs = []
        h_in, h0, compute = h, None, True
        for i, (blk, kv) in enumerate(zip(self.blocks, kvs)):
            if cache is not None and i == cache.e:
                h = self._finish_span(cache, compute, h, h0)
            if cache is not None and i == cache.a:
                h0 = h
                if cache.spec["mode"] == "step":  # block 0's modulated input
                    sh1, sc1 = blk.ada(silu(c)).chunk(6, dim=-1)[:2]
                    compute = cache.decide(modulate(blk.norm1(h), sh1, sc1))
                else:  # the first F blocks' residual
                    compute = cache.decide(h - h_in)
            if cache is not None and cache.a <= i < cache.e and not compute:
                continue
            sem = torch.sigmoid(blk.sem_gate(p_text))
            h = blk(h, c, kv, key_mask, sem, (gh, gw))
            outs.append(h)
        if cache is not None and cache.e == len(self.blocks):
            h = self._finish_span(cache, compute, h, h0)
        y = self.final(h, c)  # [B, N, p*p*C], laid out (pi, pj, c)
        y = y.reshape(B, gh, gw, self.p, self.p, C).permute(0, 5, 1, 3, 2, 4).reshape(B, C, H, W)
        return (y, outs) if return_blocks else y

    @staticmethod
    def _finish_span(cache, compute, h, h0):
        if compute:
            cache.res = h - h0
            return h
        return h0 + cache.res
