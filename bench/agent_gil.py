#!/usr/bin/env python3
"""How long the agent's report work keeps the target's other threads from the GIL (issue 14:
"no per-report walk holds the GIL more than 5 ms at a time"), told apart from the stalls the
target and the machine cause anyway.

One target: N pending tasks (default 100,000), a mutator waking 1 % of them per report
interval, the agent installed, and a ticker thread that sleeps 0.5 ms in a loop and records
how late each wake-up is (a wake-up with a garbage collection in it is left out: collections
stop every thread whoever triggers them). In the same process the bench alternates phases
of PHASE seconds, many times: no client connected, then a client subscribed to deltas (the
protocol's usual client), and so on (interleaved, so machine load hits both alike). The
target wraps the agent's `_build_report` and `_Built.delta`/`full` to stamp when a report
is being built, so every late wake-up is classed:
  idle     no client connected (the app's own stalls + machine noise: the baseline)
  report   a client connected, the wake-up overlaps a report being built (the agent's work)
  between  a client connected, no report being built
A stall caused by the agent shows as a `report` tail longer than `idle`'s and `between`'s.
CPython's switch interval (sys.getswitchinterval(), 5 ms) is the longest a thread waits
before the holder is asked to drop the GIL, so lateness up to about that much is what any
busy thread costs a waiter; more means a stretch the holder spent without a chance to drop
it (a C-level call over many objects, a collection) or a machine that did not run the ticker.

Run: python3 bench/agent_gil.py [--tasks 100000] [--phases 8] [--phase-s 4]
     [--agent-dirs OLD_DIR,assets/agent]   (one target per directory, in turn, per round)
     [--attribute _task_refs,_TaskBook.update,_Slicer.tick,_encode]  (what late ones overlap)
Read the load average it prints: on 2 shared cores, `idle` itself has 10-50 ms tails at
load 5, so judge the classes against each other, in the same run.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
AGENT_DIR = os.path.abspath(os.path.join(HERE, os.pardir, "assets", "agent"))

TARGET = r"""
import asyncio, gc, json, sys, threading, time
N = int(sys.argv[1]); PERIOD = float(sys.argv[2]); ATTRIBUTE = sys.argv[3]
pc = time.perf_counter
gc_n = [0]
def on_gc(phase, info):
    if phase == "start":
        gc_n[0] += 1
gc.callbacks.append(on_gc)
spans = []    # (start, end) of report work on the agent thread
lat = []      # (wake-up start, lateness s) of every ticker wake-up without a collection
def ticker():
    while True:
        n = gc_n[0]
        t0 = pc()
        time.sleep(0.0005)
        t1 = pc()
        if gc_n[0] == n:
            lat.append((t0, t1 - t0 - 0.0005))
def stamp(fn):
    def wrapped(*a, **k):
        t0 = pc()
        try:
            return fn(*a, **k)
        finally:
            spans.append((t0, pc()))
    return wrapped
labelled = []  # (start, end, name) of the agent functions named in ATTRIBUTE
def label(fn, name):
    def wrapped(*a, **k):
        t0 = pc()
        try:
            return fn(*a, **k)
        finally:
            labelled.append((t0, pc(), name))
    return wrapped
def control():
    for line in sys.stdin:
        out = {"lat": lat[:], "spans": spans[:], "labelled": labelled[:], "now": pc()}
        del lat[:], spans[:], labelled[:]
        print(json.dumps(out), flush=True)
