#!/usr/bin/env python3
"""Load test for `duet serve` (python3 stdlib only: threads + http.client).

Starts the server once per --max-batch value (`SERVER_CMD --port 0 --max-batch B`; a value "Bc"
adds --continuous-batching, e.g. --max-batch 1,8,8c compares static with continuous batching), then for each
concurrency level runs closed-loop clients that POST /v1/images/generations until --requests
requests have completed or --duration seconds have passed, and reports throughput, latency
percentiles, the 429 rate and the server's peak RSS (VmHWM). With --rounds R every cell is run R
times, the max-batch values alternating within each round, and the table reports medians plus the
per-round batching gain (a shared machine drifts by tens of % over minutes; one pass can mislead).
Results: a markdown table on stdout, and JSON with --json.

  python3 bench/serve_load.py --server "build/duet serve --model tests/fixtures/tiny-demo" \\
      --concurrency 1,4,16,64 --max-batch 1,8 --requests 64 --duration 60 --steps 10
"""
import argparse
import http.client
import json
import os
import re
import shlex
import signal
import subprocess
import threading
import time


def percentile(values, q):
    if not values:
        return float("nan")
    v = sorted(values)
    k = min(len(v) - 1, max(0, int(round(q / 100.0 * (len(v) - 1)))))
    return v[k]


