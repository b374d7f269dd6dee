#!/bin/sh
# fuzz/run.sh SECONDS [TARGET...] -- runs the libFuzzer targets of build-fuzz
# (R9, docs/reliability.md), one after the other, each for SECONDS from its
# committed corpus, and prints a line per target: executions, final edge
# coverage (cov) and features (ft) from libFuzzer's "#N DONE cov: X ft: Y".
#
# New inputs go to $FUZZ_BUILD/fuzz-work/<target>/corpus (the committed
# corpus is only read); logs to .../<target>.log; a crash, leak, timeout or
# out-of-memory input to .../<target>/crash-* (and so on) and the script
# fails.  To keep a finding as a regression seed:
#   cp build-fuzz/fuzz-work/T/crash-... fuzz/corpus/T/regress-<what>.bin
set -u
secs=${1:-20}
[ $# -gt 0 ] && shift
targets=${*:-json msgpack schema filter request luavalue}
build=${FUZZ_BUILD:-build-fuzz}
here=$(cd "$(dirname "$0")" && pwd)
bin=$(cd "$build/fuzz" && pwd) || { echo "run.sh: no $build/fuzz: make build-fuzz" >&2; exit 2; }
work="$(cd "$build" && pwd)/fuzz-work"
failed=0 total=0

printf '%-8s %12s %8s %8s %8s  %s\n' target execs exec/s cov ft result
for t in $targets; do
    w="$work/$t"
    mkdir -p "$w/corpus"
    log="$work/$t.log"
    # -rss/-malloc limits and the 2 s timeout are the plan's (R9); leaks are
    # reported by ASan's LeakSanitizer at the end of each input batch.
    (cd "$w" && "$bin/fuzz_$t" -max_total_time="$secs" -rss_limit_mb=2048 -malloc_limit_mb=64 \
        -timeout=2 -print_final_stats=1 -artifact_prefix="$w/" "$w/corpus" "$here/corpus/$t") \
        >"$log" 2>&1
    rc=$?
    done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    cov=$(echo "$done_line" | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
    ft=$(echo "$done_line" | sed -n 's/.*ft: \([0-9]*\).*/\1/p')
    if [ "$rc" -eq 0 ] && [ -n "$done_line" ]; then
        result=ok
    else
        result="FAILED (rc $rc; see $log)"
        failed=1
        grep -E 'ERROR: |runtime error|fuzz: property|SUMMARY|Test unit written' "$log" | head -n 8 >&2
    fi
    total=$((total + ${execs:-0}))
    printf '%-8s %12s %8s %8s %8s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "$result"
done
echo "total executions: $total"
exit $failed
