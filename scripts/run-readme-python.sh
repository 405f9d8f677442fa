#!/usr/bin/env bash
# Runs the README's five-line Python example (the ```python block after the `readme-python`
# marker) with /usr/bin/python3 from the repository root, as a user would right after
# ./scripts/run-demo.sh, and checks the PNG it writes. check-fresh-install.sh runs it in a fresh
# Debian 12 root after the main command.
set -euo pipefail
cd "$(dirname "$0")/.."
code=$(awk '/<!-- readme-python/ { m = 1; next } m && /^```python/ { b = 1; next }
            b && /^```/ { exit } b { print }' README.md)
[ -n "$code" ] || { echo "run-readme-python: no \`\`\`python block after the readme-python marker in README.md" >&2; exit 1; }
rm -f sneaker.png
/usr/bin/python3 -c "$code"
head -c 8 sneaker.png | od -An -tx1 | grep -q '89 50 4e 47 0d 0a 1a 0a' ||
  { echo "run-readme-python: the example did not write a PNG (sneaker.png)" >&2; exit 1; }
echo "README Python example: wrote sneaker.png"
