#!/usr/bin/env python3
"""Churn soak (issue 11, fault 6): lifecycle-top's TUI watching a target that forks short-lived
children at a steady rate must stay flat in CPU and memory.

Starts a target (10 idle threads, N forks/s, each child exits at once), attaches the dashboard
in a pty of a fixed size (its output drained), samples lifecycle-top's whole-process CPU time
and RSS every --every seconds for --minutes, and prints one line per sample plus the slopes
(CPU % of a core per minute, RSS MB per minute; a least-squares fit over the samples after the
first minute). Whole process, release build: `cargo build --release` first.

    python3 bench/churn_soak.py --minutes 30 --forks 50
"""
import argparse
import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
import time

TARGET = r"""
import os, sys, threading, time
for i in range(10):
    threading.Thread(target=time.sleep, args=(1e6,), name="idle-%d" % i, daemon=True).start()
rate = float(sys.argv[1])
print("ready", flush=True)
while True:
    t = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    time.sleep(max(0.0, 1.0 / rate - (time.monotonic() - t)))
"""


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def slope(xs, ys):
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--forks", type=float, default=50, help="forks per second")
    ap.add_argument("--every", type=float, default=30, help="seconds between samples")
    ap.add_argument("--bin", default=os.path.join(os.path.dirname(__file__), os.pardir,
                                                    "target", "release", "lifecycle-top"))
    ap.add_argument("--interval", default="1000", help="lifecycle-top --interval")
    a = ap.parse_args()
    if not os.access(a.bin, os.X_OK):
        sys.exit("no lifecycle-top at %s: run `cargo build --release` first" % a.bin)
    target = subprocess.Popen([sys.executable, "-c", TARGET, str(a.forks)],
                              stdout=subprocess.PIPE)
    assert target.stdout.readline().strip() == b"ready"
    pid, fd = pty.fork()
    if pid == 0:
        os.environ["TERM"] = "xterm-256color"
        os.execv(a.bin, [a.bin, "--pid", str(target.pid), "--interval", a.interval])
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    stop = threading.Event()

    def drain():
        while not stop.is_set():
            r, _, _ = select.select([fd], [], [], 0.2)
            if r:
                try:
                    if not os.read(fd, 65536):
                        return
                except OSError:
                    return

    threading.Thread(target=drain, daemon=True).start()
    t0 = time.monotonic()
    xs, cpu_pct, rss = [], [], []
    last_cpu, last_t = cpu_s(pid), t0
    print("%8s %10s %9s" % ("minute", "cpu %core", "rss MB"))
    try:
        while time.monotonic() - t0 < a.minutes * 60:
            time.sleep(a.every)
            now, c = time.monotonic(), cpu_s(pid)
            pct = 100.0 * (c - last_cpu) / (now - last_t)
            last_cpu, last_t = c, now
            m = (now - t0) / 60.0
            r = rss_mb(pid)
            print("%8.1f %10.1f %9.1f" % (m, pct, r), flush=True)
            if m > 1.0:
                xs.append(m)
                cpu_pct.append(pct)
                rss.append(r)
    finally:
        stop.set()
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)
        target.kill()
        target.wait()
    print("forks/s %.0f, %.1f min: cpu slope %+.2f %%core/min, rss slope %+.3f MB/min "
          "(after the first minute, %d samples)"
          % (a.forks, a.minutes, slope(xs, cpu_pct), slope(xs, rss), len(xs)))


if __name__ == "__main__":
    main()
