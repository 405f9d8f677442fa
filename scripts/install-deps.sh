#!/usr/bin/env bash
# Installs everything duet needs from Debian packages (and npm for the ONNX Runtime peer).
set -euo pipefail
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
PKGS=(
  build-essential cmake pkg-config git curl jq
  libdnnl-dev ocl-icd-opencl-dev libhwy-dev libfftw3-dev nlohmann-json3-dev libpng-dev libcli11-dev
  libgtest-dev libgmock-dev libbenchmark-dev libcpp-httplib-dev libhiredis-dev redis-server
  clang libclang-rt-14-dev chromium ca-certificates
  python3 python3-torch python3-numpy python3-onnx python3-pil python3-scipy python3-pytest
  python3-pip python3-setuptools python3-wheel python3-tqdm
  libopenblas0-pthread dataset-fashion-mnist
)
# Node.js + npm (ONNX Runtime peer, browser test). A NodeSource nodejs already bundles npm and
# conflicts with Debian's npm package, so only ask apt for them when `npm` is missing.
command -v npm >/dev/null 2>&1 || PKGS+=(nodejs npm)
if ! dpkg -s "${PKGS[@]}" >/dev/null 2>&1; then
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${PKGS[@]}"
fi
