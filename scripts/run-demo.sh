#!/usr/bin/env bash
# The main job: install, build, and draw an image with the shipped demo model; also installs the
# Python package `duet` (over libduet.so) for /usr/bin/python3.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh duet_cli duet_shared   # the CLI and the C ABI only; run-tests.sh builds every target
./scripts/install-python.sh build
./build/duet generate --model models/fashion-duet -p "${1:-a photo of an ankle boot}" -o duet-output.png
echo "wrote duet-output.png"
