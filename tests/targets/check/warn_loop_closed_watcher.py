"""Seed warning `loop_closed_watcher`: on SIGTERM, starts a subprocess and leaves the loop
without waiting for it (as the seed did). The loop closes while the waitpid watcher still
handles the pid; the watcher logs "Loop <...> that handles pid N is closed".

Expected under `check`: exit 0 within budget, NOT clean by `no warnings`.
"""
import asyncio
import signal
import threading
import warnings

try:
    import asyncio.unix_events as unix_events
    # 3.12+ on Linux would use a pidfd watcher, which does not log; the seed's warning
    # comes from the threaded watcher, so ask for it (3.8 - 3.13: a policy watcher;
    # 3.14+: the loop consults can_use_pidfd).
    if hasattr(unix_events, "can_use_pidfd"):
        unix_events.can_use_pidfd = lambda: False
    if hasattr(asyncio, "ThreadedChildWatcher"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            asyncio.set_child_watcher(asyncio.ThreadedChildWatcher())
except Exception:  # pragma: no cover - best effort only
    pass

procs = []


async def main():
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("READY", flush=True)
    await stop.wait()
    # "Loading server" started late and never waited for.
    procs.append(await asyncio.create_subprocess_exec("sleep", "0.3"))


asyncio.run(main())
# The waitpid threads are daemons: wait for them so the warning is written before exit.
for t in threading.enumerate():
    if t is not threading.current_thread() and "waitpid" in t.name:
        t.join(5)
print("EXITING", flush=True)
