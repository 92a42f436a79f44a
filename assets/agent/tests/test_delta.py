"""Delta reports (docs/protocol.md §5.3): the task book finds what changed, a delta folded
onto the previous report equals the full report of the same build, clients that did not
accept deltas keep getting full reports, `full_report` gets one at once.

Run: python3 -m unittest discover -s assets/agent/tests   (from the repo root)
"""

import asyncio
import gc
import json
import os
import sys
import textwrap
import threading
import time
import unittest
import _weakrefset

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
        self.addCleanup(self.cancel_and_wait)
        # Every worker has run its first step before the first build: one not started
        # then changes its row in round 1 (the size check below failed once at load 50).
        self.on_loop(lambda: None)
        self.assertTrue(self.on_loop(lambda: len(futs) == n))
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


    def report(self, book, state, seq):
        """Updates `book` on the loop's thread (the loop does not run meanwhile) and checks
        that its delta folds onto `state` to its full report; returns (state, rows by name)."""
        def build():
            book.update([self.loop], None, agent._Slicer())
            changed, removed = book.take_changes()
            header = {"type": "report", "seq": seq, "threads": [],
                      "tasks_listed": len(book.rows)}
            return agent._Built(seq, header, book, changed, removed), changed, removed
        built, changed, removed = self.on_loop(build)
        full = fold(None, built.full())
        if state is not None:
            folded = fold(state, built.delta(seq - 1, changed, removed, {}))
            self.assertEqual(folded["tasks"], full["tasks"])
        return full, {row[2]: row for row in full["tasks"].values()}

    def cancel_and_wait(self):
        """Cancels every task of the loop and waits until they have ended."""
        def cancel():
            mine = list(asyncio.all_tasks(self.loop))
            for t in mine:
                t.cancel()
            return mine
        mine = self.on_loop(cancel)

        async def ended():
            await asyncio.wait(mine)
        if mine:
            asyncio.run_coroutine_threadsafe(ended(), self.loop).result(30)

    def test_a_books_rows_equal_a_fresh_books_after_every_kind_of_change(self):
        # Ground truth: a book that has followed the tasks through many reports lists the
        # same rows, counts and awaits as a book made now (which looks at every task). The
        # changes: wakes (a new await point), renames and tracked-flag changes of waiting
        # tasks (seen by the rolling window, made here to cover every task), cancels, tasks
        # that end, new tasks, a gather whose children finish, a task awaiting a task.
        roll = agent.ROLL
        agent.ROLL = 1 << 30
        self.addCleanup(setattr, agent, "ROLL", roll)
        futs, gfuts, tracked = {}, [], []

        async def worker(i):
            while True:
                f = futs[i] = self.loop.create_future()
                await f  # first await point
                f = futs[i] = self.loop.create_future()
                await f  # second await point

        async def child(f):
            await f

        async def parent():
            await asyncio.gather(*[child(f) for f in gfuts])

        async def waits_on(t):
            await t

        n = 400

        def start():
            ts = [self.loop.create_task(worker(i), name="w%d" % i) for i in range(n)]
            gfuts.extend(self.loop.create_future() for _ in range(3))
            self.loop.create_task(parent(), name="parent")
            self.loop.create_task(waits_on(ts[0]), name="waits-on-w0")
            return ts
        ts = self.on_loop(start)
        self.addCleanup(self.cancel_and_wait)  # before the loop stops: no destroyed tasks
        self.on_loop(lambda: None)
        self.assertTrue(self.on_loop(lambda: len(futs) == n))
        book = agent._TaskBook(1000)

        def snapshot(b):
            aw = {k: dict(v, task_ids=sorted(v.get("task_ids", ()))) for k, v in b.aw.items()}
            return dict(b.rows), {k: dict(v) for k, v in b.counts.items()}, aw

        for rnd in range(8):
            def change(rnd=rnd):
                for i in range(rnd * 7, rnd * 7 + 7):
                    futs[i].set_result(None)  # woken: the next await point
                ts[100 + rnd].set_name("renamed-%d" % rnd)  # waits on, renamed
                if rnd % 2:
                    tracked.append(ts[200 + rnd])  # now tracked, still waiting
                ts[300 + rnd].cancel()  # ends cancelled
                self.loop.create_task(asyncio.sleep(3600), name="new-%d" % rnd)
                if rnd < len(gfuts):
                    gfuts[rnd].set_result(None)  # one child of the gather ends
                if rnd == 4:
                    futs[0].cancel()  # w0 ends: "waits-on-w0" steps and ends too
            if rnd:
                self.on_loop(change)
                self.on_loop(lambda: None)
                self.on_loop(lambda: None)

            def both():
                ids = {id(t) for t in tracked}
                book.update([self.loop], ids, agent._Slicer())
                book.take_changes()
                fresh = agent._TaskBook(1000)
                fresh.update([self.loop], ids, agent._Slicer())
                return snapshot(book), snapshot(fresh)
            kept, fresh = self.on_loop(both)
            self.assertEqual(kept[0], fresh[0], "rows, round %d" % rnd)
            self.assertEqual(kept[1], fresh[1], "counts, round %d" % rnd)
            self.assertEqual(kept[2], fresh[2], "awaits, round %d" % rnd)
        rows = {r[2]: r for r in kept[0].values()}
        self.assertIn("renamed-7", rows)
        self.assertNotIn("waits-on-w0", rows)
        self.assertTrue(rows["w%d" % (200 + 7)][6], "a task tracked while it waits")

    def test_a_task_that_waited_on_a_task_is_looked_at_once_that_one_is_done(self):
        # The awaited task stays referenced (done, alive): the waiter is found by the done
        # state of what it waited on, not by that object going away.
        keep = []

        async def inner(f):
            await f

        async def waiter(t):
            await t  # waits on inner
            await asyncio.sleep(3600)  # then sleeps

        def start():
            f = self.loop.create_future()
            t = self.loop.create_task(inner(f), name="inner")
            keep.extend([f, t])
            self.loop.create_task(waiter(t), name="waiter")
        self.on_loop(start)
        self.on_loop(lambda: None)
        book = agent._TaskBook(100)
        state, rows = self.report(book, None, 1)
        self.assertTrue(rows["waiter"][5].endswith(":%d" % (_line("waits on inner"))), rows)
        self.on_loop(lambda: keep[0].set_result(None))
        deadline = time.time() + 10
        while not self.on_loop(lambda: keep[1].done()) and time.time() < deadline:
            time.sleep(0.01)
        self.on_loop(lambda: None)  # the waiter has run its step
        state, rows = self.report(book, state, 2)
        self.assertNotIn("inner", rows)
        self.assertTrue(rows["waiter"][5].endswith(":%d" % _line("then sleeps")), rows)

    def test_a_gathers_pending_children_are_kept_current_while_it_waits(self):
        # The parent waits on the same (pending) gathering future throughout: its awaits
        # entry changes as children finish, and the rolling window re-reads it (made to
        # cover every task asyncio knows here: earlier tests' tasks may still be alive).
        roll = agent.ROLL
        agent.ROLL = 1 << 30
        self.addCleanup(setattr, agent, "ROLL", roll)
        futs = []

        async def child(f):
            await f

        async def parent():
            await asyncio.gather(*[child(f) for f in futs])

        def start():
            futs.extend([self.loop.create_future(), self.loop.create_future()])
            return id(self.loop.create_task(parent(), name="parent"))
        pid = self.on_loop(start)
        self.on_loop(lambda: None)
        book = agent._TaskBook(100)

        def awaited():
            book.update([self.loop], None, agent._Slicer())
            book.take_changes()
            return sorted(book.aw[pid]["task_ids"])
        both = self.on_loop(awaited)
        self.assertEqual(len(both), 2)
        self.on_loop(lambda: futs[0].set_result(None))
        self.on_loop(lambda: None)
        self.on_loop(lambda: None)
        left = self.on_loop(awaited)
        self.assertEqual(len(left), 1)
        self.assertIn(left[0], both)
        self.on_loop(lambda: futs[1].set_result(None))

    def test_a_cancel_not_yet_acted_on_shows_as_cancelling(self):
        tasks = []
        self.on_loop(lambda: tasks.append(self.loop.create_task(asyncio.sleep(3600),
                                                                 name="sleeper")))
        self.on_loop(lambda: None)
        book = agent._TaskBook(100)
        state, rows = self.report(book, None, 1)
        self.assertEqual(rows["sleeper"][3], "pending")

        def cancel_and_build():  # on the loop's thread: the task cannot run in between
            tasks[0].cancel()
            book.update([self.loop], None, agent._Slicer())
            return dict(book.rows)
        rows = {r[2]: r for r in self.on_loop(cancel_and_build).values()}
        expect = "cancelling" if hasattr(tasks[0], "cancelling") else "pending"
        if sys.version_info >= (3, 11):
            self.assertEqual(rows["sleeper"][3], expect)

    def _names(self, book):
        return sorted(row[2] for row in book.rows.values())

    def _live_names(self):
        return sorted(t.get_name() for t in self.on_loop(lambda: asyncio.all_tasks(self.loop)))

    def test_a_task_collected_while_a_dead_reference_is_still_listed_loses_its_row(self):
        # asyncio's WeakSet keeps a dead task's reference while some thread iterates it (the
        # removal waits for the iteration to end). The book used to forget such a reference,
        # which balanced the count of a task collected since the last report: the gone-pass
        # was skipped and that task's row stayed listed as pending (CI, deltas_fold).
        at = asyncio.tasks
        ws = getattr(at, "_scheduled_tasks", None)  # 3.12+ (an empty WeakSet is false)
        if ws is None:
            ws = at._all_tasks
        futs = {}

        def make():
            for name in ("keep", "gone", "dies-listed"):
                f = futs[name] = self.loop.create_future()
                self.loop.create_task(asyncio.wait_for(f, None), name=name)
        self.on_loop(make)
        self.addCleanup(self.cancel_and_wait)
        self.on_loop(lambda: None)
        book = agent._TaskBook(100)
        state, rows = self.report(book, None, 1)
        self.assertEqual(sorted(rows), ["dies-listed", "gone", "keep"])

        def end(name):
            futs.pop(name).cancel()
        self.on_loop(lambda: end("gone"))
        self.on_loop(lambda: None)
        self.on_loop(gc.collect)
        # An iteration in progress elsewhere (what WeakSet.__iter__ holds while a loop over
        # the set runs): removals wait until it ends.
        with _weakrefset._IterationGuard(ws):
            self.on_loop(lambda: end("dies-listed"))
            self.on_loop(lambda: None)
            self.on_loop(gc.collect)
            self.assertTrue(any(r() is None for r in list(ws.data)),
                            "a dead reference stays listed while the WeakSet is iterated")
            state, rows = self.report(book, state, 2)
            self.assertEqual(sorted(rows), ["keep"])
            self.assertEqual(sum(book.counts.get(agent._loop_id(self.loop), {}).values()), 1)
        state, rows = self.report(book, state, 3)
        self.assertEqual(sorted(rows), ["keep"])
        self.assertEqual(self._names(book), self._live_names())

    def test_a_task_first_seen_and_done_within_one_update_leaves_no_row(self):
        # A task first seen in an update keeps its row against the drop of a dead task that
        # had its address (test below); its own end within the same update must still
        # remove the row. Here it is the loop's current task when the update starts (its step
        # blocks), it ends while the update yields, and the update looks at it again.
        release, ended = threading.Event(), threading.Event()
        box = []

        async def step():
            release.wait(10)  # blocks the loop: this task stays current
        def make():
            t = self.loop.create_task(step(), name="brief")
            t.add_done_callback(lambda _: ended.set())
            box.append(t.get_name())
        self.on_loop(make)
        self.addCleanup(self.cancel_and_wait)
        book = agent._TaskBook(100)
        deadline = time.monotonic() + 10
        while agent._current_task(self.loop) is None and time.monotonic() < deadline:
            time.sleep(0.001)
        self.assertIsNotNone(agent._current_task(self.loop), "the task runs its step")

        class Slicer(agent._Slicer):
            def tick(s):
                if not release.is_set() and "brief" in self._names(book):
                    release.set()  # the task ends between two looks of this update
                    self.assertTrue(ended.wait(10))
                super().tick()
        book.update([self.loop], None, Slicer())
        self.assertTrue(release.is_set(), "the update saw the task while it ran")
        changed, removed = book.take_changes()
        self.assertEqual(self._names(book), [], (changed, removed))
        self.assertEqual(self._names(book), self._live_names())

    def test_a_new_task_at_a_dead_tasks_address_keeps_its_row(self):
        # CPython's allocator hands a freed task's memory to the next task made: the new
        # task has the dead one's id, and its row must survive the dead one's removal.
        book = agent._TaskBook(100)
        state, seq = None, 0
        for attempt in range(200):
            def make(name):
                t = self.loop.create_task(asyncio.sleep(3600), name=name)
                return id(t)
            old_id = self.on_loop(lambda: make("old-%d" % attempt))
            seq += 1
            state, rows = self.report(book, state, seq)
            self.assertIn("old-%d" % attempt, rows)

            def swap():
                for t in asyncio.all_tasks(self.loop):
                    if t.get_name() == "old-%d" % attempt:
                        t.cancel()
                return None
            self.on_loop(swap)
            self.on_loop(lambda: None)
            self.on_loop(lambda: gc.collect())
            new_id = self.on_loop(lambda: make("new-%d" % attempt))
            seq += 1
            state, rows = self.report(book, state, seq)
            self.assertNotIn("old-%d" % attempt, rows)
            self.assertIn("new-%d" % attempt, rows, "the new task's row is missing")
            self.assertEqual(len(rows), len(self.on_loop(lambda: asyncio.all_tasks(self.loop))))
            if new_id == old_id:
                return  # the case this test is about happened and was handled
        self.fail("no task was ever made at a dead task's address in 200 tries")


def _line(marker):
    """Line number of the line in this file ending with `# <marker>`."""
    with open(__file__) as f:
        for i, line in enumerate(f, 1):
            if line.rstrip().endswith("# " + marker):
                return i
    raise AssertionError("no line marked %s" % marker)


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
