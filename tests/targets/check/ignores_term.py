"""Ignores SIGTERM; a non-daemon thread waits on an Event forever, main joins it.

Expected under `check`: NOT clean (budget overrun, SIGKILL); the evidence shows the
non-daemon thread `stuck-worker` and its stack in `Event.wait`.
"""
import signal
import threading

signal.signal(signal.SIGTERM, signal.SIG_IGN)


def stuck_worker():
    threading.Event().wait()


worker = threading.Thread(target=stuck_worker, name="stuck-worker")
worker.start()
print("READY", flush=True)
worker.join()
