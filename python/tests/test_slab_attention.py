"""SLAB linear attention (issue 20): the batched formula against a per-token loop in float64,
the config options, and a hybrid model's forward."""
import pytest
import torch
import torch.nn.functional as F

from duet_ref import config as config_mod
from duet_ref.config import ConfigError
from duet_ref.export import random_model
from duet_ref.slab_attention import SLAB_EPS, slab_core


def naive_slab(q, k, v, heads, gh, gw, w, b):
    B, N, D = q.shape
    d = D // heads
    out = torch.zeros(B, N, D, dtype=torch.float64)
    r = w.shape[-1] // 2
    for bi in range(B):
        for h in range(heads):
            sl = slice(h * d, (h + 1) * d)
            qh, kh, vh = F.relu(q[bi, :, sl]).double(), F.relu(k[bi, :, sl]).double(), v[bi, :, sl].double()
            kv = sum(torch.outer(kh[n], vh[n]) for n in range(N)) / N
            z = kh.sum(0) / N
            for n in range(N):
                o = (qh[n] @ kv) / (qh[n] @ z + SLAB_EPS)
                i, j = divmod(n, gw)
                loc = b.double().clone()
                for di in range(-r, r + 1):
                    for dj in range(-r, r + 1):
                        ii, jj = i + di, j + dj
                        if 0 <= ii < gh and 0 <= jj < gw:
                            loc += w[:, 0, di + r, dj + r].double() * vh[ii * gw + jj]
                out[bi, n, sl] = o + loc
    return out


def test_slab_core_matches_per_token_loop():
    g = torch.Generator().manual_seed(0)
    B, heads, gh, gw, d, ks = 2, 3, 3, 5, 4, 3
    D, N = heads * d, gh * gw
    q, k, v = (torch.randn(B, N, D, generator=g) for _ in range(3))
    w, b = torch.randn(d, 1, ks, ks, generator=g), torch.randn(d, generator=g)
    got = slab_core(q, k, v, heads, gh, gw, w, b).double()
    ref = naive_slab(q, k, v, heads, gh, gw, w, b)
    assert torch.allclose(got, ref, rtol=1e-5, atol=1e-5), (got - ref).abs().max()


def test_all_zero_queries_give_only_the_local_term():
    g = torch.Generator().manual_seed(1)
    B, heads, gh, gw, d = 1, 2, 2, 2, 3
    q = -torch.rand(B, gh * gw, heads * d, generator=g)  # ReLU -> 0
    k, v = torch.randn(B, gh * gw, heads * d, generator=g), torch.randn(B, gh * gw, heads * d, generator=g)
    w, b = torch.zeros(d, 1, 1, 1), torch.arange(d, dtype=torch.float32)
    out = slab_core(q, k, v, heads, gh, gw, w, b)
    assert torch.isfinite(out).all()
    assert torch.equal(out, b.repeat(heads).expand_as(out))


@pytest.mark.parametrize("field,value,msg", [
    ("attention", "flash", "backbone.attention"),
    ("attention", ["slab_linear"], "backbone.attention"),
    ("slab_kernel", 4, "backbone.slab_kernel"),
    ("slab_kernel", 0, "backbone.slab_kernel"),
])
def test_bad_attention_options_name_the_field(field, value, msg):
    with pytest.raises(ConfigError, match=msg):
        config_mod.from_dict({"backbone": {"depth": 2, field: value}})


def test_hybrid_model_runs_and_differs_from_softmax():
    cfg = config_mod.from_dict({"image": {"height": 16, "width": 16}, "backbone": {
        "width": 32, "depth": 2, "heads": 2, "attention": ["slab_linear", "softmax"], "slab_kernel": 3}})
    m = random_model(cfg, 5)
    assert m.backbone.blocks[0].kind == "slab_linear" and m.backbone.blocks[1].kind == "softmax"
    assert "backbone.blocks.0.attn.dwc.weight" in m.state_dict()
    assert "backbone.blocks.1.attn.dwc.weight" not in m.state_dict()
    ids, mask = m.tokenize(["a photo of a coat"])
    with torch.no_grad():
        ps = m.encode_ids(ids, mask)
        out = m(torch.randn(1, 1, 16, 16), torch.tensor([500.0]), ps, refine=True)
    eps = out["eps"] if isinstance(out, dict) else out
    assert torch.isfinite(eps).all()
