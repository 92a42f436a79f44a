#!/bin/bash
# Screenshots of the real binary under tmux (README): shoot.sh NAME COLS ROWS KEYS...
# A key `waitN` sleeps N seconds. Needs tmux, Pillow (python3-pil) and fonts-dejavu-core.
#   screenshots/shoot.sh dashboard 160 45 6 wait4 2 wait5
#   screenshots/shoot.sh dashboard-80x24 80 24 2 wait5 Tab
set -u
name=$1; cols=$2; rows=$3; shift 3
here=$(cd "$(dirname "$0")" && pwd)
bin=${LIFECYCLE_TOP_BIN:-$here/../target/debug/lifecycle-top}
work=$(mktemp -d)
tmux kill-session -t lt-shot 2>/dev/null
tmux new-session -d -s lt-shot -x "$cols" -y "$rows" "cd $work && $bin demo --interval 200"
for _ in $(seq 1 100); do
  tmux capture-pane -p -t lt-shot | grep -q "AWAITING\|Tab: next" && break
  sleep 0.2
done
sleep 2
for k in "$@"; do
  case $k in
    wait*) sleep "${k#wait}" ;;
    *) tmux send-keys -t lt-shot "$k" ;;
  esac
done
sleep 1
tmux capture-pane -e -p -t lt-shot > "$work/$name.ansi"
# Quit and kill the demo tree.
tmux send-keys -t lt-shot q; sleep 0.5; tmux send-keys -t lt-shot k; sleep 1
tmux kill-session -t lt-shot 2>/dev/null
/usr/bin/python3 "$here/ansi2png.py" "$work/$name.ansi" "$here/$name.png"
rm -rf "$work"
