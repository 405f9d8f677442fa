"""ONNX export (opset 17) of a duet model directory as four graphs (see docs/model.md, "ONNX graphs").

    python -m duet_ref.onnx_export --model DIR --out ONNX_DIR

  text_encoder.onnx    ids [B, L] int64, mask [B, L] int64 (1 = real token) -> E [B, L, Dt], p [B, Dt]
  prompt_kv.onnx       E [B, L, Dt] -> k0, v0, k1, v1, ... [B, L, D]   (one pair per backbone block)
  denoiser.onnx        x_t [B, C, H, W], t [B], k0, v0, ..., mask [B, L] int64, p [B, Dt] -> eps_s, c [B, D]
  refiner_fusion.onnx  x_t, eps_s [B, C, H, W], t [B], c [B, D] -> eps, eps_d [B, C, H, W], alpha [B]

Dynamic axes: batch B everywhere, text length L (1 <= L <= text.max_length) in the first three.
H and W are FIXED to the config's image size: the backbone's 2-D position embedding and the
high-pass mask are constants (the high-pass is exported as DFT matrix products, onnx_hp.py).

Export-friendly wrappers (no change to the model's modules or parameters):
  * sinusoid(t) in float32 (frequency table computed in float64 and stored as a float32 constant;
    t*f, cos, sin in float32) instead of the reference's float64 computation (TensorRT has no
    double); this is the only numerical difference (~1e-5 relative on arguments up to 1000 rad);
  * CARAFE without im2col (Unfold): zero Pad + k_up^2 shifted slices, each broadcast-multiplied
    with its reassembly weight over the [B, C, H, s, W, s] view and summed;
  * HP(x) as MatMuls with constant cos/sin DFT matrices (onnx_hp.MatmulHighpass);
  * masks are int64 inputs compared with 0 inside the graph;
  * backbone.ln_plain is swapped (during export only) for F.layer_norm with a constant shape and
    an explicit unit scale / zero bias (identical numerics).
Everything else (LayerNormalization, GroupNorm -> InstanceNormalization, SiLU = Sigmoid*Mul,
tanh-GELU as elementwise ops, Softmax, MatMul/Gemm, Conv, DepthToSpace) is the model's own code.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import backbone as backbone_mod
from .checkpoint import load_model
from .config import TIME_EMBED_DIM
from .layers import silu
from .onnx_hp import MatmulHighpass

OPSET = 17


class SinusoidF32(nn.Module):
    def __init__(self, dim=TIME_EMBED_DIM, max_period=10000.0):
        super().__init__()
        half = dim // 2
        k = torch.arange(half, dtype=torch.float64)
        self.register_buffer("freqs", torch.exp(-math.log(max_period) * k / half).to(torch.float32))

    def forward(self, t):
        args = t[:, None] * self.freqs[None]
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def _ln_plain_static(x):
    # backbone.ln_plain with a constant normalized_shape (the traced x.shape[-1:] is not constant)
    # and explicit scale 1 / bias 0 (torch 1.13's opset-17 LayerNormalization needs a scale input).
    d = int(x.shape[-1])
    return F.layer_norm(x, (d,), torch.ones(d, dtype=x.dtype), torch.zeros(d, dtype=x.dtype), eps=1e-6)


@contextlib.contextmanager
def export_patches():
    """Temporarily swaps backbone.ln_plain for the static-shape version (same numerics)."""
    saved = backbone_mod.ln_plain
    backbone_mod.ln_plain = _ln_plain_static
    try:
        yield
    finally:
        backbone_mod.ln_plain = saved


def carafe_export(up, x):
    """Carafe.forward without F.unfold (same formula, see refiner.Carafe)."""
    B, C, H, W = x.shape
    k, s = up.k_up, up.scale
    w = up.weights(x)  # [B, k^2, sH, sW]
    w = w.reshape(B, k * k, H, s, W, s)
    xp = F.pad(x, (k // 2, k // 2, k // 2, k // 2))
    out = None
    for i in range(k):
        for j in range(k):
            sh = xp[:, :, i:i + H, j:j + W][:, :, :, None, :, None]  # [B, C, H, 1, W, 1]
            term = sh * w[:, i * k + j: i * k + j + 1]               # [B, C, H, s, W, s]
            out = term if out is None else out + term
    return out.reshape(B, C, H * s, W * s)


def refiner_export(ref, x_t, eps_s, c):
    """Refiner.forward with carafe_export for the up-sampling."""
    h = ref.conv_in(torch.cat([x_t, eps_s], dim=1))
    skips = []
    for i, blk in enumerate(ref.enc):
        h = blk(h, c)
        if i < len(ref.down):
            skips.append(h)
            h = ref.down[i](h)
    h = ref.mid(h, c)
    for up, fuse, dec in zip(ref.up, ref.fuse, ref.dec):
        h = fuse(torch.cat([carafe_export(up, h), skips.pop()], dim=1))
        h = dec(h, c)
    return ref.conv_out(silu(ref.norm_out(h)))


class TextEncoderGraph(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.text = model.text

    def forward(self, ids, mask):
        return self.text(ids, mask > 0)


class PromptKvGraph(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.backbone = model.backbone

    def forward(self, e):
        out = []
        for k, v in self.backbone.prompt_kv(e):
            out += [k, v]
        return tuple(out)


class DenoiserGraph(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.cond = model.cond
        self.backbone = model.backbone
        self.sinusoid = SinusoidF32()
        self.depth = len(model.backbone.blocks)

    def forward(self, x_t, t, *args):
        kv_flat, mask, p = args[:2 * self.depth], args[2 * self.depth], args[2 * self.depth + 1]
        c = self.cond.t_mlp(self.sinusoid(t)) + self.cond.pool_proj(p)
        kvs = [(kv_flat[2 * i], kv_flat[2 * i + 1]) for i in range(self.depth)]
        eps_s = self.backbone(x_t, c, kvs, mask > 0, p)
        return eps_s, c


class RefinerFusionGraph(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.refiner = model.refiner
        self.gate_mlp = model.gate.mlp
        self.sinusoid = SinusoidF32()
        self.hp = MatmulHighpass(model.hp_mask)

    def forward(self, x_t, eps_s, t, c):
        r = refiner_export(self.refiner, x_t, eps_s, c)
        eps_d = self.hp(r)
        alpha = torch.sigmoid(self.gate_mlp(self.sinusoid(t)))[:, 0]
        hp_s = self.hp(eps_s)
        a = alpha[:, None, None, None]
        eps = (eps_s - hp_s) + a * hp_s + (1 - a) * eps_d
        return eps, eps_d, alpha


def graph_specs(model, B=2, L=None):
    """-> {name: (module, example inputs, input names, output names, dynamic axes)}."""
    cfg = model.cfg
    im, tx, bb = cfg["image"], cfg["text"], cfg["backbone"]
    L = L or tx["max_length"]
    C, H, W, D, Dt, depth = im["channels"], im["height"], im["width"], bb["width"], tx["width"], bb["depth"]
    ids, mask = model.tokenize(["example prompt"] * B)
    ids, mask = ids[:, :L], mask[:, :L].to(torch.int64)
    e = torch.randn(B, L, Dt)
    kv = [torch.randn(B, L, D) for _ in range(2 * depth)]
    kv_names = [f"{kind}{i}" for i in range(depth) for kind in ("k", "v")]
    x = torch.randn(B, C, H, W)
    t = torch.tensor([500.0] * B)
    p = torch.randn(B, Dt)
    c = torch.randn(B, D)
    bl = {0: "batch", 1: "text_len"}
    return {
        "text_encoder": (TextEncoderGraph(model), (ids, mask), ["ids", "mask"], ["E", "p"],
                         {"ids": bl, "mask": bl, "E": bl, "p": {0: "batch"}}),
        "prompt_kv": (PromptKvGraph(model), (e,), ["E"], kv_names, {n: bl for n in ["E"] + kv_names}),
        "denoiser": (DenoiserGraph(model), (x, t, *kv, mask, p), ["x_t", "t", *kv_names, "mask", "p"], ["eps_s", "c"],
                     {"x_t": {0: "batch"}, "t": {0: "batch"}, **{n: bl for n in kv_names}, "mask": bl,
                      "p": {0: "batch"}, "eps_s": {0: "batch"}, "c": {0: "batch"}}),
        "refiner_fusion": (RefinerFusionGraph(model), (x, x.clone(), t, c), ["x_t", "eps_s", "t", "c"],
                           ["eps", "eps_d", "alpha"],
                           {n: {0: "batch"} for n in ["x_t", "eps_s", "t", "c", "eps", "eps_d", "alpha"]}),
    }


def export_model(model, out_dir: str, names=None):
    os.makedirs(out_dir, exist_ok=True)
    model = model.eval()
    paths = {}
    for name, (mod, inputs, in_names, out_names, dyn) in graph_specs(model).items():
        if names and name not in names:
            continue
        path = os.path.join(out_dir, f"{name}.onnx")
        with torch.no_grad(), export_patches():
            torch.onnx.export(mod.eval(), inputs, path, opset_version=OPSET, input_names=in_names,
                              output_names=out_names, dynamic_axes=dyn, do_constant_folding=True)
        paths[name] = path
    return paths


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="model directory (config.json + model.safetensors)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--graph", action="append", choices=["text_encoder", "prompt_kv", "denoiser", "refiner_fusion"])
    args = ap.parse_args(argv)
    model = load_model(args.model)
    for name, path in export_model(model, args.out, args.graph).items():
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
