"""Text encoder: token + learned position embedding, L_t pre-LN transformer blocks, final LN."""
from __future__ import annotations

import torch
import torch.nn as nn

from .layers import Attention, Mlp


class TextBlock(nn.Module):
    def __init__(self, dim, heads, ratio):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim, eps=1e-5)
        self.attn = Attention(dim, heads)
        self.ln2 = nn.LayerNorm(dim, eps=1e-5)
        self.mlp = Mlp(dim, ratio)

    def forward(self, x, mask):
        x = x + self.attn(self.ln1(x), key_mask=mask)
        return x + self.mlp(self.ln2(x))


class TextEncoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        t = cfg["text"]
        self.tok_emb = nn.Embedding(t["vocab_size"], t["width"])
        self.pos_emb = nn.Parameter(torch.randn(t["max_length"], t["width"]) * 0.02)
        self.blocks = nn.ModuleList([TextBlock(t["width"], t["heads"], t["mlp_ratio"]) for _ in range(t["layers"])])
        self.ln_f = nn.LayerNorm(t["width"], eps=1e-5)
        nn.init.normal_(self.tok_emb.weight, std=0.02)

    def forward(self, ids, mask):
        """ids [B, L] int64, mask [B, L] bool -> E [B, L, Dt], p [B, Dt]."""
        L = ids.shape[1]
        x = self.tok_emb(ids) + self.pos_emb[:L][None]
        for blk in self.blocks:
            x = blk(x, mask)
        e = self.ln_f(x)
        m = mask.to(e.dtype)[..., None]
        p = (e * m).sum(1) / m.sum(1)
        return e, p
