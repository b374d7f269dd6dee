#!/usr/bin/env bash
# run.sh -- runs the benchmarks of a build: `./bench/run.sh BUILD_DIR` (what
# `make bench` does).  Each report goes to stdout and to bench/results/, so a
# run's figures can be committed next to the code that produced them.
#
# The stores go in BUILD_DIR unless CRM_BENCH_DIR says otherwise: on the same
# disk as the checkout, not /tmp, which may be tmpfs (where fsync is free and
# the durable figures would mean nothing).
set -euo pipefail

build=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)
results="$here/results"
mkdir -p "$results"

if [ ! -x "$build/bench/bench_store" ]; then
  echo "run.sh: $build/bench/bench_store is missing; build first (make build)" >&2
  exit 1
fi
export CRM_BENCH_DIR=${CRM_BENCH_DIR:-$build}

# Written to a temp file first so a failed run never replaces a good report.
"$build/bench/bench_store" > "$results/store.md.tmp"
mv "$results/store.md.tmp" "$results/store.md"
cat "$results/store.md"
