#!/usr/bin/env bash
# Whole-process cost of watching one target, lifecycle-top's TUI against `top -H -p` and
# `htop -p`, all three at a 1 s refresh, each drawing into its own tmux pane of the same size
# (160x48), all three watching the same target in the same run. Per scenario: CPU ms per
# second of wall time (whole process: its CPU clock, every thread including exited ones, in
# ns; utime+stime from /proc/PID/stat as a cross-check), peak RSS
# (VmHWM), and the ratios top/lifecycle-top and htop/lifecycle-top.
#
# Scenarios (each its own target, started fresh):
#   idle-1k   tree_target 1000 190     1,000 threads, 10 waking every 100 ms, 200 children
#   busy-1k   busy_target 1000 190 50  1,000 threads all waking every 50 ms, 190 children
#   idle-10k  tree_target 10000 1000   10,000 threads, 10 waking, 1,005 children
#
#   bench/vs_top_htop.sh [WINDOW_SECONDS (default 20)] [SCENARIO...]
#   LT=path/to/lifecycle-top bench/vs_top_htop.sh     # measure another build
#   LT_BASE=path/to/old/lifecycle-top bench/vs_top_htop.sh  # and an older build, same run
set -euo pipefail
cd "$(dirname "$0")/.."
WINDOW=${1:-20}
shift || true
SCENARIOS=("$@")
[ ${#SCENARIOS[@]} -gt 0 ] || SCENARIOS=(idle-1k busy-1k idle-10k)
WARMUP=4
for tool in gcc top htop tmux cargo awk python3; do
    command -v "$tool" >/dev/null || {
        echo "error: '$tool' not found: install it (apt-get install -y $tool) to run this benchmark" >&2
        exit 1
    }
done

tmp=$(mktemp -d)
# A tmux server of our own: a `tmux kill-server` elsewhere on the machine (another bench)
# must not end the panes mid-run.
tmx() { tmux -L "ltb-$$" "$@"; }
sessions=()
pids=()
cleanup() {
    for s in "${sessions[@]}"; do tmx kill-session -t "$s" 2>/dev/null || true; done
    tmx kill-server 2>/dev/null || true
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

if [ -z "${LT:-}" ]; then
    cargo build --quiet --release
    LT=$PWD/target/release/lifecycle-top
fi
gcc -O2 -o "$tmp/tree_target" bench/tree_target.c -lpthread
gcc -O2 -o "$tmp/busy_target" bench/busy_target.c -lpthread
ulimit -n "$(ulimit -Hn)"

# Start CMD in a detached tmux session of fixed size; print the pid of the command.
in_pane() {
    local name=$1; shift
    local s="ltb-$$-$name"
    sessions+=("$s")
    tmx new-session -d -s "$s" -x 160 -y 48 "echo \$\$ > $tmp/$name.pid; exec $*"
    for _ in $(seq 100); do [ -s "$tmp/$name.pid" ] && break; sleep 0.1; done
    cat "$tmp/$name.pid"
}
# The process CPU clock (CLOCK_PROCESS_CPUTIME of PID, ns): every thread, exited ones too.
cpu_ns() { python3 -c 'import sys, time; p = int(sys.argv[1]); print(time.clock_gettime_ns(((~p) << 3) | 2))' "$1"; }
# utime+stime from /proc/PID/stat in ns (clock ticks: a cross-check).
stat_ns() { awk -v hz="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); print ($12 + $13) * 1e9 / hz }' /proc/"$1"/stat; }
rss_kb() { awk '/VmHWM/ {print $2}' /proc/"$1"/status; }

printf "%-9s %-14s %10s %10s %9s\n" scenario tool "ms CPU/s" "(stat)" "peak MB"
for sc in "${SCENARIOS[@]}"; do
    case $sc in
        idle-1k) cmd=("$tmp/tree_target" 1000 190) ;;
        busy-1k) cmd=("$tmp/busy_target" 1000 190 50) ;;
        idle-10k) cmd=("$tmp/tree_target" 10000 1000) ;;
        *) echo "error: unknown scenario '$sc' (idle-1k, busy-1k, idle-10k)" >&2; exit 2 ;;
    esac
    "${cmd[@]}" >"$tmp/target.pid" &
    tpid=$!
    pids+=("$tpid")
    for _ in $(seq 300); do [ -s "$tmp/target.pid" ] && break; sleep 0.1; done
    T=$(cat "$tmp/target.pid")
    lt=$(in_pane "lt-$sc" "$LT" --pid "$T" --interval 1000)
    top=$(in_pane "top-$sc" top -H -d 1 -p "$T")
    htop=$(in_pane "htop-$sc" htop -d 10 -p "$T")
    base=
    [ -z "${LT_BASE:-}" ] || base=$(in_pane "base-$sc" "$LT_BASE" --pid "$T" --interval 1000)
    sleep "$WARMUP"
    declare -A s0 k0
    for p in $lt $top $htop $base; do s0[$p]=$(cpu_ns "$p"); k0[$p]=$(stat_ns "$p"); done
    sleep "$WINDOW"
    declare -A cpu kcpu rss
    for p in $lt $top $htop $base; do
        cpu[$p]=$(awk -v a="${s0[$p]}" -v b="$(cpu_ns "$p")" -v n="$WINDOW" 'BEGIN {printf "%.2f", (b - a) / 1e6 / n}')
        kcpu[$p]=$(awk -v a="${k0[$p]}" -v b="$(stat_ns "$p")" -v n="$WINDOW" 'BEGIN {printf "%.1f", (b - a) / 1e6 / n}')
        rss[$p]=$(awk -v k="$(rss_kb "$p")" 'BEGIN {printf "%.1f", k / 1024}')
    done
    pairs=("lifecycle-top:$lt" "top -H -p:$top" "htop -p:$htop")
    [ -z "$base" ] || pairs+=("lt (LT_BASE):$base")
    for pair in "${pairs[@]}"; do
        p=${pair##*:}
        printf "%-9s %-14s %10s %10s %9s\n" "$sc" "${pair%%:*}" "${cpu[$p]}" "${kcpu[$p]}" "${rss[$p]}"
    done
    awk -v l="${cpu[$lt]}" -v t="${cpu[$top]}" -v h="${cpu[$htop]}" \
        -v lr="${rss[$lt]}" -v hr="${rss[$htop]}" -v sc="$sc" 'BEGIN {
        printf "%-9s ratios: top/lt %.1fx, htop/lt %.1fx CPU; RSS lt/htop %.2fx\n", sc, t / l, h / l, lr / hr
    }'
    for s in "ltb-$$-lt-$sc" "ltb-$$-top-$sc" "ltb-$$-htop-$sc" "ltb-$$-base-$sc"; do tmx kill-session -t "$s" 2>/dev/null || true; done
    kill "$tpid" 2>/dev/null || true
    wait "$tpid" 2>/dev/null || true
    unset s0 k0 cpu kcpu rss
done
