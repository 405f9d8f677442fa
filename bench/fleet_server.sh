#!/usr/bin/env bash
# A whole fleet as one "server command" for bench/serve_load.py (docs/scale-out.md): starts a
# private redis-server (AOF, appendfsync always) on a free loopback port, WORKERS `duet worker`s
# with WORKER_ARGS (plus the --max-batch / --continuous-batching that serve_load passes), then a
# `duet serve --broker` gateway with the remaining arguments in the foreground. SIGTERM stops
# them all. serve_load's CPU and RSS columns measure this wrapper shell, not the fleet: ignore them.
#
#   python3 bench/serve_load.py --server "bench/fleet_server.sh 2 '--model tests/fixtures/tiny-demo --threads 1'" ...
set -euo pipefail
WORKERS="$1"
WORKER_ARGS="$2"
shift 2
DUET="${DUET_BIN:-$(dirname "$0")/../build/duet}"
TMP="$(mktemp -d)"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 0' TERM INT
redis-server --port "$PORT" --bind 127.0.0.1 --dir "$TMP" --appendonly yes --appendfsync always \
  --save "" >"$TMP/redis.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do redis-cli -p "$PORT" PING >/dev/null 2>&1 && break; sleep 0.05; done
WFLAGS=()
ARGS=("$@")
for i in "${!ARGS[@]}"; do
  [ "${ARGS[$i]}" = "--max-batch" ] && WFLAGS+=(--max-batch "${ARGS[$((i + 1))]}")
  [ "${ARGS[$i]}" = "--continuous-batching" ] && WFLAGS+=(--continuous-batching)
done
GARGS=()
for a in "$@"; do [ "$a" = "--continuous-batching" ] || GARGS+=("$a"); done
for w in $(seq "$WORKERS"); do
  # shellcheck disable=SC2086
  "$DUET" worker --broker "redis://127.0.0.1:$PORT" --name "w$w" $WORKER_ARGS "${WFLAGS[@]}" \
    >"$TMP/w$w.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 600); do grep -q "joined broker" "$TMP/w$w.log" && break; sleep 0.1; done
done
"$DUET" serve --broker "redis://127.0.0.1:$PORT" "${GARGS[@]}" &
PIDS+=($!)
wait "${PIDS[-1]}"
