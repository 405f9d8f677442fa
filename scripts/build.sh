#!/usr/bin/env bash
# Configures and builds duet (Release) into build/.
#   scripts/build.sh              # every target (library, CLI, tests, benchmarks)
#   scripts/build.sh duet_cli     # only the named targets (the demo needs only the CLI)
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
targets=()
for t in "$@"; do targets+=(--target "$t"); done
cmake --build build -j"$(nproc)" "${targets[@]}"
