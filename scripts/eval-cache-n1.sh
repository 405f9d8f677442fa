#!/usr/bin/env bash
# Backbone cache at `duet generate`'s own defaults (n = 1 per run, dpmpp_2m 20 steps, cfg 3):
# PER_CLASS images per class, each its own run (seed 5000 + 100k + i), for each cache setting,
# scored by python -m duet_ref.evaluate (class accuracy, feature FID); one JSON line per setting.
#   scripts/eval-cache-n1.sh [MODEL_DIR] [PER_CLASS]   (env: CACHES, default "off on"; DUET_BIN)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/cpu-env.sh
MODEL="${1:-models/fashion-duet}"
PER="${2:-20}"
BIN="${DUET_BIN:-build/duet}"
CLASSES=("t-shirt" "trousers" "pullover" "dress" "coat" "sandal" "shirt" "sneaker" "bag" "ankle boot")
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for c in ${CACHES:-off on}; do
  dir="$work/$c"
  mkdir -p "$dir"
  for k in "${!CLASSES[@]}"; do
    for i in $(seq 0 $((PER - 1))); do
      "$BIN" generate --model "$MODEL" -p "a photo of a ${CLASSES[$k]}" --seed $((5000 + 100 * k + i)) \
        --cfg-scale 3 --cache "$c" -q -o "$dir/${k}_img_$i.png"
    done
  done
  (cd python && /usr/bin/python3 -m duet_ref.evaluate --png-dir "$dir" --sampler dpmpp_2m --steps 20 \
    --cfg-scale 3 --out "$dir/eval.json" >/dev/null)
  /usr/bin/python3 -c "import json,sys; d=json.load(open(sys.argv[1])); d.pop('per_class_accuracy'); d.pop('source', None); d['extra']=sys.argv[2]; print(json.dumps(d))" \
    "$dir/eval.json" "n=1 --cache $c"
done
