"""Model directories: `DIR/config.json` + `DIR/model.safetensors` (see docs/model.md, "Checkpoint format").

* config.json: the fully resolved config (config.DEFAULTS merged with the file, validated), with
  the tokenizer's special ids added under "text" (bos_id/eos_id/pad_id; informative, fixed by the
  byte tokenizer).
* model.safetensors: every persistent tensor of DuetModel.state_dict(), named exactly as the
  PyTorch state_dict keys, in state_dict order, dtype F32/F16/BF16;
  metadata {"format": "duet", "version": "1"}. Non-persistent buffers (backbone.pos, hp_mask)
  are recomputed from the config.
"""
from __future__ import annotations

import json
import os

import torch

from . import config as config_mod
from . import safetensors_io as st
from .model import DuetModel
from .repbn import fold_repbn_state
from .tokenizer import BOS, EOS, PAD

FORMAT_METADATA = {"format": "duet", "version": "1"}
DTYPE_NAMES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}


def resolved_config(cfg: dict) -> dict:
    out = config_mod.from_dict(cfg)
    out["text"].update(bos_id=BOS, eos_id=EOS, pad_id=PAD)
    return out


def save_state(state_dict, cfg: dict, out_dir: str, dtype: str = "f32"):
    """Writes out_dir/config.json and out_dir/model.safetensors (floating tensors cast to dtype)."""
    if dtype not in DTYPE_NAMES:
        raise ValueError(f"dtype must be one of {sorted(DTYPE_NAMES)}, got {dtype!r}")
    os.makedirs(out_dir, exist_ok=True)
    tdt = DTYPE_NAMES[dtype]
    state_dict = fold_repbn_state(state_dict, cfg)  # RepBN blocks are stored folded (repbn.py)
    tensors = {k: (v.detach().to(tdt) if v.is_floating_point() else v.detach()) for k, v in state_dict.items()}
    with open(os.path.join(out_dir, "config.json"), "w", encoding="utf-8") as f:
        json.dump(resolved_config(cfg), f, indent=2)
        f.write("\n")
    st.save_file(tensors, os.path.join(out_dir, "model.safetensors"), FORMAT_METADATA)


def save_model(model: DuetModel, out_dir: str, dtype: str = "f32"):
    save_state(model.state_dict(), model.cfg, out_dir, dtype)


def load_config(model_dir: str) -> dict:
    return config_mod.load(os.path.join(model_dir, "config.json"))


def load_model(model_dir: str, dtype=torch.float32) -> DuetModel:
    """Loads a model directory into a DuetModel (eval mode, weights cast to `dtype`, default float32)."""
    cfg = load_config(model_dir)
    tensors, meta = st.load(os.path.join(model_dir, "model.safetensors"))
    if meta.get("format") != "duet":
        raise ValueError(f"{model_dir}/model.safetensors: metadata format is {meta.get('format')!r}, expected 'duet'")
    model = DuetModel(cfg, repbn_folded=True)
    expected = model.state_dict()
    missing = [k for k in expected if k not in tensors]
    extra = [k for k in tensors if k not in expected]
    if missing or extra:
        raise ValueError(f"{model_dir}: missing tensors {missing[:5]}, unexpected tensors {extra[:5]}")
    for k, v in tensors.items():
        if tuple(v.shape) != tuple(expected[k].shape):
            raise ValueError(f"{model_dir}: tensor {k} has shape {list(v.shape)}, config needs {list(expected[k].shape)}")
    model.load_state_dict({k: v.to(torch.float32) for k, v in tensors.items()}, strict=True)
    return model.to(dtype).eval()
