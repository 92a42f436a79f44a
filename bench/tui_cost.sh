#!/usr/bin/env bash
# Whole-TUI cost: the real lifecycle-top binary, drawing into a tmux pane, watching the
# tree_target workload (1,000 threads, 200 descendants) at the default 500 ms interval.
# Reports CPU ms per second of wall time (all its threads, from schedstat) and peak RSS,
# next to `top -H -d 0.5` watching the same tree in the same run as the baseline.
#
#   bench/tui_cost.sh [WINDOW_SECONDS (default 20)] [THREADS] [CHILDREN]
set -euo pipefail
cd "$(dirname "$0")/.."
WINDOW=${1:-20}
THREADS=${2:-1000}
CHILDREN=${3:-190}
WARMUP=3
for tool in gcc top tmux cargo; do
    command -v "$tool" >/dev/null || { echo "error: '$tool' not found: install it to run this benchmark" >&2; exit 1; }
done

tmp=$(mktemp -d)
session="lt-bench-$$"
pids=()
cleanup() {
    tmux kill-session -t "$session" 2>/dev/null || true
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

cargo build --quiet --release
gcc -O2 -o "$tmp/tree_target" bench/tree_target.c -lpthread
"$tmp/tree_target" "$THREADS" "$CHILDREN" >"$tmp/pid" &
pids+=($!)
for _ in $(seq 100); do [ -s "$tmp/pid" ] && break; sleep 0.1; done
TARGET=$(cat "$tmp/pid")

tmux new-session -d -s "$session" -x 160 -y 48 "exec target/release/lifecycle-top --pid $TARGET"
LT=""
for _ in $(seq 100); do
    # Anchored: the tmux server started for the session has the same text in its command line.
    LT=$(pgrep -f "^target/release/lifecycle-top --pid $TARGET" | head -1 || true)
    [ -n "$LT" ] && break; sleep 0.1
done
[ -n "$LT" ] || { echo "error: lifecycle-top did not start" >&2; exit 1; }
top -H -b -d 0.5 -p "$TARGET" >/dev/null &
TOP=$!; pids+=($TOP)

cpu_ns() { cat /proc/"$1"/task/*/schedstat | awk '{s += $1} END {print s}'; }
sleep "$WARMUP"
lt0=$(cpu_ns "$LT"); top0=$(cpu_ns "$TOP")
sleep "$WINDOW"
lt1=$(cpu_ns "$LT"); top1=$(cpu_ns "$TOP")
rss=$(awk '/VmHWM/ {print $2}' /proc/"$LT"/status)

awk -v lt=$((lt1 - lt0)) -v top=$((top1 - top0)) -v n="$WINDOW" -v rss="$rss" 'BEGIN {
    l = lt / 1e6 / n; t = top / 1e6 / n
    printf "whole TUI, 500 ms interval, %d s: lifecycle-top %.2f ms CPU/s (peak RSS %.1f MB); top -H -d 0.5 %.2f ms CPU/s; ratio %.1fx\n", n, l, rss / 1024, t, t / l
}'
