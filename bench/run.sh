#!/usr/bin/env bash
# run.sh -- runs the benchmarks of a build: `./bench/run.sh BUILD_DIR` (what
# `make bench` does).  Each report goes to stdout and to bench/results/, so a
# run's figures can be committed next to the code that produced them:
#   bench_store -> results/store.md  (the store against raw LMDB)
#   bench_ws    -> results/ws.md     (a real crmd over WebSocket, load generator in C)
#   bench_hooks -> results/hooks.md  (C and Lua hooks against none)
#   bench_features -> results/features.md (orders/s with every CRM feature vs
#                     the bare kernel, crmd demo's time, value recomputation)
#   bench_hostile -> results/hostile.md (other clients' p99 under hostile
#                     frames, slowloris, a slow subscriber, a flood, against
#                     an idle baseline of the same run; R10-R13)
# CRM_BENCH_ONLY=store, ws, hooks, features or hostile runs just one of them.
#
# The stores go in BUILD_DIR unless CRM_BENCH_DIR says otherwise: on the same
# disk as the checkout, not /tmp, which may be tmpfs (where fsync is free and
# the durable figures would mean nothing).
set -euo pipefail

build=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)
results="$here/results"
only=${CRM_BENCH_ONLY:-}
mkdir -p "$results"

for b in bench_store bench_ws bench_hooks bench_features bench_hostile; do
  if [ -z "$only" ] || [ "$only" = "${b#bench_}" ]; then
    if [ ! -x "$build/bench/$b" ]; then
      echo "run.sh: $build/bench/$b is missing; build first (make build)" >&2
      exit 1
    fi
  fi
done
export CRM_BENCH_DIR=${CRM_BENCH_DIR:-$build}

# Each report is written to a temp file first so a failed run never replaces a good one.
run() { # run BENCH REPORT
  "$build/bench/$1" > "$results/$2.tmp"
  mv "$results/$2.tmp" "$results/$2"
  cat "$results/$2"
}
if [ -z "$only" ] || [ "$only" = store ]; then
  run bench_store store.md
fi
if [ -z "$only" ] || [ "$only" = ws ]; then
  if [ -z "$only" ]; then echo; fi
  run bench_ws ws.md
fi
if [ -z "$only" ] || [ "$only" = hooks ]; then
  if [ -z "$only" ]; then echo; fi
  run bench_hooks hooks.md
fi
if [ -z "$only" ] || [ "$only" = features ]; then
  if [ -z "$only" ]; then echo; fi
  run bench_features features.md
fi
if [ -z "$only" ] || [ "$only" = hostile ]; then
  if [ -z "$only" ]; then echo; fi
  run bench_hostile hostile.md
fi
