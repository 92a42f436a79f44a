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

Creation-site recording (issue 10): `--workload create_task` counts N and 2N calls of
`asyncio.create_task(noop())` (each task then runs to completion: the cheapest task there
is, so the recording's share is the largest it can be) with no agent, with the agent
(the stdlib create_task re-compiled with the recording spliced in) and with the agent's
fallback wrapper (LIFECYCLE_TOP_AGENT_WRAP_CREATE_TASK=1); `--workload thread_start` the
same for `Thread(target=f).start(); join()`. No client: the recording does not depend on one.

`--floor` adds lower bounds: loop.create_task spliced with only `sys._getframe(2)`, only the
per-task attribute store, or both (the cheapest complete recording: no check of which frame
is the creator's, the creator known to be two frames up). `--work`: each task awaits
`asyncio.sleep(0)` once (a task that does minimal real work).

`--origin` compares with "cr_origin depth 1" (instead of the wrapper; on ping-pong, instead of
the agent variants): no agent, `sys.set_coroutine_origin_tracking_depth(1)`
(CPython records each coroutine's creating frame, in C, as `cr_origin`): its cost per
create_task, and on ping-pong its cost on every coroutine call (each `await asyncio.sleep(0)`
makes one), since it records every coroutine, not only tasks'.

Run: python3 bench/agent_callgrind.py [--ops 100000] [--every 50000] [--origin]
     python3 bench/agent_callgrind.py --workload create_task [--ops 20000] [--floor] [--work]
                                      [--origin]
     python3 bench/agent_callgrind.py --workload thread_start [--ops 2000]
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
if os.environ.get("ORIGIN"):
    sys.set_coroutine_origin_tracking_depth(int(os.environ["ORIGIN"]))
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


CREATE_TASK = r"""
import os, sys
if os.environ.get("ORIGIN"):
    sys.set_coroutine_origin_tracking_depth(int(os.environ["ORIGIN"]))
if os.environ.get("WITH_AGENT"):
    import lifecycle_top_agent
    lifecycle_top_agent.install()
import asyncio
if os.environ.get("FLOOR"):  # the cheapest recordings there can be (see FLOORS)
    import asyncio.base_events as be, lifecycle_top_agent as lt
    orig = be.BaseEventLoop.create_task
    be.BaseEventLoop.create_task = lt._splice(be, orig, lt._CT_HEAD, lt._CT_VARIANTS, {
        "record": os.environ["FLOOR"], "consume": "", "nonlocal": ""}, frozenset())
    assert be.BaseEventLoop.create_task is not None
N = int(sys.argv[1])
WORK = bool(os.environ.get("WORK"))
async def noop():
    if WORK:
        await asyncio.sleep(0)
async def main():
    for _ in range(N // 100):
        for _ in range(100):
            asyncio.create_task(noop())
        await asyncio.sleep(0)
        await asyncio.sleep(0)
asyncio.run(main())
if os.environ.get("WITH_AGENT"):
    want = os.environ.get("EXPECT_HOOK")
    got = lifecycle_top_agent._create_task_hook[0]
    assert got == want, (got, want)
"""

# Lower bounds (--floor): loop.create_task spliced with only part of a recording, knowing
# where the creator is (two frames up: asyncio.create_task's caller) with no check at all.
FLOORS = (
    ("floor: _getframe(2)", "        f = _getframe(2)"),
    ("floor: setattr", "        task._lifecycle_top_created = None"),
    ("floor: both", "        f = _getframe(2)\n"
                    "        task._lifecycle_top_created = f.f_code, f.f_lasti"),
)

THREAD_START = r"""
import os, sys, threading
if os.environ.get("WITH_AGENT"):
    import lifecycle_top_agent
    lifecycle_top_agent.install()
N = int(sys.argv[1])
def f():
    pass
for _ in range(N):
    t = threading.Thread(target=f)
    t.start()
    t.join()
"""


# --origin: no agent, sys.set_coroutine_origin_tracking_depth(1) (CPython records every
# coroutine's creating frame in C as cr_origin, the candidate C-level creation site).
ORIGIN_VARIANT = "cr_origin depth 1"


def run_simple(tmp, script, variant, ops, n, work=False):
    """Instructions of `script` with `ops` operations under one variant."""
    out = os.path.join(tmp, "cg%d.out" % n)
    env = dict(os.environ)
    for k in ("LIFECYCLE_TOP_AGENT", "LIFECYCLE_TOP_SOCKET", "PYTHONPATH",
              "LIFECYCLE_TOP_AGENT_WRAP_CREATE_TASK", "FLOOR", "WORK", "ORIGIN"):
        env.pop(k, None)
    env["PYTHONHASHSEED"] = "0"  # the same dict layouts in every run
    if work:
        env["WORK"] = "1"
    floor = dict(FLOORS).get(variant)
    if variant == ORIGIN_VARIANT:
        env["ORIGIN"] = "1"  # no agent: CPython's own C-level record, nothing else
    elif floor is not None:
        env.update(FLOOR=floor, PYTHONPATH=AGENT_DIR)
    elif variant != "no agent":
        env.update(WITH_AGENT="1", PYTHONPATH=AGENT_DIR,
                   LIFECYCLE_TOP_SOCKET=os.path.join(tmp, "s%d" % n, "a.sock"),
                   EXPECT_HOOK="spliced")
        if variant == "agent, wrapper":
            env.update(LIFECYCLE_TOP_AGENT_WRAP_CREATE_TASK="1", EXPECT_HOOK="wrapped")
    r = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out,
                        sys.executable, "-c", script, str(ops)], env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=1200)
    if r.returncode != 0:
        raise SystemExit("%s (%s) failed: %s" % (variant, ops, r.stderr.decode()[-2000:]))
    return instructions(out)


def main_simple(workload, ops, floor=False, work=False, origin=False):
    script = CREATE_TASK if workload == "create_task" else THREAD_START
    variants = ["no agent", "agent"]
    if workload == "create_task":
        if origin:
            variants.append(ORIGIN_VARIANT)
        else:
            variants += [name for name, _ in FLOORS] if floor else ["agent, wrapper"]
    print("python %s, %s%s: N=%d and 2N operations" % (
        sys.version.split()[0], workload,
        " (each task awaits asyncio.sleep(0) once)" if work else " (empty tasks)", ops))
    res = {}
    with tempfile.TemporaryDirectory(prefix="ltcg-") as tmp:
        os.chmod(tmp, 0o700)
        n = 0
        for variant in variants:
            for k in (ops, 2 * ops):
                n += 1
                res[(variant, k)] = run_simple(tmp, script, variant, k, n, work)
    base = None
    for variant in variants:
        per_op = (res[(variant, 2 * ops)] - res[(variant, ops)]) / float(ops)
        base = per_op if base is None else base
        print("%-20s %9.0f instr/op (%+6.2f %%, %+5.0f)" % (
            variant, per_op, (per_op / base - 1) * 100.0, per_op - base))


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
    for k in ("LIFECYCLE_TOP_AGENT", "LIFECYCLE_TOP_SOCKET", "PYTHONPATH", "ORIGIN"):
        env.pop(k, None)
    if variant == ORIGIN_VARIANT:
        env["ORIGIN"] = "1"
    elif variant != "no agent":
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
    ap.add_argument("--workload", choices=("pingpong", "create_task", "thread_start"),
                    default="pingpong")
    ap.add_argument("--floor", action="store_true",
                    help="create_task: also the cheapest recordings there can be (lower bounds)")
    ap.add_argument("--work", action="store_true",
                    help="create_task: each task awaits asyncio.sleep(0) once (minimal real work)")
    ap.add_argument("--origin", action="store_true",
                    help="also no agent with sys.set_coroutine_origin_tracking_depth(1) "
                         "(create_task, pingpong)")
    args = ap.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is needed: apt-get install -y valgrind")
    if args.workload != "pingpong":
        main_simple(args.workload, args.ops, args.floor, args.work, args.origin)
        return
    print("python %s, ping-pong operations N=%d and 2N, a report every %d operations"
          % (sys.version.split()[0], args.ops, args.every))
    variants = ["no agent", "agent idle", "agent + client"]
    if args.origin:  # only what cr_origin costs every coroutine call
        variants = ["no agent", ORIGIN_VARIANT]
    res = {}
    with tempfile.TemporaryDirectory(prefix="ltcg-") as tmp:
        os.chmod(tmp, 0o700)
        n = 0
        for variant in variants:
            for ops in (args.ops, 2 * args.ops):
                n += 1
                res[(variant, ops)] = run(tmp, variant, ops, args.every, n)
    base_op = None
    for variant in variants:
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
