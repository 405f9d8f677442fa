"""Golden data for the C++ engine: `python -m duet_ref.fixtures [--out tests/fixtures]`.

Writes (see docs/model.md, "Golden fixtures"):
  <out>/tiny-demo/{config.json, model.safetensors (F16), golden.safetensors,
                   sample_ddim.safetensors, sample_dpmpp_2m.safetensors,
                   sample_dpmpp_2m_norefine.safetensors}
  <out>/awkward/{config.json, model.safetensors (F32), golden.safetensors}
  <out>/tiny-slab/, <out>/awkward-hybrid/ (the same with SLAB linear attention; golden only)
  <out>/tiny-cswin/, <out>/awkward-cswin/ (CSWin stripe attention and folded RepBN; golden only)
  <out>/tokenizer_cases.json

Weights: export.random_model(config, seed) (zero-initialised layers re-drawn). The tiny-demo
weights are stored as F16 to keep the fixtures small; every golden tensor is computed by the
float32 model loaded back from the written model.safetensors (F16 -> F32 is exact), so an
implementation that upcasts on load must reproduce the goldens.
"""
from __future__ import annotations

import argparse
import json
import os

import torch

from . import config as config_mod
from . import safetensors_io as st
from .checkpoint import load_model, save_state
from .export import random_model
from .layers import timestep_sinusoid
from .pipeline import generate, initial_noise, refine_at
from .tokenizer import ByteTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))

PROMPT0 = "  A Photo of a  BRIGHT\tSneaker,   Size XL!  "
PROMPT1 = ""
T_VALUES = [537.25, 12.0]

# name -> (seed, weight dtype, refiner intermediates)
CONFIGS = {"tiny-demo": (1, "f16", False), "awkward": (2, "f32", True),
           # SLAB linear attention in every block / in blocks 0 and 2 (a hybrid), issue 20
           "tiny-slab": (3, "f16", False), "awkward-hybrid": (4, "f32", True),
           # CSWin stripe attention + RepBN (all blocks / mixed per block with SLAB and softmax), issue 20
           "tiny-cswin": (5, "f16", False), "awkward-cswin": (6, "f32", True)}

SAMPLE = {"steps": 10, "n": 1, "seed": 1234, "cfg_scale": 3.0, "refine_every": 3,
          "prompt": "a photo of a dark sneaker", "negative_prompt": ""}

TOKENIZER_CASES = [
    ("", 32), ("   ", 32), ("a", 32), ("Hello World", 32), ("  A Photo of a  BRIGHT\tSneaker  ", 32),
    ("tab\there\nnew\r\nline\vvt\fff", 32), ("UPPER lower MiXeD 123 !@#[]`{}~", 64),
    ("caf\u00e9 \u00c9T\u00c9 na\u00efve \u2603 \u65e5\u672c\u8a9e \U0001F45F", 64),
    ("\u00c4\u00d6\u00dc are not lower-cased (non-ASCII)", 64),
    ("x" * 40, 32), ("a photo of a bright large pair of trousers, product photo", 32),
    ("abcdefghijk", 13), ("abcdefghijkl", 13), ("\u65e5\u672c\u8a9e\u65e5\u672c", 13),
    ("ab", 4), ("abc", 2), ("  lead and trail  \n", 20), ("nul\u0000byte", 16), ("a\u00a0b nbsp", 16),
]


def tokenizer_cases():
    out = []
    for text, L in TOKENIZER_CASES:
        ids, mask = ByteTokenizer(L).encode(text)
        out.append({"text": text, "utf8_hex": text.encode("utf-8").hex(), "max_length": L, "ids": ids, "mask": mask})
    return {"tokenizer": "byte", "bos": 256, "eos": 257, "pad": 258, "cases": out}


def _hook_outputs(modules):
    store, handles = {}, []
    for name, m in modules:
        handles.append(m.register_forward_hook(lambda mod, inp, out, name=name: store.__setitem__(name, out.detach().clone())))
    return store, handles


