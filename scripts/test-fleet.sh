#!/usr/bin/env bash
# The fleet tests (tests/fleet/test_fleet.py: `duet serve --broker` gateways and `duet worker`s
# over a real redis-server started on a free loopback port) on their own. ctest runs the same
# tests one by one as Fleet.*. Usage: scripts/test-fleet.sh [BUILD_DIR] [-k NAME]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${1:-build}"
shift || true
command -v redis-server >/dev/null || { echo "redis-server missing: run scripts/install-deps.sh" >&2; exit 1; }
exec python3 tests/fleet/test_fleet.py "$BUILD/duet" "$@"
