"""CSWin stripe attention + LePE and progressive RepBN (issue 20): the batched CSWin formula
against a per-token float64 loop (ragged stripes included), RepBN folding (the exported, folded
model computes what the training model computes), the progressive schedule, config errors."""
import math
import os
import tempfile

import pytest
import torch

from duet_ref import config as config_mod
from duet_ref.checkpoint import load_model, save_state
from duet_ref.config import ConfigError
from duet_ref.cswin_attention import cswin_core
from duet_ref.export import random_model
from duet_ref.repbn import ProgressiveNorm, fold_repbn_state, repbn_lambda, set_repbn_lambda


def naive_cswin(q, k, v, heads, gh, gw, sw, w, b):
    B, N, D = q.shape
    d = D // heads
    r = w.shape[-1] // 2
    out = torch.zeros(B, N, D, dtype=torch.float64)
    for bi in range(B):
        for h in range(heads):
            vertical = h >= heads // 2
            sl = slice(h * d, (h + 1) * d)
            for n in range(N):
                i, j = divmod(n, gw)
                s = (j if vertical else i) // sw
                lo, hi = s * sw, min((s + 1) * sw, gw if vertical else gh)
                inwin = lambda ii, jj: 0 <= ii < gh and 0 <= jj < gw and lo <= (jj if vertical else ii) < hi
                keys = [m for m in range(N) if inwin(*divmod(m, gw))]
                qn = q[bi, n, sl].double()
                sc = torch.stack([qn @ k[bi, m, sl].double() for m in keys]) / math.sqrt(d)
                p = torch.softmax(sc, 0)
                o = sum(p[t] * v[bi, m, sl].double() for t, m in enumerate(keys))
                loc = b[sl].double().clone()
                for di in range(-r, r + 1):
                    for dj in range(-r, r + 1):
                        if inwin(i + di, j + dj):
                            loc += w[sl, 0, di + r, dj + r].double() * v[bi, (i + di) * gw + j + dj, sl].double()
                out[bi, n, sl] = o + loc
    return out


@pytest.mark.parametrize("gh,gw,sw,heads,ks", [(4, 6, 2, 2, 3), (5, 7, 2, 4, 3), (3, 3, 1, 2, 5), (4, 5, 8, 2, 3)])
def test_cswin_core_matches_per_token_loop(gh, gw, sw, heads, ks):
    g = torch.Generator().manual_seed(gh * 100 + gw)
    B, d = 2, 3
    D, N = heads * d, gh * gw
    q, k, v = (torch.randn(B, N, D, generator=g) for _ in range(3))
    w, b = torch.randn(D, 1, ks, ks, generator=g), torch.randn(D, generator=g)
    got = cswin_core(q, k, v, heads, gh, gw, sw, w, b).double()
    ref = naive_cswin(q, k, v, heads, gh, gw, sw, w, b)
    assert torch.allclose(got, ref, rtol=1e-5, atol=1e-5), (got - ref).abs().max()


def _cfg(**backbone):
    bb = {"width": 32, "depth": 3, "heads": 2}
    bb.update(backbone)
    return config_mod.from_dict({"image": {"height": 16, "width": 16}, "backbone": bb})


def _forward(m, x, t):
    ids, mask = m.tokenize(["a photo of a coat", ""])
    with torch.no_grad():
        return m(x, t, m.encode_ids(ids, mask), refine=True)["eps"]


def test_repbn_folded_export_computes_what_the_training_model_computes():
    cfg = _cfg(norm=["repbn", "layernorm", "repbn"], attention=["cswin", "softmax", "slab_linear"], cswin_stripe=3)
    m = random_model(cfg, 11)
    state = m.state_dict()
    assert "backbone.blocks.0.norm1.rep.bn.running_var" in state and "backbone.blocks.1.ln_c.weight" in state
    folded = fold_repbn_state(state, cfg)
    assert not any(k.startswith("backbone.") and (".norm1." in k or ".norm2." in k or ".blocks.0.ln_c" in k)
                   for k in folded)
    assert "backbone.blocks.1.ln_c.weight" in folded  # the layernorm block keeps its norm
    g = torch.Generator().manual_seed(3)
    x, t = torch.randn(2, 1, 16, 16, generator=g), torch.tensor([700.0, 30.0])
    want = _forward(m, x, t)
    with tempfile.TemporaryDirectory() as d:
        save_state(state, cfg, d)
        got = _forward(load_model(d), x, t)
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-5), (got - want).abs().max()


