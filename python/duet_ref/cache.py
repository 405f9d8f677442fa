"""Backbone caching — the reference twin of the C++ engine's step and block caches.

The rule (include/duet/backbone_cache.h, docs/caching.md):
  step:T[,S,E]       cached span = every block [0, depth). Indicator: block 0's modulated input
                     xm = modulate(ln(h_in), sh1, sc1); rel = sum|xm - xm_prev| / sum|xm_prev| in
                     float64 against the previous call; acc += rel; reuse while acc < T, else
                     compute and acc = 0.
  block:F,B,T[,S,E]  cached span = [F, depth - B). Indicator: the first F blocks' residual
                     h_F - h_in; rel against the indicator of the last computed call; reuse iff
                     rel < T.
A reused span applies h_e = h_a + res with res = h_e - h_a of the last computed call (float32).
Every call is computed on the first call, when its row count changed (a guidance interval) and
outside START <= call / num_calls < END.
"""
from __future__ import annotations

import math

import torch

CACHE_ON = "step:0.15"  # what "on" means (kCacheOnSpec in the C++ header; docs/caching.md)


def parse_cache(text: str):
    """'off' -> None; 'on' | 'step:T[,S,E]' | 'block:F,B,T[,S,E]' -> dict (ValueError naming it)."""
    if text == "off":
        return None
    if text == "on":
        text = CACHE_ON
    kind, _, rest = text.partition(":")
    f = rest.split(",") if rest else []
    try:
        if kind == "step" and len(f) in (1, 3):
            spec = {"mode": "step", "first": 0, "last": 0}
        elif kind == "block" and len(f) in (3, 5):
            spec = {"mode": "block", "first": int(f[0]), "last": int(f[1])}
            f = f[2:]
        else:
            raise ValueError
        spec["threshold"] = float(f[0])
        spec["start"], spec["end"] = (float(f[1]), float(f[2])) if len(f) == 3 else (0.0, 1.0)
    except ValueError:
        raise ValueError(f"cache {text!r}: expected off | on | step:THRESH[,START,END] | "
                         f"block:F,B,THRESH[,START,END]") from None
    if not (0 < spec["threshold"] <= 1e6) or not (0 <= spec["start"] < spec["end"] <= 1) or \
            (spec["mode"] == "block" and (spec["first"] < 1 or spec["last"] < 0)):
        raise ValueError(f"cache {text!r}: out of range")
    return spec


class BackboneCache:
    """One request's cache state across its calls (create one per generate() run)."""

    def __init__(self, spec: dict, depth: int):
        self.spec, self.depth = spec, depth
        if spec["mode"] == "step":
            self.a, self.e = 0, depth
        else:
            self.a, self.e = spec["first"], depth - spec["last"]
            if self.a >= self.e:
                raise ValueError(f"cache: F + B leaves no block to cache in depth {depth}")
        self.prev = None   # indicator to compare with
        self.res = None    # float32 [rows, N, D]
        self.acc = 0.0
        self.eligible = True  # set by the pipeline before each call
        self.decisions = []   # per call: True = computed

    def decide(self, ind: torch.Tensor) -> bool:
        compute = self.res is None or self.res.shape[0] != ind.shape[0] or not self.eligible
        if not compute:
            num = (ind.double() - self.prev.double()).abs().sum().item()
            den = self.prev.double().abs().sum().item()
            rel = num / den if den > 0 else math.inf
            if self.spec["mode"] == "step":
                self.acc += rel
                compute = not (self.acc < self.spec["threshold"])
            else:
                compute = not (rel < self.spec["threshold"])
        if self.spec["mode"] == "step" or compute:
            self.prev = ind.clone()
        if compute:
            self.acc = 0.0
        self.decisions.append(compute)
        return compute

    def blocks_run(self) -> int:
        span = self.e - self.a
        return sum(self.depth if c else self.depth - span for c in self.decisions)
