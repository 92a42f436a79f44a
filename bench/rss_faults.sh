#!/usr/bin/env bash
# Peak RSS and page faults of the TUI watching tree_target, for allocator trade-offs (a
# setting that returns memory to the kernel on every free lowers the peak but makes each
# refresh fault its buffers in again: this shows both).
#   bench/rss_faults.sh LT [THREADS]   # LT: a lifecycle-top binary (or a wrapper that execs one)
# Prints minor faults and CPU ticks (utime+stime) at 15 s and 45 s after start, and VmHWM.
set -euo pipefail
LT=${1:?usage: bench/rss_faults.sh LT [THREADS]}; N=${2:-10000}
command -v tmux >/dev/null || { echo "tmux is needed: apt-get install tmux" >&2; exit 1; }
tmp=$(mktemp -d); trap 'tmux -L ltpf kill-server 2>/dev/null || true; kill $TP 2>/dev/null || true; rm -rf "$tmp"' EXIT
gcc -O2 -o "$tmp/tree_target" "$(dirname "$0")/tree_target.c" -lpthread
"$tmp/tree_target" "$N" $((N / 10)) > "$tmp/t.out" & TP=$!
for _ in $(seq 100); do [ -s "$tmp/t.out" ] && break; sleep 0.1; done
T=$(head -1 "$tmp/t.out")
tmux -L ltpf new-session -d -s p -x 160 -y 48 "ulimit -n \$(ulimit -Hn); exec $LT --pid $T --interval 1000"
sleep 15; P=$(tmux -L ltpf list-panes -F '#{pane_pid}')
a=$(awk '{print $10, $14+$15}' "/proc/$P/stat"); sleep 30; b=$(awk '{print $10, $14+$15}' "/proc/$P/stat")
echo "$LT on $N threads: minflt ticks at 15 s: $a, at 45 s: $b; $(grep VmHWM "/proc/$P/status" | tr -s ' \t' ' ')"
