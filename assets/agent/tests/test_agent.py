"""Tests of the Python agent against real target processes over the real socket.

Run: python3 -m unittest discover -s assets/agent/tests   (from the repo root)
The other-uid test needs root, `useradd` and `setpriv`; it fails loudly without them.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest

AGENT_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))
MAX_LINE = 1 << 20

APP = textwrap.dedent("""
    import asyncio, os, subprocess, threading, time, concurrent.futures
    import lifecycle_top_agent as agent
    stop = threading.Event()
    threading.Thread(target=stop.wait, name="worker-nd").start()
    threading.Thread(target=stop.wait, name="worker-d", daemon=True).start()
    pool = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="pool")
    pool.submit(stop.wait)
    import ctypes
    die_with_parent = lambda: ctypes.CDLL(None).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
    child = subprocess.Popen(["sleep", "60"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, preexec_fn=die_with_parent)
    async def sleeper():
        await asyncio.sleep(3600)
    async def swallower():
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                pass
    async def aphase():
        await asyncio.sleep(0.01)
        return "async-done"
    def slow_phase():
        time.sleep(5)
    loop = asyncio.new_event_loop()
    N = int(os.environ.get("EXTRA_TASKS", "0"))
    tracked = [loop.create_task(sleeper(), name="tracked-%d" % i) for i in range(3 + N)]
    agent.register_tasks(tracked)
    loop.create_task(sleeper(), name="untracked")
    loop.create_task(swallower(), name="swallower")
    agent.register_phase("flush", lambda: "flushed", "flush buffers")
    agent.register_phase("aphase", aphase, "async phase")
    agent.register_phase("slow", slow_phase, "never in time")
    def block():
        time.sleep(30)
    if os.environ.get("BLOCK"):
        loop.call_later(0.3, block)
    loop.call_soon(lambda: print("ready", flush=True))
    try:
        loop.run_forever()
    finally:
        stop.set()
        child.kill()
        time.sleep(float(os.environ.get("LINGER", "0")))
""")


def start_time(pid):
    with open("/proc/%d/stat" % pid, "rb") as f:
        data = f.read()
    return int(data[data.rindex(b")") + 2:].split()[19])


class Target:
    """A python3 running APP with the agent injected through sitecustomize."""

    def __init__(self, script=APP, env=None, sock=None):
        self.dir = tempfile.mkdtemp(prefix="ltagent-")
        self.sock = sock or os.path.join(self.dir, "run", "agent.sock")
        e = dict(os.environ, PYTHONPATH=AGENT_DIR, LIFECYCLE_TOP_SOCKET=self.sock)
        e.update(env or {})
        self.proc = subprocess.Popen([sys.executable, "-c", script], env=e,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def wait_socket(self, path=None, timeout=10):
        path = path or self.sock
        deadline = time.time() + timeout
        while not os.path.exists(path):
            if self.proc.poll() is not None:
                raise AssertionError("target died: %r" % (self.proc.communicate(),))
            if time.time() > deadline:
                raise AssertionError("no agent socket at %s" % path)
            time.sleep(0.02)
        return path

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Client:
    def __init__(self, path, subscribe_ms=None):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(10)
        self.s.connect(path)
        self.f = self.s.makefile("rb")
        self.hello = self.read()
        self.send({"type": "hello", "protocol": 1, "client": {"name": "test"}})
        if subscribe_ms:
            self.send({"type": "subscribe", "interval_ms": subscribe_ms})
        self.next_id = 1

    def send(self, obj):
        self.s.sendall((json.dumps(obj) + "\n").encode())

    def read(self):
        line = self.f.readline(MAX_LINE + 2)
        if not line:
            raise EOFError("agent closed the connection")
        assert len(line) <= MAX_LINE + 1, "line over the cap"
        return json.loads(line)

    def report(self):
        """Next complete report with its tasks reassembled from chunks."""
        while True:
            m = self.read()
            if m["type"] != "report":
                continue
            tasks = []
            for i in range(m["task_chunks"]):
                c = self.read()
                self.check_chunk(c, m["seq"], i)
                for row in c["tasks"]:
                    s = c["strings"]
                    tasks.append({"id": row[0], "loop": row[1], "name": row[2], "state": row[3],
                                  "coro": s[row[4]] if row[4] >= 0 else None,
                                  "where": s[row[5]] if row[5] >= 0 else None,
                                  "tracked": row[6],
                                  "created_at": s[row[7]] if len(row) > 7 and row[7] >= 0
                                  else None})
            m["tasks"] = tasks
            return m

    @staticmethod
    def check_chunk(c, seq, i):
        assert c["type"] == "report_chunk" and c["seq"] == seq and c["index"] == i, c

    def request(self, method, params=None, timeout=10):
        rid = self.next_id
        self.next_id += 1
        self.send({"type": "request", "id": rid, "method": method, "params": params or {}})
        deadline = time.time() + timeout
        while time.time() < deadline:
            m = self.read()
            if m["type"] == "response" and m["id"] == rid:
                return m
        raise AssertionError("no response to %s" % method)

    def close(self):
        self.s.close()


class AgentTest(unittest.TestCase):
    def target(self, **kw):
        t = Target(**kw)
        self.addCleanup(t.close)
        t.wait_socket()
        line = t.proc.stdout.readline()  # the app has registered its phases and tasks
        self.assertEqual(line, b"ready\n", t.proc.stderr.read() if not line else line)
        return t

    def client(self, path, **kw):
        c = Client(path, **kw)
        self.addCleanup(c.close)
        return c

    def test_hello_and_report(self):
        t = self.target()
        c = self.client(t.sock, subscribe_ms=100)
        h = c.hello
        self.assertEqual(h["type"], "hello")
        self.assertEqual(h["protocol"], 1)
        self.assertEqual(h["target"], {"pid": t.proc.pid, "start_time": start_time(t.proc.pid)})
        self.assertIn("cancel_tasks", h["capabilities"])
        self.assertEqual(sorted(p["name"] for p in h["phases"]), ["aphase", "flush", "slow"])
        r = c.report()
        names = {th["name"]: th for th in r["threads"]}
        self.assertFalse(names["worker-nd"]["daemon"])
        self.assertTrue(names["worker-d"]["daemon"])
        self.assertTrue(names["lifecycle-top-agent"]["agent"])
        tids = set(int(x) for x in os.listdir("/proc/%d/task" % t.proc.pid))
        for th in r["threads"]:
            self.assertIn(th["native_id"], tids)
        self.assertEqual(len(r["tasks"]), 5)
        self.assertEqual(sum(1 for x in r["tasks"] if x["tracked"]), 3)
        self.assertEqual(r["loops"][0]["counts"], {"pending": 5})
        ex = r["executors"][0]
        self.assertEqual(ex["kind"], "ThreadPoolExecutor")
        self.assertEqual(len(ex["workers"]), 1)
        sp = r["subprocesses"][0]
        self.assertTrue(sp["site"].startswith("<string>:"), sp)
        self.assertTrue(sp["alive"])
        self.assertGreater(r["cost"]["bytes_sent"], 0)

    def test_chunks_stay_under_the_cap(self):
        t = self.target(env={"EXTRA_TASKS": "1200"})
        c = self.client(t.sock, subscribe_ms=200)
        r = c.report()
        self.assertEqual(r["task_chunks"], 3)
        self.assertEqual(len(r["tasks"]), 1205)
        self.assertEqual(r["tasks_total"], 1205)

    def test_cancel_tasks_results(self):
        t = self.target()
        c = self.client(t.sock)
        m = c.request("cancel_tasks", {"timeout_ms": 1000})
        self.assertTrue(m["ok"], m)
        res = {x["name"]: x["result"] for x in m["result"]["results"]}
        self.assertEqual(res.pop("swallower"), "swallowed")
        self.assertEqual(set(res.values()), {"cancelled"})

    def test_cancel_only_untracked(self):
        t = self.target()
        c = self.client(t.sock)
        m = c.request("cancel_tasks", {"which": "untracked", "timeout_ms": 500})
        names = sorted(x["name"] for x in m["result"]["results"])
        self.assertEqual(names, ["swallower", "untracked"])

    def test_blocked_loop(self):
        t = self.target(env={"BLOCK": "1"})
        c = self.client(t.sock, subscribe_ms=100)
        for _ in range(20):
            r = c.report()
            if r["loops"][0]["blocked"]:
                break
        self.assertTrue(r["loops"][0]["blocked"])
        m = c.request("cancel_tasks", {"timeout_ms": 300})
        self.assertFalse(m["ok"])
        self.assertEqual(m["error"]["code"], "blocked")
        self.assertEqual(m["error"]["data"]["blocked"][0]["stack"][0]["function"], "block")
        self.assertTrue(c.request("ping")["ok"])

    def test_loop_stop_and_close(self):
        t = self.target(env={"LINGER": "30"})
        c = self.client(t.sock)
        self.assertEqual(c.request("close_loop")["result"]["loops"][0]["result"], "running")
        m = c.request("stop_loop")
        self.assertEqual(m["result"]["loops"][0]["result"], "stopped")
        m = c.request("close_loop")["result"]["loops"][0]
        self.assertEqual((m["result"], m["pending_tasks"]), ("closed", 5), m)
        m = c.request("close_loop")["result"]["loops"][0]
        self.assertEqual(m["result"], "already_closed")

    def test_phases(self):
        t = self.target()
        c = self.client(t.sock)
        self.assertEqual(c.request("run_phase", {"name": "flush"})["result"]["result"], "'flushed'")
        self.assertEqual(c.request("run_phase", {"name": "aphase"})["result"]["result"],
                         "'async-done'")
        m = c.request("run_phase", {"name": "slow", "timeout_ms": 200})
        self.assertEqual(m["error"]["code"], "timeout")
        self.assertEqual(c.request("run_phase", {"name": "nope"})["error"]["code"], "not_found")

    def test_stacks_and_task_stacks(self):
        t = self.target()
        c = self.client(t.sock)
        th = c.request("stacks")["result"]["threads"]
        self.assertTrue(any(x["name"] == "worker-nd" and x["frames"] for x in th))
        ts = c.request("task_stacks")["result"]["tasks"]
        sw = [x for x in ts if x["name"] == "swallower"][0]
        self.assertEqual(sw["frames"][-1]["function"], "swallower")

    def test_shutdown_executors_reports_busy_worker(self):
        t = self.target()
        c = self.client(t.sock)
        ex = c.request("shutdown_executors", {"timeout_ms": 200})["result"]["executors"][0]
        self.assertEqual(ex["result"], "workers_still_running")
        self.assertEqual(ex["busy"][0]["stack"][0]["function"], "wait")

    def test_bad_input_keeps_connection(self):
        t = self.target()
        c = self.client(t.sock)
        c.s.sendall(b"{not json\n[1,2]\n")
        self.assertEqual(c.read()["code"], "bad_json")
        self.assertEqual(c.read()["code"], "bad_message")
        c.send({"type": "mystery", "x": 1})
        self.assertEqual(c.request("unknown_thing")["error"]["code"], "unknown_method")
        self.assertTrue(c.request("ping", {"extra": "ignored"})["ok"])

    def test_line_over_cap_closes(self):
        t = self.target()
        c = self.client(t.sock)
        c.s.sendall(b"x" * (MAX_LINE + 100))
        self.assertEqual(c.read()["code"], "line_too_long")
        self.assertRaises(EOFError, c.read)

    def test_version_mismatch(self):
        t = self.target()
        s = socket.socket(socket.AF_UNIX)
        s.connect(t.sock)
        f = s.makefile("rb")
        json.loads(f.readline())
        s.sendall(b'{"type":"hello","protocol":99}\n')
        m = json.loads(f.readline())
        self.assertEqual(m["code"], "version_mismatch")
        self.assertEqual(f.readline(), b"")
        s.close()

    def test_socket_permissions(self):
        t = self.target()
        self.assertEqual(os.stat(t.sock).st_mode & 0o777, 0o600)
        self.assertEqual(os.stat(os.path.dirname(t.sock)).st_mode & 0o777, 0o700)

    def test_exit_request(self):
        t = self.target()
        c = self.client(t.sock)
        self.assertTrue(c.request("exit", {"mode": "exit", "code": 7})["ok"])
        self.assertEqual(t.proc.wait(5), 7)

    def test_idle_agent_costs_nothing(self):
        t = self.target()
        time.sleep(1.0)
        tid = None
        for x in os.listdir("/proc/%d/task" % t.proc.pid):
            with open("/proc/%d/task/%s/comm" % (t.proc.pid, x)) as f:
                if f.read().strip().startswith("lifecycle-top"):
                    tid = x
        # Python names its threads in comm only from 3.12? Fall back to the agent's report.
        if tid is None:
            c = self.client(t.sock)
            th = [x for x in c.request("stacks")["result"]["threads"] if x["agent"]]
            tid = str(th[0]["native_id"])
        with open("/proc/%d/task/%s/stat" % (t.proc.pid, tid)) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])
        self.assertLessEqual(ticks, 2, "agent thread used CPU with no client")


class InjectionTest(unittest.TestCase):
    def test_sitecustomize_chains_and_never_breaks_host(self):
        other = tempfile.mkdtemp(prefix="ltsite-")
        self.addCleanup(shutil.rmtree, other, True)
        with open(os.path.join(other, "sitecustomize.py"), "w") as f:
            f.write("import os\nos.environ['CHAINED'] = 'yes'\n")
        # An unusable LIFECYCLE_TOP_SOCKET: the agent falls back to the default path.
        env = dict(os.environ, PYTHONPATH=AGENT_DIR + os.pathsep + other,
                   LIFECYCLE_TOP_SOCKET="/proc/nope/x.sock")
        env.pop("XDG_RUNTIME_DIR", None)
        code = ("import os, sys, lifecycle_top_agent as a; print(os.environ.get('CHAINED'), "
                "a._agent.path if a._agent else None)")
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, timeout=20)
        self.assertEqual(out.returncode, 0, out.stderr)
        chained, path = out.stdout.split()
        self.assertEqual(chained, "yes")
        self.assertTrue(path.startswith("/tmp/lifecycle-top-%d/" % os.getuid()), path)

    def test_fork_child_runs_and_parent_agent_keeps_serving(self):
        code = textwrap.dedent("""
            import os, socket, sys, warnings
            warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork with threads
            import lifecycle_top_agent as a
            path = a.install()
            pid = os.fork()
            if pid == 0:
                os._exit(0 if a._agent is None else 3)  # the child has no agent thread
            _, status = os.waitpid(pid, 0)
            s = socket.socket(socket.AF_UNIX)
            s.connect(path)
            f = s.makefile("rb")
            f.readline()
            s.sendall(b'{"type":"request","id":1,"method":"ping"}\\n')
            print(os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode")
                  else status >> 8, b'"pong":true' in f.readline())
        """)
        env = dict(os.environ, PYTHONPATH=AGENT_DIR)
        env.pop("LIFECYCLE_TOP_SOCKET", None)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, timeout=20)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(out.stdout.split(), ["0", "True"], out.stderr)

    def test_no_agent_without_env(self):
        env = dict(os.environ, PYTHONPATH=AGENT_DIR)
        env.pop("LIFECYCLE_TOP_SOCKET", None)
        env.pop("LIFECYCLE_TOP_AGENT", None)
        out = subprocess.run([sys.executable, "-c", "import sys; print('lifecycle_top_agent' "
                              "in sys.modules)"], env=env, capture_output=True, text=True)
        self.assertEqual(out.stdout.strip(), "False")


CLIENT_AS_OTHER = textwrap.dedent("""
    import socket, sys
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(sys.argv[1])
    except PermissionError:
        print("EACCES"); sys.exit(0)
    print(s.makefile("rb").readline().decode().strip())
""")


class PeerCredTest(unittest.TestCase):
    USER = "ltagent-test"

    def setUp(self):
        if os.geteuid() != 0:
            self.fail("the other-uid test needs root (it creates user %s)" % self.USER)
        for tool in ("useradd", "setpriv"):
            if shutil.which(tool) is None:
                self.fail("the other-uid test needs `%s` on PATH" % tool)
        if subprocess.run(["id", "-u", self.USER], capture_output=True).returncode != 0:
            subprocess.run(["useradd", "--system", "--no-create-home", self.USER], check=True)
        self.uid = int(subprocess.run(["id", "-u", self.USER], capture_output=True,
                                      text=True).stdout)

    def as_other(self, path):
        # The client is plain stdlib; the system python is loadable by any user, a python
        # under /root (pyenv) may not be.
        python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
        out = subprocess.run(["setpriv", "--reuid=%d" % self.uid, "--regid=%d" % self.uid,
                              "--clear-groups", python, "-c", CLIENT_AS_OTHER, path],
                             capture_output=True, text=True, timeout=20)
        self.assertEqual(out.returncode, 0, out.stderr)
        return out.stdout.strip()

    def test_other_uid_is_refused(self):
        t = Target()
        self.addCleanup(t.close)
        t.wait_socket()
        # Normal permissions: the 0700 directory keeps the other uid out entirely.
        self.assertEqual(self.as_other(t.sock), "EACCES")
        # Even with the file system opened up, SO_PEERCRED refuses it.
        os.chmod(t.dir, 0o755)
        os.chmod(os.path.dirname(t.sock), 0o755)
        os.chmod(t.sock, 0o666)
        m = json.loads(self.as_other(t.sock))
        self.assertEqual(m["code"], "forbidden", m)
        # Root and our own uid are still served.
        c = Client(t.sock)
        self.addCleanup(c.close)
        self.assertTrue(c.request("ping")["ok"])


if __name__ == "__main__":
    unittest.main()
