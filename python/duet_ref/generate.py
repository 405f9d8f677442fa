"""Reference text-to-image generation (PyTorch), the behaviour the C++ `duet generate` reproduces.

    python -m duet_ref.generate --model models/fashion-duet -p "a photo of a dark sneaker" -n 4 \
        --steps 20 --sampler dpmpp_2m --cfg-scale 4 --seed 0 --output-dir out/

Seeding, guidance batching and the refine schedule are documented in duet_ref/pipeline.py and
docs/model.md. PNG: round(clip((x+1)/2, 0, 1) * 255); files <output-dir>/image_000.png, ...
"""
from __future__ import annotations

import argparse
import time

import torch

from .checkpoint import load_model
from .diffusion import SAMPLERS
from .cache import BackboneCache, parse_cache
from .pipeline import generate, save_pngs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="model directory (config.json + model.safetensors)")
    ap.add_argument("-p", "--prompt", required=True)
    ap.add_argument("-n", "--num-images", type=int, default=1)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--sampler", choices=sorted(SAMPLERS), default="dpmpp_2m")
    ap.add_argument("--cfg-scale", type=float, default=None,
                    help="guidance scale (default: config inference.cfg_scale)")
    ap.add_argument("--negative-prompt", default="")
    ap.add_argument("--cfg-interval", default=None, metavar="LO,HI",
                    help="guidance only at steps whose sigma lies in [LO, HI] (duet_ref/pipeline.py)")
    ap.add_argument("--cache", default="off", metavar="SPEC",
                    help="backbone cache: off | on | step:THRESH[,START,END] | block:F,B,THRESH[,START,END] "
                         "(duet_ref/cache.py, docs/caching.md)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--refine-every", type=int, default=None, help="K: refine at 0-based steps i with (i+1)%%K==0; 0 = never (default: config inference.refine_every)")
    ap.add_argument("--output-dir", default="out")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    t0 = time.time()
    cfg_scale = args.cfg_scale
    if cfg_scale is None:
        cfg_scale = model.cfg.get("inference", {}).get("cfg_scale", 4.0)
    interval = None
    if args.cfg_interval:
        try:
            lo, hi = (float(v) for v in args.cfg_interval.split(","))
        except ValueError:
            ap.error(f"--cfg-interval must be LO,HI, got {args.cfg_interval!r}")
        if not 0 <= lo <= hi:
            ap.error(f"--cfg-interval needs 0 <= LO <= HI, got {args.cfg_interval!r}")
        interval = (lo, hi)
    try:
        cache = parse_cache(args.cache)
        if cache:
            BackboneCache(cache, len(model.backbone.blocks))  # checks F + B against the depth
    except ValueError as e:
        ap.error(f"--cache: {e}")
    reused = []
    images = generate(model, [args.prompt] * args.num_images, steps=args.steps, sampler=args.sampler,
                      cfg_scale=cfg_scale, negative_prompt=args.negative_prompt, seed=args.seed,
                      refine_every=args.refine_every, cfg_interval=interval, cache=cache,
                      cache_callback=lambda i, computed: None if computed else reused.append(i))
    if cache:
        print(f"cache {args.cache}: reused the backbone span on calls {reused}")
    paths = save_pngs(images, args.output_dir)
    print(f"generated {len(paths)} image(s) in {time.time() - t0:.2f}s: {', '.join(paths)}")


if __name__ == "__main__":
    main()