def peak_rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def cpu_seconds(pid):
    """utime + stime of a process (all its threads) from /proc, in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def start_server(cmd, config, max_queue):
    """config: a --max-batch value, "B" (static batching, the default) or "Bc" (continuous)."""
    args = shlex.split(cmd) + ["--port", "0", "--max-batch", config.rstrip("c"),
                               "--max-queue", str(max_queue)]
    if config.endswith("c"):
        args.append("--continuous-batching")
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("server exited: " + " ".join(args))
        m = re.search(r"listening on http://([^:]+):(\d+)", line)
        if m:
            threading.Thread(target=proc.stdout.read, daemon=True).start()  # drain its output
            return proc, m.group(1), int(m.group(2))
    raise RuntimeError("server did not start")


def run_level(host, port, concurrency, total, duration, body_for):
    lock = threading.Lock()
    state = {"issued": 0}
    lat, codes = [], {}
    images = [0]
    t0 = time.time()

    def worker(wid):
        conn = http.client.HTTPConnection(host, port, timeout=600)
        while True:
            with lock:
                if state["issued"] >= total or time.time() - t0 > duration:
                    return
                i = state["issued"]
                state["issued"] += 1
            body = json.dumps(body_for(i))
            start = time.time()
            try:
                conn.request("POST", "/v1/images/generations", body,
                             {"Content-Type": "application/json"})
                resp = conn.getresponse()
                data = resp.read()
                code = resp.status
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=600)
                code, data = -1, b""
            elapsed = time.time() - start
            with lock:
                codes[code] = codes.get(code, 0) + 1
                if code == 200:
                    lat.append(elapsed)
                    images[0] += len(json.loads(data)["data"])
            if code == 429:
                time.sleep(0.05)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.time() - t0
    done = sum(codes.values())
    return {
        "concurrency": concurrency, "requests": done, "ok": codes.get(200, 0),
        "status_counts": {str(k): v for k, v in sorted(codes.items())},
        "wall_s": wall, "images_per_s": images[0] / wall if wall > 0 else 0.0,
        "p50_s": percentile(lat, 50), "p99_s": percentile(lat, 99),
        "rate_429": codes.get(429, 0) / done if done else 0.0,
    }


def scrape(host, port):
    conn = http.client.HTTPConnection(host, port, timeout=30)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    out = {}
    for name in ("duet_denoiser_evaluations_total", "duet_denoiser_rows_total",
                 "duet_prompt_cache_hits_total", "duet_prompt_cache_misses_total",
                 "duet_rejected_total", "duet_batch_images_sum", "duet_batch_images_count",
                 "duet_denoiser_rows_total"):
        m = re.search(r"^" + name + r" (\S+)$", text, re.M)
        out[name] = float(m.group(1)) if m else float("nan")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--server", required=True, help="server command without --port/--max-batch")
    ap.add_argument("--concurrency", default="1,4,16,64")
    ap.add_argument("--max-batch", default="1,8",
                    help="server configurations: B = --max-batch B, Bc = the same with "
                         "--continuous-batching; the first is the baseline of the gain lines")
    ap.add_argument("--max-queue", type=int, default=32)
    ap.add_argument("--requests", type=int, default=64, help="requests per level (upper bound)")
    ap.add_argument("--duration", type=float, default=60, help="seconds per level (upper bound)")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--n", type=int, default=1)
    ap.add_argument("--prompts", type=int, default=8, help="distinct prompts (cache behaviour)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="repeat every (max-batch, concurrency) cell this many times, alternating "
                         "the max-batch values, and report medians (a shared machine drifts)")
    ap.add_argument("--json", help="write all results here")
    a = ap.parse_args()

    prompts = ["a photo of a sneaker", "a dark small bag", "a red dress", "an ankle boot",
               "a striped shirt", "a pair of trousers", "a white sandal", "a wool pullover"]

    def body_for(i):
        return {"prompt": prompts[i % min(a.prompts, len(prompts))] + ("" if a.prompts <= 8 else
                f" #{i % a.prompts}"), "n": a.n, "steps": a.steps, "seed": i}

    results = []
    batches_list = [x.strip() for x in a.max_batch.split(",")]
    for x in batches_list:
        if not re.fullmatch(r"[1-9][0-9]*c?", x):
            ap.error(f"--max-batch: '{x}' is not B or Bc (a positive integer, optionally with c)")
    for rnd in range(a.rounds):
        for mb in batches_list:
            results += run_server_levels(a, mb, rnd, body_for)
    print_tables(a, results, batches_list)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"args": vars(a), "results": results}, f, indent=2)


def run_server_levels(a, mb, rnd, body_for):
    """Starts the server with --max-batch mb and runs every concurrency level against it."""
    results = []
    proc, host, port = start_server(a.server, mb, a.max_queue)
    try:
        for c in [int(x) for x in a.concurrency.split(",")]:
            before = scrape(host, port)
            cpu0 = (cpu_seconds(proc.pid), cpu_seconds(os.getpid()))
            r = run_level(host, port, c, a.requests, a.duration, body_for)
            cpu1 = (cpu_seconds(proc.pid), cpu_seconds(os.getpid()))
            after = scrape(host, port)
            # CPU per successful image: the server's and this client's (they share the machine)
            images = r["images_per_s"] * r["wall_s"]
            r["server_cpu_ms_per_image"] = 1e3 * (cpu1[0] - cpu0[0]) / images if images else 0.0
            r["client_cpu_ms_per_image"] = 1e3 * (cpu1[1] - cpu0[1]) / images if images else 0.0
            r["max_batch"] = mb
            r["round"] = rnd
            r["peak_rss_mib"] = peak_rss_mib(proc.pid)
            batches = after["duet_batch_images_count"] - before["duet_batch_images_count"]
            r["mean_batch_images"] = ((after["duet_batch_images_sum"] -
                                       before["duet_batch_images_sum"]) / batches
                                      if batches else 0.0)
            evals = after["duet_denoiser_evaluations_total"] - before["duet_denoiser_evaluations_total"]
            r["denoiser_evals_per_s"] = evals / r["wall_s"]
            rows = after["duet_denoiser_rows_total"] - before["duet_denoiser_rows_total"]
            r["rows_per_call"] = rows / evals if evals else 0.0
            r["cache_hits"] = after["duet_prompt_cache_hits_total"] - before["duet_prompt_cache_hits_total"]
            r["cache_misses"] = after["duet_prompt_cache_misses_total"] - before["duet_prompt_cache_misses_total"]
            results.append(r)
            print(f"max-batch {mb:>3} conc {c:3d}: {r['ok']}/{r['requests']} ok, "
                  f"{r['images_per_s']:.2f} img/s, p50 {r['p50_s']:.3f}s p99 {r['p99_s']:.3f}s, "
                  f"429 {100 * r['rate_429']:.0f}%, batch {r['mean_batch_images']:.2f}, "
                  f"rows/call {r['rows_per_call']:.1f}, "
                  f"rss {r['peak_rss_mib']:.0f} MiB, cpu/image server "
                  f"{r['server_cpu_ms_per_image']:.1f} ms client {r['client_cpu_ms_per_image']:.1f} ms",
                  flush=True)
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=120)
        print(f"server (max-batch {mb}) exited {rc} after SIGTERM", flush=True)

    return results


def median(values):
    v = sorted(values)
    n = len(v)
    return (v[n // 2] + v[(n - 1) // 2]) / 2 if n else float("nan")


def print_tables(a, results, batches_list):
    """One row per (max-batch, concurrency): medians over the rounds (images/s with its range)."""
    print()
    print("| max-batch | concurrency | ok / sent | images/s | p50 (s) | p99 (s) | 429 rate | "
          "mean batch | rows / call | denoiser evals/s | peak RSS (MiB) | "
          "CPU ms/image server / client |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    cells = {}
    for r in results:
        cells.setdefault((r["max_batch"], r["concurrency"]), []).append(r)
    for (mb, c), rs in cells.items():
        ips = [r["images_per_s"] for r in rs]
        spread = f" ({min(ips):.1f}–{max(ips):.1f})" if len(rs) > 1 else ""
        print(f"| {mb} | {c} | {sum(r['ok'] for r in rs)} / {sum(r['requests'] for r in rs)} | "
              f"{median(ips):.2f}{spread} | {median([r['p50_s'] for r in rs]):.3f} | "
              f"{median([r['p99_s'] for r in rs]):.3f} | "
              f"{100 * median([r['rate_429'] for r in rs]):.0f}% | "
              f"{median([r['mean_batch_images'] for r in rs]):.2f} | "
              f"{median([r['rows_per_call'] for r in rs]):.1f} | "
              f"{median([r['denoiser_evals_per_s'] for r in rs]):.1f} | "
              f"{max(r['peak_rss_mib'] for r in rs):.0f} | "
              f"{median([r['server_cpu_ms_per_image'] for r in rs]):.1f} / "
              f"{median([r['client_cpu_ms_per_image'] for r in rs]):.1f} |")
    base = batches_list[0]
    for other in batches_list[1:]:
        print()
        print(f"Batching gain (max-batch {other} / max-batch {base} images/s, per round, same "
              "server command and clients):")
        for c in sorted({r["concurrency"] for r in results}):
            ratios = []
            for rnd in range(a.rounds):
                x = [r for r in results if r["round"] == rnd and r["concurrency"] == c]
                lo_r = [r["images_per_s"] for r in x if r["max_batch"] == base]
                hi_r = [r["images_per_s"] for r in x if r["max_batch"] == other]
                if lo_r and hi_r and lo_r[0] > 0:
                    ratios.append(hi_r[0] / lo_r[0])
            if ratios:
                print(f"  concurrency {c:3d}: median {median(ratios):.2f}x over {len(ratios)} "
                      f"rounds (min {min(ratios):.2f}x, max {max(ratios):.2f}x)")


if __name__ == "__main__":
    main()
