"""The agent never hands the host a failure of its own making. Here: a client connecting while
an app thread builds tuples from generators. CPython builds `tuple(generator)` in place and
resizes it at the end, which raises `SystemError: bad argument to internal function` unless the
builder holds the only reference; an agent that lists the heap (`gc.get_objects()`) from its
own thread holds such references while the app thread runs (seen in CI: aiohttp's import died
of it while `check` connected). Real interpreter, real socket.

Run: python3 -m unittest discover -s assets/agent/tests   (from the repo root)
"""

import json
import textwrap
import unittest

import test_verdict

APP = textwrap.dedent("""
    import asyncio, gc, json, sys, threading, time
    calls = []
    for name in ("get_objects", "get_referrers", "get_referents"):
        orig = getattr(gc, name)
        def spy(*a, _orig=orig, _name=name, **k):
            calls.append((_name, threading.current_thread().name))
            return _orig(*a, **k)
        setattr(gc, name, spy)
    counts = {"built": 0, "errors": []}
    stop = threading.Event()
    def gen():
        for i in range(64):
            if i % 8 == 0:
                time.sleep(0)  # gives the GIL away mid-build, as an import's Python code does
            yield i
    def builder():
        while not stop.is_set():
            try:
                tuple(gen())
                counts["built"] += 1
            except SystemError as e:
                counts["errors"].append(str(e))
    threading.Thread(target=builder, name="builder").start()
    async def idle():
        await asyncio.sleep(3600)
    def loop_thread():
        loop = asyncio.new_event_loop()
        loop.create_task(idle())
        loop.run_forever()
    threading.Thread(target=loop_thread, name="loop", daemon=True).start()
    print("ready", flush=True)
    sys.stdin.readline()
    stop.set()
    print(json.dumps({"calls": calls, **counts}), flush=True)
""")


class NoHarmTest(test_verdict.Base):
    def test_clients_connecting_while_tuples_are_built_break_nothing(self):
        t = self.proc(APP)
        for _ in range(5):
            c = self.client(t.sock, subscribe_ms=20)
            r = c.report()
            for _ in range(5):
                r = c.report()
            c.close()
        self.assertEqual(len(r["loops"]), 1, "the loop thread's loop is reported: %r" % r)
        t.tell()
        out = json.loads(t.line())
        self.assertEqual(out["errors"], [], "the app's tuple() failed while clients connected")
        self.assertGreater(out["built"], 0)
        self.assertEqual(out["calls"], [], "the agent listed the heap (gc) from its thread")
        t.proc.wait(30)


if __name__ == "__main__":
    unittest.main()
