"""Reference text-to-image pipeline (the C++ engine reproduces it; contract in docs/model.md).

Seeding: torch.manual_seed(seed); x_T = torch.randn([n, C, H, W]) (float32, CPU, global generator).
Guidance: prompts and the negative prompt (default "") are encoded once as ONE batch of 2n
(cond rows 0..n-1, then n uncond rows); every sampler step evaluates the model on
concat[x, x] with t broadcast to [2n] and combines eps = eps_u + g * (eps_c - eps_u)
(applied to the raw model output; for v-prediction models the sampler converts afterwards).
Guidance interval (cfg_interval = (lo, hi), Kynkäänniemi et al. 2024): guidance only at the steps
whose noise level sigma(t) = np.interp(t, arange(T), float32 sqrt((1 - abar) / abar)) lies in
[lo, hi]; the other steps evaluate the model on the n cond rows alone (prompts encoded as their
own batch of n) and use that prediction as is.
Refinement: sampler step index i (0-based) runs the refiner iff K > 0 and (i + 1) % K == 0.
The final latent is clamped to [-1, 1].
"""
from __future__ import annotations

import numpy as np
import torch

from .diffusion import SAMPLERS, Schedule


def refine_at(i: int, refine_every: int) -> bool:
    return refine_every > 0 and (i + 1) % refine_every == 0


def noise_sigma(sched: Schedule, t: float) -> float:
    """sigma at a real-valued timestep t: linear interpolation of the float32 sigma table."""
    ac = sched.alphas_cumprod.to(torch.float32).numpy()
    sig = np.sqrt((1 - ac) / ac).astype(np.float32)
    return float(np.interp(t, np.arange(sched.T), sig))


def initial_noise(n: int, cfg: dict, seed: int) -> torch.Tensor:
    im = cfg["image"]
    torch.manual_seed(seed)
    return torch.randn([n, im["channels"], im["height"], im["width"]])


@torch.no_grad()
def generate(model, prompts, steps: int = 20, sampler: str = "dpmpp_2m", cfg_scale: float = 4.0,
             negative_prompt: str = "", seed: int = 0, refine_every: int | None = None, callback=None,
             x_T: torch.Tensor | None = None, eps_callback=None, cfg_interval=None, guided_callback=None,
             cache=None, cache_callback=None):
    """prompts: list of n strings -> images [n, C, H, W] in [-1, 1].

    refine_every None -> the config's inference.refine_every. callback(i, x) after every step.
    x_T overrides the seeded initial noise. eps_callback(i, t, eps) gets every step's guided output.
    cfg_interval (lo, hi): guidance only where lo <= sigma(t) <= hi (module docstring);
    guided_callback(i, guided) reports each step's decision.
    cache: a backbone cache spec (cache.parse_cache: "step:0.3", "block:1,0,0.1", ...) — one
    cache.BackboneCache for the run; cache_callback(i, computed) reports each call's decision.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose from {sorted(SAMPLERS)}")
    cfg = model.cfg
    if refine_every is None:
        refine_every = cfg.get("inference", {}).get("refine_every", 0)
    n = len(prompts)
    x = initial_noise(n, cfg, seed) if x_T is None else x_T.clone()
    ps = model.encode_prompt(list(prompts) + [negative_prompt] * n)
    ps_cond = model.encode_prompt(list(prompts)) if cfg_interval is not None else None
    sched = Schedule(cfg)
    bc = None
    if cache is not None:
        from .cache import BackboneCache, parse_cache
        spec = parse_cache(cache) if isinstance(cache, str) else cache
        bc = BackboneCache(spec, len(model.backbone.blocks)) if spec else None

    def run_model(xin, tt, prompt_state, i):
        if bc is None:
            return model(xin, tt, prompt_state, refine=refine_at(i, refine_every))["eps"]
        bc.eligible = spec["start"] <= i / steps < spec["end"]
        out = model(xin, tt, prompt_state, refine=refine_at(i, refine_every), cache=bc)["eps"]
        if cache_callback:
            cache_callback(i, bc.decisions[-1])
        return out

    def eps_fn(x, t, i):
        if cfg_interval is not None:
            lo, hi = cfg_interval
            guided = lo <= noise_sigma(sched, t) <= hi
            if guided_callback:
                guided_callback(i, guided)
            if not guided:
                tt = torch.full((n,), float(t), dtype=torch.float32)
                eps = run_model(x, tt, ps_cond, i)
                if eps_callback:
                    eps_callback(i, t, eps)
                return eps
        xin = torch.cat([x, x], dim=0)
        tt = torch.full((2 * n,), float(t), dtype=torch.float32)
        out = run_model(xin, tt, ps, i)
        eps_c, eps_u = out[:n], out[n:]
        eps = eps_u + cfg_scale * (eps_c - eps_u)
        if eps_callback:
            eps_callback(i, t, eps)
        return eps

    x = SAMPLERS[sampler](eps_fn, x, sched, steps, callback=callback)
    return x.clamp(-1.0, 1.0)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[n, C, H, W] in [-1, 1] -> uint8 [n, H, W, C]: round(clip((x + 1) / 2, 0, 1) * 255)."""
    x = ((images.to(torch.float32) + 1) / 2).clamp(0, 1) * 255
    return torch.round(x).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def save_pngs(images: torch.Tensor, out_dir: str, prefix: str = "image"):
    """C = 1: grayscale, C = 3: RGB, other C: the channels side by side as one grayscale strip."""
    import os

    from PIL import Image

    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for k, a in enumerate(to_uint8(images)):
        C = a.shape[-1]
        if C == 1:
            img = Image.fromarray(a[..., 0], mode="L")
        elif C == 3:
            img = Image.fromarray(a, mode="RGB")
        else:
            img = Image.fromarray(np.concatenate([a[..., c] for c in range(C)], axis=1), mode="L")
        p = os.path.join(out_dir, f"{prefix}_{k:03d}.png")
        img.save(p)
        paths.append(p)
    return paths
