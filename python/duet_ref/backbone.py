"""Semantic backbone: a DiT with adaLN-Zero, text cross-attention and a per-channel semantic gate."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .layers import Attention, Mlp, pos_embed_2d, silu
from .slab_attention import SlabAttention


def modulate(x, shift, scale):
    return x * (1 + scale[:, None]) + shift[:, None]


def ln_plain(x):  # LayerNorm without affine, eps 1e-6
    return F.layer_norm(x, x.shape[-1:], eps=1e-6)


def block_attention(b) -> list:
    """backbone.attention: one kind for every block, or a list with one kind per block."""
    a = b["attention"]
    return list(a) if isinstance(a, list) else [a] * b["depth"]


class DiTBlock(nn.Module):
    def __init__(self, dim, heads, ratio, text_dim, attention="softmax", slab_kernel=5):
        super().__init__()
        self.ada = nn.Linear(dim, 6 * dim)
        self.kind = attention
        self.attn = SlabAttention(dim, heads, slab_kernel) if attention == "slab_linear" else Attention(dim, heads)
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
        xm = modulate(ln_plain(x), sh1, sc1)
        x = x + g1[:, None] * (self.attn(xm, grid) if self.kind == "slab_linear" else self.attn(xm))
        x = x + sem[:, None] * self.cross(self.ln_c(x), key_mask=key_mask, kv=kv)
        x = x + g2[:, None] * self.mlp(modulate(ln_plain(x), sh2, sc2))
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
    def __init__(self, cfg):
        super().__init__()
        b, im, t = cfg["backbone"], cfg["image"], cfg["text"]
        self.p, self.C = b["patch"], im["channels"]
        D = b["width"]
        self.patch = nn.Conv2d(self.C, D, b["patch"], stride=b["patch"])
        kinds = block_attention(b)
        self.blocks = nn.ModuleList([DiTBlock(D, b["heads"], b["mlp_ratio"], t["width"], kinds[i], b["slab_kernel"])
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
                    compute = cache.decide(modulate(ln_plain(h), sh1, sc1))
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
