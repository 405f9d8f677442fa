#!/usr/bin/env python3
"""docs/caching.png: class accuracy and feature FID against the speedup of each cache setting.

  bench/plot_caching.py SWEEP.jsonl SPEED.json [SPEED.json ...] --out docs/caching.png

SWEEP.jsonl: scripts/eval-cache.sh's lines; SPEED.json: bench/cache_speed.py --json (one per
sampler × steps; a setting without a measured speedup is plotted at its backbone-FLOP ratio).
"""
import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("sweep")
    ap.add_argument("speed", nargs="*")
    ap.add_argument("--out", default="docs/caching.png")
    a = ap.parse_args()
    runs = [json.loads(line) for line in open(a.sweep) if line.strip()]
    speed = {}
    for p in a.speed:
        d = json.load(open(p))
        for r in d["rows"]:
            speed[(d["sampler"], d["steps"], r["cache"])] = r["speedup"]
    fig, ax = plt.subplots(1, 2, figsize=(11, 4.2))
    groups = sorted({(r["sampler"], r["steps"]) for r in runs})
    for g in groups:
        pts = []
        for r in runs:
            if (r["sampler"], r["steps"]) != g:
                continue
            c = r["extra"].replace("--cache ", "")
            if (g[0], g[1], c) not in speed:
                continue
            pts.append((speed[(g[0], g[1], c)], r["mean_class_accuracy"], r["fid_features"], c))
        if not pts:
            continue
        pts.sort()
        lbl = f"{g[0]} {g[1]} steps"
        ax[0].plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=lbl)
        ax[1].plot([p[0] for p in pts], [p[2] for p in pts], "o-", label=lbl)
        for p in pts:
            ax[0].annotate(p[3], (p[0], p[1]), fontsize=6, xytext=(2, 2), textcoords="offset points")
            ax[1].annotate(p[3], (p[0], p[2]), fontsize=6, xytext=(2, 2), textcoords="offset points")
    ax[0].set_xlabel("end-to-end speedup vs cache off (measured)")
    ax[0].set_ylabel("mean class accuracy (project classifier)")
    ax[1].set_xlabel("end-to-end speedup vs cache off (measured)")
    ax[1].set_ylabel("feature FID (lower is better)")
    for x in ax:
        x.grid(alpha=0.3)
        x.legend(fontsize=7)
    fig.suptitle("fashion-duet: backbone caching, 50 images per class (docs/caching.md)")
    fig.tight_layout()
    fig.savefig(a.out, dpi=110)


if __name__ == "__main__":
    main()
