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


# The stubborn child ignores SIGTERM and starts a grandchild that does too. Both leave
# when lifecycle-top (LIFECYCLE_TOP_DEMO_PARENT) is gone, so the demo never outlives the
# dashboard that launched it, even one killed with SIGKILL.
GUARD = (
    "import os, time\n"
    "def lifecycle_top_gone():\n"
    "    pid = int(os.environ.get('LIFECYCLE_TOP_DEMO_PARENT', '0') or 0)\n"
    "    if pid <= 0:\n"
    "        return False\n"
    "    try:\n"
    "        os.kill(pid, 0)\n"
    "        return False\n"
    "    except ProcessLookupError:\n"
    "        return True\n"
    "    except PermissionError:\n"
    "        return False\n"
    "def idle_until_lifecycle_top_gone():\n"
    "    while not lifecycle_top_gone():\n"
    "        time.sleep(0.5)\n"
)
GRANDCHILD = (
    GUARD
    + "import ctypes, signal\n"
    "ctypes.CDLL(None).prctl(15, b'stubborn-helper', 0, 0, 0)\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "idle_until_lifecycle_top_gone()\n"
)
STUBBORN = (
    GUARD
    + "import ctypes, signal, subprocess, sys\n"
    "ctypes.CDLL(None).prctl(15, b'stubborn-worker', 0, 0, 0)\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "subprocess.Popen([sys.executable, '-c', " + repr(GRANDCHILD) + "])\n"
    "idle_until_lifecycle_top_gone()\n"
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
