#!/usr/bin/env bash
# run.sh -- runs the benchmarks of a build: `./bench/run.sh BUILD_DIR` (what
# `make bench` does).  Each report goes to stdout and to bench/results/, so a
# run's figures can be committed next to the code that produced them:
#   bench_store -> results/store.md  (the store against raw LMDB)
#   bench_ws    -> results/ws.md     (a real crmd over WebSocket, load generator in C)
#   bench_hooks -> results/hooks.md  (C and Lua hooks against none)
#   bench_features -> results/features.md (orders/s with every CRM feature vs
#                     the bare kernel, crmd demo's time, value recomputation)
#   bench_peers -> results/peers.md, peers.png and peers.dat (crmd against Redis,
#                  PostgreSQL and Tarantool; docs/benchmarks.md).  The peers,
#                  hiredis, libpq and gnuplot are installed here, from Debian
#                  (PEER_PACKAGES in the Makefile; never by `make test`), and
#                  bench_peers is built once they are there.
#   bench_hostile -> results/hostile.md (other clients' p99 under hostile
#                     frames, slowloris, a slow subscriber, a flood, against
#                     an idle baseline of the same run; R10-R13)
# CRM_BENCH_ONLY=store, ws, hooks, features, hostile or peers runs just one of them;
# CRM_BENCH_QUICK=1 makes bench_peers a smoke run of a minute or two.
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

root=$(cd "$here/.." && pwd)
if [ -z "$only" ] || [ "$only" = peers ]; then
  # the servers must not start as system services when their packages are
  # installed (tools/install-deps.sh: CRM_DEPS_NO_START)
  CRM_DEPS_NO_START=1 "$root/tools/install-deps.sh" $(make -s --no-print-directory -C "$root" peer-packages)
  cmake -S "$root" -B "$build" >/dev/null
  cmake --build "$build" --target bench_peers -j2 >&2
  if [ ! -x "$build/bench/bench_peers" ]; then
    echo "run.sh: bench_peers was not built (hiredis or libpq missing?)" >&2
    exit 1
  fi
fi

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
if [ -z "$only" ] || [ "$only" = peers ]; then
  if [ -z "$only" ]; then echo; fi
  "$build/bench/bench_peers" "$results/peers.dat.tmp" > "$results/peers.md.tmp"
  note=""
  if [ -n "${CRM_BENCH_QUICK:-}" ] && [ "$CRM_BENCH_QUICK" != 0 ]; then
    note="SMOKE RUN (quick mode, shared machine): these figures are noise, not a measurement"
  fi
  gnuplot -e "datafile='$results/peers.dat.tmp'; outfile='$results/peers.png.tmp'; note='$note'" \
    "$here/peers/chart.gp"
  mv "$results/peers.png.tmp" "$results/peers.png"
  mv "$results/peers.md.tmp" "$results/peers.md"
  mv "$results/peers.dat.tmp" "$results/peers.dat"
  cat "$results/peers.md"
fi
