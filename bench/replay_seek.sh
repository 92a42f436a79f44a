#!/usr/bin/env bash
# Replay seek in a one-hour recording of the shared 1,000-thread workload (release build).
# Records a real short headless run against bench/tree_target.c (native plan), stretches its
# idle part to one hour (bench/replay_seek.rs says how), then times SEEKS random seeks of the
# replay dashboard: median, 90th percentile and worst.
#
#   bench/replay_seek.sh [SEEKS (default 200)]
set -euo pipefail
cd "$(dirname "$0")/.."
SEEKS=${1:-200}
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
cargo build --quiet --release --bin lifecycle-top --example replay_seek
gcc -O2 -o "$tmp/tree_target" bench/tree_target.c -lpthread
"$tmp/tree_target" 1000 190 >"$tmp/pid" &
pids+=($!)
for _ in $(seq 100); do [ -s "$tmp/pid" ] && break; sleep 0.1; done
ulimit -n "$(ulimit -Hn)"
target/release/lifecycle-top --pid "$(cat "$tmp/pid")" --headless --plan native \
    --record "$tmp/real.ltrec" >"$tmp/headless.txt" 2>&1 || true
tail -n 3 "$tmp/headless.txt"
target/release/examples/replay_seek "$tmp/real.ltrec" "$tmp/hour.ltrec" "$SEEKS"
