#!/usr/bin/env bash
# Backbone-cache sweep (docs/caching.md): for each sampler × steps × cache setting, runs
# scripts/eval-steps.sh with EXTRA="--cache SPEC" (PER_CLASS images per class, the project's
# classifier: class accuracy and feature FID) and prints one JSON line per run (its "extra" names
# the setting; "generate_seconds" is the wall time of the 10 `duet generate` runs).
#   scripts/eval-cache.sh [MODEL_DIR] [PER_CLASS]   (env: SAMPLERS, STEPS, CACHES, CFG)
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL="${1:-models/fashion-duet}"
PER_CLASS="${2:-50}"
SAMPLERS="${SAMPLERS:-dpmpp_2m euler}"
STEPS="${STEPS:-20 50}"
CACHES="${CACHES:-off step:0.1 step:0.2 step:0.3 step:0.5 step:0.3,0.1,1 step:0.5,0.1,1 block:1,1,0.1 block:1,1,0.2 block:2,1,0.2 block:1,1,0.4}"
for sampler in $SAMPLERS; do
  for steps in $STEPS; do
    for c in $CACHES; do
      SAMPLERS="$sampler" STEPS="$steps" EXTRA="--cache $c" scripts/eval-steps.sh "$MODEL" "$PER_CLASS"
    done
  done
done
