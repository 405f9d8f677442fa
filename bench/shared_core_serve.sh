#!/usr/bin/env bash
# `duet serve` with one core kept busy by another process (docs/benchmarks.md, "Sharing the
# machine"): the server's default threads vs --threads $(nproc), --max-batch 1 and 8, p50/p99
# latency from bench/serve_load.py. The busy loop (taskset to BUSY_CPU) starts before each server,
# so the server's start-up sees it.
#   bench/shared_core_serve.sh      # DUET=build/duet CONC=4 REQUESTS=48 STEPS=20 BUSY_CPU=1
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DUET=${DUET:-$ROOT/build/duet}
MODEL=${MODEL:-$ROOT/models/fashion-duet}
CONC=${CONC:-4}
REQUESTS=${REQUESTS:-48}
STEPS=${STEPS:-20}
BUSY_CPU=${BUSY_CPU:-1}
OUT=${OUT:-/tmp/duet-shared-core-serve}
mkdir -p "$OUT"
taskset -c "$BUSY_CPU" bash -c 'while :; do :; done' &
busy=$!
trap 'kill $busy 2>/dev/null || true' EXIT
sleep 0.5
for threads in default "$(nproc)"; do
  extra=""
  [ "$threads" = default ] || extra="--threads $threads"
  echo "== one core busy; duet serve threads: $threads"
  /usr/bin/python3 "$ROOT/bench/serve_load.py" --server "$DUET serve --model $MODEL $extra" \
    --concurrency "$CONC" --max-batch 1,8 --requests "$REQUESTS" --duration 60 --steps "$STEPS" \
    --json "$OUT/threads-$threads.json"
done
