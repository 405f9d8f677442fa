#!/usr/bin/env bash
# Runs the curl examples of docs/serving.md (the ```sh blocks between the markers
# <!-- tested-examples:begin --> and <!-- tested-examples:end -->) against a running server:
#   DUET_URL=http://127.0.0.1:8080 [DUET_API_KEY=...] scripts/serving-examples.sh
# The examples use $DUET as the server's address and run in a scratch directory; the API key, if
# any, reaches curl through a temporary .curlrc (CURL_HOME), so the examples read as they would
# without one. Any failing command (set -e, pipefail; the examples check answers with jq -e)
# fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${DUET_URL:?set DUET_URL}"
DOC=docs/serving.md
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
awk '/<!-- tested-examples:begin -->/{on=1; next} /<!-- tested-examples:end -->/{on=0}
     on && /^```sh$/{code=1; next} on && /^```$/{code=0; next} code' "$DOC" >"$WORK/examples.sh"
[ -s "$WORK/examples.sh" ] || { echo "no tested examples found in $DOC"; exit 1; }
if [ -n "${DUET_API_KEY:-}" ]; then
  printf 'header = "Authorization: Bearer %s"\n' "$DUET_API_KEY" >"$WORK/.curlrc"
  export CURL_HOME="$WORK"
fi
export DUET="$DUET_URL"
n="$(grep -c '^curl' "$WORK/examples.sh" || true)"
(cd "$WORK" && bash -euo pipefail -x examples.sh) 2>&1 | sed 's/^/  /'
echo "docs/serving.md: $n curl examples ran"
