#!/usr/bin/env bash
# The CUDA build on a machine without a usable GPU (CI, every CPU machine here): every entry point
# that is asked for the cuda backend says so in one line and exits != 0; `duet info` still works
# and says why no GPU is listed. Run by scripts/run-tests.sh after building the CUDA variant.
#   scripts/test-cuda-no-gpu.sh BUILD_DIR        (e.g. build-cuda, configured with -DDUET_CUDA=ON)
set -uo pipefail
cd "$(dirname "$0")/.."
B=${1:?usage: test-cuda-no-gpu.sh BUILD_DIR}
DUET=$B/duet
OPS=$B/duet_backend_ops
MODEL=tests/fixtures/tiny-demo
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
fail=0

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  echo "test-cuda-no-gpu: this machine has a GPU (nvidia-smi -L); run scripts/gpu-check.sh instead"
  exit 0
fi

# expect_one_line NAME CMD...: exit != 0, stderr's last line names the cuda backend and the GPU
expect_one_line() {
  local name=$1; shift
  local rc=0
  "$@" >"$W/out" 2>"$W/err" || rc=$?
  local msg
  msg=$(grep -v '^\s*$' "$W/err" | tail -1)
  if [ "$rc" = 0 ]; then
    echo "FAIL $name: exit 0 without a GPU"; fail=1
  elif [ "$rc" -ge 128 ]; then
    echo "FAIL $name: killed by signal $((rc - 128))"; fail=1
  elif ! grep -qi 'cuda' <<<"$msg" || ! grep -qi 'gpu' <<<"$msg"; then
    echo "FAIL $name: exit $rc but the message does not say cuda / GPU: '$msg'"; fail=1
  elif [ "$(grep -ci 'gpu' "$W/err")" -gt 1 ]; then
    echo "FAIL $name: the reason is printed more than once:"; cat "$W/err"; fail=1
  else
    echo "ok   $name: exit $rc: $msg"
  fi
}

expect_one_line "generate --backend cuda" "$DUET" generate --model "$MODEL" --prompt "a shirt" \
  --steps 2 -o "$W/x.png" --backend cuda
expect_one_line "bench --backend cuda" "$DUET" bench --model "$MODEL" --backend cuda --reps 1 \
  --steps 0 --no-gemm
expect_one_line "serve --backend cuda" timeout 20 "$DUET" serve --model "$MODEL" --backend cuda \
  --port 0
expect_one_line "duet_backend_ops test --backend cuda" "$OPS" test --backend cuda
[ -e "$W/x.png" ] && { echo "FAIL generate wrote an image"; fail=1; }

# duet info: exit 0, and says why there is no GPU
if "$DUET" info --no-peak >"$W/info" 2>&1; then
  if grep -qi 'gpu' "$W/info" && grep -qiE 'no usable GPU|no CUDA device' "$W/info"; then
    echo "ok   duet info: $(grep -iE 'no usable GPU|no CUDA device' "$W/info" | head -1 | sed 's/^ *//')"
  else
    echo "FAIL duet info does not say why no GPU is listed:"; cat "$W/info"; fail=1
  fi
else
  echo "FAIL duet info exited != 0:"; cat "$W/info"; fail=1
fi
# the plain CPU path of the same binary still works
if "$DUET" generate --model "$MODEL" --prompt "a shirt" --steps 2 -o "$W/cpu.png" >/dev/null 2>&1 \
   && [ -s "$W/cpu.png" ]; then
  echo "ok   generate --backend cpu in the CUDA build"
else
  echo "FAIL generate on the cpu backend of the CUDA build"; fail=1
fi
[ "$fail" = 0 ] && echo "test-cuda-no-gpu: all passed" || echo "test-cuda-no-gpu: FAILED"
exit "$fail"
