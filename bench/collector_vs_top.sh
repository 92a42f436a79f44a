#!/usr/bin/env bash
# CPU per refresh: lifecycle-top's collector vs `top -H -b -d 1 -p PID`, both watching the
# same tree_target workload (1,000 threads, 200 descendants) in the same run, each
# refreshing once per second. CPU is the sum of schedstat run time over each measurer's
# threads, sampled after a warm-up and again WINDOW seconds later (attach cost excluded).
#
#   bench/collector_vs_top.sh [WINDOW_SECONDS (default 20)] [THREADS] [CHILDREN]
set -euo pipefail
cd "$(dirname "$0")/.."
WINDOW=${1:-20}
THREADS=${2:-1000}
CHILDREN=${3:-190}
WARMUP=3
for tool in gcc top cargo; do
    command -v "$tool" >/dev/null || { echo "error: '$tool' not found: install it to run this benchmark" >&2; exit 1; }
done

tmp=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

cargo build --quiet --release --example collector_loop
gcc -O2 -o "$tmp/tree_target" bench/tree_target.c -lpthread

"$tmp/tree_target" "$THREADS" "$CHILDREN" >"$tmp/pid" &
pids+=($!)
for _ in $(seq 100); do [ -s "$tmp/pid" ] && break; sleep 0.1; done
TARGET=$(cat "$tmp/pid")
echo "workload pid $TARGET: $(ls /proc/"$TARGET"/task | wc -l) threads"

RUN=$((WINDOW + WARMUP + 5))
target/release/examples/collector_loop "$TARGET" "$RUN" 1000 2>"$tmp/lt.err" &
LT=$!; pids+=($LT)
top -H -b -d 1 -n "$RUN" -p "$TARGET" >/dev/null &
TOP=$!; pids+=($TOP)

# Nanoseconds on CPU, all threads of a process.
cpu_ns() { cat /proc/"$1"/task/*/schedstat | awk '{s += $1} END {print s}'; }

sleep "$WARMUP"
lt0=$(cpu_ns $LT); top0=$(cpu_ns $TOP)
sleep "$WINDOW"
lt1=$(cpu_ns $LT); top1=$(cpu_ns $TOP)

awk -v lt=$((lt1 - lt0)) -v top=$((top1 - top0)) -v n="$WINDOW" 'BEGIN {
    l = lt / 1e6 / n; t = top / 1e6 / n
    printf "CPU per refresh over %d s: lifecycle-top collector %.2f ms, top -H %.2f ms, ratio top/lifecycle-top %.1fx\n", n, l, t, t / l
}'
