#!/usr/bin/env bash
# Sharing the machine: `duet generate` (and `duet serve`) with one core kept busy by another
# process, default threads vs --threads 1, against the idle machine (docs/benchmarks.md,
# "Sharing the machine").
#
#   bench/shared_core.sh            # DUET=build/duet REPS=5 IMAGES=8 STEPS=50 BUSY_CPU=1
#
# The load generator is a shell busy loop pinned to BUSY_CPU with taskset (started before each
# timed run, so duet's start-up sees it as a user's other work would be seen). Each cell is the
# median of REPS runs, the cells interleaved; the generated image must be the same in every cell.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DUET=${DUET:-$ROOT/build/duet}
MODEL=${MODEL:-$ROOT/models/fashion-duet}
REPS=${REPS:-5}
IMAGES=${IMAGES:-8}
STEPS=${STEPS:-50}
BUSY_CPU=${BUSY_CPU:-1}
OUT=${OUT:-/tmp/duet-shared-core}
mkdir -p "$OUT"
[ -x "$DUET" ] || { echo "shared_core.sh: no duet binary at $DUET" >&2; exit 1; }

busy_pid=""
start_busy() { taskset -c "$BUSY_CPU" bash -c 'while :; do :; done' & busy_pid=$!; sleep 0.5; }
stop_busy() { [ -n "$busy_pid" ] && kill "$busy_pid" 2>/dev/null && wait "$busy_pid" 2>/dev/null || true; busy_pid=""; }
trap stop_busy EXIT

# wall seconds of one `duet generate` with extra args "$2" under load "$1" (idle|busy)
run_once() {
  local load=$1 extra=$2 tag=$3 t0 t1
  [ "$load" = busy ] && start_busy
  t0=$(date +%s.%N)
  "$DUET" generate --model "$MODEL" -p "a photo of a sneaker" -n "$IMAGES" --steps "$STEPS" \
    --seed 7 --grid $extra -o "$OUT/$tag.png" > /dev/null 2> "$OUT/$tag.err"
  t1=$(date +%s.%N)
  [ "$load" = busy ] && stop_busy
  awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }' >> "$OUT/$tag.times"
}
median() { sort -n "$1" | awk '{a[NR]=$1} END {printf "%.3f", a[int((NR+1)/2)]}'; }

echo "duet generate -n $IMAGES --steps $STEPS, median of $REPS runs; busy core: CPU $BUSY_CPU"
echo "cpu: $("$DUET" info --no-peak | sed -n 's/^cpu *//p') ($(nproc) cpus)"
echo "threads chosen when idle: $("$DUET" info --no-peak | sed -n 's/^threads *//p')"
printf '| load | default | --threads 1 | --threads %s | default / --threads 1 |\n|---|---|---|---|---|\n' "$(nproc)"
# the cells take turns within each repetition, so a drift in the machine's load hits all alike
cells=("idle|default|" "idle|t1|--threads 1" "idle|tall|--threads $(nproc)"
       "busy|default|" "busy|t1|--threads 1" "busy|tall|--threads $(nproc)")
rm -f "$OUT"/*.times
for i in $(seq "$REPS"); do
  for c in "${cells[@]}"; do
    IFS='|' read -r load tag extra <<< "$c"
    run_once "$load" "$extra" "$load-$tag"
  done
done
for load in idle busy; do
  d=$(median "$OUT/$load-default.times")
  one=$(median "$OUT/$load-t1.times")
  all=$(median "$OUT/$load-tall.times")
  printf '| %s | %s s | %s s | %s s | %.2f |\n' "$load" "$d" "$one" "$all" "$(awk -v a="$d" -v b="$one" 'BEGIN { print a / b }')"
done
for f in "$OUT"/busy-default.png "$OUT"/idle-t1.png "$OUT"/busy-tall.png; do
  cmp -s "$OUT/idle-default.png" "$f" || { echo "shared_core.sh: $f differs from idle-default.png" >&2; exit 1; }
done
echo "same image in every cell"
