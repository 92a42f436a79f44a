#!/usr/bin/env python3
"""Shutdown time as `lifecycle-top check` reports it vs the target's own exit time.

Runs tests/targets/check/clean_asyncio.py N times (default 20) three ways, same machine,
same run: (1) alone, SIGTERM from here and its exit seen on a pidfd; (2) the same with the
agent loaded and no client; (3) under `lifecycle-top check`, reading `target_exit.after_ms`
from its report. Prints median, min and max of each, and the verdicts seen under check.
Usage: bench/check_shutdown_time.py [N] (build first: cargo build --release).
"""
import json, os, select, signal, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROG = os.path.join(ROOT, "tests/targets/check/clean_asyncio.py")
BIN = os.path.join(ROOT, "target/release/lifecycle-top")
if not os.path.exists(BIN):
    BIN = os.path.join(ROOT, "target/debug/lifecycle-top")
N = int(sys.argv[1]) if len(sys.argv) > 1 else 20


def alone(env):
    p = subprocess.Popen(["python3", PROG], stdout=subprocess.PIPE, env=env)
    p.stdout.readline()
    fd = os.pidfd_open(p.pid)
    t = time.monotonic()
    os.kill(p.pid, signal.SIGTERM)
    select.select([fd], [], [])
    dt = (time.monotonic() - t) * 1000
    p.wait()
    os.close(fd)
    return dt


def under_check():
    with tempfile.TemporaryDirectory() as d:
        r = os.path.join(d, "r.json")
        code = subprocess.call([BIN, "check", "--ready-log", "^READY$", "--report", r, "--",
                                "python3", PROG], stdout=subprocess.DEVNULL)
        return code, json.load(open(r))["target_exit"]["after_ms"]


def show(name, v):
    v = sorted(v)
    print("%-28s median %6.1f ms  min %6.1f  max %6.1f" % (name, statistics.median(v), v[0], v[-1]))


base = dict(os.environ)
with tempfile.TemporaryDirectory() as d:
    agent = dict(base, PYTHONPATH=os.path.join(ROOT, "assets/agent"), LIFECYCLE_TOP_AGENT="1",
                 LIFECYCLE_TOP_SOCKET=os.path.join(d, "a.sock"))
    show("alone, no agent", [alone(base) for _ in range(N)])
    show("alone, agent, no client", [alone(agent) for _ in range(N)])
runs = [under_check() for _ in range(N)]
show("lifecycle-top check", [t for _, t in runs])
print("check exit codes:", sorted(set(c for c, _ in runs)), "over", N, "runs")
