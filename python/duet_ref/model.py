"""DuetModel: text encoder + conditioning + DiT backbone + detail refiner + gate, and the fusion.

    eps_s = Backbone(x_t, c, K/V(E), p)
    r     = Refiner(concat[x_t, eps_s], c);   eps_d = HP(r)
    alpha = sigmoid(GateMLP(sinusoid(t)))                         # [B]
    refine step:  eps = LP(eps_s) + alpha * HP(eps_s) + (1 - alpha) * eps_d
    other steps:  eps = eps_s   (refiner not run)
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .backbone import Backbone
from .config import TIME_EMBED_DIM
from .layers import silu, timestep_sinusoid
from .refiner import Refiner
from .spectral import highpass, highpass_mask
from .text_encoder import TextEncoder
from .tokenizer import make_tokenizer


class TimestepMlp(nn.Module):
    def __init__(self, dim_in, dim_hidden, dim_out):
        super().__init__()
        self.fc1 = nn.Linear(dim_in, dim_hidden)
        self.fc2 = nn.Linear(dim_hidden, dim_out)

    def forward(self, x):
        return self.fc2(silu(self.fc1(x)))


class Conditioning(nn.Module):
    """c = TimestepMlp(sinusoid(t)) + pool_proj(p)   -> [B, D]"""

    def __init__(self, cfg):
        super().__init__()
        D, Dt = cfg["backbone"]["width"], cfg["text"]["width"]
        self.t_mlp = TimestepMlp(TIME_EMBED_DIM, D, D)
        self.pool_proj = nn.Linear(Dt, D)

    def forward(self, t, p):
        return self.t_mlp(timestep_sinusoid(t, TIME_EMBED_DIM)) + self.pool_proj(p)


class Gate(nn.Module):
    """alpha(t) = sigmoid(fc2(SiLU(fc1(sinusoid(t)))))  -> [B]"""

    def __init__(self, cfg):
        super().__init__()
        self.mlp = TimestepMlp(TIME_EMBED_DIM, cfg["gate"]["hidden"], 1)

    def forward(self, t):
        return torch.sigmoid(self.mlp(timestep_sinusoid(t, TIME_EMBED_DIM)))[:, 0]


class PromptState:
    """Everything that depends only on the prompt: computed once, reused by every step."""

    def __init__(self, ids, mask, e, p, kvs):
        self.ids, self.mask, self.e, self.p, self.kvs = ids, mask, e, p, kvs


class DuetModel(nn.Module):
    """repbn_folded: build RepBN blocks as exported (norms folded away, repbn.py), as
    checkpoint.load_model does; False (training) builds them with their progressive norms."""

    def __init__(self, cfg, repbn_folded=False):
        super().__init__()
        self.cfg = cfg
        self.tokenizer = make_tokenizer(cfg)
        self.text = TextEncoder(cfg)
        self.cond = Conditioning(cfg)
        self.backbone = Backbone(cfg, repbn_folded)
        self.refiner = Refiner(cfg)
        self.gate = Gate(cfg)
        hp = cfg["highpass"]
        self.register_buffer("hp_mask", highpass_mask(cfg["image"]["height"], cfg["image"]["width"],
                                                      hp["rho_c"], hp["tau"]), persistent=False)

    # -- prompt side ---------------------------------------------------------------------------
    def tokenize(self, prompts):
        ids, mask = zip(*(self.tokenizer.encode(p) for p in prompts))
        return torch.tensor(ids, dtype=torch.int64), torch.tensor(mask, dtype=torch.bool)

    def encode_ids(self, ids, mask):
        e, p = self.text(ids, mask)
        return PromptState(ids, mask, e, p, self.backbone.prompt_kv(e))

    def encode_prompt(self, prompts):
        return self.encode_ids(*self.tokenize(prompts))

    # -- denoiser ------------------------------------------------------------------------------
    def mask_for(self, x):
        H, W = x.shape[-2:]
        if tuple(self.hp_mask.shape) == (H, W):
            return self.hp_mask
        hp = self.cfg["highpass"]
        return highpass_mask(H, W, hp["rho_c"], hp["tau"]).to(x.device)

    def forward(self, x_t, t, ps: PromptState, refine: bool = True, intermediates: bool = False,
                cache=None):
        """x_t [B, C, H, W], t [B] real-valued -> dict with eps (and eps_s, r, eps_d, alpha, ...).
        cache: a cache.BackboneCache consulted by the backbone (docs/caching.md)."""
        c = self.cond(t, ps.p)
        eps_s, blocks = self.backbone(x_t, c, ps.kvs, ps.mask, ps.p, return_blocks=True, cache=cache)
        out = {"c": c, "eps_s": eps_s}
        if intermediates:
            out["blocks"] = blocks
        if not refine:
            out["eps"] = eps_s
            return out
        m = self.mask_for(x_t)
        r = self.refiner(x_t, eps_s, c)
        eps_d = highpass(r, m)
        alpha = self.gate(t)
        hp_s = highpass(eps_s, m)
        a = alpha[:, None, None, None]
        out.update(r=r, eps_d=eps_d, alpha=alpha, hp_s=hp_s,
                   eps=(eps_s - hp_s) + a * hp_s + (1 - a) * eps_d)
        return out

    def branch_parameters(self):
        """Parameter counts per branch, as `duet inspect` reports them."""
        count = lambda m: sum(p.numel() for p in m.parameters())
        return {"text": count(self.text), "cond": count(self.cond), "backbone": count(self.backbone),
                "refiner": count(self.refiner), "gate": count(self.gate)}
