#!/usr/bin/env bash
# The main job: install, build, and draw an image with the shipped demo model.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh duet_cli   # the CLI only; run-tests.sh builds every target
./build/duet generate --model models/fashion-duet -p "${1:-a photo of an ankle boot}" --cfg-scale 3 -o duet-output.png
echo "wrote duet-output.png"