@torch.no_grad()
def golden(model, seed: int, refiner_intermediates: bool = False):
    """The per-evaluation golden tensors (ordered) for batch [PROMPT0, PROMPT1]."""
    cfg = model.cfg
    im = cfg["image"]
    B = 2
    g = torch.Generator().manual_seed(seed + 1000)
    x_t = torch.randn([B, im["channels"], im["height"], im["width"]], generator=g)
    t = torch.tensor(T_VALUES, dtype=torch.float32)
    ids, mask = model.tokenize([PROMPT0, PROMPT1])
    mods = [(f"text_block.{j}", b) for j, b in enumerate(model.text.blocks)]
    mods.append(("final_tokens", model.backbone.final))
    if refiner_intermediates:
        r = model.refiner
        mods.append(("ref.conv_in", r.conv_in))
        mods += [(f"ref.enc.{i}", b) for i, b in enumerate(r.enc)]
        mods += [(f"ref.down.{i}", b) for i, b in enumerate(r.down)]
        mods.append(("ref.mid", r.mid))
        mods += [(f"ref.up.{i}", b) for i, b in enumerate(r.up)]
        mods += [(f"ref.dec.{i}", b) for i, b in enumerate(r.dec)]
    store, handles = _hook_outputs(mods)
    try:
        ps = model.encode_ids(ids, mask)
        out = model(x_t, t, ps, refine=True, intermediates=True)
    finally:
        for h in handles:
            h.remove()
    gt = {"ids": ids, "mask": mask.to(torch.int64), "x_t": x_t, "t": t, "E": ps.e, "p": ps.p,
          "t_sinusoid": timestep_sinusoid(t), "c": out["c"]}
    for j in range(len(model.text.blocks)):
        gt[f"text_block.{j}"] = store[f"text_block.{j}"]
    for i, (k, v) in enumerate(ps.kvs):
        gt[f"kv.{i}.k"], gt[f"kv.{i}.v"] = k, v
    gt["pos_embed"] = model.backbone.pos
    for i, b in enumerate(out["blocks"]):
        gt[f"block.{i}"] = b
    gt["final_tokens"] = store["final_tokens"]
    gt["eps_s"] = out["eps_s"]
    if refiner_intermediates:
        for k in [k for k, _ in mods if k.startswith("ref.")]:
            gt[k] = store[k]
    gt.update(r=out["r"], hp_mask=model.mask_for(x_t), hp_s=out["hp_s"], eps_d=out["eps_d"],
              alpha=out["alpha"], eps=out["eps"])
    return {k: v.contiguous() for k, v in gt.items()}


# The guidance-interval sample: 10 dpmpp_2m steps of the tiny-demo schedule span sigma ~157 .. ~0.1;
# [0.5, 20] leaves the first steps and the last one unguided.
CFG_INTERVAL = (0.5, 20.0)


# Backbone-cache samples (docs/caching.md): (file, cache spec, guidance interval). The thresholds
# sit >= 3.7 % away from every accumulated / relative change of these runs, so float32 rounding
# differences between engines cannot flip a decision; the step sample's START,END leave calls
# 0, 1 and 9 ineligible, the interval sample changes the row count between calls.
CACHE_SAMPLES = [("sample_dpmpp_2m_stepcache", "step:0.1,0.2,0.9", None),
                 ("sample_dpmpp_2m_blockcache", "block:1,0,0.07", None),
                 ("sample_dpmpp_2m_blockcache_cfginterval", "block:1,0,0.08", CFG_INTERVAL)]


