#!/usr/bin/env bash
# Every precision × ISA cell on this machine, one command (docs/benchmarks.md, "Precision × ISA"):
# `duet bench` of the demo model (denoise + 20-step generate + the demo-image quality guard) and
# of the seed-scale random weights (denoise only) at f32 / bf16 / int8, for the ISA levels this
# CPU can be capped to (DUET_MAX_ISA, which also caps oneDNN). A cell this CPU cannot run says why.
#
#   bench/precision_table.sh     # DUET=build/duet SEED_DIR=/tmp/seed-scale THREADS=2 REPS=5 SEED_REPS=3
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DUET=${DUET:-$ROOT/build/duet}
SEED_DIR=${SEED_DIR:-/tmp/seed-scale}
THREADS=${THREADS:-2}
REPS=${REPS:-5}
SEED_REPS=${SEED_REPS:-3}
OUT=${OUT:-/tmp/duet-precision}
PY=${PY:-/usr/bin/python3}
mkdir -p "$OUT"
[ -f "$SEED_DIR/model.safetensors" ] || {
  echo "precision_table.sh: no seed-scale model at $SEED_DIR (bench/compare.sh exports it)" >&2
  SEED_DIR=""
}
caps=(all)
hw=$("$DUET" info --json --no-peak)
"$PY" -c 'import json,sys; c=json.loads(sys.argv[1])["cpu"]["hardware"]; sys.exit(0 if c["avx512f"] and c["avx512bw"] else 1)' "$hw" &&
  caps+=(avx512)
"$PY" -c 'import json,sys; c=json.loads(sys.argv[1])["cpu"]["hardware"]; sys.exit(0 if c["avx2"] else 1)' "$hw" && caps+=(avx2)
for cap in "${caps[@]}"; do
  for p in f32 bf16 int8; do
    env DUET_MAX_ISA="$cap" "$DUET" bench --model "$ROOT/models/fashion-duet" --precision "$p" \
      --threads "$THREADS" --reps "$REPS" --steps 20 --gen-reps 3 --no-gemm --json \
      > "$OUT/demo-$cap-$p.json" 2> "$OUT/demo-$cap-$p.err" || true
    if [ -n "$SEED_DIR" ]; then
      env DUET_MAX_ISA="$cap" "$DUET" bench --model "$SEED_DIR" --precision "$p" --threads "$THREADS" \
        --reps "$SEED_REPS" --steps 0 --gen-reps 0 --no-gemm --no-quality --json \
        > "$OUT/seed-$cap-$p.json" 2> "$OUT/seed-$cap-$p.err" || true
    fi
  done
done
"$PY" - "$OUT" "${caps[@]}" <<'PY'
import json, os, sys
out, caps = sys.argv[1], sys.argv[2:]
def load(kind, cap, p):
    try:
        with open(f"{out}/{kind}-{cap}-{p}.json") as f:
            return json.load(f)
    except (OSError, ValueError):
        with open(f"{out}/{kind}-{cap}-{p}.err") as f:
            lines = f.read().strip().splitlines()
        return {"error": lines[-1] if lines else "no output"}
first = load("demo", caps[0], "f32")
print(f"cpu: {first['cpu']['model_name']}, {first['cpu']['logical_cpus']} cpus, hw {first['cpu']['hardware']['summary']}")
print()
print("| DUET_MAX_ISA | oneDNN ISA | precision | demo denoise ms | demo 20-step image ms | × f32 | demo image PSNR vs f32 | seed-scale denoise ms | × f32 |")
print("|---|---|---|---|---|---|---|---|---|")
for cap in caps:
    base_d = load("demo", cap, "f32"); base_s = load("seed", cap, "f32")
    for p in ["f32", "bf16", "int8"]:
        d = load("demo", cap, p); s = load("seed", cap, p)
        if "error" in d:
            why = d["error"].replace("duet bench: unimplemented: ", "")
            print(f"| {cap} | {base_d.get('cpu', {}).get('onednn_isa', '?')} | {p} | not available: {why} | | | | | |")
            continue
        dn = d["stages"]["denoise_no_refine"]["median_ms"]; gen = d["stages"]["generate"]["median_ms"]
        bgen = base_d["stages"]["generate"]["median_ms"]
        psnr = d.get("quality", {}).get("image_psnr_db")
        sd = s["stages"]["denoise_no_refine"]["median_ms"] if "stages" in s else None
        bsd = base_s["stages"]["denoise_no_refine"]["median_ms"] if "stages" in base_s else None
        print(f"| {cap} | {d['cpu']['onednn_isa']} | {p} | {dn:.2f} | {gen:.1f} | {bgen / gen:.2f} | "
              f"{'—' if psnr is None else f'{psnr:.1f} dB'} | {'—' if sd is None else f'{sd:.0f}'} | "
              f"{'—' if sd is None or bsd is None else f'{bsd / sd:.2f}'} |")
PY
