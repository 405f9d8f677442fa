"""The reference backbone cache (duet_ref/cache.py): spec parsing, and the rule's extremes."""
import os

import pytest
import torch

from duet_ref.cache import BackboneCache, parse_cache
from duet_ref.checkpoint import load_model
from duet_ref.pipeline import generate

from helpers import FIXTURES

TINY = os.path.join(FIXTURES, "tiny-demo")


@pytest.mark.parametrize("bad", ["fast", "step:", "step:0", "step:-1", "step:0.1,0.5,0.2", "step:0.1,0.2",
                                 "block:0,0,0.1", "block:1,-1,0.1", "block:1,1", "step:abc"])
def test_bad_specs_raise_naming_cache(bad):
    with pytest.raises(ValueError, match="cache"):
        parse_cache(bad)


def test_specs():
    assert parse_cache("off") is None
    assert parse_cache("step:0.2") == {"mode": "step", "first": 0, "last": 0, "threshold": 0.2,
                                       "start": 0.0, "end": 1.0}
    assert parse_cache("block:2,1,0.1,0.1,0.9")["first"] == 2
    assert parse_cache("on")["mode"] == "step"
    with pytest.raises(ValueError, match="no block to cache"):
        BackboneCache(parse_cache("block:1,1,0.1"), 2)


def run(model, **kw):
    calls = []
    x = generate(model, ["a dark sneaker"], steps=8, cfg_scale=3.0, seed=3,
                 cache_callback=lambda i, c: calls.append(c), **kw)
    return x, calls


@pytest.mark.skipif(not os.path.exists(os.path.join(TINY, "model.safetensors")), reason="no tiny-demo")
def test_extremes():
    torch.set_num_threads(1)
    model = load_model(TINY)
    base, _ = run(model)
    # A threshold nothing stays under computes every call: the image is the uncached one, exactly.
    x, calls = run(model, cache="step:1e-12")
    assert all(calls) and torch.equal(x, base)
    x, calls = run(model, cache="block:1,0,1e-12")
    assert all(calls) and torch.equal(x, base)
    # A threshold everything stays under reuses every eligible call after the first.
    x, calls = run(model, cache="step:1e6")
    assert calls == [True] + [False] * 7 and not torch.equal(x, base)
    x, calls = run(model, cache="step:1e6,0.25,0.75")  # calls 0, 1 and 6, 7 are not eligible
    assert calls == [True, True, False, False, False, False, True, True]