async def main():
    loop = asyncio.get_running_loop()
    futs = [None] * N
    async def worker(i):
        while True:
            f = futs[i] = loop.create_future()
            await f
            f = futs[i] = loop.create_future()
            await f
    ts = [loop.create_task(worker(i), name="w%d" % i) for i in range(N)]
    await asyncio.sleep(0.5)
    import lifecycle_top_agent as A
    for name in filter(None, ATTRIBUTE.split(",")):
        owner, _, attr = name.rpartition(".")
        obj = getattr(A, owner) if owner else A
        setattr(obj, attr, label(getattr(obj, attr), name))
    A._build_report = stamp(A._build_report)
    A._Built.delta = stamp(A._Built.delta)
    A._Built.full = stamp(A._Built.full)
    A.install()
    threading.Thread(target=ticker, daemon=True).start()
    threading.Thread(target=control, daemon=True).start()
    print("ready", flush=True)
    k = 0
    per = max(1, N // 100 // 10)
    while True:
        await asyncio.sleep(PERIOD / 10)
        for i in range(k, k + per):
            f = futs[i % N]
            if not f.done():
                f.set_result(None)
        k += per
asyncio.run(main())
"""


def connect(path, interval_ms, max_tasks):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    s.makefile("rb").readline()  # hello
    s.sendall((json.dumps({"type": "hello", "protocol": 1, "accept": ["report_delta"]})
               + "\n" + json.dumps({"type": "subscribe", "interval_ms": interval_ms,
                                    "max_tasks": max_tasks}) + "\n").encode())
    return s


class Reader:
    """Reads and drops what the agent sends (a client that keeps up), on a thread."""

    def __init__(self, s):
        import threading
        self.s = s
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        try:
            while self.s.recv(1 << 20):
                pass
        except OSError:
            pass


def collect(p):
    p.stdin.write(b"q\n")
    p.stdin.flush()
    return json.loads(p.stdout.readline())


def classify(m, client, out, where):
    spans = m["spans"]
    for t0, late in m["lat"]:
        if not client:
            out["idle"].append(late)
            continue
        t1 = t0 + 0.0005 + late
        hit = any(a < t1 and b > t0 for a, b in spans)
        out["report" if hit else "between"].append(late)
        if hit and late > 0.005:
            # Which of the labelled agent functions ran during this late wake-up.
            names = sorted({nm for a, b, nm in m["labelled"] if a < t1 and b > t0})
            key = " + ".join(names) or "(none of the labelled)"
            where[key] = where.get(key, 0) + 1


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000.0 if xs else float("nan")


def summary(out):
    lines = []
    for k in ("idle", "report", "between"):
        xs = out[k]
        if not xs:
            lines.append("  %-8s no wake-ups" % k)
            continue
        lines.append("  %-8s %7d wake-ups  p50 %5.2f  p99 %6.2f  p99.9 %6.2f  max %6.2f ms"
                     "   >5 ms: %5d (%.3f %%)  >10 ms: %4d"
                     % (k, len(xs), pct(xs, 0.5), pct(xs, 0.99), pct(xs, 0.999),
                        max(xs) * 1000.0, sum(1 for x in xs if x > 0.005),
                        100.0 * sum(1 for x in xs if x > 0.005) / len(xs),
                        sum(1 for x in xs if x > 0.010)))
    return "\n".join(lines)


def one(args, agent_dir, where):
    out = {"idle": [], "report": [], "between": []}
    with tempfile.TemporaryDirectory(prefix="ltgil-") as tmp:
        os.chmod(tmp, 0o700)
        sock = os.path.join(tmp, "run", "a.sock")
        env = dict(os.environ, PYTHONPATH=agent_dir, LIFECYCLE_TOP_SOCKET=sock)
        p = subprocess.Popen([sys.executable, "-c", TARGET, str(args.tasks),
                              str(args.interval_ms / 1000.0), args.attribute],
                             env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            if p.stdout.readline() != b"ready\n":
                raise SystemExit("target did not start")
            # The first client's connect (loop discovery, the first full report of 5 MB)
            # is a one-time cost, measured by bench/agent_delta.py: done before the phases.
            s = connect(sock, args.interval_ms, args.tasks)
            Reader(s)
            time.sleep(max(3.0, args.interval_ms / 1000.0 * 4))
            s.close()
            time.sleep(1.0)
            collect(p)
            for i in range(args.phases):
                client = i % 2 == 1
                s = None
                if client:
                    s = connect(sock, args.interval_ms, args.tasks)
                    Reader(s)
                    time.sleep(args.interval_ms / 1000.0 * 3)  # its full report first
                    collect(p)
                time.sleep(args.phase_s)
                classify(collect(p), client, out, where)
                if s is not None:
                    s.close()
                    time.sleep(0.5)
                    collect(p)
        finally:
            p.kill()
            p.wait()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=100000)
    ap.add_argument("--interval-ms", type=int, default=500)
    ap.add_argument("--phases", type=int, default=8, help="alternating, idle first")
    ap.add_argument("--phase-s", type=float, default=4.0)
    ap.add_argument("--agent-dirs", default=AGENT_DIR)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--attribute", default="", metavar="NAMES",
                    help="comma-separated agent functions (e.g. _task_refs,_TaskBook.update,"
                         "_Slicer.tick,_encode) to stamp: each `report` wake-up over 5 ms is "
                         "counted by the ones it overlapped")
    args = ap.parse_args()
    dirs = [os.path.abspath(d) for d in args.agent_dirs.split(",") if d]
    print("python %s, %d CPUs, %d tasks, 1 %% woken per %d ms, switch interval %.1f ms"
          % (sys.version.split()[0], os.cpu_count(), args.tasks, args.interval_ms,
             sys.getswitchinterval() * 1000.0))
    for r in range(args.rounds):
        for d in dirs:
            l0 = os.getloadavg()[0]
            where = {}
            out = one(args, d, where)
            print("round %d, agent %s, load avg %.2f -> %.2f" % (r + 1, d, l0,
                                                               os.getloadavg()[0]))
            print(summary(out))
            for key, n in sorted(where.items(), key=lambda kv: -kv[1]):
                print("    %4d late report wake-ups overlapped %s" % (n, key))


if __name__ == "__main__":
    main()
