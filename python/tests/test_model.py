import copy

import pytest
import torch
import torch.nn.functional as F

from duet_ref import config as config_mod
from duet_ref.diffusion import Schedule
from duet_ref.export import random_model
from duet_ref.model import DuetModel
from duet_ref.onnx_hp import highpass_matmul
from duet_ref.param_count import count_parameters
from duet_ref.refiner import Carafe
from duet_ref.spectral import highpass, highpass_mask, lowpass
from duet_ref.train import build_optimizer, loss_terms

from helpers import load_cfg

PROMPTS = ["  A Photo of a  BRIGHT\tSneaker  ", ""]


@pytest.mark.parametrize("name", ["tiny-demo", "awkward"])
def test_shapes(name):
    cfg = load_cfg(name)
    m = random_model(cfg, 0)
    im, tx, bb = cfg["image"], cfg["text"], cfg["backbone"]
    B, C, H, W, L = 2, im["channels"], im["height"], im["width"], tx["max_length"]
    N = (H // bb["patch"]) * (W // bb["patch"])
    with torch.no_grad():
        ps = m.encode_prompt(PROMPTS)
        out = m(torch.randn(B, C, H, W), torch.tensor([537.25, 12.0]), ps, refine=True, intermediates=True)
    assert ps.ids.shape == (B, L) and ps.ids.dtype == torch.int64 and ps.mask.dtype == torch.bool
    assert ps.e.shape == (B, L, tx["width"]) and ps.p.shape == (B, tx["width"])
    assert len(ps.kvs) == bb["depth"] and all(k.shape == v.shape == (B, L, bb["width"]) for k, v in ps.kvs)
    assert out["c"].shape == (B, bb["width"])
    assert [b.shape for b in out["blocks"]] == [(B, N, bb["width"])] * bb["depth"]
    for k in ("eps_s", "r", "eps_d", "hp_s", "eps"):
        assert out[k].shape == (B, C, H, W), k
        assert out[k].abs().max() > 0, k  # every branch is non-trivial with random weights
    assert out["alpha"].shape == (B,)
    assert torch.isfinite(out["eps"]).all()


def test_adaln_zero_init():
    cfg = load_cfg("awkward")
    torch.manual_seed(0)
    m = DuetModel(cfg).eval()
    with torch.no_grad():
        ps = m.encode_prompt(PROMPTS)
        out = m(torch.randn(2, 3, 12, 20), torch.tensor([500.0, 3.0]), ps, refine=True)
    assert torch.count_nonzero(out["eps_s"]) == 0
    assert torch.count_nonzero(out["r"]) == 0
    assert torch.count_nonzero(out["eps"]) == 0


def naive_carafe(up: Carafe, x):
    B, C, H, W = x.shape
    k, s = up.k_up, up.scale
    w = up.weights(x)
    out = torch.zeros(B, C, H * s, W * s)
    for Y in range(H * s):
        for X in range(W * s):
            for i in range(k):
                for j in range(k):
                    yy, xx = Y // s + i - k // 2, X // s + j - k // 2
                    if 0 <= yy < H and 0 <= xx < W:
                        out[:, :, Y, X] += w[:, i * k + j, Y, X][:, None] * x[:, :, yy, xx]
    return out


def test_carafe():
    torch.manual_seed(0)
    up = Carafe(6, 5, 3, 2, 4)
    x = torch.randn(2, 6, 5, 7)
    with torch.no_grad():
        w = up.weights(x)
        assert w.shape == (2, 25, 10, 14)
        assert torch.allclose(w.sum(1), torch.ones(2, 10, 14), atol=1e-6)
        assert (w >= 0).all()
        assert torch.allclose(up(x), naive_carafe(up, x), atol=1e-5)
        from duet_ref.onnx_export import carafe_export
        assert torch.allclose(carafe_export(up, x), up(x), atol=1e-5)


@pytest.mark.parametrize("h, w, tau", [(28, 28, 0.04), (12, 20, 0.0), (9, 7, 0.0), (16, 16, 0.1)])
def test_highpass(h, w, tau):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, h, w, generator=g)
    m = highpass_mask(h, w, 0.25, tau)
    assert m.dtype == torch.float32 and m.shape == (h, w)
    assert torch.allclose(torch.flip(torch.roll(m, (-1, -1), (0, 1)), (0, 1)), m)  # M[-u,-v] = M[u,v]
    hp = highpass(x, m)
    assert hp.dtype == torch.float32
    assert torch.allclose(lowpass(x, m) + hp, x, atol=1e-6)
    assert torch.allclose(highpass_matmul(x, m), hp, atol=1e-5)
    if tau == 0:
        assert set(m.unique().tolist()) <= {0.0, 1.0}
        assert torch.allclose(highpass(hp, m), hp, atol=1e-5)
        assert torch.allclose(highpass(lowpass(x, m), m), torch.zeros_like(x), atol=1e-5)
        assert m[0, 0] == 0  # DC is low-pass


