"""Where does the background grain come from? Generate with one setting and measure it.

    python3 -m duet_ref.grain_probe --model ../models/fashion-duet --per-class 10 \
        --sampler dpmpp_2m --steps 20 --cfg-scale 3 --refine-every 3 --out probe.json

Grain figures (u8 images, 0 = black background as in Fashion-MNIST):
  border_mean   mean value of the 2-pixel frame (real test set: ~0.3)
  bg_nonzero    fraction of "background" pixels (< 32) that are not exactly 0 (real: the
                test set's own figure, printed by --real)
  bg_mean       mean value of background pixels (< 32)
Plus class accuracy / feature FID from the project's classifier (evaluate.py), and a grid PNG.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from PIL import Image

from .classifier import DEFAULT_PATH, load_classifier, predict, to_input
from .data import CLASS_NAMES, load_split
from .evaluate import fid_from_features, load_model_any, score, to_u8


def grain(u8: np.ndarray) -> dict:
    """u8: [n, H, W] uint8 -> background-noise figures (see the module doc)."""
    x = u8.astype(np.float64)
    frame = np.ones(x.shape[1:], bool)
    frame[2:-2, 2:-2] = False
    bg = x < 32
    return {"border_mean": float(x[:, frame].mean()),
            "bg_nonzero": float((x[bg] > 0).mean()),
            "bg_mean": float(x[bg].mean())}


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="../models/fashion-duet")
    ap.add_argument("--per-class", type=int, default=10)
    ap.add_argument("--sampler", default="dpmpp_2m")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--cfg-scale", type=float, default=3.0)
    ap.add_argument("--refine-every", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--grid")
    ap.add_argument("--out")
    ap.add_argument("--real", action="store_true", help="print the test set's own grain figures")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    xte, yte = load_split("test")
    if args.real:
        print(json.dumps({"real_test_set": grain(xte)}))
        return
    from .pipeline import generate
    net = load_classifier(DEFAULT_PATH)
    _, test_feats = predict(net, to_input(xte))
    model = load_model_any(args.model)
    t0 = time.time()
    gen, labels = [], []
    for k, name in enumerate(CLASS_NAMES):
        imgs = generate(model, [f"a photo of a {name}"] * args.per_class, steps=args.steps, sampler=args.sampler,
                        cfg_scale=args.cfg_scale, seed=args.seed + k, refine_every=args.refine_every)
        gen.append(to_u8(imgs))
        labels += [k] * args.per_class
    gen, labels = np.concatenate(gen), np.array(labels)
    per_class, acc, fid = score(gen, labels, net, test_feats)
    res = {"sampler": args.sampler, "steps": args.steps, "cfg_scale": args.cfg_scale,
           "refine_every": args.refine_every, "n": len(labels), "mean_class_accuracy": acc,
           "fid_features": fid, **grain(gen), "per_class_accuracy": per_class,
           "seconds": round(time.time() - t0, 1)}
    print(json.dumps(res), flush=True)
    if args.grid:
        m = min(10, args.per_class)
        rows = [np.concatenate(list(gen[labels == k][:m]), axis=1) for k in range(10)]
        Image.fromarray(np.concatenate(rows, axis=0)).resize((28 * m * 2, 28 * 10 * 2), Image.NEAREST).save(args.grid)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
