#!/usr/bin/env bash
# Real-client test: installs the npm deps of tests/clients (the official `openai` library and
# `@modelcontextprotocol/sdk`), starts
#   build/duet serve --model <model dir> --api-key-file <tmp>
# on a free port, runs tests/clients/clients.test.mjs against it (images.generate, images.edit,
# MCP tools/list + tools/call) and runs the curl examples of docs/serving.md
# (scripts/serving-examples.sh). Usage: scripts/test-clients.sh [MODEL_DIR] (default:
# models/fashion-duet, else tests/fixtures/tiny-demo). DUET_BIN overrides the binary.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
# A NodeSource nodejs bundles npm and conflicts with Debian's npm: only install when missing.
if ! command -v npm >/dev/null 2>&1; then
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends nodejs npm
fi
(cd tests/clients && npm install --no-audit --no-fund --silent)

MODEL="${1:-}"
if [ -z "$MODEL" ]; then
  if [ -f models/fashion-duet/model.safetensors ]; then MODEL=models/fashion-duet
  else MODEL=tests/fixtures/tiny-demo; fi
fi
BIN="${DUET_BIN:-build/duet}"
LOG="$(mktemp)"
KEY="$(mktemp)"
echo "client-test-key" >"$KEY"
"$BIN" serve --model "$MODEL" --host 127.0.0.1 --port 0 --api-key-file "$KEY" >"$LOG" 2>&1 &
PID=$!
cleanup() { kill -TERM "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; rm -f "$LOG" "$KEY"; }
trap cleanup EXIT
PORT=""
for _ in $(seq 1 300); do
  PORT="$(sed -n 's|.*listening on http://[^:]*:\([0-9]*\).*|\1|p' "$LOG")"
  [ -n "$PORT" ] && break
  kill -0 "$PID" 2>/dev/null || { cat "$LOG"; echo "duet serve exited"; exit 1; }
  sleep 0.1
done
[ -n "$PORT" ] || { cat "$LOG"; echo "duet serve did not start"; exit 1; }
echo "== client tests against $BIN serve --model $MODEL (port $PORT)"
DUET_URL="http://127.0.0.1:$PORT" DUET_API_KEY="client-test-key" node tests/clients/clients.test.mjs
echo "== docs/serving.md curl examples"
DUET_URL="http://127.0.0.1:$PORT" DUET_API_KEY="client-test-key" scripts/serving-examples.sh
kill -TERM "$PID"
wait "$PID"
echo "duet serve exited $? after SIGTERM"
trap - EXIT
rm -f "$LOG" "$KEY"
