"""On SIGTERM the handler calls os._exit(0) while a non-daemon worker thread still runs:
status 0 and nothing printed, but os._exit skips threading's join and the atexit handlers,
so the worker is killed mid-work. Not clean whatever the status says."""
import os
import signal
import threading

stop = threading.Event()


def work():
    while not stop.wait(0.05):
        pass


threading.Thread(target=work, name="flush-worker").start()
signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
print("READY", flush=True)
threading.Event().wait()
