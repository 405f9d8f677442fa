#!/usr/bin/env bash
# Configures and builds duet (Release) into build/.
#   scripts/build.sh              # every target (library, CLI, C ABI, tests, benchmarks), then
#                                 # installs the Python package `duet` (scripts/install-python.sh:
#                                 # /usr/bin/python3, user site-packages)
#   scripts/build.sh duet_cli     # only the named targets (the demo needs only the CLI)
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
targets=()
for t in "$@"; do targets+=(--target "$t"); done
cmake --build build -j"$(nproc)" "${targets[@]}"
if [ $# -eq 0 ]; then ./scripts/install-python.sh build; fi
