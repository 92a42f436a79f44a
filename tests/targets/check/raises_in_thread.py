"""A thread dies of an exception before READY; SIGTERM then exits 0.

Expected under `check`: NOT clean by the `no warnings` check (kind thread_exception,
exc_type ValueError); clean with --allow-warnings.
"""
import signal
import sys
import threading
import time


def worker():
    raise ValueError("bad config value in worker")


t = threading.Thread(target=worker, name="config-loader")
t.start()
t.join()
signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
print("READY", flush=True)
while True:
    time.sleep(60)
