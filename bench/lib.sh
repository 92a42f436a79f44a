# Shared by the bench scripts that compare cold commands (sourced, not run):
#   need_tools "HINT" TOOL...   fail with one line naming a missing tool and how to get it
#   $tmp, pids+=(PID)           a scratch directory and the workloads killed on exit, with
#                               their process group when they lead one (start them with
#                               `setsid CMD &`: their children go too)
#   lt_binary                   sets LT: the given build, else a fresh release build
#   compare NAME OURS THEIRS    interleaved whole-process runs (bench/interleave.py)
need_tools() {
    local hint=$1
    shift
    for tool in "$@"; do
        command -v "$tool" >/dev/null || {
            echo "error: '$tool' not found: install it to run this benchmark ($hint)" >&2
            exit 1
        }
    done
}
tmp=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -9 -- "-$p" "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
lt_binary() {
    if [ -z "${LT:-}" ]; then
        cargo build --quiet --release --bin lifecycle-top
        LT=$PWD/target/release/lifecycle-top
    fi
}
compare() { python3 bench/interleave.py "$RUNS" "$@"; }
