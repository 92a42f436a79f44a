"""Task creation sites (``created_at``, docs/protocol.md §5.2): recorded in the app's own
calls (create_task, ensure_future, gather, TaskGroup, loop.create_task), with task factories
the program set still in charge, and carried in report rows over the real socket.

Run: python3 -m unittest discover -s assets/agent/tests   (from the repo root)
"""

import asyncio
import gc
import inspect
import os
import sys
import textwrap
import threading
import traceback
import unittest
import weakref

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir)))
import lifecycle_top_agent as agent  # noqa: E402

agent._install_hooks()

HERE = os.path.basename(__file__)


def _line(marker):
    """Line number of the line in this file ending with `# <marker>`."""
    with open(__file__) as f:
        for i, line in enumerate(f, 1):
            if line.rstrip().endswith("# " + marker):
                return i
    raise AssertionError("no line marked %s" % marker)


def _site(t):
    s = agent._created_at(t)
    return os.path.basename(s.rsplit(":", 1)[0]) + ":" + s.rsplit(":", 1)[1] if s else None


async def _noop():
    await asyncio.sleep(0)


class CreatedAt(unittest.TestCase):
    def test_the_stdlib_create_task_is_spliced_not_wrapped(self):
        # 3.8-3.13 (the interpreters here) all match a template: no extra call per task.
        if sys.version_info < (3, 14):
            self.assertEqual(agent._create_task_hook[0], "spliced")
        ct = asyncio.BaseEventLoop.create_task
        self.assertTrue(getattr(ct, "_lifecycle_top", False))
        self.assertEqual(ct.__qualname__, "BaseEventLoop.create_task")
        self.assertTrue(ct.__code__.co_filename.endswith(os.path.join("asyncio",
                                                                       "base_events.py")))

    def test_every_way_of_creating_a_task_records_the_callers_line(self):
        async def main():
            loop = asyncio.get_running_loop()
            a = asyncio.create_task(_noop())  # create_task
            b = asyncio.ensure_future(_noop())  # ensure_future
            g = asyncio.gather(_noop(), _noop())  # gather
            c = loop.create_task(_noop(), name="direct")  # loop.create_task
            sites = {"create_task": _site(a), "ensure_future": _site(b),
                     "loop.create_task": _site(c), "gather": sorted(map(_site, g._children))}
            if hasattr(asyncio, "TaskGroup"):
                async with asyncio.TaskGroup() as tg:
                    d = tg.create_task(_noop())  # TaskGroup
                sites["TaskGroup"] = _site(d)
            await asyncio.gather(a, b, c, g)
            self.assertEqual(c.get_name(), "direct")
            return sites

        sites = asyncio.run(main())
        for k in ("create_task", "ensure_future", "loop.create_task"):
            self.assertEqual(sites[k], "%s:%d" % (HERE, _line(k)), k)
        self.assertEqual(sites["gather"], ["%s:%d" % (HERE, _line("gather"))] * 2)
        if "TaskGroup" in sites:
            self.assertEqual(sites["TaskGroup"], "%s:%d" % (HERE, _line("TaskGroup")))

    def test_a_task_factory_the_program_set_still_makes_the_tasks(self):
        made = []

        def factory(loop, coro, **kwargs):
            t = asyncio.Task(coro, loop=loop, **kwargs)
            made.append(t)
            return t

        async def main():
            loop = asyncio.get_running_loop()
            loop.set_task_factory(factory)
            t = asyncio.create_task(_noop(), name="via-factory")  # factory
            await t
            return t

        t = asyncio.run(main())
        self.assertIn(t, made)
        self.assertEqual(t.get_name(), "via-factory")
        self.assertEqual(_site(t), "%s:%d" % (HERE, _line("factory")))

    def test_eager_tasks_get_their_site_too(self):
        if not hasattr(asyncio, "eager_task_factory"):
            self.assertLess(sys.version_info, (3, 12), "eager_task_factory is 3.12+")
            return
        async def main():
            asyncio.get_running_loop().set_task_factory(asyncio.eager_task_factory)
            t = asyncio.create_task(_noop())  # eager
            await t
            return t

        self.assertEqual(_site(asyncio.run(main())), "%s:%d" % (HERE, _line("eager")))

    def test_a_task_made_without_create_task_has_no_site(self):
        async def main():
            t = asyncio.Task(_noop())
            await t
            return t

        self.assertIsNone(agent._created_at(asyncio.run(main())))

    def test_asyncio_create_task_is_spliced_and_reads_like_the_original(self):
        act = asyncio.create_task
        if sys.version_info < (3, 14):
            self.assertTrue(agent._asyncio_create_task_spliced[0])
            self.assertTrue(getattr(act, "_lifecycle_top", False))
        orig = getattr(act, "__wrapped__", act)
        self.assertIs(asyncio.tasks.create_task, act)
        self.assertEqual(inspect.signature(act), inspect.signature(orig))
        self.assertEqual((act.__qualname__, act.__module__, act.__doc__),
                         (orig.__qualname__, orig.__module__, orig.__doc__))

        def tb_of(fn):
            coro = _noop()
            try:
                fn(coro)  # no running loop: RuntimeError from inside create_task
            except RuntimeError as e:
                return [(f.filename, f.lineno, f.name, f.line, getattr(f, "colno", None),
                         getattr(f, "end_colno", None))
                        for f in traceback.extract_tb(e.__traceback__)[1:]]
            finally:
                coro.close()
            self.fail("no RuntimeError")

        self.assertEqual(tb_of(act), tb_of(orig))
        self.assertIsNone(agent._via_cell.cell_contents)

    def test_the_mark_is_never_left_holding_a_coroutine(self):
        class NotACoroutine:
            pass

        async def main():
            obj = NotACoroutine()
            ref = weakref.ref(obj)
            with self.assertRaises(TypeError):  # Task() refuses it inside loop.create_task
                asyncio.create_task(obj)
            del obj
            t = asyncio.create_task(_noop())  # plain
            await t
            return ref, t

        ref, t = asyncio.run(main())
        self.assertIsNone(agent._via_cell.cell_contents)
        gc.collect()
        self.assertIsNone(ref(), "the failed call's argument is still referenced")
        self.assertEqual(_site(t), "%s:%d" % (HERE, _line("plain")))

    def test_a_loop_class_with_its_own_create_task_gets_sites_from_asyncio_create_task(self):
        class OwnLoop(asyncio.SelectorEventLoop):
            def create_task(self, coro, **kwargs):  # never reaches BaseEventLoop.create_task
                kwargs.pop("context", None)
                return asyncio.Task(coro, loop=self)

        async def main():
            t = asyncio.create_task(_noop())  # own loop
            await t
            return t

        loop = OwnLoop()
        try:
            t = loop.run_until_complete(main())
        finally:
            loop.close()
        self.assertIsNone(agent._via_cell.cell_contents)
        self.assertEqual(_site(t), "%s:%d" % (HERE, _line("own loop")))

    def test_threads_creating_tasks_at_once_each_get_their_own_lines(self):
        # Every thread runs its own loop and creates tasks from two lines of its own; the
        # interpreter switches threads between bytecodes, so marks of different threads
        # interleave (sys.setswitchinterval makes that frequent).
        def worker(out):
            async def main():
                loop = asyncio.get_running_loop()
                ts = []
                for _ in range(2000):
                    ts.append(asyncio.create_task(_noop()))  # thread a
                    ts.append(loop.create_task(_noop()))  # thread b
                await asyncio.gather(*ts)
                out.extend(_site(t) for t in ts)
            asyncio.run(main())

        old = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)
        try:
            outs = [[] for _ in range(4)]
            ths = [threading.Thread(target=worker, args=(o,)) for o in outs]
            for th in ths:
                th.start()
            for th in ths:
                th.join()
        finally:
            sys.setswitchinterval(old)
        want = ["%s:%d" % (HERE, _line("thread a")), "%s:%d" % (HERE, _line("thread b"))]
        for o in outs:
            self.assertEqual(len(o), 4000)
            self.assertEqual(o, want * 2000)

    def test_line_of_offset_agrees_with_f_lineno(self):
        def where():
            f = sys._getframe(1)
            return f.f_lineno, agent._line_at(f.f_code, f.f_lasti)

        pairs = [where() for _ in range(2)]
        pairs.append(where())
        x = (1,
             where())
        pairs.append(x[1])
        for lineno, resolved in pairs:
            self.assertEqual(lineno, resolved)


APP = textwrap.dedent("""
    import asyncio
    async def poll():
        await asyncio.sleep(3600)
    async def main():
        asyncio.create_task(poll(), name="poller")
        asyncio.ensure_future(poll())
        print("ready", flush=True)
        await asyncio.sleep(3600)
    asyncio.run(main())
""")


class OverTheSocket(unittest.TestCase):
    def test_report_rows_carry_created_at(self):
        from test_agent import Client, Target
        t = Target(APP)
        try:
            self.assertEqual(t.proc.stdout.readline(), b"ready\n")
            c = Client(t.wait_socket(), subscribe_ms=100)
            r = c.report()
            by_name = {x["name"]: x for x in r["tasks"]}
            self.assertEqual(by_name["poller"]["created_at"], "<string>:6")
            others = [x for x in r["tasks"] if x["name"] not in ("poller",)]
            sites = sorted(x["created_at"] for x in others)
            # asyncio.run's main task is made inside asyncio.run: its creator is the module
            # line that calls asyncio.run.
            self.assertEqual(sites, ["<string>:10", "<string>:7"])
            c.s.close()
        finally:
            t.close()


if __name__ == "__main__":
    unittest.main()
