"""Evaluate a duet model with the separate Fashion-MNIST classifier (classifier.py).

    python3 -m duet_ref.evaluate --model ../models/fashion-duet --per-class 50 \
        --sampler dpmpp_2m --steps 20 --cfg-scale 4 --out ../docs/eval_dpmpp_2m_20.json
    python3 -m duet_ref.evaluate --png-dir DIR ...   # score PNGs made elsewhere (e.g. by `duet generate`)

Reports per-class accuracy and the confusion matrix (rows: prompted class, columns: the
classifier's answer; beside it the classifier's own per-class accuracy on the real test set) of the classifier on images generated from "a photo of a {class}",
a feature-space FID (classifier penultimate features, generated vs the 10k test set) and the
attribute accuracy for "dark"/"bright"/"small"/"large" prompts: the fraction of generated images
whose measured brightness / size falls in the requested per-class tercile of the training set
(chance = 1/3).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import re
import time

import numpy as np
import torch
from PIL import Image
from scipy import linalg

from .classifier import DEFAULT_PATH, load_classifier, predict, to_input
from .data import CLASS_NAMES, load_split, measure, tercile_edges

ATTRS = {"dark": (0, "low"), "bright": (0, "high"), "small": (1, "low"), "large": (1, "high")}


def fid_from_features(f1, f2):
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    covmean, _ = linalg.sqrtm(s1 @ s2, disp=False)
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def to_u8(images):
    """[n, 1, H, W] in [-1, 1] -> uint8 [n, H, W], same mapping as the PNG writers."""
    x = np.clip((images[:, 0].numpy().astype(np.float64) + 1) / 2, 0, 1)
    return np.round(x * 255).astype(np.uint8)


def load_model_any(path):
    from .checkpoint import load_model
    if os.path.isdir(path):
        return load_model(path)
    from .model import DuetModel
    st = torch.load(path)
    m = DuetModel(st["config"])
    m.load_state_dict(st["ema"])
    return m.eval()


def generate_u8(model, prompt, n, args, seed):
    from .pipeline import generate
    imgs = generate(model, [prompt] * n, steps=args.steps, sampler=args.sampler, cfg_scale=args.cfg_scale,
                    seed=seed, refine_every=args.refine_every)
    return to_u8(imgs)


def confusion(pred, labels):
    """counts[true class][predicted class] (10 x 10 nested lists of ints)."""
    m = np.zeros((10, 10), dtype=np.int64)
    np.add.at(m, (labels, pred), 1)
    return m.tolist()


def score(gen_u8, labels, net, test_feats, with_confusion=False):
    pred, feats = predict(net, to_input(gen_u8))
    per_class = {CLASS_NAMES[k]: float((pred[labels == k] == k).mean()) for k in range(10) if (labels == k).any()}
    out = (per_class, float((pred == labels).mean()), fid_from_features(feats, test_feats))
    return out + (confusion(pred, labels),) if with_confusion else out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="model dir or training checkpoint (.ckpt, EMA weights)")
    ap.add_argument("--png-dir", help="score PNGs named <class index>_<anything>.png instead of generating")
    ap.add_argument("--per-class", type=int, default=50)
    ap.add_argument("--attr-per-class", type=int, default=10, help="images per (attribute, class); 0 = skip")
    ap.add_argument("--sampler", default="dpmpp_2m")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--cfg-scale", type=float, default=None,
                    help="default: the model's inference.cfg_scale (duet generate's default)")
    ap.add_argument("--refine-every", type=int, default=None,
                    help="default: the model's inference.refine_every (duet generate's default)")
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--classifier", default=DEFAULT_PATH)
    ap.add_argument("--save-grid", help="write a PNG grid (one row per class) here")
    ap.add_argument("--out", help="write the figures as JSON here")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    net = load_classifier(args.classifier)
    xte, yte = load_split("test")
    test_pred, test_feats = predict(net, to_input(xte))
    t0 = time.time()
    result = {"sampler": args.sampler, "steps": args.steps, "cfg_scale": args.cfg_scale,
              "refine_every": args.refine_every}
    if args.png_dir:
        files = sorted(glob.glob(os.path.join(args.png_dir, "*.png")))
        labels, imgs = [], []
        for f in files:
            m = re.match(r"(\d+)_", os.path.basename(f))
            if m:
                labels.append(int(m.group(1)))
                imgs.append(np.array(Image.open(f).convert("L")))
        gen, labels = np.stack(imgs), np.array(labels)
        result["source"] = args.png_dir
    else:
        model = load_model_any(args.model)
        inf = model.cfg["inference"]
        args.cfg_scale = inf["cfg_scale"] if args.cfg_scale is None else args.cfg_scale
        args.refine_every = inf["refine_every"] if args.refine_every is None else args.refine_every
        result.update(cfg_scale=args.cfg_scale, refine_every=args.refine_every)
        gen, labels = [], []
        with torch.no_grad():
            for k, name in enumerate(CLASS_NAMES):
                gen.append(generate_u8(model, f"a photo of a {name}", args.per_class, args, args.seed + k))
                labels += [k] * args.per_class
        gen, labels = np.concatenate(gen), np.array(labels)
        result["source"] = args.model
    per_class, acc, fid, conf = score(gen, labels, net, test_feats, with_confusion=True)
    from .grain_probe import grain  # background-noise figures (bg_nonzero: real test set 0.094)
    result.update(grain(gen))
    result.update(per_class_accuracy=per_class, mean_class_accuracy=acc, fid_features=fid, n=len(labels),
                  confusion=conf,
                  # the classifier's own per-class accuracy on the real 10k test set: a generated class
                  # cannot be expected to score much above what real images of it score
                  real_test_per_class_accuracy={CLASS_NAMES[k]: float((test_pred[yte == k] == k).mean())
                                                for k in range(10)})
    print(f"class accuracy {acc:.3f}, feature FID {fid:.2f}; per class: " +
          ", ".join(f"{k} {v:.2f}" for k, v in per_class.items()), flush=True)
    if args.save_grid:
        rows = [np.concatenate(list(gen[labels == k][:10]), axis=1) for k in range(10) if (labels == k).sum() >= 10]
        Image.fromarray(np.concatenate(rows, axis=0)).resize((280 * 2, 28 * len(rows) * 2), Image.NEAREST).save(args.save_grid)
    if args.model and not args.png_dir and args.attr_per_class > 0:
        xtr, ytr = load_split("train")
        b, s = measure(xtr)
        edges = [tercile_edges(b, ytr), tercile_edges(s, ytr)]
        attr = {}
        with torch.no_grad():
            for a, (which, side) in ATTRS.items():
                hits, n = 0, 0
                for k, name in enumerate(CLASS_NAMES):
                    g = generate_u8(model, f"a photo of a {a} {name}", args.attr_per_class, args, args.seed + 100 + k)
                    val = measure(g)[which]
                    e = edges[which][k]
                    hits += int((val < e[0]).sum() if side == "low" else (val > e[1]).sum())
                    n += len(g)
                attr[a] = hits / n
        result["attribute_accuracy"] = attr
        print("attribute accuracy (chance 0.33): " + ", ".join(f"{k} {v:.2f}" for k, v in attr.items()), flush=True)
    result["seconds"] = round(time.time() - t0, 1)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
