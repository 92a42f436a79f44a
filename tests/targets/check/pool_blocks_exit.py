"""A ThreadPoolExecutor worker blocks the exit: SIGTERM's handler ends the main thread
(SystemExit), then concurrent.futures' exit hook joins the worker, which sleeps. With
--ignore-int, SIGINT is ignored, as a CI runner's background job starts with it: the forced
phases' SIGINT then does nothing and their SIGTERM raises SystemExit inside
threading._shutdown ("Exception ignored in: <module 'threading'>")."""
import concurrent.futures
import signal
import sys
import time

if "--ignore-int" in sys.argv:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def block():
    time.sleep(1000)


ex = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="pool")
ex.submit(block)
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
print("READY", flush=True)
signal.pause()
