#!/usr/bin/env bash
# Cold command-line use, whole process (exec to exit), against the named tool in the same run
# (interleaved runs, warm-up rounds excluded, medians and ratio printed):
#   snapshot --pid   on tree_target (1,000 threads, 200 children) vs `ps -T -o tid,stat,wchan,comm -p`
#   stacks --pid     on 100 blocked Python threads vs `py-spy dump --pid`
#   stacks --pid     on 100 blocked C threads vs `eu-stack -p`
#
#   bench/cold_cli.sh [RUNS (default 10)]
#   LT=path/to/lifecycle-top bench/cold_cli.sh     # measure another build
#   BEFORE=path/to/older/lifecycle-top bench/cold_cli.sh   # the Python row for that build
#                                                   # too, in the same run (before/after)
#   ONLY=python bench/cold_cli.sh                   # only the Python row(s)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-10}
. bench/lib.sh
need_tools "apt-get install -y elfutils procps; pip install py-spy" gcc python3 py-spy eu-stack ps cargo
lt_binary
wait_ready() {
    for _ in $(seq 200); do grep -q "${2:-ready}" "$1" 2>/dev/null && return 0; sleep 0.05; done
    echo "error: target did not start ($1)" >&2
    exit 1
}

if [ "${ONLY:-}" != python ]; then
gcc -O2 -o "$tmp/tree_target" bench/tree_target.c -lpthread
"$tmp/tree_target" 1000 190 >"$tmp/tree.pid" &
pids+=($!)
for _ in $(seq 100); do [ -s "$tmp/tree.pid" ] && break; sleep 0.1; done
T=$(cat "$tmp/tree.pid")
compare "snapshot --pid, 1,000 threads" "$LT snapshot --pid $T" "ps -T -o tid,stat,wchan,comm -p $T"
fi

python3 tests/targets/stacks_blocked.py 100 >"$tmp/py.out" &
pids+=($!)
wait_ready "$tmp/py.out"
PY=${pids[-1]}
# The py-spy binary itself, not a version manager's shim (pyenv's adds a few ms of shell).
PYSPY=$(pyenv which py-spy 2>/dev/null || command -v py-spy)
compare "stacks --pid, 100 Python threads" "$LT stacks --pid $PY" "$PYSPY dump --pid $PY"
if [ -n "${BEFORE:-}" ]; then
    LT=$BEFORE compare "stacks --pid, 100 Python threads, build $BEFORE" "$BEFORE stacks --pid $PY" "$PYSPY dump --pid $PY"
fi
[ "${ONLY:-}" = python ] && exit 0

gcc -O0 -g -pthread -o "$tmp/stacks_blocked" tests/targets/stacks_blocked.c
"$tmp/stacks_blocked" 100 >"$tmp/c.out" &
pids+=($!)
wait_ready "$tmp/c.out"
C=${pids[-1]}
compare "stacks --pid, 100 C threads" "$LT stacks --pid $C" "eu-stack -p $C"
