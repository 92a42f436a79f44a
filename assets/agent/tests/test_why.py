"""The agent's `waits_on`, `started_at` and `task_awaits` fields (docs/protocol.md §5.2),
computed in-process on real threads and tasks, plus the cost of the Thread.start wrapper.

Run: python3 -m unittest discover -s assets/agent/tests   (from the repo root)
"""

import asyncio
import os
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir)))
import lifecycle_top_agent as agent  # noqa: E402

agent._hook_thread_start()


def _entry(name, kind=None):
    for _ in range(200):
        for e in agent._thread_entries(set()):
            w = e.get("waits_on")
            if e["name"] == name and w and (kind is None or w["kind"] == kind):
                return e
        time.sleep(0.01)
    return next(e for e in agent._thread_entries(set()) if e["name"] == name)


class WaitsOn(unittest.TestCase):
    def test_join_event_and_started_at(self):
        never = threading.Event()
        stop = threading.Event()

        def pack():
            while not stop.is_set():
                never.wait(0.05)

        packer = threading.Thread(target=pack, name="t-packer", daemon=True)

        def ship():
            packer.start()
            packer.join()

        shipper = threading.Thread(target=ship, name="t-shipper", daemon=True)
        shipper.start()
        try:
            s = _entry("t-shipper", "join")
            self.assertEqual(s["waits_on"]["kind"], "join")
            self.assertEqual(s["waits_on"]["target_native_id"], packer.native_id)
            self.assertIn("test_why.py:", s["waits_on"]["where"])
            self.assertIn("test_why.py:", s["started_at"])
            p = _entry("t-packer", "event")
            self.assertEqual(p["waits_on"]["kind"], "event")
            self.assertIn("test_why.py:", p["waits_on"]["where"])
        finally:
            stop.set()
            shipper.join(2)

    def test_rlock_owner_and_queue(self):
        import queue
        lock = threading.RLock()
        held = threading.Event()
        release = threading.Event()
        q = queue.Queue()

        def holder():
            with lock:
                held.set()
                release.wait()

        def wanter():
            with lock:
                pass

        h = threading.Thread(target=holder, name="t-holder", daemon=True)
        h.start()
        held.wait()
        w = threading.Thread(target=wanter, name="t-wanter", daemon=True)
        w.start()
        c = threading.Thread(target=q.get, name="t-consumer", daemon=True)
        c.start()
        try:
            e = _entry("t-wanter", "rlock")
            self.assertEqual(e["waits_on"]["kind"], "rlock")
            self.assertEqual(e["waits_on"]["owner_native_id"], h.native_id)
            self.assertEqual(_entry("t-consumer", "queue")["waits_on"]["kind"], "queue")
        finally:
            release.set()
            q.put(None)
            h.join(2)
            w.join(2)

    def test_serve_forever(self):
        """A socketserver loop in a thread: named as such (it polls every 0.5 s and returns
        only on shutdown()), with the app's call as its place."""
        import http.server
        srv = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)

        def serve():
            srv.serve_forever(poll_interval=0.05)  # polls often: seen between polls too

        t = threading.Thread(target=serve, name="t-http", daemon=True)
        t.start()
        try:
            w = _entry("t-http", "serve_forever")["waits_on"]
            self.assertEqual(w["object"], "HTTPServer")
            self.assertIn("test_why.py:", w["where"])
            for _ in range(100):  # every sample, whether in a poll or between two
                e = next(e for e in agent._thread_entries(set()) if e["name"] == "t-http")
                self.assertEqual(e.get("waits_on"), w)
                time.sleep(0.003)
        finally:
            srv.shutdown()
            srv.server_close()
            t.join(2)

    def test_task_awaits_task(self):
        seen = {}

        async def inner():
            await asyncio.sleep(10)

        async def outer(t):
            await t

        async def main():
            t1 = asyncio.ensure_future(inner())
            t2 = asyncio.ensure_future(outer(t1))
            await asyncio.sleep(0.05)
            aw = agent._task_await(t2, t2._fut_waiter, 1, None)
            seen["aw"] = aw
            seen["ids"] = (id(t1), id(t2))
            t1.cancel()
            t2.cancel()

        asyncio.run(main())
        self.assertEqual(seen["aw"]["kind"], "task")
        self.assertEqual(seen["aw"]["task_ids"], [seen["ids"][0]])
        self.assertEqual(seen["aw"]["task_id"], seen["ids"][1])

    def test_closing_loop_awaits_the_default_executor_shutdown(self):
        """asyncio.run's close (3.9+) awaits loop.shutdown_default_executor(): its task awaits
        the thread that joins the default executor's workers; a worker is named by the line
        that submitted its work."""
        if sys.version_info < (3, 9):  # 3.8's asyncio.run does not shut the executor down
            self.assertFalse(hasattr(asyncio.BaseEventLoop, "shutdown_default_executor"))
            return
        release = threading.Event()
        seen = {}

        def watch(loop):
            for _ in range(500):
                for t in list(asyncio.all_tasks(loop)):
                    if t.get_coro().__name__ == "shutdown_default_executor" and t._fut_waiter:
                        seen["aw"] = agent._task_await(t, t._fut_waiter, 1, None)
                        seen["targets"] = {th.native_id: getattr(th, "_target", None)
                                           for th in threading.enumerate()}
                        seen["worker"] = _entry("asyncio_0")
                        release.set()
                        return
                time.sleep(0.01)
            release.set()

        async def main():
            loop = asyncio.get_running_loop()
            loop.run_in_executor(None, release.wait)  # submitted here
            threading.Thread(target=watch, args=(loop,), daemon=True).start()

        asyncio.run(main())
        self.assertIn("aw", seen, "no shutdown_default_executor task was seen")
        aw = seen["aw"]
        self.assertEqual(aw["kind"], "executor_shutdown")
        self.assertEqual(seen["targets"][aw["native_id"]].__name__, "_do_shutdown")
        self.assertIn("test_why.py:", seen["worker"]["started_at"])


class StartCost(unittest.TestCase):
    def test_wrapper_cost_per_start(self):
        """The recording is one frame walk + one format per start (its cost is printed, not
        asserted: a timing bound fails on a loaded machine, as it did at load 15)."""
        n = 20000
        t0 = time.perf_counter()
        for _ in range(n):
            f = sys._getframe(0)
            while f is not None and (f.f_code.co_filename == threading.__file__
                                     or f.f_code.co_name == "start"):
                f = f.f_back
            site = "%s:%d" % (f.f_code.co_filename, f.f_lineno)
        per = (time.perf_counter() - t0) / n * 1e6
        sys.stderr.write("started_at recording: %.2f us per Thread.start\n" % per)
        self.assertTrue(site.startswith(__file__ + ":"), site)


if __name__ == "__main__":
    unittest.main()
