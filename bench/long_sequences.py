"""Cost growth with the token count: softmax vs SLAB linear vs CSWin stripe self-attention (issue 20).

    /usr/bin/python3 bench/long_sequences.py [--duet build/duet] [--out docs/long-sequences]

Two families of seeded random-weight models (python -m duet_ref.export --random), each once per
attention kind (CSWin stripe width: 8 tokens at seed width, 2 at the demo size; LePE kernel 3), timed by `duet bench` (denoise without the refiner, batch 1, median of --reps):
  * seed width: backbone width 1152, 16 heads, depth 2, patch 2, on 32², 64², 128² latents
    (256, 1024, 4096 tokens, 4 channels);
  * demo size: the shipped model's config (width 128, depth 6, patch 4) at 28..224 px.
The weights do not depend on the image size (the position embedding is computed, not stored),
so one export per kind serves every size: only config.json changes.
Writes OUT.json (every figure + the CPU) and OUT.png (time against tokens, log-log).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KINDS = ("softmax", "slab_linear", "cswin")
STRIPE = {"seed": 8, "demo": 2}


def seed_config(kind: str) -> dict:
    with open(os.path.join(ROOT, "configs", "tiny-demo.json")) as f:
        cfg = json.load(f)
    cfg["name"] = f"seed-width-{kind}"
    cfg["image"] = {"channels": 4, "height": 32, "width": 32}
    cfg["backbone"].update({"patch": 2, "width": 1152, "depth": 2, "heads": 16, "mlp_ratio": 4,
                            "attention": kind, "slab_kernel": 5, "cswin_stripe": STRIPE["seed"],
                            "cswin_kernel": 3})
    return cfg


def demo_config(kind: str) -> dict:
    with open(os.path.join(ROOT, "models", "fashion-duet", "config.json")) as f:
        cfg = json.load(f)
    cfg["name"] = f"demo-{kind}"
    cfg["backbone"]["attention"] = kind
    cfg["backbone"].setdefault("slab_kernel", 5)
    cfg["backbone"].update(cswin_stripe=STRIPE["demo"], cswin_kernel=3)
    return cfg


def export(cfg: dict, out: str):
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "gen-config.json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "python"))
    subprocess.run([sys.executable, "-m", "duet_ref.export", "--random", "--config", path,
                    "--seed", "0", "--out", out], check=True, env=env, stdout=subprocess.DEVNULL)


def sized(base: str, cfg: dict, side: int, work: str) -> str:
    d = os.path.join(work, f"{os.path.basename(base)}-{side}")
    os.makedirs(d, exist_ok=True)
    c = copy.deepcopy(cfg)
    c["image"]["height"] = c["image"]["width"] = side
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(c, f)
    link = os.path.join(d, "model.safetensors")
    if not os.path.exists(link):
        os.symlink(os.path.join(base, "model.safetensors"), link)
    return d


def bench(duet: str, model: str, reps: int) -> dict:
    r = subprocess.run([duet, "bench", "--model", model, "--batch", "1", "--reps", str(reps),
                        "--steps", "0", "--no-gemm", "--no-quality", "--peak-seconds", "0.2",
                        "--json"], check=True, capture_output=True, text=True)
    return json.loads(r.stdout)


def stage(j: dict, name: str) -> dict:
    return j["stages"][name]


def plot(rows: list, path: str):
    import math
    from PIL import Image, ImageDraw
    W, H, L, R, T, B = 900, 520, 80, 220, 30, 60
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    xs = [r["tokens"] for r in rows]
    ys = [r["denoise_ms"] for r in rows]
    lx0, lx1 = math.log10(min(xs) / 1.5), math.log10(max(xs) * 1.5)
    ly0, ly1 = math.log10(min(ys) / 1.5), math.log10(max(ys) * 1.5)
    px = lambda v: L + (math.log10(v) - lx0) / (lx1 - lx0) * (W - L - R)
    py = lambda v: T + (ly1 - math.log10(v)) / (ly1 - ly0) * (H - T - B)
    d.rectangle([L, T, W - R, H - B], outline=(0, 0, 0))
    for e in range(math.floor(ly0), math.ceil(ly1) + 1):
        for m in (1, 2, 5):
            v = m * 10 ** e
            if ly0 <= math.log10(v) <= ly1:
                d.line([L - 4, py(v), L, py(v)], fill=(0, 0, 0))
                d.text((5, py(v) - 6), f"{v:g} ms", fill=(0, 0, 0))
    for t in sorted(set(xs)):
        d.line([px(t), H - B, px(t), H - B + 4], fill=(0, 0, 0))
        d.text((px(t) - 12, H - B + 8), str(t), fill=(0, 0, 0))
    d.text((W // 2 - 120, H - 25), "tokens (log)  ->  denoise ms per call (log)", fill=(0, 0, 0))
    colours = {("seed", "softmax"): (214, 39, 40), ("seed", "slab_linear"): (31, 119, 180),
               ("seed", "cswin"): (148, 103, 189),
               ("demo", "softmax"): (255, 127, 14), ("demo", "slab_linear"): (44, 160, 44),
               ("demo", "cswin"): (140, 86, 75)}
    for i, (key, col) in enumerate(colours.items()):
        pts = [(px(r["tokens"]), py(r["denoise_ms"])) for r in rows
               if (r["family"], r["attention"]) == key]
        if len(pts) > 1:
            d.line(pts, fill=col, width=3)
        for x, y in pts:
            d.ellipse([x - 4, y - 4, x + 4, y + 4], fill=col)
        label = ("seed width 1152" if key[0] == "seed" else "demo width 128") + ", " + key[1]
        d.rectangle([W - R + 10, T + 20 * i + 4, W - R + 24, T + 20 * i + 16], fill=col)
        d.text((W - R + 30, T + 20 * i + 4), label, fill=(0, 0, 0))
    img.save(path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duet", default=os.path.join(ROOT, "build", "duet"))
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "long-sequences"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--work", default=None, help="model directory cache (default: a temp dir)")
    a = ap.parse_args()
    work = a.work or tempfile.mkdtemp(prefix="duet-longseq-")
    families = [("seed", seed_config, [32, 64, 128], 2), ("demo", demo_config, [28, 56, 112, 224], 4)]
    rows, cpu = [], None
    for family, make, sides, patch in families:
        for kind in KINDS:
            cfg = make(kind)
            base = os.path.join(work, f"{family}-{kind}")
            if not os.path.exists(os.path.join(base, "model.safetensors")):
                export(cfg, base)
            for side in sides:
                j = bench(a.duet, sized(base, cfg, side, work), a.reps)
                cpu = j["cpu"]
                s = stage(j, "denoise_no_refine")
                row = {"family": family, "attention": kind, "side": side,
                       "tokens": (side // patch) ** 2, "denoise_ms": s["median_ms"],
                       "gflop": s.get("gflop"), "threads": j["threads"]}
                rows.append(row)
                print(json.dumps(row), flush=True)
    for r in rows:  # cost of every 4x in tokens, per family and kind
        prev = [p for p in rows if (p["family"], p["attention"]) == (r["family"], r["attention"])
                and p["tokens"] * 4 == r["tokens"]]
        r["x_per_4x_tokens"] = round(r["denoise_ms"] / prev[0]["denoise_ms"], 2) if prev else None
        soft = [p for p in rows if (p["family"], p["side"], p["attention"]) ==
                (r["family"], r["side"], "softmax")]
        r["softmax_over_this"] = round(soft[0]["denoise_ms"] / r["denoise_ms"], 2)
    with open(a.out + ".json", "w") as f:
        json.dump({"cpu": cpu, "rows": rows}, f, indent=1)
    plot(rows, a.out + ".png")
    print(f"wrote {a.out}.json and {a.out}.png")


if __name__ == "__main__":
    main()
