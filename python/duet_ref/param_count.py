"""Analytic parameter counts per branch (same keys as DuetModel.branch_parameters()), without
allocating the model; used to size configs/seed-scale.json and checked against real models in tests.

    python -m duet_ref.param_count configs/seed-scale.json
"""
from __future__ import annotations

import json
import sys

from . import config as config_mod
from .config import TIME_EMBED_DIM


def _lin(i, o):
    return i * o + o


def _conv(i, o, k):
    return i * o * k * k + o


def count_parameters(cfg: dict) -> dict:
    cfg = config_mod.from_dict(cfg)
    im, tx, bb, rf, gt = cfg["image"], cfg["text"], cfg["backbone"], cfg["refiner"], cfg["gate"]
    C, Dt, D = im["channels"], tx["width"], bb["width"]
    # text encoder
    rt = tx["mlp_ratio"]
    text_block = 2 * 2 * Dt + _lin(Dt, 3 * Dt) + _lin(Dt, Dt) + _lin(Dt, rt * Dt) + _lin(rt * Dt, Dt)
    text = tx["vocab_size"] * Dt + tx["max_length"] * Dt + tx["layers"] * text_block + 2 * Dt
    cond = _lin(TIME_EMBED_DIM, D) + _lin(D, D) + _lin(Dt, D)
    # backbone
    r, p = bb["mlp_ratio"], bb["patch"]
    block = (_lin(D, 6 * D) + _lin(D, 3 * D) + _lin(D, D)          # ada, self-attn qkv + proj
             + 2 * D + _lin(D, D) + 2 * _lin(Dt, D) + _lin(D, D)   # ln_c, cross q, k, v, proj
             + _lin(Dt, D) + _lin(D, r * D) + _lin(r * D, D))      # sem_gate, mlp
    from .backbone import block_attention, block_norms
    d, extra = D // bb["heads"], 0
    for kind, norm in zip(block_attention(bb), block_norms(bb)):
        if kind == "slab_linear":  # dwc [d, 1, k, k] + [d]
            extra += d * bb["slab_kernel"] ** 2 + d
        elif kind == "cswin":  # lepe [D, 1, k, k] + [D]
            extra += D * bb["cswin_kernel"] ** 2 + D
        if norm == "repbn":  # training model: three RepBN (BN affine 2D + eta), ln_c keeps its LN
            extra += 3 * (2 * D + 1)
    backbone = _conv(C, D, p) + bb["depth"] * block + extra + _lin(D, 2 * D) + _lin(D, p * p * C)
    # refiner
    ct, cf = rf["time_channels"], rf["carafe"]
    chans = [rf["base_channels"] * m for m in rf["channel_mult"]]

    def resblock(cin, cout, mode):
        n = 2 * cin + _conv(cin, cout, 3) + 2 * cout + _conv(cout, cout, 3)
        n += {"film": _lin(D, 2 * cout), "gated": _lin(D, 3 * cout),
              "concat": _lin(D, ct) + _conv(cout + ct, cout, 1)}[mode]
        n += _conv(cin, cout, 1) if cin != cout else 0
        return n + _lin(cout, cout) + _conv(cout, cout, 1)

    ref = _conv(2 * C, rf["base_channels"], 3)
    cin = rf["base_channels"]
    for i, ch in enumerate(chans):
        ref += resblock(cin, ch, "film")
        if i < len(chans) - 1:
            ref += _conv(ch, ch, 3)
        cin = ch
    ref += resblock(chans[-1], chans[-1], "concat")
    for i in range(len(chans) - 2, -1, -1):
        s2k2 = cf["scale"] ** 2 * cf["k_up"] ** 2
        ref += _conv(chans[i + 1], cf["compress"], 1) + _conv(cf["compress"], s2k2, cf["k_enc"])
        ref += _conv(chans[i + 1] + chans[i], chans[i], 1) + resblock(chans[i], chans[i], "gated")
    ref += 2 * chans[0] + _conv(chans[0], C, 3)
    gate = _lin(TIME_EMBED_DIM, gt["hidden"]) + _lin(gt["hidden"], 1)
    return {"text": text, "cond": cond, "backbone": backbone, "refiner": ref, "gate": gate}


def cross_attention_parameters(cfg: dict) -> int:
    """Backbone parameters of the cross-attention (q, k, v, proj, ln_c) and sem-gate layers."""
    cfg = config_mod.from_dict(cfg)
    D, Dt = cfg["backbone"]["width"], cfg["text"]["width"]
    return cfg["backbone"]["depth"] * (2 * D + 2 * _lin(D, D) + 2 * _lin(Dt, D) + _lin(Dt, D))


def main(argv=None):
    for path in (argv if argv is not None else sys.argv[1:]):
        cfg = config_mod.load(path)
        counts = count_parameters(cfg)
        counts["total"] = sum(counts.values())
        counts["backbone_cross_attention_and_sem_gate"] = cross_attention_parameters(cfg)
        print(path, json.dumps(counts))


if __name__ == "__main__":
    main()
