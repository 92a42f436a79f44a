"""lifecycle-top demo target: a Python service that will not exit cleanly.

What keeps it alive (the failures of a real shutdown write-up, in miniature):
  * "asyncio_1": a NON-daemon worker thread blocked on an Event nobody will set, so
    the interpreter's threading._shutdown waits for it forever;
  * "heartbeat", "metrics": daemon threads (harmless at exit, but visible);
  * a child "stubborn-worker" that ignores SIGTERM and has a grandchild of its own;
  * a child "one-shot" that exits by itself after a few seconds (exit code 3).
Threads get their OS name (comm) set through prctl so /proc shows them, as a real
service would with python-prctl or setproctitle.
"""

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time

from demo_guard import child_code

PR_SET_NAME = 15


def set_os_thread_name(name):
    """Make the kernel's comm match the Python thread name (best effort)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)
    except (OSError, AttributeError):
        pass


def named(fn, name):
    def run():
        set_os_thread_name(name)
        fn()

    return run


never_set = threading.Event()


def wait_for_shutdown_signal():
    # The bug: this Event is never set, and the thread is not a daemon.
    never_set.wait()


def heartbeat():
    while True:
        time.sleep(1.0)


def metrics():
    while True:
        time.sleep(0.25)
        sum(range(2000))


# The stubborn child ignores SIGTERM and starts a grandchild that does too; both leave
# when lifecycle-top is gone (see demo_guard.py).
GRANDCHILD = child_code("stubborn-helper", ignore_term=True)
STUBBORN = child_code(
    "stubborn-worker",
    ignore_term=True,
    extra="subprocess.Popen([sys.executable, '-c', %r])" % GRANDCHILD,
)


def spawn_children():
    procs = []
    # Ignores SIGTERM and starts a grandchild: only SIGKILL gets rid of it.
    procs.append(
        subprocess.Popen(
            [sys.executable, "-c", STUBBORN, "stubborn-worker"],
            stdin=subprocess.DEVNULL,
        )
    )
    # Exits by itself with code 3 after a few seconds.
    procs.append(subprocess.Popen(["sh", "-c", "sleep 4; exit 3"]))
    return procs


def main():
    threading.Thread(
        target=named(wait_for_shutdown_signal, "asyncio_1"), name="asyncio_1"
    ).start()
    for name, fn in (("heartbeat", heartbeat), ("metrics", metrics)):
        threading.Thread(target=named(fn, name), name=name, daemon=True).start()
    children = spawn_children()
    print(f"demo target pid {os.getpid()} started {len(children)} children", flush=True)

    extra = None
    try:
        import demo_async  # asyncio part of the demo, when present

        extra = demo_async
    except ImportError:
        pass
    if extra is not None:
        extra.run(sys.argv[1:])
    else:
        while True:
            time.sleep(1.0)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        print("demo: KeyboardInterrupt in main; the non-daemon thread keeps us alive", flush=True)
