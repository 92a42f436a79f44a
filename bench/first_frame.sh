#!/usr/bin/env bash
# First full frame within 100 ms? Starts `lifecycle-top --pid PID` in a 160x48 pty against
# tree_target (1,000 threads, 200 children) RUNS times and prints the time until the screen
# first shows one of the target's thread names (whole process, cold start), median of RUNS,
# and the time to the first frame of any kind (drawn before the first snapshot arrives).
#
#   bench/first_frame.sh [RUNS (default 10)] [THREADS (default 1000)]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-10}
THREADS=${2:-1000}
for tool in gcc cargo; do
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
# The dashboard as shipped (release); the pty harness needs no optimising (dev profile:
# usually built already by the tests, and no second whole-program link).
cargo build --quiet --release --bin lifecycle-top
cargo build --quiet --example first_frame
gcc -O2 -o "$tmp/tree_target" bench/tree_target.c -lpthread
"$tmp/tree_target" "$THREADS" 190 >"$tmp/pid" &
pids+=($!)
for _ in $(seq 100); do [ -s "$tmp/pid" ] && break; sleep 0.1; done
ulimit -n "$(ulimit -Hn)"
# w1 is one of the first rows (threads sorted by tid on start).
target/debug/examples/first_frame "$PWD/target/release/lifecycle-top" "$(cat "$tmp/pid")" w1 "$RUNS"