@torch.no_grad()
def sample_run(model, sampler: str, refine_every: int, p=SAMPLE, cfg_interval=None, cache=None):
    """One deterministic generate() run with every step's latent (the pipeline contract)."""
    steps, eps, ts, guided, computed = {}, {}, {}, {}, {}
    n = p["n"]
    x_T = initial_noise(n, model.cfg, p["seed"])
    final = generate(model, [p["prompt"]] * n, steps=p["steps"], sampler=sampler, cfg_scale=p["cfg_scale"],
                     negative_prompt=p["negative_prompt"], seed=p["seed"], refine_every=refine_every,
                     callback=lambda i, x: steps.__setitem__(i, x.clone()),
                     eps_callback=lambda i, t, e: (eps.__setitem__(i, e.clone()), ts.__setitem__(i, t)),
                     cfg_interval=cfg_interval, guided_callback=lambda i, g: guided.__setitem__(i, g),
                     cache=cache, cache_callback=lambda i, c: computed.__setitem__(i, c))
    tensors = {"x_T": x_T}
    for i in range(p["steps"]):
        tensors[f"step.{i}"] = steps[i]
    tensors["final"] = final
    for i in range(p["steps"]):
        tensors[f"eps.{i}"] = eps[i]
    tensors["timesteps"] = torch.tensor([ts[i] for i in range(p["steps"])], dtype=torch.float32)
    tensors["refine"] = torch.tensor([1 if refine_at(i, refine_every) else 0 for i in range(p["steps"])], dtype=torch.int64)
    meta = {"sampler": sampler, "steps": str(p["steps"]), "seed": str(p["seed"]), "cfg_scale": repr(p["cfg_scale"]),
            "prompt": p["prompt"], "negative_prompt": p["negative_prompt"], "refine_every": str(refine_every),
            "n": str(n)}
    if cfg_interval is not None:
        tensors["guided"] = torch.tensor([1 if guided[i] else 0 for i in range(p["steps"])], dtype=torch.int64)
        meta["cfg_interval"] = f"{cfg_interval[0]!r},{cfg_interval[1]!r}"
    if cache is not None:
        tensors["computed"] = torch.tensor([1 if computed[i] else 0 for i in range(p["steps"])], dtype=torch.int64)
        meta["cache"] = cache
    return tensors, meta


def write_cfg_interval_fixture(model, d: str) -> str:
    """sample_dpmpp_2m_cfginterval.safetensors: the pipeline with a guidance interval."""
    tensors, meta = sample_run(model, "dpmpp_2m", SAMPLE["refine_every"], cfg_interval=CFG_INTERVAL)
    path = os.path.join(d, "sample_dpmpp_2m_cfginterval.safetensors")
    st.save_file(tensors, path, meta)
    return path


def write_cache_fixtures(model, d: str) -> list:
    """sample_dpmpp_2m_*cache*.safetensors: the pipeline with a backbone cache."""
    written = []
    for fname, cache, interval in CACHE_SAMPLES:
        tensors, meta = sample_run(model, "dpmpp_2m", SAMPLE["refine_every"], cfg_interval=interval, cache=cache)
        path = os.path.join(d, f"{fname}.safetensors")
        st.save_file(tensors, path, meta)
        written.append(path)
    return written


def write_config_fixtures(name: str, out_dir: str):
    seed, dtype, ref_int = CONFIGS[name]
    cfg = config_mod.load(os.path.join(REPO, "configs", f"{name}.json"))
    d = os.path.join(out_dir, name)
    model = random_model(cfg, seed)
    save_state(model.state_dict(), cfg, d, dtype)
    model = load_model(d)  # golden data from the weights exactly as stored
    st.save_file(golden(model, seed, ref_int), os.path.join(d, "golden.safetensors"),
                 {"prompt0": PROMPT0, "prompt1": PROMPT1, "seed": str(seed), "weights_dtype": dtype})
    written = [os.path.join(d, f) for f in ("config.json", "model.safetensors", "golden.safetensors")]
    if name == "tiny-demo":
        for sampler, k, fname in [("ddim", SAMPLE["refine_every"], "sample_ddim"),
                                  ("dpmpp_2m", SAMPLE["refine_every"], "sample_dpmpp_2m"),
                                  ("dpmpp_2m", 0, "sample_dpmpp_2m_norefine")]:
            tensors, meta = sample_run(model, sampler, k)
            path = os.path.join(d, f"{fname}.safetensors")
            st.save_file(tensors, path, meta)
            written.append(path)
        written.append(write_cfg_interval_fixture(model, d))
        written += write_cache_fixtures(model, d)
    return written


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "fixtures"))
    ap.add_argument("--only", choices=sorted(CONFIGS) + ["tokenizer"], action="append")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    only = args.only or sorted(CONFIGS) + ["tokenizer"]
    written = []
    for name in CONFIGS:
        if name in only:
            written += write_config_fixtures(name, args.out)
    if "tokenizer" in only:
        os.makedirs(args.out, exist_ok=True)
        path = os.path.join(args.out, "tokenizer_cases.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(tokenizer_cases(), f, indent=1, ensure_ascii=True)
            f.write("\n")
        written.append(path)
    total = 0
    for p in written:
        total += os.path.getsize(p)
        print(f"{os.path.getsize(p):>9}  {os.path.relpath(p, args.out)}")
    print(f"{total:>9}  total")


if __name__ == "__main__":
    main()
