"""Progressive re-parameterisable BatchNorm (SLAB, Guo et al., 2024) in place of the DiT block's norms.

  RepBN(x)  = BN(x) + eta * x              BN over the channels D of every token of the batch
                                           (BatchNorm1d on [B*N, D]); eta a learned scalar (init 1)
  norm(x)   = lam * LN(x) + (1 - lam) * RepBN(x),   lam = max(0, 1 - step / repbn_steps)
The trainer lowers lam linearly from 1 to 0 (`set_repbn_lambda`); at lam = 0 with BN's running
statistics RepBN is a per-channel affine map a * x + c,
  a = gamma / sqrt(var + eps) + eta,   c = beta - gamma * mean / sqrt(var + eps),
which the export folds into the layer after the norm (fold_repbn_state), so an exported model has
no normalisation there at all:
  norm1 / norm2 (adaLN-modulated):  (a x + c)(1 + sc) + sh = x (1 + sc') + sh' with
      sc' = a sc + a - 1,  sh' = sh + c sc + c   -> the ada rows of sh and sc (linear in SiLU(c))
  ln_c (before the cross-attention query):  W_q (a x + c) + b_q = (W_q diag(a)) x + (W_q c + b_q)
A folded block (DuetModel(..., repbn_folded=True), what checkpoint.load_model builds) applies the
bare adaLN modulation, and feeds x straight into cross.q.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

BN_EPS = 1e-5


class RepBN(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.bn = nn.BatchNorm1d(dim, eps=BN_EPS)
        self.eta = nn.Parameter(torch.ones(1))

    def forward(self, x):  # x [B, N, D]
        B, N, D = x.shape
        return self.bn(x.reshape(B * N, D)).reshape(B, N, D) + self.eta * x


class ProgressiveNorm(nn.Module):
    """lam * LN(x) + (1 - lam) * RepBN(x); LN plain (eps 1e-6) or affine (`ln` given)."""

    def __init__(self, dim: int, ln: nn.LayerNorm | None = None):
        super().__init__()
        self.ln = ln
        self.rep = RepBN(dim)
        self.register_buffer("lam", torch.ones(()))  # persistent: training checkpoints resume it

    def forward(self, x):
        lam = float(self.lam)
        if lam <= 0.0:
            return self.rep(x)
        ln = self.ln(x) if self.ln is not None else F.layer_norm(x, x.shape[-1:], eps=1e-6)
        return ln if lam >= 1.0 and not self.training else lam * ln + (1.0 - lam) * self.rep(x)


def repbn_lambda(step: int, repbn_steps: int) -> float:
    return 0.0 if repbn_steps <= 0 else max(0.0, 1.0 - step / repbn_steps)


def set_repbn_lambda(model: nn.Module, lam: float):
    for m in model.modules():
        if isinstance(m, ProgressiveNorm):
            m.lam.fill_(lam)


def _affine(state, prefix):
    """(a [D], c [D]) in float64 of the RepBN at `prefix` (…norm1.rep etc.)."""
    g = state[prefix + ".bn.weight"].double()
    beta = state[prefix + ".bn.bias"].double()
    mean = state[prefix + ".bn.running_mean"].double()
    inv = 1.0 / torch.sqrt(state[prefix + ".bn.running_var"].double() + BN_EPS)
    eta = state[prefix + ".eta"].double()
    return g * inv + eta, beta - g * mean * inv


def fold_repbn_state(state: dict, cfg: dict) -> dict:
    """Training state_dict -> exported state_dict of a model with RepBN blocks (folded; see above).

    Blocks without RepBN and state dicts that are already folded pass through unchanged. Raises
    ValueError when a RepBN block still mixes in its LayerNorm (lam > 0): such a model cannot be
    folded (train past the progressive schedule first).
    """
    from . import config as config_mod
    from .backbone import block_norms
    out = dict(state)
    b = config_mod.from_dict(cfg)["backbone"]  # configs saved before the norm option existed
    D = b["width"]
    for i, kind in enumerate(block_norms(b)):
        pre = f"backbone.blocks.{i}"
        if kind != "repbn" or pre + ".norm1.rep.eta" not in state:
            continue
        for n in ("norm1", "norm2", "ln_c"):
            lam = float(state[f"{pre}.{n}.lam"])
            if lam > 0:
                raise ValueError(f"{pre}.{n}: RepBN mixing weight lam = {lam:g} > 0 (the LayerNorm is still "
                                 "in use); train past the progressive schedule (--repbn-steps) before exporting")
        W = state[pre + ".ada.weight"].double().clone()  # [6D, D]: sh1 sc1 g1 sh2 sc2 g2
        b = state[pre + ".ada.bias"].double().clone()
        for n, (r_sh, r_sc) in (("norm1", (0, 1)), ("norm2", (3, 4))):
            a, c = _affine(state, f"{pre}.{n}.rep")
            sh, sc = slice(r_sh * D, (r_sh + 1) * D), slice(r_sc * D, (r_sc + 1) * D)
            W_sc, b_sc = W[sc].clone(), b[sc].clone()
            W[sh] = W[sh] + c[:, None] * W_sc
            b[sh] = b[sh] + c * b_sc + c
            W[sc] = a[:, None] * W_sc
            b[sc] = a * b_sc + a - 1.0
        a, c = _affine(state, f"{pre}.ln_c.rep")
        Wq = state[pre + ".cross.q.weight"].double()
        out[pre + ".cross.q.bias"] = (state[pre + ".cross.q.bias"].double() + Wq @ c).float()
        out[pre + ".cross.q.weight"] = (Wq * a[None, :]).float()
        out[pre + ".ada.weight"], out[pre + ".ada.bias"] = W.float(), b.float()
        for k in [k for k in out if k.startswith((pre + ".norm1.", pre + ".norm2.", pre + ".ln_c."))]:
            del out[k]
    return out
