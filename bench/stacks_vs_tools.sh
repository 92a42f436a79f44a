#!/usr/bin/env bash
# Side-by-side stack snapshot timings (issue 6): 100 blocked C threads captured by
# lifecycle-top (warm, ptrace-free and seize paths) vs `eu-stack -p` (elfutils) and
# `gdb -batch -ex 'thread apply all bt'`; 100 Python threads by `py-spy dump` vs lifecycle-top.
# Missing tools are named and skipped (this is a benchmark, not a test).
# Usage: bash bench/stacks_vs_tools.sh [RUNS]   (default 5 runs per external tool)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
TMP=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$TMP"; }
trap cleanup EXIT

have() { command -v "$1" >/dev/null 2>&1 || { echo "SKIP $2: \`$1\` not installed ($3)"; return 1; }; }
now_ns() { date +%s%N; }
# median_ms CMD...: run RUNS times, print the median wall time in ms.
median_ms() {
  local times=()
  for _ in $(seq "$RUNS"); do
    local t0; t0=$(now_ns); "$@" >/dev/null 2>&1 || true; local t1; t1=$(now_ns)
    times+=($(( (t1 - t0) / 1000 )))
  done
  printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {printf "%.1f", a[int((NR+1)/2)]/1000}'
}
wait_ready() { # wait for the "ready" line a target prints
  for _ in $(seq 200); do grep -q ready "$1" 2>/dev/null && return 0; sleep 0.05; done
  echo "target did not start" >&2; exit 1
}

have gcc "C target" "apt-get install gcc" || exit 1
cargo build --release --quiet --example stacks_timing
TIMING=target/release/examples/stacks_timing
gcc -O0 -g -pthread -o "$TMP/stacks_blocked" tests/targets/stacks_blocked.c
"$TMP/stacks_blocked" 100 >"$TMP/c.out" & CPID=$!; PIDS+=("$CPID"); disown "$CPID"
wait_ready "$TMP/c.out"; sleep 0.3
echo "== 100 blocked C threads (+3 named, +main): pid $CPID, $(nproc) cores"
echo "lifecycle-top ptrace-free : $($TIMING "$CPID" 30)"
echo "lifecycle-top seize       : $($TIMING "$CPID" 5 --seize)"
if have eu-stack "eu-stack" "apt-get install elfutils"; then
  echo "eu-stack -p               : median $(median_ms eu-stack -p "$CPID") ms over $RUNS runs"
fi
if have gdb "gdb" "apt-get install gdb"; then
  echo "gdb thread apply all bt   : median $(median_ms gdb -batch -nx -ex 'thread apply all bt' -p "$CPID") ms over $RUNS runs (stops the whole process meanwhile)"
fi

if have python3 "Python target" "apt-get install python3"; then
  python3 tests/targets/stacks_blocked.py 100 >"$TMP/py.out" & PYPID=$!; PIDS+=("$PYPID"); disown "$PYPID"
  wait_ready "$TMP/py.out"; sleep 0.3
  echo "== 100 blocked Python threads: pid $PYPID"
  echo "lifecycle-top ptrace-free : $($TIMING "$PYPID" 30)  (kernel + native + Python frames via the py-spy crate, joined per thread)"
  if have py-spy "py-spy dump" "pip install py-spy"; then
    echo "py-spy dump               : median $(median_ms py-spy dump --pid "$PYPID") ms over $RUNS runs"
    echo "py-spy dump --nonblocking : median $(median_ms py-spy dump --nonblocking --pid "$PYPID") ms over $RUNS runs"
  fi
fi
