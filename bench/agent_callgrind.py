#!/usr/bin/env python3
"""Agent overhead counted in instructions (issue 14): valgrind's callgrind counts every
instruction of the target (all threads) for a fixed number of asyncio ping-pong operations,
so the figure does not move with the machine's load like a CPU-time ratio does.

Variants: no agent / agent idle (installed, no client) / agent + a subscribed client. Each
runs two operation counts, N and 2N: the per-operation cost is (I(2N) - I(N)) / N and the
start-up cost (import, thread start; with a client also the connection, its first full
report and the one-time loop discovery) is I(N) - N * per-op. Reports are paced by operation
count, not time (under valgrind the program runs ~50x slower, so a timed interval would
ask ~50x more reports per operation): every K operations the target stops, the bench asks
the agent for one report (a re-sent `subscribe`: the next report comes at once; it is a
delta, as lifecycle-top gets them), reads it whole, and lets the target go on. The variants
without a client stop at the same points, so they run the same code.

Run: python3 bench/agent_callgrind.py [--ops 100000] [--every 50000]
Needs valgrind (apt-get install -y valgrind).
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
AGENT_DIR = os.path.abspath(os.path.join(HERE, os.pardir, "assets", "agent"))

TARGET = r"""
import asyncio, os, sys
if os.environ.get("WITH_AGENT"):
    import lifecycle_top_agent
    lifecycle_top_agent.install()
N, K = int(sys.argv[1]), int(sys.argv[2])
def pause(msg):
    sys.stdout.write(msg + "\n"); sys.stdout.flush()
    sys.stdin.readline()
async def pinger(counter, done):
    while True:
        await asyncio.sleep(0)
        counter[0] += 1
        c = counter[0]
        if c % K == 0:
            pause("tick")
        if c >= N:
            done.set_result(None)
            return
async def idle():
    await asyncio.sleep(3600)
async def main():
    bg = [asyncio.create_task(idle()) for _ in range(100)]  # a realistic pending set
    pause("ready")  # the bench's client (if any) connects and subscribes now
    counter = [0]
    done = asyncio.get_running_loop().create_future()
    workers = [asyncio.create_task(pinger(counter, done)) for _ in range(10)]
    await done
    for t in workers + bg:
        t.cancel()
    pause("end")
asyncio.run(main())
"""


class Client:
    def __init__(self, path):
        deadline = time.time() + 600
        while True:
            try:
                self.s = socket.socket(socket.AF_UNIX)
                self.s.connect(path)
                break
            except OSError:
                self.s.close()
                if time.time() > deadline:
                    raise SystemExit("no agent at %s" % path)
                time.sleep(0.1)
        self.f = self.s.makefile("rb")
        self.f.readline()  # hello
        self.send({"type": "hello", "protocol": 1, "accept": ["report_delta"]})
        self.subscribe()

    def send(self, m):
        self.s.sendall((json.dumps(m) + "\n").encode())

    def subscribe(self):
        self.send({"type": "subscribe", "interval_ms": 60000})

    def report(self):
        while True:
            m = json.loads(self.f.readline())
            if m["type"] in ("report", "report_delta"):
                for _ in range(m["task_chunks"]):
                    self.f.readline()
                return m["type"]


def instructions(out_file):
    with open(out_file) as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise SystemExit("no instruction total in %s" % out_file)


def run(tmp, variant, ops, every, n):
    sock = os.path.join(tmp, "s%d" % n, "a.sock")
    out = os.path.join(tmp, "cg%d.out" % n)
    env = dict(os.environ)
    for k in ("LIFECYCLE_TOP_AGENT", "LIFECYCLE_TOP_SOCKET", "PYTHONPATH"):
        env.pop(k, None)
    if variant != "no agent":
        # Not for "no agent": with the socket variable set, the agent's sitecustomize on
        # PYTHONPATH would start it there too.
        env.update(WITH_AGENT="1", PYTHONPATH=AGENT_DIR, LIFECYCLE_TOP_SOCKET=sock)
    p = subprocess.Popen(["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out,
                          sys.executable, "-c", TARGET, str(ops), str(every)],
                         env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    kinds = []
    try:
        assert p.stdout.readline() == b"ready\n", "target did not start"
        c = None
        if variant == "agent + client":
            c = Client(sock)
            kinds.append(c.report())  # the first report (full) before the workload
        while True:
            p.stdin.write(b"go\n")
            p.stdin.flush()
            line = p.stdout.readline()
            if line == b"end\n":
                break
            assert line == b"tick\n", line
            if c is not None:
                c.subscribe()
                kinds.append(c.report())
        p.stdin.write(b"bye\n")
        p.stdin.flush()
        p.wait(600)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return instructions(out), kinds


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", type=int, default=100000)
    ap.add_argument("--every", type=int, default=50000, help="operations per report")
    args = ap.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is needed: apt-get install -y valgrind")
    print("python %s, ping-pong operations N=%d and 2N, a report every %d operations"
          % (sys.version.split()[0], args.ops, args.every))
    res = {}
    with tempfile.TemporaryDirectory(prefix="ltcg-") as tmp:
        os.chmod(tmp, 0o700)
        n = 0
        for variant in ("no agent", "agent idle", "agent + client"):
            for ops in (args.ops, 2 * args.ops):
                n += 1
                res[(variant, ops)] = run(tmp, variant, ops, args.every, n)
    base_op = None
    for variant in ("no agent", "agent idle", "agent + client"):
        i1, k1 = res[(variant, args.ops)]
        i2, k2 = res[(variant, 2 * args.ops)]
        per_op = (i2 - i1) / float(args.ops)
        start = i1 - args.ops * per_op
        if base_op is None:
            base_op, base_start = per_op, start
        extra = ""
        if k2:
            extra = "   reports: %s" % ", ".join("%dx %s" % (k2.count(k), k)
                                                 for k in sorted(set(k2)))
        print("%-15s %9.0f instr/op (%+6.2f %%)   start-up %7.1f M instr (%+7.1f M)%s"
              % (variant, per_op, (per_op / base_op - 1) * 100.0, start / 1e6,
                 (start - base_start) / 1e6, extra))


if __name__ == "__main__":
    main()
