#!/usr/bin/env bash
# `why` (issue 10's benchmark), whole process (exec to exit), against `eu-stack -p` on the
# same target in the same run (interleaved runs, bench/interleave.py): the shared
# 1,000-thread target with 190 descendants (bench/tree_target.c), then the busy one (every
# thread wakes every 50 ms, bench/busy_target.c). Also checks that `why` paused no thread:
# the target's threads' voluntary context switches only grow and none was traced.
#
#   bench/why_vs_eustack.sh [RUNS (default 10)]
#   LT=path/to/lifecycle-top bench/why_vs_eustack.sh     # measure another build
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-10}
. bench/lib.sh
need_tools "apt-get install -y elfutils gcc" gcc python3 eu-stack cargo
lt_binary
start() { # start SRC ARGS...: compiles and starts a shared workload; its pid in $STARTED
    local src=$1 bin
    shift
    bin=$tmp/$(basename "$src" .c)
    gcc -O2 -o "$bin" "$src" -lpthread
    setsid "$bin" "$@" >"$bin.pid" &
    pids+=($!)
    for _ in $(seq 100); do [ -s "$bin.pid" ] && break; sleep 0.1; done
    STARTED=$(head -1 "$bin.pid")
}
start bench/tree_target.c 1000 190
T=$STARTED
sleep 1
compare "why --pid, 1,000 threads + 190 descendants (idle)" "$LT why --pid $T" "eu-stack -p $T"
if grep -q 'TracerPid:.*[1-9]' /proc/"$T"/task/*/status 2>/dev/null; then
    echo "error: a thread of the target is still traced" >&2
    exit 1
fi
cleanup_workloads() { for p in "${pids[@]}"; do kill -9 -- "-$p" 2>/dev/null || true; done; pids=(); }
cleanup_workloads
start bench/busy_target.c 1000 190
B=$STARTED
sleep 1
compare "why --pid, 1,000 threads waking every 50 ms + 190 descendants" "$LT why --pid $B" "eu-stack -p $B"
