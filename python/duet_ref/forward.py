"""One denoiser evaluation (reference for the C++ `duet forward`).

    python -m duet_ref.forward --model DIR --prompt TEXT --x X.safetensors --t 537.25 [--refine] --out OUT.safetensors

Reads tensor `x` [B, C, H, W] from --x (any float dtype, computed in float32); the prompt is
repeated B times; t is broadcast to [B] (float32). Writes F32 tensors
  eps_s [B,C,H,W], r [B,C,H,W], eps_d [B,C,H,W], alpha [B], eps [B,C,H,W]
With --refine: eps = LP(eps_s) + alpha*HP(eps_s) + (1-alpha)*eps_d.
Without --refine (the refiner is not run): eps = eps_s, and r, eps_d, alpha are written as ZEROS
(same shapes), so the file always has the same five keys. Metadata: prompt, t, refine ("0"/"1").
"""
from __future__ import annotations

import argparse

import torch

from . import safetensors_io as st
from .checkpoint import load_model


@torch.no_grad()
def forward(model, prompt: str, x: torch.Tensor, t: float, refine: bool):
    B = x.shape[0]
    ps = model.encode_prompt([prompt] * B)
    tt = torch.full((B,), float(t), dtype=torch.float32)
    out = model(x.to(torch.float32), tt, ps, refine=refine)
    zeros = torch.zeros_like(out["eps_s"])
    return {"eps_s": out["eps_s"], "r": out.get("r", zeros), "eps_d": out.get("eps_d", zeros),
            "alpha": out.get("alpha", torch.zeros(B)), "eps": out["eps"]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompt", required=True)
    ap.add_argument("--x", required=True, help="safetensors file with tensor 'x' [B, C, H, W]")
    ap.add_argument("--t", type=float, required=True)
    ap.add_argument("--refine", action="store_true")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    model = load_model(args.model)
    tensors = st.load_file(args.x)
    if "x" not in tensors:
        raise SystemExit(f"{args.x}: no tensor named 'x'")
    x = tensors["x"]
    if x.dim() != 4:
        raise SystemExit(f"{args.x}: tensor 'x' must be [B, C, H, W], got {list(x.shape)}")
    outs = forward(model, args.prompt, x, args.t, args.refine)
    st.save_file({k: v.contiguous() for k, v in outs.items()}, args.out,
                 {"prompt": args.prompt, "t": repr(float(args.t)), "refine": "1" if args.refine else "0"})
    print(f"wrote {args.out}: " + ", ".join(f"{k} {list(v.shape)}" for k, v in outs.items()))


if __name__ == "__main__":
    main()
