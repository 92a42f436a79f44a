"""Limits of the Python agent against real targets over the real socket: requests in flight
per connection, a client that does not read, lines that would pass the 1 MiB cap (report
header, `stacks`), what a forked child keeps of the agent, and clients of the same uid that
misbehave: too many connections, a host with few fds, unfinished lines, a flood of lines, a
line nested 100,000 deep.

Run: python3 -m unittest discover -s assets/agent/tests   (from the repo root)
"""

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
import unittest

import test_agent

AGENT_DIR = test_agent.AGENT_DIR

BIG = textwrap.dedent("""
    import threading, concurrent.futures
    import lifecycle_top_agent as agent
    pools = [concurrent.futures.ThreadPoolExecutor(1) for _ in range(12000)]
    ev = threading.Event()
    name = "deep_" + "x" * 5000
    exec("def %s(n):\\n    return %s(n - 1) if n else ev.wait()\\n" % (name, name), globals())
    threading.Thread(target=globals()[name], args=(300,), name="deep", daemon=True).start()
    print("ready", flush=True)
    ev.wait()
""")


class LimitsTest(unittest.TestCase):
    target = test_agent.AgentTest.target
    client = test_agent.AgentTest.client

    def test_requests_in_flight_are_capped_with_busy(self):
        t = self.target()
        c = self.client(t.sock)
        for rid in range(1, 9):
            c.send({"type": "request", "id": rid, "method": "run_phase",
                    "params": {"name": "slow", "timeout_ms": 1000}})
        got = {}
        while len(got) < 8:
            m = c.read()
            if m["type"] == "response":
                self.assertNotIn(m["id"], got, "two responses to one id")
                got[m["id"]] = m
        codes = sorted((m.get("error") or {}).get("code") or "ok" for m in got.values())
        self.assertEqual(codes.count("busy"), 4, codes)
        self.assertEqual(codes.count("timeout"), 4, codes)

    def test_task_stacks_of_a_blocked_loop_answer_within_the_request(self):
        t = self.target(env={"BLOCK": "1"})
        c = self.client(t.sock, subscribe_ms=100)
        for _ in range(20):
            if c.report()["loops"][0]["blocked"]:
                break
        m = c.request("task_stacks", {"timeout_ms": 200})
        self.assertTrue(m["ok"], m)
        self.assertIn("swallower", [x["name"] for x in m["result"]["tasks"]])
        m = c.request("close_loop", {"timeout_ms": 200})
        self.assertEqual(m["result"]["loops"][0]["result"], "running")

    def test_client_that_does_not_read_is_disconnected(self):
        t = self.target()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(s.close)
        # A generous bound, not a speed limit: the agent works through the flood at 5 % of
        # a core (measured in its own CPU time), which takes long on a loaded machine (20 s
        # timed out at load 50).
        s.settimeout(180)
        s.connect(t.sock)
        try:
            s.sendall(b"x\n" * 200000)  # each line earns a ~100-byte bad_json error
        except OSError:
            pass  # the agent may already have closed the connection
        received = 0
        try:
            while True:
                data = s.recv(1 << 20)
                if not data:
                    break
                received += len(data)
        except ConnectionResetError:
            pass
        self.assertLess(received, 8 << 20, "the agent buffered past its cap")
        # The agent keeps serving other clients.
        self.assertTrue(self.client(t.sock).request("ping")["ok"])

    def test_big_header_and_deep_stacks_fit_the_line_cap(self):
        t = self.target(script=BIG)
        c = self.client(t.sock, subscribe_ms=1000)
        r = c.report()  # Client.read asserts every line fits the cap
        self.assertEqual(r["executors_total"], 12000)
        self.assertLess(len(r["executors"]), 12000)
        deep = [x for x in r["threads"] if x["name"] == "deep"][0]
        res = c.request("stacks", {"native_ids": [deep["native_id"]], "limit": 1000})["result"]
        self.assertEqual([x["name"] for x in res["threads"]], ["deep"])
        self.assertLess(res["frames_limit"], 300)
        frames = res["threads"][0]["frames"]
        self.assertTrue(any(f["function"].startswith("deep_") for f in frames))
        every = c.request("stacks", {"limit": 1000})
        self.assertTrue(every["ok"], every)


