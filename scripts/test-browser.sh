#!/usr/bin/env bash
# Web UI test: installs Debian chromium and the npm deps of tests/browser, starts
#   build/duet serve --model <model dir>
# on a free port, runs tests/browser/ui.test.mjs (playwright-core driving headless chromium) and
# saves docs/webui.png. Usage: scripts/test-browser.sh [MODEL_DIR] (default: models/fashion-duet,
# else tests/fixtures/tiny-demo). DUET_BIN overrides the binary (default build/duet).
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
# A NodeSource nodejs bundles npm and conflicts with Debian's npm: only install when missing.
command -v npm >/dev/null 2>&1 || need+=(nodejs npm)
if [ ${#need[@]} -gt 0 ]; then
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need[@]}"
fi
(cd tests/browser && npm install --no-audit --no-fund --silent)
# The lock's playwright-core needs Node.js >= 20; Debian 12's nodejs is 18.19/18.20. There, use the
# last release that supports Node 18 (1.61.1, engines ">=18"), without touching package*.json.
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  echo "== Node.js $(node --version) < 20: playwright-core@1.61.1 (the last release for Node 18)"
  (cd tests/browser && npm install --no-audit --no-fund --silent --no-save playwright-core@1.61.1)
fi

MODEL="${1:-}"
if [ -z "$MODEL" ]; then
  if [ -f models/fashion-duet/model.safetensors ]; then MODEL=models/fashion-duet
  else MODEL=tests/fixtures/tiny-demo; fi
fi
BIN="${DUET_BIN:-build/duet}"
LOG="$(mktemp)"
"$BIN" serve --model "$MODEL" --host 127.0.0.1 --port 0 >"$LOG" 2>&1 &
PID=$!
cleanup() { kill -TERM "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; rm -f "$LOG"; }
trap cleanup EXIT
PORT=""
for _ in $(seq 1 300); do
  PORT="$(sed -n 's|.*listening on http://[^:]*:\([0-9]*\).*|\1|p' "$LOG")"
  [ -n "$PORT" ] && break
  kill -0 "$PID" 2>/dev/null || { cat "$LOG"; echo "duet serve exited"; exit 1; }
  sleep 0.1
done
[ -n "$PORT" ] || { cat "$LOG"; echo "duet serve did not start"; exit 1; }
echo "== web UI test against $BIN serve --model $MODEL (port $PORT)"
DUET_URL="http://127.0.0.1:$PORT" node tests/browser/ui.test.mjs
kill -TERM "$PID"
wait "$PID"
echo "duet serve exited $? after SIGTERM"
trap - EXIT
rm -f "$LOG"
