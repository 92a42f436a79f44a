"""The agent's `exiting` at atexit names the non-daemon threads the exit abandons: none when
the interpreter joined them all, the stuck one when a KeyboardInterrupt cut that join short
(CPython then exits 0 and kills the thread mid-work). Real interpreter, real socket.

Run: python3 -m unittest discover -s assets/agent/tests   (from the repo root)
"""

import os
import signal
import textwrap
import time
import unittest

import test_verdict

APP = textwrap.dedent("""
    import os, sys, threading
    stop = threading.Event()
    threading.Thread(target=stop.wait, name="stuck-worker").start()
    threading.Thread(target=lambda: None, name="quick-worker").start()
    threading.Thread(target=stop.wait, name="daemon-worker", daemon=True).start()
    if os.environ.get("FINISH"):
        threading.Timer(0.3, stop.set).start()
    print("ready", flush=True)
    sys.stdin.readline()
    if os.environ.get("HARD"):
        if os.environ["HARD"] == "joined":
            stop.set()
            for t in threading.enumerate():
                if t is not threading.current_thread() and not t.daemon:
                    t.join()
        os._exit(4)
""")


class AbandonedTest(test_verdict.Base):
    def run_app(self, finish, env=None):
        env = dict(env or {}, **({"FINISH": "1"} if finish else {}))
        t = self.proc(APP, env=env)
        c = self.client(t.sock, subscribe_ms=50)
        c.report()
        t.tell()  # the module ends: the interpreter joins the non-daemon threads
        exiting = []
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                m = c.read()
            except (EOFError, OSError):
                break
            if m["type"] != "exiting":
                continue
            exiting.append(m)
            if m["reason"] == "main_thread_done" and not finish and len(exiting) == 1:
                # The main thread waits in threading._shutdown for stuck-worker now.
                t.proc.send_signal(signal.SIGINT)
        t.proc.wait(30)
        return t, exiting

    def test_a_join_cut_short_names_the_thread_the_exit_abandons(self):
        t, exiting = self.run_app(finish=False)
        err = t.proc.stderr.read().decode()
        self.assertEqual(t.proc.returncode, 0, err)  # CPython's own status: nothing says unclean
        self.assertIn("KeyboardInterrupt", err)
        at = [m for m in exiting if m["reason"] == "atexit"]
        self.assertEqual(len(at), 1, exiting)
        names = [a["name"] for a in at[0]["abandoned"]]
        self.assertEqual(names, ["stuck-worker"])
        self.assertGreater(at[0]["abandoned"][0]["native_id"], 0)

    def test_threads_joined_by_the_interpreter_are_not_abandoned(self):
        t, exiting = self.run_app(finish=True)
        self.assertEqual(t.proc.returncode, 0)
        at = [m for m in exiting if m["reason"] == "atexit"]
        self.assertEqual(len(at), 1, exiting)
        self.assertEqual(at[0]["abandoned"], [])

    def test_os_exit_names_the_threads_it_kills(self):
        t, exiting = self.run_app(finish=False, env={"HARD": "abandon"})
        self.assertEqual(t.proc.returncode, 4)
        self.assertEqual([m["reason"] for m in exiting], ["os_exit"])
        self.assertEqual(exiting[0]["code"], 4)
        self.assertEqual([a["name"] for a in exiting[0]["abandoned"]], ["stuck-worker"])

    def test_os_exit_after_joining_abandons_nothing(self):
        t, exiting = self.run_app(finish=False, env={"HARD": "joined"})
        self.assertEqual(t.proc.returncode, 4)
        self.assertEqual([m["reason"] for m in exiting], ["os_exit"])
        self.assertEqual(exiting[0]["abandoned"], [])


if __name__ == "__main__":
    unittest.main()
