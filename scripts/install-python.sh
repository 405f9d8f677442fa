#!/usr/bin/env bash
# Installs the duet Python package (python/duet_pkg + the built build/libduet.so) for
# /usr/bin/python3 (Debian's, with numpy / PIL / torch) into the user site-packages, with
# Debian's pip and setuptools: --no-build-isolation --no-index (nothing is downloaded),
# --break-system-packages because Debian 12's pip refuses any install outside apt otherwise
# (a --user install does not touch /usr). Afterwards `python3 -c "import duet"` works.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${1:-build}"
PY=/usr/bin/python3
STAGE="$BUILD/python-pkg"
LIB="$(readlink -f "$BUILD/libduet.so")"
[ -f "$LIB" ] || { echo "install-python.sh: $BUILD/libduet.so not built (run scripts/build.sh)" >&2; exit 1; }
rm -rf "$STAGE"
mkdir -p "$STAGE"
cp -r python/duet_pkg/pyproject.toml python/duet_pkg/duet "$STAGE/"
find "$STAGE" -name __pycache__ -prune -exec rm -rf {} +
cp "$LIB" "$STAGE/duet/libduet.so.0"
"$PY" -m pip install --user --break-system-packages --no-build-isolation --no-index --no-deps \
  --force-reinstall --quiet --disable-pip-version-check --no-warn-script-location \
  --root-user-action=ignore "$STAGE"
echo "installed the duet Python package for $PY ($("$PY" -c 'import site; print(site.getusersitepackages())'))"
