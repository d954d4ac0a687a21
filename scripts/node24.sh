#!/usr/bin/env bash
# Prints the path of a Node 24 binary (see scripts/node.sh). Kept for the benchmark.
exec bash "$(dirname "$0")/node.sh" 24
