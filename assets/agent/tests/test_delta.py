"""Delta reports (docs/protocol.md §5.3): the task book finds what changed, a delta folded
onto the previous report equals the full report of the same build, clients that did not
accept deltas keep getting full reports, `full_report` gets one at once.

Run: python3 -m unittest discover -s assets/agent/tests   (from the repo root)
"""

import asyncio
import json
import os
import sys
import textwrap
import threading
import time
import unittest

import test_agent
import test_verdict

sys.path.insert(0, test_agent.AGENT_DIR)
import lifecycle_top_agent as agent  # noqa: E402


def fold(state, lines):
    """Applies encoded report lines to `state` ({"seq", "tasks": {id: row}, "threads"}) the
    way a client does; returns the new state."""
    msgs = [json.loads(x) for x in lines]
    head, chunks = msgs[0], msgs[1:]
    assert len(chunks) == head["task_chunks"], head
    if head["type"] == "report":
        tasks, threads = {}, {}
    else:
        assert head["type"] == "report_delta" and head["base"] == state["seq"], (head, state)
        tasks, threads = dict(state["tasks"]), dict(state["threads"])
        for c in chunks:
            for tid in c["removed"]:
                tasks.pop(tid, None)
        for ident in head["threads_removed"]:
            threads.pop(ident, None)
    for th in head["threads"]:
        threads[th["ident"]] = th
    for c in chunks:
        s = c["strings"]
        for row in c["tasks"]:
            tasks[row[0]] = (row[0], row[1], row[2], row[3], s[row[4]] if row[4] >= 0 else None,
                             s[row[5]] if row[5] >= 0 else None, row[6],
                             s[row[7]] if row[7] >= 0 else None)
    assert len(tasks) == head["tasks_listed"], (len(tasks), head["tasks_listed"])
    return {"seq": head["seq"], "tasks": tasks, "threads": threads}


class BookTest(unittest.TestCase):
    """The book on a real loop running in a thread of this process."""

    def setUp(self):
        self.loop = asyncio.new_event_loop()
        self.th = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.th.start()
        self.addCleanup(self.stop)

    def stop(self):
        def cancel_all():
            for t in asyncio.all_tasks(self.loop):
                t.cancel()
        self.loop.call_soon_threadsafe(cancel_all)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.th.join(5)
        self.loop.close()

    def on_loop(self, fn):
        done = threading.Event()
        out = []

        def run():
            try:
                out.append(fn())
            finally:
                done.set()
        self.loop.call_soon_threadsafe(run)
        self.assertTrue(done.wait(10))
        return out[0]

    def test_a_delta_folds_to_the_full_report_of_the_same_build(self):
        futs = {}

        async def worker(i):
            while True:  # two await points: a woken worker's row changes
                f = futs[i] = self.loop.create_future()
                await f
                f = futs[i] = self.loop.create_future()
                await f

        n = 3000
        self.on_loop(lambda: [self.loop.create_task(worker(i), name="w%d" % i)
                              for i in range(n)])
        book = agent._TaskBook(2500)  # fewer listed than there are: all are counted
        state, seq = None, 0
        for rnd in range(6):
            if rnd:
                def change(rnd=rnd):
                    for i in range(rnd * 100, rnd * 100 + 100):
                        futs[i].set_result(None)
                    for i in range(2000 + rnd * 10, 2000 + rnd * 10 + 10):
                        futs[i].cancel()  # these workers end (cancelled)
                    for k in range(20):
                        self.loop.create_task(asyncio.sleep(3600), name="new-%d-%d" % (rnd, k))
                self.on_loop(change)
                self.on_loop(lambda: None)  # the woken tasks have run their step
                self.on_loop(lambda: None)
            book.update([self.loop], None, agent._Slicer())
            seq += 1
            header = {"type": "report", "seq": seq, "threads": [],
                      "tasks_listed": len(book.rows)}
            changed, removed = book.take_changes()
            built = agent._Built(seq, header, book, changed, removed)
            full = fold(None, built.full())
            if state is not None:
                lines = built.delta(seq - 1, changed, removed, {})
                self.assertIsNotNone(lines)
                folded = fold(state, lines)
                self.assertEqual(folded["tasks"], full["tasks"], "round %d" % rnd)
                size = sum(map(len, lines))
                self.assertLess(size, sum(map(len, built.full())) / 10, "round %d" % rnd)
            state = full
            counts = book.counts.get(agent._loop_id(self.loop), {})
            self.assertEqual(sum(counts.values()), n + 20 * rnd - 10 * rnd, counts)
            self.assertEqual(len(book.rows), 2500, "rows freed by removals are reused")


class WireTest(unittest.TestCase):
    def target(self):
        t = test_agent.Target()
        self.addCleanup(t.close)
        t.wait_socket()
        return t

    def client(self, path, delta):
        c = test_agent.Client(path)
        self.addCleanup(c.close)
        hello = {"type": "hello", "protocol": 1}
        if delta:
            hello["accept"] = ["report_delta"]
        c.send(hello)
        c.send({"type": "subscribe", "interval_ms": 50})
        return c

    def kinds(self, c, n):
        out = []
        while len(out) < n:
            m = c.read()
            if m["type"] in ("report", "report_delta"):
                out.append((m["type"], m["seq"], m.get("base")))
        return out

    def test_old_clients_get_full_reports_delta_clients_deltas(self):
        t = self.target()
        self.assertIn("report_delta", test_agent.Client(t.sock).hello["capabilities"])
        old = self.client(t.sock, delta=False)
        new = self.client(t.sock, delta=True)
        self.assertEqual({k for k, _s, _b in self.kinds(old, 5)}, {"report"})
        got = self.kinds(new, 6)
        self.assertEqual(got[0][0], "report", "a full report first")
        deltas = [x for x in got if x[0] == "report_delta"]
        self.assertTrue(deltas, got)
        # Each delta is based on the report before it on this connection.
        for prev, cur in zip(got, got[1:]):
            if cur[0] == "report_delta":
                self.assertEqual(cur[2], prev[1], got)
        new.send({"type": "full_report"})
        self.assertIn("report", [k for k, _s, _b in self.kinds(new, 3)])

    def test_a_dropped_pending_task_is_still_destroyed_while_reports_flow(self):
        # The book must not keep the app's tasks alive: a pending task the app drops is
        # destroyed ("Task was destroyed but it is pending!") with a delta client subscribed.
        app = textwrap.dedent("""
            import asyncio, gc, sys
            async def forever(f):
                await f
            async def main():
                loop = asyncio.get_running_loop()
                t = loop.create_task(forever(loop.create_future()), name="doomed")
                print("ready", flush=True)
                await loop.run_in_executor(None, sys.stdin.readline)
                del t
                gc.collect()
                print("dropped", flush=True)
                await asyncio.sleep(3600)
            asyncio.run(main())
        """)
        t = test_verdict.Proc(app)
        self.addCleanup(t.close)
        t.wait_socket()
        self.assertEqual(t.line(), "ready")
        c = self.client(t.sock, delta=True)
        names = []
        while "doomed" not in names:  # the book has seen it, and a delta went out
            m = c.read()
            if m["type"] == "report_chunk":
                names += [row[2] for row in m["tasks"]]
        self.kinds(c, 2)
        t.tell()
        self.assertEqual(t.line(), "dropped")
        deadline = time.time() + 10
        while time.time() < deadline:
            m = c.read()
            if m["type"] == "warning" and m["warning"]["kind"] == "task_destroyed_pending":
                self.assertEqual(m["warning"]["task"], "doomed")
                return
        self.fail("the dropped task was never destroyed")


if __name__ == "__main__":
    unittest.main()
