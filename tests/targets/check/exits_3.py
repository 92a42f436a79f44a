"""Exits with status 3 on SIGTERM.

Expected under `check`: NOT clean (exit status 3), within budget, no warnings.
"""
import signal
import sys
import time


def on_term(signum, frame):
    print("EXITING 3", flush=True)
    sys.exit(3)


signal.signal(signal.SIGTERM, on_term)
print("READY", flush=True)
while True:
    time.sleep(60)
