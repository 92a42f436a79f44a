#!/usr/bin/env python3
"""The agent's delta report build alone, in-process (issue 14): CPU time of building one
report from the task book and encoding its delta, with 100,000 pending tasks of which 1 %
changed since the last build. No socket, no server thread, no client: the figure is the
book's work only (bench/agent_delta.py measures the whole agent through a real client).

A thread of the target plays the agent: it wakes 1 % of the tasks on the loop (10 batches,
each woken task awaits a new future, so its row changes), then calls _build_report and
_Built.delta and reads its thread CPU time. Each agent directory runs in a fresh process,
in turn, round after round (interleaved, so machine load hits both alike).

Run: python3 bench/agent_delta_build.py [--tasks 100000] [--builds 8]
                                        [--agent-dirs OLD_DIR,assets/agent --rounds 4]
"""

import argparse
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
AGENT_DIR = os.path.abspath(os.path.join(HERE, os.pardir, "assets", "agent"))

TARGET = r"""
import asyncio, sys, threading, time
N, BUILDS = int(sys.argv[1]), int(sys.argv[2])
import lifecycle_top_agent as A
res = []
def agent(loop, wake):
    b = A._build_report(A._agent, 1, N)
    b.full()
    base = b.seq
    for r in range(BUILDS):
        for _ in range(10):
            asyncio.run_coroutine_threadsafe(wake(), loop).result()
            time.sleep(0.02)
        c0 = time.thread_time()
        b = A._build_report(A._agent, r + 2, N)
        lines = b.delta(base, b.changed, b.removed, {})
        res.append(((time.thread_time() - c0) * 1e3, len(b.changed), sum(map(len, lines))))
        base = b.seq
async def main():
    loop = asyncio.get_running_loop()
    futs = [None] * N
    async def worker(i):
        while True:
            f = futs[i] = loop.create_future()
            await f
            f = futs[i] = loop.create_future()
            await f
    [loop.create_task(worker(i), name="w%d" % i) for i in range(N)]
    await asyncio.sleep(0.5)
    A.install()
    k = [0]
    per = max(1, N // 1000)
    async def wake():
        for i in range(k[0], k[0] + per):
            f = futs[i % N]
            if not f.done():
                f.set_result(None)
        k[0] += per
    th = threading.Thread(target=agent, args=(loop, wake))
    th.start()
    while th.is_alive():
        await asyncio.sleep(0.01)
    for ms, changed, size in res:
        print("%.3f %d %d" % (ms, changed, size))
asyncio.run(main())
"""


def one(agent_dir, tasks, builds):
    env = dict(os.environ, PYTHONPATH=agent_dir)
    env.pop("LIFECYCLE_TOP_SOCKET", None)
    out = subprocess.run([sys.executable, "-c", TARGET, str(tasks), str(builds)], env=env,
                         stdout=subprocess.PIPE, check=True, timeout=900).stdout.decode()
    rows = [tuple(float(x) for x in line.split()) for line in out.splitlines() if line]
    if len(rows) != builds:
        raise SystemExit("the target printed %d builds, not %d" % (len(rows), builds))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=100000)
    ap.add_argument("--builds", type=int, default=8)
    ap.add_argument("--agent-dirs", default=AGENT_DIR)
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    dirs = [os.path.abspath(d) for d in args.agent_dirs.split(",") if d]
    print("python %s, %d CPUs, %d tasks, 1 %% changed per build"
          % (sys.version.split()[0], os.cpu_count(), args.tasks))
    medians = {d: [] for d in dirs}
    for r in range(args.rounds):
        for d in dirs:
            load = os.getloadavg()[0]
            rows = one(d, args.tasks, args.builds)
            m = statistics.median(x[0] for x in rows[1:] or rows)  # the first warms up
            medians[d].append(m)
            print("round %d  load %5.2f  %s: build + delta median %.1f ms CPU (%d changed, "
                  "%d bytes)" % (r + 1, load, d, m, rows[-1][1], rows[-1][2]))
    for d in dirs:
        ms = medians[d]
        print("%s: median of rounds %.1f ms (%.1f-%.1f)" % (d, statistics.median(ms),
                                                           min(ms), max(ms)))


if __name__ == "__main__":
    main()