FEW_FDS = textwrap.dedent("""
    import resource, sys, tempfile, os
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    print("ready", flush=True)
    sys.stdin.readline()
    held, err = [], None
    try:
        for _ in range(40):
            held.append(tempfile.TemporaryFile())
    except OSError as exc:
        err = exc
    print("opened %d %s" % (len(held), err), flush=True)
    sys.stdin.readline()
""")


def raw(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(10)
        s.connect(path)
    except OSError:
        s.close()
        raise
    return s


def first_line(s):
    data = b""
    while not data.endswith(b"\n"):
        got = s.recv(65536)
        if not got:
            break
        data += got
    return json.loads(data.split(b"\n")[0]) if data else None


class AbuseTest(unittest.TestCase):
    """Clients of the host's own uid that misbehave: the host and other clients keep going."""
    target = test_agent.AgentTest.target
    client = test_agent.AgentTest.client

    def test_connections_over_the_cap_get_too_many_clients(self):
        t = self.target()
        held = []
        self.addCleanup(lambda: [s.close() for s in held])
        for _ in range(16):
            held.append(raw(t.sock))
            self.assertEqual(first_line(held[-1])["type"], "hello")
        extra = raw(t.sock)
        self.addCleanup(extra.close)
        m = first_line(extra)
        self.assertEqual((m["type"], m["code"]), ("error", "too_many_clients"), m)
        self.assertEqual(extra.recv(10), b"", "refused connections are closed")
        held.pop().close()  # a slot freed is a slot the next client gets
        self.assertTrue(self.client(t.sock).request("ping")["ok"])

    def test_a_host_with_few_fds_keeps_them(self):
        import shutil
        import subprocess as sp
        import tempfile
        d = tempfile.mkdtemp(prefix="ltlimits-")
        self.addCleanup(shutil.rmtree, d, True)
        sock = os.path.join(d, "run", "agent.sock")
        e = dict(os.environ, PYTHONPATH=AGENT_DIR, LIFECYCLE_TOP_SOCKET=sock)
        p = sp.Popen([sys.executable, "-c", FEW_FDS], env=e, stdin=sp.PIPE, stdout=sp.PIPE,
                     stderr=sp.PIPE)
        self.addCleanup(lambda: (p.kill(), p.wait(), p.stdout.close(), p.stderr.close(),
                                 p.stdin.close()))
        self.assertEqual(p.stdout.readline().strip(), b"ready")
        deadline = time.time() + 10
        while not os.path.exists(sock):
            self.assertLess(time.time(), deadline, "no agent socket")
            time.sleep(0.02)
        socks = []
        self.addCleanup(lambda: [s.close() for s in socks])
        for _ in range(60):  # the agent serves 64 // 64 -> 2 of them at once, refuses the rest
            try:
                socks.append(raw(sock))
            except OSError:
                break
        time.sleep(0.5)
        cpu0 = _cpu_of(p.pid)
        time.sleep(1.0)
        spun = _cpu_of(p.pid) - cpu0
        p.stdin.write(b"go\n")
        p.stdin.flush()
        out = p.stdout.readline().decode()
        self.assertEqual(out.split()[:2], ["opened", "40"], out)
        self.assertLess(spun, 0.5, "the host spun %.2f s of CPU in 1 s" % spun)

    def test_deeply_nested_line_gets_bad_json(self):
        t = self.target()
        c = self.client(t.sock)
        c.s.sendall(b"[" * 100000 + b"]" * 100000 + b"\n")
        while True:
            m = c.read()
            if m["type"] == "error":
                break
        self.assertEqual(m["code"], "bad_json", m)
        self.assertTrue(c.request("ping")["ok"], "the connection keeps working")

    def test_unfinished_lines_are_capped_in_total(self):
        t = self.target()
        socks = []
        self.addCleanup(lambda: [s.close() for s in socks])
        chunk = b"x" * (900 << 10)  # under the 1 MiB line cap each, 8 of them over 4 MiB
        codes = []
        for _ in range(8):
            s = raw(t.sock)
            socks.append(s)
            first_line(s)
            try:
                s.sendall(chunk)
            except OSError:
                pass  # closed by the agent while sending: its last words are read below
            s.settimeout(0.5)
            try:
                m = first_line(s)
            except socket.timeout:
                continue  # no answer to an unfinished line: it is being held
            self.assertIsNotNone(m, "closed without a word")
            codes.append(m.get("code"))
            break
        self.assertEqual(codes, ["buffer_full"], "the 5th 900 KiB line passes 4 MiB in total")
        self.assertTrue(self.client(t.sock).request("ping")["ok"])

    def test_a_flood_of_lines_costs_the_host_little_cpu(self):
        t = self.target()
        c = self.client(t.sock)
        flood = raw(t.sock)
        self.addCleanup(flood.close)
        first_line(flood)
        cpu0, wall0 = _cpu_of(t.proc.pid), time.monotonic()
        block = b"\n" * (1 << 20)
        flood.settimeout(0.2)
        while time.monotonic() - wall0 < 3.0:
            try:
                flood.sendall(block)
            except socket.timeout:
                pass
        share = (_cpu_of(t.proc.pid) - cpu0) / (time.monotonic() - wall0)
        cost = c.request("ping") and _agent_cost(c)
        self.assertGreater(cost["throttled_ms"], 0, cost)
        self.assertLess(share, 0.3, "the host spent %.0f %% of a core on the flood" % (share * 100))


LEAK_HOST = textwrap.dedent("""
    import asyncio, gc, sys, threading
    gc.disable()  # garbage in reference cycles would pile up: exactly what is checked
    def ask():
        for _ in sys.stdin:
            print(sys.getallocatedblocks(), flush=True)
    async def main():
        for _ in range(2000):
            asyncio.ensure_future(asyncio.sleep(3600))
        threading.Thread(target=ask, daemon=True).start()
        print("ready", flush=True)
        await asyncio.sleep(3600)
    asyncio.run(main())
""")


class MemoryTest(unittest.TestCase):
    def test_reports_leave_no_garbage_cycles(self):
        # sys._current_frames() held in a local made a cycle through the reporting thread's
        # own frame, keeping each report's rows alive until a full collection (the host grew
        # by megabytes a second with one subscribed client).
        import shutil
        import subprocess as sp
        import tempfile
        d = tempfile.mkdtemp(prefix="ltleak-")
        self.addCleanup(shutil.rmtree, d, True)
        sock = os.path.join(d, "run", "agent.sock")
        e = dict(os.environ, PYTHONPATH=AGENT_DIR, LIFECYCLE_TOP_SOCKET=sock)
        p = sp.Popen([sys.executable, "-c", LEAK_HOST], env=e, stdin=sp.PIPE, stdout=sp.PIPE)
        self.addCleanup(lambda: (p.kill(), p.wait(), p.stdout.close(), p.stdin.close()))
        self.assertEqual(p.stdout.readline().strip(), b"ready")
        deadline = time.time() + 10
        while not os.path.exists(sock):
            self.assertLess(time.time(), deadline, "no agent socket")
            time.sleep(0.02)
        c = test_agent.Client(sock, subscribe_ms=50)
        self.addCleanup(c.close)

        def blocks_after(n):
            for _ in range(n):
                self.assertGreaterEqual(len(c.report()["tasks"]), 2000)
            p.stdin.write(b"?\n")
            p.stdin.flush()
            return int(p.stdout.readline())

        first = blocks_after(5)
        grown = blocks_after(20) - first
        # A leak of the rows alone is 2,000 tuples per report: 40,000 blocks in 20 reports.
        self.assertLess(grown, 10000, "%d blocks more after 20 reports" % grown)


def _cpu_of(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _agent_cost(c):
    c.send({"type": "subscribe", "interval_ms": 50})
    while True:
        m = c.read()
        if m["type"] == "report":
            return m["cost"]


class ForkTest(unittest.TestCase):
    def test_forked_child_closes_the_agent_fds(self):
        code = textwrap.dedent("""
            import os, warnings
            warnings.simplefilter("ignore", DeprecationWarning)
            import lifecycle_top_agent as a
            a.install()
            srv = a._agent
            fds = [srv.lsock.fileno(), srv.wake_r, srv.wake_w]
            pid = os.fork()
            if pid == 0:
                still = []
                for fd in fds:
                    try:
                        os.fstat(fd)
                        still.append(fd)
                    except OSError:
                        pass
                os._exit(5 if still else 0)
            _, status = os.waitpid(pid, 0)
            print(status >> 8)
        """)
        env = dict(os.environ, PYTHONPATH=AGENT_DIR)
        env.pop("LIFECYCLE_TOP_SOCKET", None)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, timeout=20)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(out.stdout.split(), ["0"], out.stderr)


if __name__ == "__main__":
    unittest.main()
