#!/usr/bin/env bash
# Everything a GPU machine must prove about the cuda backend, in one run (target: <= 8 minutes on
# one GPU with 16 cores). Writes one report and exits != 0 on any failure. docs/gpu.md.
#
#   scripts/gpu-check.sh [--dry-run] [--report FILE] [--jobs N] [--build-dir DIR]
#
# Stages (each timed; the report has the GPU, driver, clocks and every stage's output tail):
#   1. configure + build -DDUET_CUDA=ON (duet, duet_cli, duet_backend_ops, duet_tests)
#   2. duet info: the GPU is seen (name, SMs, memory, compute capability)
#   3. duet_backend_ops test --backend cuda: every op x precision vs the reference backend
#   4. CUDA host tests + golden (PyTorch intermediates) + end-to-end sampler trajectories on cuda
#   5. duet bench --backend cuda: demo model (batch 2, 16; f32, bf16) and seed-scale random
#      weights (batch 2, 16; f32, bf16)
# --dry-run: prints every command and checks that the tools and inputs exist (the build tools
# must; nvidia-smi is reported, as CI machines have none); runs nothing. CI runs this mode.
set -uo pipefail
cd "$(dirname "$0")/.."

DRY=0
JOBS=16
BUILD=build-gpu
REPORT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --report) REPORT=${2:?--report needs a file}; shift ;;
    --jobs) JOBS=${2:?--jobs needs a number}; shift ;;
    --build-dir) BUILD=${2:?--build-dir needs a directory}; shift ;;
    -h|--help) sed -n 2,16p "$0"; exit 0 ;;
    *) echo "gpu-check: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[ -n "$REPORT" ] || REPORT=$BUILD/gpu-check-report.txt

NVCC=${CUDACXX:-/usr/local/cuda/bin/nvcc}
DEMO=models/fashion-duet
SEED_CFG=configs/seed-scale.json
SEED_DIR=$BUILD/seed-scale-random
FAILED=0
T0=$(date +%s)
LAST_OUT=$(mktemp)  # the output of the latest step
trap 'rm -f "$LAST_OUT"' EXIT

# ---- tools ----
missing=0
need() {  # need NAME PATH-OR-COMMAND
  if command -v "$2" >/dev/null 2>&1 || [ -e "$2" ]; then
    echo "tool ok:      $1 ($2)"
  else
    echo "tool MISSING: $1 ($2)" >&2
    missing=1
  fi
}
need cmake cmake
need nvcc "$NVCC"
need python3 python3
need "seed-scale config" "$SEED_CFG"
need "demo model" "$DEMO/config.json"
need "tiny-demo fixture" tests/fixtures/tiny-demo/config.json
if command -v nvidia-smi >/dev/null 2>&1; then
  echo "tool ok:      nvidia-smi"
else
  echo "tool absent:  nvidia-smi (needed on the GPU machine; a dry run goes on without it)"
  [ "$DRY" = 1 ] || missing=1
fi
if [ "$missing" = 1 ]; then
  echo "gpu-check: missing tools or inputs (above)" >&2
  exit 1
fi

if [ "$DRY" = 0 ]; then
  mkdir -p "$(dirname "$REPORT")"
  : >"$REPORT"
fi
log() { if [ "$DRY" = 0 ]; then echo "$*" | tee -a "$REPORT"; else echo "$*"; fi; }

# step NAME TIMEOUT_S COMMAND...: runs (or, dry, prints) one command; its time, status and output
# tail go to the report.
step() {
  local name=$1 limit=$2
  shift 2
  if [ "$DRY" = 1 ]; then
    echo "would run [$name] (timeout ${limit}s): $*"
    return 0
  fi
  local t=$(date +%s) out rc
  out=$LAST_OUT
  timeout "$limit" "$@" >"$out" 2>&1
  rc=$?
  local dt=$(($(date +%s) - t))
  if [ $rc = 0 ]; then log "== PASS [$name] ${dt}s"; else log "== FAIL [$name] ${dt}s (exit $rc)"; FAILED=1; fi
  tail -n 60 "$out" | sed 's/^/   /' >>"$REPORT"
  [ $rc = 0 ] || tail -n 20 "$out" | sed 's/^/   /'
  return $rc
}

log "duet gpu-check $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
if [ "$DRY" = 0 ]; then
  log "host: $(nproc) cpus, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
  log "nvcc: $("$NVCC" --version | tail -n 2 | head -n 1)"
  nvidia-smi --query-gpu=index,name,driver_version,memory.total,clocks.sm,clocks.max.sm,clocks.mem,clocks.max.mem,power.limit,compute_cap \
    --format=csv | sed 's/^/gpu: /' | tee -a "$REPORT"
fi

# 1. build
step "configure -DDUET_CUDA=ON" 120 cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DDUET_CUDA=ON \
  -DDUET_BUILD_KERNEL_BENCH=OFF || { log "gpu-check: configure failed"; exit 1; }
step "build -j$JOBS" 360 cmake --build "$BUILD" -j"$JOBS" --target duet duet_cli duet_backend_ops duet_tests \
  || { log "gpu-check: build failed"; exit 1; }

# 2. the GPU is seen by duet
step "duet info lists the GPU" 30 sh -c "'$BUILD/duet' info --no-peak | tee /dev/stderr | grep -q '^gpu 0 '"

# 3. every op vs the reference
step "duet_backend_ops test --backend cuda" 180 "$BUILD/duet_backend_ops" test --backend cuda

# 4. host tests, goldens, end-to-end trajectories on cuda (no cuda case may be skipped here)
step "CUDA host, golden and end-to-end tests on cuda" 240 "$BUILD/duet_tests" \
  --gtest_filter='CudaHost.*:Fixtures/Golden.*cuda*:TinyDemo/ReferenceSample.*cuda*'
if [ "$DRY" = 0 ] && grep -q '\[  SKIPPED \]' "$LAST_OUT"; then
  log "== FAIL [cuda tests were skipped: the GPU is not usable]"
  FAILED=1
fi

# 5. benchmarks (figures in the report)
step "export seed-scale random weights" 120 sh -c \
  "cd python && python3 -m duet_ref.export --random --config ../$SEED_CFG --out ../$SEED_DIR"
for model in "$DEMO" "$SEED_DIR"; do
  for prec in f32 bf16; do
    for b in 2 16; do
      step "bench --backend cuda $(basename "$model") $prec batch $b" 120 "$BUILD/duet" bench \
        --model "$model" --backend cuda --precision "$prec" --batch "$b" --reps 5 --steps 0 \
        --no-quality --no-gemm --peak-seconds 0.05
    done
  done
done

if [ "$DRY" = 1 ]; then
  echo "gpu-check --dry-run: every tool and input present; nothing was run"
  exit 0
fi
log "total $(($(date +%s) - T0))s; report: $REPORT"
if [ "$FAILED" = 1 ]; then
  log "GPU CHECK FAILED"
  exit 1
fi
log "GPU CHECK PASSED"
