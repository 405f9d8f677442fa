#!/usr/bin/env bash
# Configures and builds duet (Release) into build/, then installs the Python package `duet`
# (scripts/install-python.sh: /usr/bin/python3, user site-packages).
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
./scripts/install-python.sh build
