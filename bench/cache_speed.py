#!/usr/bin/env python3
"""End-to-end speed of backbone-cache settings, measured in one run (docs/caching.md).

For each repetition, every setting in turn (interleaved, so drift hits all alike) runs
`duet generate --json` for each chosen class prompt ("a photo of a {class}", seed 1000 + k, the
same requests as scripts/eval-steps.sh). Two times per setting, each summed over the classes:
"generation" = prompt encoding + the sampling loop (encode_s + denoise_s: what a long-lived
process — duet serve, the C API — pays per request, its Context already planned) and "one-shot" =
the CLI's in-process total_s, which adds planning the Context for the batch (prepare_s: the
warm-up evaluation and primitive creation; model load and PNG writing excluded). Reports medians
over repetitions, speedups against the first setting, and the backbone blocks run.

  bench/cache_speed.py --model models/fashion-duet --steps 20 --n 50 --reps 3 \
      --caches off step:0.1 block:1,1,0.1 [--classes coat sneaker] [--json out.json]
"""
import argparse
import json
import platform
import statistics
import subprocess
import sys
import time

CLASSES = ["t-shirt", "trousers", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"]


def cpu_name():
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duet", default="build/duet")
    ap.add_argument("--model", default="models/fashion-duet")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--sampler", default="dpmpp_2m")
    ap.add_argument("--cfg-scale", type=float, default=3.0)
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--classes", nargs="*", default=CLASSES)
    ap.add_argument("--caches", nargs="+", default=["off", "on"])
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--json", default=None)
    ap.add_argument("--setting", action="append", default=[], metavar="NAME=ARGS",
                    help="an extra setting: a name and the duet generate arguments it adds, e.g. "
                         "'cfg4-interval-on=--cfg-scale 4 --cfg-interval 0,10 --cache on' (its own "
                         "--cfg-scale wins over --cfg-scale)")
    a = ap.parse_args()
    extra = {}
    for st in a.setting:
        name, _, args = st.partition("=")
        extra[name] = args.split()
        a.caches.append(name)
    times = {c: [] for c in a.caches}
    oneshot = {c: [] for c in a.caches}
    info = {}
    for rep in range(a.reps):
        for c in a.caches:
            total, once, run, full, reused, calls = 0.0, 0.0, 0, 0, 0, 0
            for cls in a.classes:
                k = CLASSES.index(cls)
                cmd = [a.duet, "generate", "--model", a.model, "-p", f"a photo of a {cls}", "-n", str(a.n),
                       "--sampler", a.sampler, "--steps", str(a.steps), "--cfg-scale", str(a.cfg_scale),
                       "--seed", str(1000 + k), "--json", "-o", "/tmp/duet_cache_speed.png"]
                if c in extra:
                    if "--cfg-scale" in extra[c]:  # the setting's own scale replaces --cfg-scale
                        i = cmd.index("--cfg-scale")
                        del cmd[i:i + 2]
                    cmd += extra[c]
                else:
                    cmd += ["--cache", c]
                if a.threads:
                    cmd += ["--threads", str(a.threads)]
                out = subprocess.run(cmd, capture_output=True, text=True)
                if out.returncode != 0:
                    sys.exit(f"{' '.join(cmd)} failed: {out.stderr.strip()}")
                j = json.loads(out.stdout)
                total += j["timings"]["encode_s"] + j["timings"]["denoise_s"]
                once += j["timings"]["total_s"]
                run += j["backbone_blocks_run"]
                full += j["backbone_blocks_total"]
                reused += len(j["cache_skipped_calls"])
                calls += j["model_evaluations"]
            times[c].append(total)
            oneshot[c].append(once)
            info[c] = {"backbone_blocks_run": run, "backbone_blocks_total": full, "reused_calls": reused,
                       "calls": calls}
        print(f"rep {rep + 1}/{a.reps}: " + ", ".join(f"{c} {times[c][-1]:.2f}s" for c in a.caches),
              file=sys.stderr)
    base = statistics.median(times[a.caches[0]])
    base1 = statistics.median(oneshot[a.caches[0]])
    rows = []
    for c in a.caches:
        med, med1 = statistics.median(times[c]), statistics.median(oneshot[c])
        i = info[c]
        rows.append({"cache": c, "median_s": med, "times_s": times[c], "speedup": base / med,
                     "oneshot_median_s": med1, "oneshot_speedup": base1 / med1,
                     "blocks_fraction": i["backbone_blocks_run"] / i["backbone_blocks_total"],
                     "reused_calls": i["reused_calls"], "calls": i["calls"]})
    print(f"{'cache':24} {'gen s':>8} {'speedup':>8} {'one-shot s':>10} {'speedup':>8} {'blocks run':>10} "
          f"{'reused calls':>13}")
    for r in rows:
        print(f"{r['cache']:24} {r['median_s']:8.3f} {r['speedup']:7.2f}x {r['oneshot_median_s']:10.3f} "
              f"{r['oneshot_speedup']:7.2f}x {r['blocks_fraction']:9.1%} {r['reused_calls']:6d}/{r['calls']}")
    doc = {"date": time.strftime("%Y-%m-%d"), "cpu": cpu_name(), "model": a.model, "steps": a.steps,
           "sampler": a.sampler, "n": a.n, "classes": a.classes, "reps": a.reps, "rows": rows,
           "command": " ".join(sys.argv)}
    if a.json:
        with open(a.json, "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
