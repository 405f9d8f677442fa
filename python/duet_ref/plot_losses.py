"""Draw the training loss curves (runs/<name>/log.csv) as a PNG with PIL only.

    python3 -m duet_ref.plot_losses ../runs/fashion-duet/log.csv ../docs/loss_curves.png
"""
from __future__ import annotations

import csv
import math
import sys

from PIL import Image, ImageDraw

SERIES = [("loss", (0, 0, 0)), ("loss_sem", (31, 119, 180)), ("loss_tex", (214, 39, 40)),
          ("loss_fused", (44, 160, 44))]


def main(argv=None):
    argv = argv or sys.argv[1:]
    src, dst = argv[0], argv[1]
    rows = list(csv.DictReader(open(src)))
    steps = [int(r["step"]) for r in rows]
    W, H, L, R, T, B = 900, 500, 70, 170, 30, 50
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    vals = [float(r[k]) for r in rows for k, _ in SERIES]
    lo, hi = math.log10(max(min(vals), 1e-4)), math.log10(max(vals))
    x = lambda s: L + (s - steps[0]) / max(1, steps[-1] - steps[0]) * (W - L - R)
    y = lambda v: T + (hi - math.log10(max(v, 1e-4))) / max(1e-9, hi - lo) * (H - T - B)
    d.rectangle([L, T, W - R, H - B], outline=(0, 0, 0))
    for e in range(math.floor(lo), math.ceil(hi) + 1):
        for m in (1, 2, 5):
            v = m * 10 ** e
            if lo <= math.log10(v) <= hi:
                d.line([L, y(v), W - R, y(v)], fill=(225, 225, 225))
                d.text((5, y(v) - 6), f"{v:g}", fill=(0, 0, 0))
    for i in range(6):
        s = steps[0] + i * (steps[-1] - steps[0]) / 5
        d.text((x(s) - 10, H - B + 8), f"{int(s)}", fill=(0, 0, 0))
    d.text(((W - R) / 2 - 20, H - 22), "training step (batch 64)", fill=(0, 0, 0))
    for j, (k, col) in enumerate(SERIES):
        pts = [(x(s), y(float(r[k]))) for s, r in zip(steps, rows)]
        d.line(pts, fill=col, width=2)
        d.line([W - R + 15, T + 20 + 20 * j, W - R + 40, T + 20 + 20 * j], fill=col, width=3)
        d.text((W - R + 45, T + 14 + 20 * j), k, fill=(0, 0, 0))
    d.text((L, 8), "duet fashion-duet training losses (log scale)", fill=(0, 0, 0))
    img.save(dst)


if __name__ == "__main__":
    main()