def test_export_refuses_a_model_still_mixing_in_layernorm():
    cfg = _cfg(norm="repbn")
    m = random_model(cfg, 12)
    set_repbn_lambda(m, 0.25)
    with pytest.raises(ValueError, match=r"backbone.blocks.0.norm1: RepBN mixing weight lam = 0.25"):
        fold_repbn_state(m.state_dict(), cfg)


def test_progressive_schedule_goes_from_layernorm_to_repbn():
    assert [repbn_lambda(s, 100) for s in (0, 50, 100, 150)] == [1.0, 0.5, 0.0, 0.0]
    assert repbn_lambda(0, 0) == 0.0
    n = ProgressiveNorm(8).eval()
    x = torch.randn(2, 5, 8)
    n.lam.fill_(1.0)
    assert torch.allclose(n(x), torch.nn.functional.layer_norm(x, (8,), eps=1e-6))
    n.lam.fill_(0.0)
    assert torch.allclose(n(x), n.rep(x))
    n.lam.fill_(0.3)
    assert torch.allclose(n(x), 0.3 * torch.nn.functional.layer_norm(x, (8,), eps=1e-6) + 0.7 * n.rep(x))


def test_training_updates_the_batch_statistics():
    n = ProgressiveNorm(4).train()
    n.lam.fill_(1.0)  # even while the output is all LayerNorm, BN's running statistics warm up
    n(torch.randn(3, 7, 4) * 3 + 2)
    assert not torch.allclose(n.rep.bn.running_mean, torch.zeros(4))


@pytest.mark.parametrize("over,msg", [
    ({"attention": "cswin", "heads": 3, "width": 24}, "backbone.heads: cswin blocks split the heads"),
    ({"cswin_stripe": 0}, "backbone.cswin_stripe"),
    ({"cswin_kernel": 2}, "backbone.cswin_kernel"),
    ({"norm": "batchnorm"}, "backbone.norm: expected layernorm|repbn"),
    ({"norm": ["repbn"]}, "backbone.norm"),
])
def test_bad_options_name_the_field(over, msg):
    with pytest.raises(ConfigError, match=msg):
        _cfg(**over)


def test_init_variant_starts_from_the_export_where_names_and_shapes_match():
    import argparse
    from duet_ref.train import init_variant_from_export
    from helpers import FIXTURES
    src_dir = os.path.join(FIXTURES, "tiny-demo")
    src = load_model(src_dir)
    cfg = config_mod.from_dict({**src.cfg, "backbone": {**src.cfg["backbone"], "attention": "cswin", "norm": "repbn"}})
    args = argparse.Namespace(lr_backbone=1e-4, lr_refiner=1e-4)
    model, ema, _, report = init_variant_from_export(src_dir, cfg, args)
    sd, ss = model.state_dict(), src.state_dict()
    assert torch.equal(sd["backbone.blocks.0.attn.qkv.weight"], ss["backbone.blocks.0.attn.qkv.weight"])
    assert torch.equal(sd["backbone.blocks.1.ln_c.ln.weight"], ss["backbone.blocks.1.ln_c.weight"])
    assert "backbone.blocks.0.attn.lepe.weight" in report
    assert float(sd["backbone.blocks.0.norm1.lam"]) == 1.0  # starts as pure LayerNorm: the same function


def test_init_variant_without_init_from_is_an_error(capsys):
    from duet_ref.train import main
    with pytest.raises(SystemExit) as e:
        main(["--init-variant", "--out", "/nonexistent/x"])
    assert e.value.code == 2 and "--init-variant needs --init-from" in capsys.readouterr().err
