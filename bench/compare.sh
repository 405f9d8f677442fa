#!/usr/bin/env bash
# duet vs PyTorch vs ONNX Runtime on the same inputs, one table (see docs/benchmarks.md).
#
#   bench/compare.sh                      # duet binary: build-bench/duet (DUET=... to override)
#
# Models: (a) the demo model models/fashion-duet (tests/fixtures/tiny-demo when it is missing),
#         (b) seed-scale random weights (configs/seed-scale.json), exported once to $SEED_DIR.
# Per model: bench/torch_peer.py with scripts/cpu-env.sh's OPENBLAS_CORETYPE (SKYLAKEX on Intel
# CPUs with AVX-512, else unset: OpenBLAS's own choice; writes the shared inputs, the peer's eps
# and the ORT inputs), the same without OPENBLAS_CORETYPE, `duet bench --inputs`,
# the ONNX export (cached under the work dir) + bench/ort_peer.mjs, then bench/compare_report.py.
# All engines: 2 threads; model batch 2 (one image with guidance), and for the demo also batch
# 16 (8 images; "demo8"). Work files: $OUT (default /tmp/duet-compare).
# Environment: DUET, OUT, SEED_DIR (default /tmp/seed-scale), THREADS (2), DEMO_REPS (5),
# SEED_REPS (3), DEMO_STEPS (20), SKIP_SEED=1, SKIP_DEMO8=1, ONNX_EXPORT_TIMEOUT (300 s; past it ORT is skipped).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DUET=${DUET:-$ROOT/build-bench/duet}
OUT=${OUT:-/tmp/duet-compare}
SEED_DIR=${SEED_DIR:-/tmp/seed-scale}
THREADS=${THREADS:-2}
DEMO_REPS=${DEMO_REPS:-5}
SEED_REPS=${SEED_REPS:-3}
DEMO_STEPS=${DEMO_STEPS:-20}
PY=${PY:-/usr/bin/python3}
. "$ROOT/scripts/cpu-env.sh"   # OPENBLAS_CORETYPE only where it helps (and never without AVX-512)
ONNX_EXPORT_TIMEOUT=${ONNX_EXPORT_TIMEOUT:-300}
ONNX_LIMIT=$((2 * 1024 * 1024 * 1024))  # protobuf's 2 GiB message limit

[ -x "$DUET" ] || { echo "compare.sh: no duet binary at $DUET (cmake --build build-bench --target duet_cli)" >&2; exit 1; }
mkdir -p "$OUT"
export OMP_NUM_THREADS=$THREADS
T_START=$(date +%s)
log() { echo "[compare $(($(date +%s) - T_START))s] $*" >&2; }
# /proc/loadavg every 10 s while the run lasts: a loaded machine makes every ratio suspect.
(while true; do echo "$(date -u +%H:%M:%S) $(cat /proc/loadavg)"; sleep 10; done) > "$OUT/loadavg.txt" &
LOAD_PID=$!
trap 'kill $LOAD_PID 2>/dev/null || true' EXIT

DEMO=$ROOT/models/fashion-duet
[ -f "$DEMO/model.safetensors" ] || DEMO=$ROOT/tests/fixtures/tiny-demo

if [ "${SKIP_SEED:-0}" != 1 ] && [ ! -f "$SEED_DIR/model.safetensors" ]; then
  log "exporting seed-scale random weights to $SEED_DIR"
  (cd "$ROOT/python" && "$PY" -m duet_ref.export --random --config ../configs/seed-scale.json --seed 0 --out "$SEED_DIR") >&2
fi

