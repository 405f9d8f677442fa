#!/usr/bin/env bash
# Builds the libFuzzer targets in fuzz/ (clang, ASan + UBSan) and runs each for SECONDS (default
# 30) on its seed corpus. Exits non-zero when any target crashes, leaks, hits UB, times out on one
# input or exceeds the memory cap; the reproducer is left in build-fuzz/artifacts/<target>/.
#
#   scripts/fuzz.sh            # 30 s per target
#   scripts/fuzz.sh 300        # longer
#   FUZZ_TARGETS="png config" scripts/fuzz.sh 10
#   FUZZ_JOBS=2 scripts/fuzz.sh    # parallel build
# Re-run one crash:  build-fuzz/fuzz_<target> build-fuzz/artifacts/<target>/crash-...
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET="${1:-30}"
BUILD="${FUZZ_BUILD_DIR:-build-fuzz}"
JOBS="${FUZZ_JOBS:-1}"
TARGETS="${FUZZ_TARGETS:-safetensors config tokenizer png parameters serve_request serve_frontends}"

need=()
command -v clang++ >/dev/null 2>&1 || need+=(clang)
[ -n "$(ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a 2>/dev/null)" ] ||
  need+=(libclang-rt-14-dev)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing ${need[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

echo "== building fuzzers in $BUILD"
cmake -S fuzz -B "$BUILD" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" -j"$JOBS" >/dev/null

# Per-target caps: input size and the dictionary.
max_len() {
  case "$1" in
    safetensors) echo 65536 ;; png) echo 65536 ;; config) echo 8192 ;;
    serve_request|serve_frontends) echo 16384 ;; *) echo 4096 ;;
  esac
}
dict() {
  case "$1" in
    safetensors|config|serve_request|serve_frontends) echo fuzz/dicts/json.dict ;;
    png) echo fuzz/dicts/png.dict ;; parameters) echo fuzz/dicts/parameters.dict ;;
    *) echo "" ;;
  esac
}

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:allocator_may_return_null=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
failed=()
for t in $TARGETS; do
  work="$BUILD/corpus-work/$t"
  art="$BUILD/artifacts/$t"
  mkdir -p "$work" "$art"
  d="$(dict "$t")"
  echo "== fuzz_$t for ${SECONDS_PER_TARGET}s"
  log="$BUILD/fuzz_$t.log"
  # New inputs go to the scratch corpus (first dir); fuzz/corpus/<t> seeds it read-only.
  if "$BUILD/fuzz_$t" "$work" "fuzz/corpus/$t" ${d:+-dict="$d"} \
      -max_total_time="$SECONDS_PER_TARGET" -max_len="$(max_len "$t")" -rss_limit_mb=2048 \
      -malloc_limit_mb=1024 -timeout=10 -print_final_stats=1 \
      -artifact_prefix="$art/" >"$log" 2>&1; then
    grep -E "^#[0-9]+.*DONE|stat::number_of_executed_units" "$log" | tail -2 | sed 's/^/   /'
  else
    echo "!! fuzz_$t FAILED; last lines of $log:"
    tail -n 40 "$log"
    ls "$art" | sed 's/^/   reproducer: /'
    failed+=("$t")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "FUZZING FAILED: ${failed[*]}"
  exit 1
fi
echo "all fuzz targets ran clean"