def test_highpass_mask_values():
    m = highpass_mask(4, 4, 0.25, 0)
    # fftfreq(4) = [0, .25, -.5, -.25]; rho >= 0.25 except (0,0)
    expect = torch.ones(4, 4)
    expect[0, 0] = 0
    assert torch.equal(m, expect)
    m2 = highpass_mask(4, 4, 0.25, 0.04)
    assert abs(m2[0, 1].item() - 0.5) < 1e-7  # rho == rho_c -> sigmoid(0)


def test_key_padding_mask():
    cfg = load_cfg("awkward")
    m = random_model(cfg, 5)
    ids, mask = m.tokenize(["ab", "hello"])
    assert (~mask).any()
    ids2 = ids.clone()
    ids2[~mask] = torch.randint(0, 256, (int((~mask).sum()),))  # change every pad token
    x, t = torch.randn(2, 3, 12, 20), torch.tensor([400.0, 20.0])
    with torch.no_grad():
        a, b = m.encode_ids(ids, mask), m.encode_ids(ids2, mask)
        assert not torch.equal(a.e, b.e)  # pad positions themselves change ...
        assert torch.allclose(a.e[mask], b.e[mask], atol=1e-6)  # ... real positions do not
        assert torch.allclose(a.p, b.p, atol=1e-6)
        oa, ob = m(x, t, a), m(x, t, b)
    for k in ("eps_s", "eps"):
        assert torch.allclose(oa[k], ob[k], atol=1e-6), k


def test_one_training_step_lowers_loss():
    cfg = load_cfg("awkward")
    torch.manual_seed(0)
    model = random_model(cfg, 0).train()
    sched = Schedule(cfg)
    x0 = torch.rand(4, 3, 12, 20, generator=torch.Generator().manual_seed(3)) * 2 - 1
    prompts = ["red", "a blue coat", "", "GREEN dress"]
    opt = build_optimizer(model, 1e-3, 1e-3)
    loss0, *_ = loss_terms(model, sched, x0, prompts, torch.Generator().manual_seed(7))
    opt.zero_grad()
    loss0.backward()
    opt.step()
    with torch.no_grad():
        loss1, *_ = loss_terms(model, sched, x0, prompts, torch.Generator().manual_seed(7))
    assert loss1.item() < loss0.item()


@pytest.mark.parametrize("name", ["tiny-demo", "awkward", "fashion-duet", "tiny-slab", "awkward-hybrid",
                                  "tiny-cswin", "awkward-cswin"])
def test_param_count_matches_model(name):
    cfg = load_cfg(name)
    assert count_parameters(cfg) == DuetModel(cfg).branch_parameters()


def test_seed_scale_size():
    c = count_parameters(load_cfg("seed-scale"))
    assert abs(c["backbone"] - 482e6) / 482e6 < 0.01
    assert abs(c["refiner"] - 37e6) / 37e6 < 0.02
    cfg = load_cfg("seed-scale")
    assert cfg["text"]["max_length"] == 77 and cfg["image"] == {"channels": 4, "height": 32, "width": 32}


def test_config_validation_names_field():
    cfg = copy.deepcopy(load_cfg("awkward"))
    cfg["backbone"]["heads"] = 5
    with pytest.raises(config_mod.ConfigError, match="backbone.heads"):
        config_mod.validate(cfg)
    cfg = copy.deepcopy(load_cfg("awkward"))
    cfg["inference"]["cfg_scale"] = 0.5
    with pytest.raises(config_mod.ConfigError, match="inference.cfg_scale"):
        config_mod.validate(cfg)


class _FakePrompts:
    """Stand-in for PromptedFashion's prompt side: class synonyms in random templates."""

    def __init__(self, n=500, seed=0):
        import random

        from duet_ref.data import SYNONYMS, TEMPLATES
        self.rng, self.syn, self.tpl = random.Random(seed), SYNONYMS, TEMPLATES
        self.y = [i % 10 for i in range(n)]

    def prompt_labeled(self, i):
        word = self.rng.choice(["", "dark ", "bright "])
        text = self.rng.choice(self.tpl).format(a=word, c=self.rng.choice(self.syn[self.y[i]]))
        return text, (self.y[i], {"": 0, "dark ": 1, "bright ": 2}[word], 0)


def test_text_probe_pretraining_makes_prompts_separable():
    from duet_ref.text_probe import TextProbe, pretrain_text

    cfg = load_cfg("tiny-demo")
    torch.manual_seed(0)
    model = random_model(cfg, 0)
    names = ["a photo of a t-shirt", "a photo of a sneaker", "a photo of a bag"]

    def max_offdiag_cos():
        with torch.no_grad():
            p = F.normalize(model.encode_prompt(names).p, dim=-1)
        return (p @ p.T - torch.eye(3) * 2).max().item()

    before = max_offdiag_cos()
    probe = TextProbe(cfg["text"]["width"])
    pretrain_text(model, probe, _FakePrompts(), steps=60, batch=64, rng=torch.Generator().manual_seed(1),
                  log=lambda _: None)
    with torch.no_grad():
        cls, _, _ = probe(model.encode_prompt(names).p)
    assert cls.argmax(-1).tolist() == [0, 7, 8]
    assert max_offdiag_cos() < before
