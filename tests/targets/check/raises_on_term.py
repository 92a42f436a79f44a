"""An exception escapes main during shutdown: a top-level traceback, exit status 1.

Expected under `check`: NOT clean (exit status 1; warning kind unhandled_exception with
exc_type RuntimeError).
"""
import signal
import time


class Shutdown(Exception):
    pass


def on_term(signum, frame):
    raise Shutdown()


def flush_state():
    raise RuntimeError("could not flush state: disk full")


signal.signal(signal.SIGTERM, on_term)
try:
    # READY inside the try: a SIGTERM sent as soon as the line is read must find the handler
    # of Shutdown in place.
    print("READY", flush=True)
    while True:
        time.sleep(60)
except Shutdown:
    flush_state()
