"""Whole-process wall time of two commands, interleaved (A B A B ...: a shared machine's load
drifts, and alternating puts both under the same drift). Two warm-up rounds are excluded.
Each run starts 0.5 s after the previous one ended, untimed: a capture that ptrace-stops the
target (`py-spy dump`, `eu-stack`) leaves its threads waking up for a while, which would
slow down whichever capture came next.
Prints both medians, the ratio of the medians and the spread of the per-round ratios.

    python3 bench/interleave.py RUNS NAME "OURS ..." "THEIRS ..."
"""
import statistics
import subprocess
import sys
import time


def once(cmd):
    time.sleep(0.5)
    t0 = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return (time.perf_counter() - t0) * 1e3


def main():
    runs, name = int(sys.argv[1]), sys.argv[2]
    ours, theirs = sys.argv[3].split(), sys.argv[4].split()
    a, b = [], []
    for i in range(runs + 2):
        x, y = once(ours), once(theirs)
        if i >= 2:
            a.append(x)
            b.append(y)
    ratios = sorted(x / y for x, y in zip(a, b))
    ma, mb = statistics.median(a), statistics.median(b)
    q = lambda p: ratios[min(len(ratios) - 1, int(p * len(ratios)))]
    print(
        f"{name}: lifecycle-top {ma:.1f} ms, {theirs[0]} {mb:.1f} ms "
        f"(whole process, cold, median of {runs} interleaved): ratio {ma / mb:.2f}x "
        f"(per-round ratios p25-p75 {q(0.25):.2f}-{q(0.75):.2f})"
    )


main()
