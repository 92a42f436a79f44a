"""Limits of the Python agent against real targets over the real socket: requests in flight
per connection, a client that does not read, lines that would pass the 1 MiB cap (report
header, `stacks`), and what a forked child keeps of the agent.

Run: python3 -m unittest discover -s assets/agent/tests   (from the repo root)
"""

import os
import socket
import subprocess
import sys
import textwrap
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
        s.settimeout(20)
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
