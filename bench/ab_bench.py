#!/usr/bin/env python3
"""Interleaved A/B runs of `duet bench`: variants alternate round by round so that drift in the
machine's load hits all of them alike; prints, per stage, the median over rounds of each run's
median and the ratio to the first variant.

  bench/ab_bench.py --rounds 8 \
      --variant before=/work/wt-old/build/duet \
      --variant 'no-cache=DUET_HOST_BLOCK_CACHE_MB=0 build/duet' \
      --variant after=build/duet \
      -- --model models/fashion-duet --batch 16 --reps 30 --threads 2 --steps 0 --no-gemm --no-quality

A variant is LABEL=[VAR=VALUE ...] BINARY. Each run's JSON is kept in --out (default /tmp/ab-bench).
"""
import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys


def parse_variant(text):
    label, sep, rest = text.partition("=")
    words = shlex.split(rest)
    if not sep or not label or not words:
        sys.exit(f"ab_bench: --variant '{text}': expected LABEL=[VAR=VALUE ...] BINARY")
    env = {}
    while len(words) > 1 and "=" in words[0]:
        k, v = words.pop(0).split("=", 1)
        env[k] = v
    if len(words) != 1:
        sys.exit(f"ab_bench: --variant '{text}': expected one binary after the variables")
    return label, env, words[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--variant", action="append", required=True)
    ap.add_argument("--out", default="/tmp/ab-bench")
    ap.add_argument("bench_args", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    args = a.bench_args[1:] if a.bench_args[:1] == ["--"] else a.bench_args
    if a.rounds < 1:
        sys.exit("ab_bench: --rounds must be >= 1")
    variants = [parse_variant(v) for v in a.variant]
    os.makedirs(a.out, exist_ok=True)
    runs = {label: [] for label, _, _ in variants}
    for r in range(a.rounds):
        for label, env, binary in variants:
            path = os.path.join(a.out, f"{label}-{r}.json")
            cmd = [binary, "bench", *args, "--json"]
            p = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True)
            if p.returncode != 0:
                sys.exit(f"ab_bench: {label} round {r} failed ({p.returncode}): {p.stderr.strip()}")
            with open(path, "w") as f:
                f.write(p.stdout)
            runs[label].append(json.loads(p.stdout)["stages"])
        print(f"round {r + 1}/{a.rounds} done", file=sys.stderr)
    base = variants[0][0]
    stages = sorted(runs[base][0].keys())
    print("| stage | " + " | ".join(f"{l} ms (per round)" for l, _, _ in variants) + " | " +
          " | ".join(f"{l}/{base}" for l, _, _ in variants[1:]) + " |")
    print("|---" * (1 + 2 * len(variants) - 1) + "|")
    for s in stages:
        med = {l: statistics.median(x[s]["median_ms"] for x in runs[l]) for l, _, _ in variants}
        cells = [f"{med[l]:.2f} (" + ", ".join(f"{x[s]['median_ms']:.2f}" for x in runs[l]) + ")"
                 for l, _, _ in variants]
        ratios = [f"{med[l] / med[base]:.2f}" for l, _, _ in variants[1:]]
        print(f"| {s} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")


if __name__ == "__main__":
    main()
