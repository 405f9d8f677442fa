#!/usr/bin/env bash
# Checks scripts/cpu-env.sh's decision on fake /proc/cpuinfo files: SKYLAKEX only on Intel with
# AVX-512 F/BW/VL/DQ, never without AVX-512, never on AMD, a caller's value kept unless it is an AVX-512
# core type on a CPU without AVX-512.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
avx2="fpu sse sse2 ssse3 sse4_1 sse4_2 avx f16c fma avx2 bmi1 bmi2"
avx512="$avx2 avx512f avx512dq avx512cd avx512bw avx512vl avx512_vnni"
cpu() { printf 'processor\t: 0\nvendor_id\t: %s\nflags\t\t: %s\n\n' "$1" "$2" > "$tmp/$3"; }
cpu GenuineIntel "$avx512" intel512
cpu GenuineIntel "$avx2" intel2
cpu GenuineIntel "${avx2} avx512f" intel512f   # F alone is not enough
cpu AuthenticAMD "$avx2" zen3
cpu AuthenticAMD "$avx512" zen4
fails=0
# expect NAME FILE PRESET WANT_CORETYPE WANT_AVX512   (PRESET/WANT "-" = unset; CAP=avx2 caps)
expect() {
  local got preset=()
  [ "$3" = - ] || preset=("OPENBLAS_CORETYPE=$3")
  got=$(env -u OPENBLAS_CORETYPE -u DUET_MAX_ISA "${preset[@]}" ${CAP:+DUET_MAX_ISA=$CAP} CPU_ENV_CPUINFO="$tmp/$2" bash -c \
    '. scripts/cpu-env.sh 2>/dev/null; echo "${OPENBLAS_CORETYPE-"-"} $CPU_ENV_AVX512"')
  if [ "$got" = "$4 $5" ]; then echo "ok   $1: $got"
  else echo "FAIL $1: got '$got', want '$4 $5'"; fails=$((fails + 1)); fi
}
expect "Intel AVX-512"            intel512  -         SKYLAKEX 1
expect "Intel AVX2 only"          intel2    -         -        0
expect "Intel avx512f without BW" intel512f -         -        0
expect "AMD Zen 3"                zen3      -         -        0
expect "AMD Zen 4 (AVX-512)"      zen4      -         -        1
expect "caller's value kept"      intel2    HASWELL   HASWELL  0
expect "caller's value on Intel"  intel512  HASWELL   HASWELL  1
expect "caller's SKYLAKEX, AVX2"   intel2    SKYLAKEX  -        0
expect "caller's SKYLAKEX, Zen 3"  zen3      SKYLAKEX  -        0
expect "caller's SKYLAKEX kept"    intel512  SKYLAKEX  SKYLAKEX 1
expect "no cpuinfo, SKYLAKEX"      missing   SKYLAKEX  -        0
expect "no cpuinfo"               missing   -         -        0
CAP=avx2 expect "Intel AVX-512 capped to AVX2" intel512 - HASWELL 1
CAP=avx2 expect "AMD Zen 4 capped to AVX2"     zen4     - HASWELL 1
CAP=avx2 expect "AVX2 CPU, cap changes nothing" intel2  - -       0
CAP=avx2 expect "cap replaces caller's SKYLAKEX" intel512 SKYLAKEX HASWELL 1
CAP=avx2 expect "cap keeps caller's HASWELL"    intel512 HASWELL  HASWELL 1
CAP=avx2 expect "cap, AVX2 CPU, SKYLAKEX"       intel2   SKYLAKEX -       0
got=$(env -u ONEDNN_MAX_CPU_ISA -u OPENBLAS_CORETYPE DUET_MAX_ISA=avx2 CPU_ENV_CPUINFO="$tmp/intel512" bash -c \
  '. scripts/cpu-env.sh 2>/dev/null; echo "${ONEDNN_MAX_CPU_ISA-"-"}"')
if [ "$got" = AVX2 ]; then echo "ok   cap exports ONEDNN_MAX_CPU_ISA=AVX2"
else echo "FAIL cap: ONEDNN_MAX_CPU_ISA '$got', want AVX2"; fails=$((fails + 1)); fi
got=$(env -u ONEDNN_MAX_CPU_ISA OPENBLAS_CORETYPE=SKYLAKEX DUET_MAX_ISA=avx2 CPU_ENV_CPUINFO="$tmp/intel512" \
  bash -c '. scripts/cpu-env.sh 2>/dev/null; echo "${ONEDNN_MAX_CPU_ISA-"-"}"')
if [ "$got" = AVX2 ]; then echo "ok   cap exports ONEDNN_MAX_CPU_ISA=AVX2 with a caller's OPENBLAS_CORETYPE"
else echo "FAIL cap with a caller's core type: ONEDNN_MAX_CPU_ISA '$got', want AVX2"; fails=$((fails + 1)); fi
got=$(env -u ONEDNN_MAX_CPU_ISA -u DUET_MAX_ISA CPU_ENV_CPUINFO="$tmp/intel512" \
  bash -c '. scripts/cpu-env.sh 2>/dev/null; echo "${ONEDNN_MAX_CPU_ISA-"-"}"')
if [ "$got" = - ]; then echo "ok   no cap, no ONEDNN_MAX_CPU_ISA"
else echo "FAIL no cap but ONEDNN_MAX_CPU_ISA '$got'"; fails=$((fails + 1)); fi
# The decision line goes to stderr, stdout stays clean.
out=$(CPU_ENV_CPUINFO="$tmp/zen3" bash -c '. scripts/cpu-env.sh' 2>/dev/null)
[ -z "$out" ] || { echo "FAIL: cpu-env.sh wrote to stdout: $out"; fails=$((fails + 1)); }
line=$(env -u OPENBLAS_CORETYPE CPU_ENV_CPUINFO="$tmp/zen3" bash -c '. scripts/cpu-env.sh' 2>&1)
case "$line" in *"not set"*"SIGILL"*) echo "ok   message: $line" ;;
  *) echo "FAIL message: $line"; fails=$((fails + 1)) ;; esac
[ "$fails" = 0 ] || { echo "cpu-env: $fails check(s) failed"; exit 1; }
echo "cpu-env: all checks passed"
