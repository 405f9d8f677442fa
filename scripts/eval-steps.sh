#!/usr/bin/env bash
# Quality vs steps of the C++ engine: for each sampler × steps, `duet generate` makes PER_CLASS
# images of "a photo of a {class}" per class, then python -m duet_ref.evaluate --png-dir scores
# them (separate classifier: class accuracy and feature FID). One JSON line per run on stdout.
#   scripts/eval-steps.sh [MODEL_DIR] [PER_CLASS]     (env: SAMPLERS, STEPS, CFG, DUET_BIN, EXTRA)
#   EXTRA: more `duet generate` arguments, e.g. EXTRA="--cfg-interval 0.5,20" (echoed as "extra")
#   KEEP=DIR: also copy each run's full evaluation JSON (per class, confusion matrix) to
#   DIR/<sampler>_<steps>_cfg<CFG><EXTRA without spaces>.json
#   ONE_PER_RUN=1: each image its own `duet generate` run (n = 1, duet generate's default; seed
#   5000 + 100k + i) instead of one run of PER_CLASS images per class (seed 1000 + k)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/cpu-env.sh   # OPENBLAS_CORETYPE only on AVX-512 Intel CPUs
MODEL="${1:-models/fashion-duet}"
PER_CLASS="${2:-20}"
SAMPLERS="${SAMPLERS:-ddim euler dpmpp_2m}"
STEPS="${STEPS:-10 20 50}"
CFG="${CFG:-3}"
BIN="${DUET_BIN:-build/duet}"
EXTRA="${EXTRA:-}"
CLASSES=("t-shirt" "trousers" "pullover" "dress" "coat" "sandal" "shirt" "sneaker" "bag" "ankle boot")
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for sampler in $SAMPLERS; do
  for steps in $STEPS; do
    dir="$work/${sampler}_$steps"
    mkdir -p "$dir"
    t0=$(date +%s.%N)
    for k in "${!CLASSES[@]}"; do
      if [ "${ONE_PER_RUN:-0}" = 1 ]; then
        for i in $(seq 0 $((PER_CLASS - 1))); do
          "$BIN" generate --model "$MODEL" -p "a photo of a ${CLASSES[$k]}" --sampler "$sampler" \
            --steps "$steps" --cfg-scale "$CFG" --seed $((5000 + 100 * k + i)) -q $EXTRA \
            -o "$dir/${k}_img_$i.png"
        done
      else
        "$BIN" generate --model "$MODEL" -p "a photo of a ${CLASSES[$k]}" -n "$PER_CLASS" \
          --sampler "$sampler" --steps "$steps" --cfg-scale "$CFG" --seed $((1000 + k)) -q $EXTRA \
          -o "$dir/${k}_img.png"
      fi
    done
    t1=$(date +%s.%N)
    (cd python && /usr/bin/python3 -m duet_ref.evaluate --png-dir "$dir" \
      --sampler "$sampler" --steps "$steps" --cfg-scale "$CFG" --out "$dir/eval.json" >/dev/null)
    if [ -n "${KEEP:-}" ]; then
      mkdir -p "$KEEP"
      cp "$dir/eval.json" "$KEEP/${sampler}_${steps}_cfg${CFG}$(echo "$EXTRA" | tr -d ' ').json"
    fi
    /usr/bin/python3 -c "import json,sys; d=json.load(open(sys.argv[1])); pc=d.pop('per_class_accuracy'); d['min_class']=min(pc.values()); d['min_class_name']=min(pc, key=pc.get); d.pop('confusion'); d.pop('real_test_per_class_accuracy'); d['generate_seconds']=round(float(sys.argv[3])-float(sys.argv[2]),1); d['extra']=sys.argv[4]; print(json.dumps(d))" \
      "$dir/eval.json" "$t0" "$t1" "$EXTRA"
  done
done
