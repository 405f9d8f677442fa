#!/usr/bin/env bash
# Every test: install, build, C++ unit + golden tests, the same under ASan/UBSan, python tests.
set -euo pipefail
cd "$(dirname "$0")/.."
export OPENBLAS_CORETYPE=SKYLAKEX   # Debian's OpenBLAS mis-detects this CPU family
./scripts/install-deps.sh
./scripts/build.sh
echo "== C++ tests (Release)"
ctest --test-dir build --output-on-failure -j2
echo "== C++ tests under ASan + UBSan"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDUET_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$(nproc)" --target duet_tests duet_cli
ASAN_OPTIONS=detect_leaks=1 ctest --test-dir build-asan --output-on-failure -j2 -E 'Golden|Sampling|Forward|EndToEnd'
echo "== Fuzzing (libFuzzer + ASan/UBSan, 30 s per target)"
FUZZ_JOBS="$(nproc)" ./scripts/fuzz.sh 30
echo "== Web UI browser test (playwright-core + headless chromium)"
./scripts/test-browser.sh
echo "== Python reference tests (ONNX graphs checked with onnxruntime-node)"
(cd python/onnx_check && npm install --ignore-scripts --no-audit --no-fund --silent)
(cd python && /usr/bin/python3 -m pytest -q tests)
echo "ALL TESTS PASSED"
