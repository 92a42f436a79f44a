"""Seed warning `resource_warning`: ResourceWarning is enabled by the program itself (as
`-W default` would); the SIGTERM path drops an open socket and an open file:
"ResourceWarning: unclosed <socket.socket ...>" and "unclosed file <...>".

Expected under `check`: exit 0 within budget, NOT clean by `no warnings`.
"""
import gc
import os
import signal
import socket
import sys
import time
import warnings

warnings.simplefilter("default", ResourceWarning)


def on_term(signum, frame):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    f = open(os.devnull)
    del s, f
    gc.collect()
    sys.exit(0)


signal.signal(signal.SIGTERM, on_term)
print("READY", flush=True)
while True:
    time.sleep(60)
