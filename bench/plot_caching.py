#!/usr/bin/env python3
"""docs/caching.png: class accuracy and feature FID against the measured speedup of each cache
setting (PIL only: matplotlib is not a dependency).

  bench/plot_caching.py docs/data/caching-sweep.jsonl docs/data/caching-speed-*.json --out docs/caching.png

The sweep lines come from scripts/eval-cache.sh, the speed files from bench/cache_speed.py --json
(the "generation" speedup: prompt encoding + sampling loop). A setting is plotted where both
exist for its sampler × steps; "off" is the point at 1.0x.
"""
import argparse
import json

from PIL import Image, ImageDraw

COLOURS = [(214, 39, 40), (31, 119, 180), (44, 160, 44), (255, 127, 14), (148, 103, 189)]


def panel(d, box, series, ykey, ylabel, xr, yr):
    L, T, R, B = box
    px = lambda v: L + (v - xr[0]) / (xr[1] - xr[0]) * (R - L)
    py = lambda v: B - (v - yr[0]) / (yr[1] - yr[0]) * (B - T)
    d.rectangle([L, T, R, B], outline=(0, 0, 0))
    for i in range(6):
        v = yr[0] + i * (yr[1] - yr[0]) / 5
        d.line([L - 4, py(v), L, py(v)], fill=(0, 0, 0))
        d.text((L - 52, py(v) - 6), f"{v:.3g}", fill=(0, 0, 0))
    x = 1.0
    while x <= xr[1] + 1e-9:
        d.line([px(x), B, px(x), B + 4], fill=(0, 0, 0))
        d.text((px(x) - 10, B + 8), f"{x:.1f}x", fill=(0, 0, 0))
        x += 0.5
    d.text((L, T - 16), ylabel, fill=(0, 0, 0))
    d.text((L + (R - L) // 2 - 110, B + 24), "generation speedup vs cache off", fill=(0, 0, 0))
    for gi, (label, pts) in enumerate(series):
        col = COLOURS[gi % len(COLOURS)]
        for method, width in (("step", 3), ("block", 1)):  # one line per method, from "off"
            mp = sorted(p for p in pts if p[2] == "off" or p[2].startswith(method))
            xy = [(px(p[0]), py(p[1][ykey])) for p in mp]
            if len(xy) > 1:
                d.line(xy, fill=col, width=width)
            for (x0, y0), p in zip(xy, mp):
                if method == "step":
                    d.ellipse([x0 - 4, y0 - 4, x0 + 4, y0 + 4], fill=col)
                else:
                    d.rectangle([x0 - 3, y0 - 3, x0 + 3, y0 + 3], outline=col)
                if p[2] != "off" or method == "step":
                    d.text((x0 + 5, y0 - 12), p[2].replace("block:", "b:").replace("step:", "s:"),
                           fill=col)


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
        if d.get("n") != 50:
            continue
        for r in d["rows"]:
            speed[(d["sampler"], d["steps"], r["cache"])] = r["speedup"]
    series = []
    for g in sorted({(r["sampler"], r["steps"]) for r in runs}):
        pts = []
        for r in runs:
            c = r["extra"].replace("--cache ", "")
            if (r["sampler"], r["steps"]) == g and (g[0], g[1], c) in speed:
                pts.append((speed[(g[0], g[1], c)], r, c))
        if pts:
            series.append((f"{g[0]} {g[1]} steps", pts))
    allp = [p for _, pts in series for p in pts]
    xr = (0.9, max(p[0] for p in allp) + 0.2)
    acc = [p[1]["mean_class_accuracy"] for p in allp]
    fid = [p[1]["fid_features"] for p in allp]
    W, H = 1400, 560
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    d.text((20, 8), "fashion-duet, backbone caching: 50 images per class, project classifier "
                    "(docs/caching.md)", fill=(0, 0, 0))
    panel(d, (80, 50, 560, 480), series, "mean_class_accuracy", "mean class accuracy", xr,
          (min(acc) - 0.01, max(acc) + 0.01))
    panel(d, (700, 50, 1180, 480), series, "fid_features", "feature FID (lower is better)", xr,
          (min(fid) - 5, max(fid) + 5))
    for i, (label, _) in enumerate(series):
        col = COLOURS[i % len(COLOURS)]
        d.rectangle([1205, 60 + 20 * i, 1217, 72 + 20 * i], fill=col)
        d.text((1222, 60 + 20 * i), label, fill=(0, 0, 0))
    d.text((1205, 60 + 20 * len(series) + 10), "thick line, dots: step cache", fill=(0, 0, 0))
    d.text((1205, 60 + 20 * len(series) + 26), "thin line, squares: block cache", fill=(0, 0, 0))
    img.save(a.out)


if __name__ == "__main__":
    main()
