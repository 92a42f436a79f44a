#!/usr/bin/env python3
"""Agent report cost at 100,000 pending tasks (issue 14): delta vs full reports, and the
longest GIL stall the agent causes in the target.

The target runs N pending tasks (default 100,000); a mutator wakes 1 % of them per report
interval (spread over the interval, 10 batches), each woken task awaiting a new future, so
1 % of the rows change between two reports. A ticker thread in the target sleeps 0.5 ms in
a loop and records how late it wakes: the longest lateness is the longest time some other
thread held the GIL (or the machine did not schedule it: the "no client" phase is the
baseline of both). Phases, in one target:
  baseline  no client connected (the app's own stalls + machine noise)
  connect   a client connects (one-time loop discovery, first full report)
  delta     a client that accepts report_delta, 20 reports
  full      a client that does not (protocol as before deltas), 10 reports
Figures: agent CPU per report (its threads' CPU from the report's `cost`), bytes per
report, longest stall per phase.

Run: python3 bench/agent_delta.py [--tasks 100000] [--interval-ms 500]
Before/after in one run: --agent-dirs OLD_DIR,assets/agent --rounds 2 runs each agent
directory in turn, round after round (e.g. OLD_DIR from
`git show main:assets/agent/lifecycle_top_agent.py > /tmp/old/lifecycle_top_agent.py`).
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
AGENT_DIR = os.path.abspath(os.path.join(HERE, os.pardir, "assets", "agent"))

TARGET = r"""
import asyncio, gc, json, sys, threading, time
N = int(sys.argv[1]); PERIOD = float(sys.argv[2])
stall = [0.0]
gc_max, gc_t0, gc_n = [0.0], [0.0], [0]
def on_gc(phase, info):  # garbage collections hold the GIL too: told apart
    if phase == "start":
        # Counted at the start: the waiting ticker may take the GIL inside the "stop"
        # callback (a Python call, where the GIL can change hands) before a count there.
        gc_n[0] += 1
        gc_t0[0] = time.perf_counter()
    else:
        gc_max[0] = max(gc_max[0], time.perf_counter() - gc_t0[0])
gc.callbacks.append(on_gc)
def ticker():
    while True:
        n = gc_n[0]
        t0 = time.perf_counter()
        time.sleep(0.0005)
        late = time.perf_counter() - t0 - 0.0005
        if late > stall[0] and gc_n[0] == n:  # a wait with a collection in it: gc_ms
            stall[0] = late
def control():
    for line in sys.stdin:
        print(json.dumps({"stall_ms": stall[0] * 1000.0, "gc_ms": gc_max[0] * 1000.0}),
              flush=True)
        stall[0] = gc_max[0] = 0.0
async def main():
    loop = asyncio.get_running_loop()
    futs = [None] * N
    async def worker(i):
        while True:  # two await points: a woken task's row changes ("where")
            f = futs[i] = loop.create_future()
            await f
            f = futs[i] = loop.create_future()
            await f
    ts = [loop.create_task(worker(i), name="w%d" % i) for i in range(N)]
    await asyncio.sleep(0.5)
    import lifecycle_top_agent
    lifecycle_top_agent.install()
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


class Client:
    def __init__(self, path, interval_ms, delta, max_tasks):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.connect(path)
        self.f = self.s.makefile("rb")
        self.hello = json.loads(self.f.readline())
        hello = {"type": "hello", "protocol": 1}
        if delta:
            hello["accept"] = ["report_delta"]
        self.s.sendall((json.dumps(hello) + "\n" + json.dumps(
            {"type": "subscribe", "interval_ms": interval_ms, "max_tasks": max_tasks}) + "\n"
        ).encode())

    def report(self):
        """(header, bytes of header + chunks)."""
        while True:
            line = self.f.readline()
            m = json.loads(line)
            if m["type"] in ("report", "report_delta"):
                break
        size = len(line)
        for _ in range(m["task_chunks"]):
            size += len(self.f.readline())
        return m, size

    def close(self):
        self.s.close()


def stall(p, raw=None):
    p.stdin.write(b"q\n")
    p.stdin.flush()
    m = json.loads(p.stdout.readline())
    if raw is not None:
        raw.append(m["stall_ms"])
    return "%6.2f ms outside collections (longest collection %.1f ms)" % (m["stall_ms"], m["gc_ms"])


