#!/usr/bin/env bash
# False-alarm and catch rates of a benchmark check: N trials on the unchanged tree and N with the
# engine made 1.5x slower (SGDBENCH_BENCH_SLOWDOWN, benchmarks/slowdown.py), alternated so that
# both see the same machine load. Prints one line per trial and the counts.
#   benchmarks/trials.sh 5 python -m benchmarks.gate
#   benchmarks/trials.sh 5 python -m pytest benchmarks/test_epoch.py -q ... --benchmark-compare ...
set -uo pipefail
n=$1
shift
log=$(mktemp -d)
alarms=0
catches=0
for i in $(seq "$n"); do
    for slowdown in "" 1.5; do
        SGDBENCH_BENCH_SLOWDOWN=$slowdown OMP_NUM_THREADS=1 "$@" >"$log/$i-${slowdown:-none}.txt" 2>&1
        rc=$?
        echo "trial $i slowdown=${slowdown:-none} exit=$rc load=$(cut -d' ' -f1-3 /proc/loadavg)"
        if [ -z "$slowdown" ] && [ "$rc" -ne 0 ]; then alarms=$((alarms + 1)); fi
        if [ -n "$slowdown" ] && [ "$rc" -ne 0 ]; then catches=$((catches + 1)); fi
    done
done
echo "false alarms: $alarms of $n unchanged trials; caught: $catches of $n 1.5x slowdowns"
echo "outputs: $log"