# run_model LABEL MODEL_DIR REPS STEPS GEN_REPS BATCH   (BATCH = model batch = 2 × images)
run_model() {
  local label=$1 model=$2 reps=$3 steps=$4 gen_reps=$5 batch=$6
  local w=$OUT/$label
  mkdir -p "$w"
  rm -f "$w"/{inputs,ort_in,torch_eps,duet_eps,ort_eps}.safetensors "$w"/{duet,torch,torch_default,ort}.json "$w/ort_skipped.txt"
  log "$label: model $model"
  log "$label: PyTorch peer (OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE-unset, OpenBLAS detects the core})"
  "$PY" "$ROOT/bench/torch_peer.py" --model "$model" --batch "$batch" --reps "$reps" \
    --threads "$THREADS" --inputs "$w/inputs.safetensors" --out "$w/torch.json" \
    --eps-out "$w/torch_eps.safetensors" --ort-inputs "$w/ort_in.safetensors" \
    --steps "$steps" --gen-reps "$gen_reps" > /dev/null
  log "$label: PyTorch peer (no OPENBLAS_CORETYPE)"
  env -u OPENBLAS_CORETYPE "$PY" "$ROOT/bench/torch_peer.py" --model "$model" --batch "$batch" --reps "$reps" \
    --threads "$THREADS" --inputs "$w/inputs.safetensors" --out "$w/torch_default.json" \
    --steps "$steps" --gen-reps "$gen_reps" > /dev/null
  log "$label: duet bench"
  "$DUET" bench --model "$model" --batch "$batch" --reps "$reps" --threads "$THREADS" --steps "$steps" \
    --gen-reps "$gen_reps" --inputs "$w/inputs.safetensors" --eps-out "$w/duet_eps.safetensors" \
    --json > "$w/duet.json"
  # ONNX export (cached: re-exported when the checkpoint is newer than the graphs)
  local onnx=$w/onnx
  if [ ! -f "$onnx/refiner_fusion.onnx" ] || [ "$model/model.safetensors" -nt "$onnx/refiner_fusion.onnx" ]; then
    log "$label: ONNX export"
    rm -rf "$onnx"
    local rc=0
    (cd "$ROOT/python" && timeout "$ONNX_EXPORT_TIMEOUT" "$PY" -m duet_ref.onnx_export --model "$model" --out "$onnx") \
      > "$w/onnx_export.log" 2>&1 || rc=$?
    if [ "$rc" = 124 ]; then
      echo "the ONNX export did not finish within ONNX_EXPORT_TIMEOUT=${ONNX_EXPORT_TIMEOUT} s" > "$w/ort_skipped.txt"
      rm -rf "$onnx"
    elif [ "$rc" != 0 ]; then
      echo "the ONNX export failed: $(grep -iE 'error|exceed|limit' "$w/onnx_export.log" | tail -1)" > "$w/ort_skipped.txt"
      rm -rf "$onnx"
    fi
  fi
  if [ -d "$onnx" ]; then
    local big
    big=$(find "$onnx" -name '*.onnx' -size +$((ONNX_LIMIT / 1024))k | head -1)
    if [ -n "$big" ]; then
      echo "$(basename "$big") is $(du -h "$big" | cut -f1), over protobuf's 2 GiB limit" > "$w/ort_skipped.txt"
    else
      log "$label: ONNX Runtime peer"
      if ! node "$ROOT/bench/ort_peer.mjs" --onnx "$onnx" --inputs "$w/ort_in.safetensors" --out "$w/ort.json" \
           --reps "$reps" --threads "$THREADS" --eps-out "$w/ort_eps.safetensors" > "$w/ort.log" 2>&1; then
        echo "ort_peer.mjs failed: $(tail -1 "$w/ort.log")" > "$w/ort_skipped.txt"
        rm -f "$w/ort.json"
      fi
    fi
  fi
}

run_model demo "$DEMO" "$DEMO_REPS" "$DEMO_STEPS" 3 2
DIRS=("$OUT/demo")
if [ "${SKIP_DEMO8:-0}" != 1 ]; then
  run_model demo8 "$DEMO" "$DEMO_REPS" "$DEMO_STEPS" 3 16
  DIRS+=("$OUT/demo8")
fi
if [ "${SKIP_SEED:-0}" != 1 ]; then
  run_model seed "$SEED_DIR" "$SEED_REPS" 0 0 2
  DIRS+=("$OUT/seed")
fi
log "report"
"$PY" "$ROOT/bench/compare_report.py" "${DIRS[@]}" --md "$OUT/report.md"
kill $LOAD_PID 2>/dev/null || true
awk 'NR == 1 || $2 < lo { lo = $2 } NR == 1 || $2 > hi { hi = $2 } END {
  printf "\n1-minute load average during the run: %s to %s over %d samples (%s)\n", lo, hi, NR, FILENAME }' \
  "$OUT/loadavg.txt" | tee -a "$OUT/report.md"
log "done in $(($(date +%s) - T_START)) s; report in $OUT/report.md"
