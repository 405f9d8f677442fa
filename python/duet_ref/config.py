"""Model configuration: load, validate and describe `config.json`.

The config is the single source of every size in the model; see docs/model.md.
"""
from __future__ import annotations

import copy
import json

DEFAULTS = {
    "name": "duet",
    "image": {"channels": 1, "height": 28, "width": 28},
    "text": {"tokenizer": "byte", "max_length": 32, "vocab_size": 259, "width": 128,
             "layers": 2, "heads": 4, "mlp_ratio": 4},
    "backbone": {"patch": 4, "width": 192, "depth": 6, "heads": 6, "mlp_ratio": 4,
                 "attention": "softmax", "slab_kernel": 5, "cswin_stripe": 1, "cswin_kernel": 3,
                 "norm": "layernorm"},
    "refiner": {"base_channels": 32, "channel_mult": [1, 2, 2], "groups": 8, "time_channels": 32,
                "carafe": {"k_up": 5, "k_enc": 3, "scale": 2, "compress": 16}},
    "highpass": {"rho_c": 0.25, "tau": 0.04},
    "gate": {"hidden": 64},
    "diffusion": {"num_train_timesteps": 1000, "beta_schedule": "linear",
                  "prediction_type": "epsilon"},
    "inference": {"refine_every": 3, "cfg_scale": 4.0},
}

TIME_EMBED_DIM = 256  # sinusoid(t) width, fixed by the spec


class ConfigError(ValueError):
    pass


def _merge(base, over):
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def _pos_int(cfg, sect, key):
    v = cfg[sect][key]
    if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
        raise ConfigError(f"config field {sect}.{key}: expected a positive integer, got {v!r}")
    return v


def validate(cfg: dict) -> dict:
    """Checks every invariant the model relies on; raises ConfigError naming the field."""
    for sect, key in [("image", "channels"), ("image", "height"), ("image", "width"),
                      ("text", "max_length"), ("text", "width"), ("text", "layers"),
                      ("text", "heads"), ("text", "mlp_ratio"), ("backbone", "patch"),
                      ("backbone", "width"), ("backbone", "depth"), ("backbone", "heads"),
                      ("backbone", "mlp_ratio"), ("refiner", "base_channels"),
                      ("refiner", "groups"), ("refiner", "time_channels"), ("gate", "hidden"),
                      ("diffusion", "num_train_timesteps")]:
        _pos_int(cfg, sect, key)
    t, b, r = cfg["text"], cfg["backbone"], cfg["refiner"]
    for sect, key, v in (("text", "layers", t["layers"]), ("backbone", "depth", b["depth"])):
        if v > 1024:
            raise ConfigError(f"config field {sect}.{key}: must be <= 1024, got {v}")
    if t["tokenizer"] != "byte":
        raise ConfigError(f"config field text.tokenizer: only 'byte' is supported, got {t['tokenizer']!r}")
    if t["vocab_size"] != 259:
        raise ConfigError("config field text.vocab_size: the byte tokenizer needs 259")
    if t["max_length"] < 2:
        raise ConfigError("config field text.max_length: must be >= 2 (<bos> and <eos>)")
    if t["width"] % t["heads"]:
        raise ConfigError("config field text.heads: must divide text.width")
    if b["width"] % b["heads"]:
        raise ConfigError("config field backbone.heads: must divide backbone.width")
    if b["width"] % 4:
        raise ConfigError("config field backbone.width: must be a multiple of 4 (2-D sin-cos embedding)")
    for field, kinds in (("attention", ("softmax", "slab_linear", "cswin")), ("norm", ("layernorm", "repbn"))):
        a, names = b[field], "|".join(kinds)
        if isinstance(a, list):
            if len(a) != b["depth"] or any(k not in kinds for k in a):
                raise ConfigError(f"config field backbone.{field}: expected {names} or a list of "
                                  f"backbone.depth ({b['depth']}) such names, got {a!r}")
        elif a not in kinds:
            raise ConfigError(f"config field backbone.{field}: expected {names} or a list of them, got {a!r}")
    for field in ("slab_kernel", "cswin_kernel"):
        k = b[field]
        if not isinstance(k, int) or isinstance(k, bool) or k <= 0 or k % 2 == 0 or k > 63:
            raise ConfigError(f"config field backbone.{field}: expected a positive odd integer <= 63, got {k!r}")
    _pos_int(cfg, "backbone", "cswin_stripe")
    uses_cswin = "cswin" in (b["attention"] if isinstance(b["attention"], list) else [b["attention"]])
    if uses_cswin and b["heads"] % 2:
        raise ConfigError(f"config field backbone.heads: cswin blocks split the heads in halves (horizontal / "
                          f"vertical stripes), so heads must be even, got {b['heads']}")
    H, W = cfg["image"]["height"], cfg["image"]["width"]
    if H % b["patch"] or W % b["patch"]:
        raise ConfigError("config field backbone.patch: must divide image.height and image.width")
    mult = r["channel_mult"]
    if not isinstance(mult, list) or not mult or any(not isinstance(m, int) or m <= 0 for m in mult):
        raise ConfigError("config field refiner.channel_mult: expected a non-empty list of positive integers")
    stride = 2 ** (len(mult) - 1)
    if H % stride or W % stride:
        raise ConfigError(f"config field refiner.channel_mult: image size must be divisible by {stride}")
    for m in [1] + mult:  # conv_in's width (base_channels) feeds the first GroupNorm too
        if (r["base_channels"] * m) % r["groups"]:
            raise ConfigError("config field refiner.groups: must divide every level's channel count")
    c = r["carafe"]
    for key in ("k_up", "k_enc", "compress"):
        if not isinstance(c[key], int) or c[key] <= 0:
            raise ConfigError(f"config field refiner.carafe.{key}: expected a positive integer")
    if c["scale"] != 2:
        raise ConfigError("config field refiner.carafe.scale: only 2 is supported (matches the stride-2 downsampling)")
    if c["k_up"] % 2 == 0 or c["k_enc"] % 2 == 0:
        raise ConfigError("config field refiner.carafe.k_up/k_enc: must be odd")
    hp = cfg["highpass"]
    if not (isinstance(hp["rho_c"], (int, float)) and 0 <= hp["rho_c"] <= 1):
        raise ConfigError("config field highpass.rho_c: expected a number in [0, 1]")
    if not (isinstance(hp["tau"], (int, float)) and hp["tau"] >= 0):
        raise ConfigError("config field highpass.tau: expected a number >= 0")
    d = cfg["diffusion"]
    if d["beta_schedule"] not in ("linear", "scaled_linear", "cosine"):
        raise ConfigError("config field diffusion.beta_schedule: expected linear|scaled_linear|cosine")
    if d["prediction_type"] not in ("epsilon", "v_prediction"):
        raise ConfigError("config field diffusion.prediction_type: expected epsilon|v_prediction")
    g = cfg["inference"]["cfg_scale"]
    if not (isinstance(g, (int, float)) and not isinstance(g, bool) and 1 <= g <= 100):
        raise ConfigError("config field inference.cfg_scale: expected a number in [1, 100]")
    return cfg


def from_dict(d: dict) -> dict:
    return validate(_merge(DEFAULTS, d))


def load(path: str) -> dict:
    with open(path, "r", encoding="utf-8") as f:
        return from_dict(json.load(f))
