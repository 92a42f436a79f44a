"""A target whose every teardown phase takes a while, so that a kill from outside can land
inside any of them (tests/faults_phase.rs): a task that swallows its cancellation (the
cancel phase waits for it), a child that ignores SIGTERM, with a grandchild (the terminate phase
waits out its grace), an executor worker blocked on an Event (the executor phase waits for it), and an
interpreter that ignores SIGINT and SIGTERM (the signal phase waits before SIGKILL)."""

import asyncio
import signal
import subprocess
import sys
import threading

# argv[1]: a token every process of the tree carries in its command line (the test finds
# what is left by it).
TOKEN = sys.argv[1] if len(sys.argv) > 1 else "slow-phases"
CHILD = (
    "import signal, subprocess, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)', sys.argv[1]])\n"
    "time.sleep(300)\n"
)

released = threading.Event()


async def stubborn():
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            pass  # swallowed: the cancel phase waits, then gives up


async def main():
    loop = asyncio.get_running_loop()
    keep = [asyncio.create_task(stubborn(), name="stubborn")]
    loop.run_in_executor(None, released.wait)
    subprocess.Popen([sys.executable, "-c", CHILD, TOKEN])
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    loop.add_signal_handler(signal.SIGINT, lambda: None)
    print("ready", flush=True)
    await asyncio.Event().wait()
    del keep


asyncio.run(main())