def run_client(p, sock, interval_ms, delta, n, tasks, slices, figures=None):
    c = Client(sock, interval_ms, delta, tasks)
    try:
        first, first_size = c.report()
        stall(p)  # the connection's one-time costs are in the connect figure
        sizes, cpu, kinds = [], [], []
        prev = first["cost"]["cpu_ms"]
        for _ in range(n):
            m, size = c.report()
            slices.append((m["cost"].get("max_slice_ms") or 0.0,
                           m["cost"].get("max_slice_cpu_ms") or 0.0))
            kinds.append(m["type"])
            sizes.append(size)
            cpu.append(m["cost"]["cpu_ms"] - prev)
            prev = m["cost"]["cpu_ms"]
        return first, first_size, sizes, cpu, kinds, stall(p)
    finally:
        c.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=100000)
    ap.add_argument("--interval-ms", type=int, default=500)
    ap.add_argument("--reports", type=int, default=20)
    ap.add_argument("--agent-dirs", default=AGENT_DIR,
                    help="comma-separated agent directories, measured in turn")
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    print("python %s, %d CPUs, load avg %.2f, %d tasks, 1 %% woken per %d ms"
          % (sys.version.split()[0], os.cpu_count(), os.getloadavg()[0], args.tasks,
             args.interval_ms))
    dirs = [os.path.abspath(d) for d in args.agent_dirs.split(",") if d]
    summary = {d: [] for d in dirs}
    for r in range(args.rounds):
        for d in dirs:
            print("\n== round %d, agent %s (load avg %.2f)" % (r + 1, d, os.getloadavg()[0]))
            summary[d].append(one(args, d))
    if len(dirs) > 1 or args.rounds > 1:
        print("\nsummary (per round: delta CPU median ms, longest stall during deltas ms, "
              "at connect ms)")
        for d in dirs:
            print("  %s: %s" % (d, "; ".join("%.1f, %.1f, %.1f" % x for x in summary[d])))


def one(args, agent_dir):
    with tempfile.TemporaryDirectory(prefix="ltdelta-") as tmp:
        os.chmod(tmp, 0o700)
        sock = os.path.join(tmp, "run", "a.sock")
        env = dict(os.environ, PYTHONPATH=agent_dir, LIFECYCLE_TOP_SOCKET=sock)
        p = subprocess.Popen([sys.executable, "-c", TARGET, str(args.tasks),
                              str(args.interval_ms / 1000.0)],
                             env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            if p.stdout.readline() != b"ready\n":
                raise SystemExit("target did not start")
            stall(p)
            time.sleep(3)
            base = stall(p)
            t0 = time.time()
            c = Client(sock, args.interval_ms, True, args.tasks)
            first, first_size = c.report()
            raw = []
            connect = stall(p, raw)
            c.close()
            print("baseline (no client, 3 s)       longest stall %s" % base)
            print("connect + first full report     longest stall %s   (%.1f s, %.0f KiB,"
                  " agent CPU so far %.0f ms)" % (connect, time.time() - t0, first_size / 1024,
                                                  first["cost"]["cpu_ms"]))
            for label, delta, n in (("delta", True, args.reports),
                                    ("full ", False, max(5, args.reports // 2))):
                slices = []
                f, fsize, sizes, cpu, kinds, st = run_client(
                    p, sock, args.interval_ms, delta, n, args.tasks, slices)
                if delta:
                    fig = (statistics.median(cpu), float(st.split()[0]), raw[0])
                print("%s client: %d reports (%s)" % (label, n, ", ".join(
                    "%dx %s" % (kinds.count(k), k) for k in sorted(set(kinds)))))
                print("   agent CPU per report  median %6.1f ms  max %6.1f ms"
                      % (statistics.median(cpu), max(cpu)))
                print("   bytes per report      median %8.0f  (%.1f %% of its first, full "
                      "report: %d bytes)" % (statistics.median(sizes),
                                             100.0 * statistics.median(sizes) / fsize, fsize))
                print("   longest GIL stall     %s" % st)
                print("   agent's longest work between two GIL yields: %.2f ms wall, %.2f ms "
                      "CPU (cost.max_slice_ms / max_slice_cpu_ms)"
                      % (max(x[0] for x in slices), max(x[1] for x in slices)))
            print("goals: delta < 20 ms agent CPU and < 10 % of a full report's bytes; no "
                  "stall over 5 ms caused by the agent")
            return fig
        finally:
            p.kill()
            p.wait()


if __name__ == "__main__":
    main()
