"""asyncio part of the lifecycle-top demo (imported by demo.py, which calls run(argv)).

The asyncio shutdown failures from real write-ups, in miniature:
  * tracked background tasks ("poller", "flusher") registered with the agent;
  * an UNTRACKED task ("progress-tracker") created and forgotten, as in
    `asyncio.create_task(track_backend_progress())`;
  * a task that swallows CancelledError ("stubborn-consumer"): cancelling it does nothing,
    and asyncio.run() then waits for it forever at exit;
  * a default-executor worker blocked in a thread, and an asyncio subprocess;
  * app phases registered with the agent: "flush-metrics" (async) and "close-db" (sync);
  * --block-loop: 3 s after start the loop is blocked by a synchronous sleep for 60 s
    (the agent still answers and shows where the loop is stuck).
Works without the agent too (the registrations are skipped).
"""

import asyncio
import sys
import threading
import time

import demo_guard

try:
    import lifecycle_top_agent as agent
except ImportError:  # not launched by lifecycle-top: same demo, no registrations
    agent = None

background_tasks = []
released = threading.Event()
metrics_buffer = []


async def poller():
    while True:
        await asyncio.sleep(0.5)
        metrics_buffer.append(time.time())


async def flusher():
    while True:
        await asyncio.sleep(2.0)
        del metrics_buffer[:-100]


async def track_progress():
    # Created with asyncio.create_task() and never stored: nobody will cancel it.
    step = 0
    while True:
        await asyncio.sleep(1.0)
        step += 1


async def stubborn_consumer():
    queue = asyncio.Queue()
    while True:
        try:
            await queue.get()
        except asyncio.CancelledError:
            # The bug: cancellation is swallowed, so this task never ends.
            continue


def blocking_io():
    # Runs in the loop's default executor; waits for an event nobody sets.
    released.wait()


def blocking_call():
    # The other bug: synchronous sleep on the event loop thread.
    time.sleep(60)


async def flush_metrics():
    await asyncio.sleep(0.2)
    n = len(metrics_buffer)
    metrics_buffer.clear()
    return "flushed %d samples" % n


def close_db():
    time.sleep(0.1)
    return "db closed"


async def main(argv):
    loop = asyncio.get_running_loop()
    background_tasks.append(asyncio.create_task(poller(), name="poller"))
    background_tasks.append(asyncio.create_task(flusher(), name="flusher"))
    asyncio.create_task(track_progress(), name="progress-tracker")
    background_tasks.append(asyncio.create_task(stubborn_consumer(), name="stubborn-consumer"))
    loop.run_in_executor(None, blocking_io)
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", demo_guard.child_code("async-child")
        )
        background_tasks.append(asyncio.create_task(proc.wait(), name="child-waiter"))
    except OSError:
        pass
    if agent is not None:
        agent.register_tasks(background_tasks)
        agent.register_phase("flush-metrics", flush_metrics, "flush buffered metrics (async)")
        agent.register_phase("close-db", close_db, "close the database connection")
    if "--block-loop" in argv:
        loop.call_later(3.0, blocking_call)
    print("demo: asyncio loop running with %d tracked tasks" % len(background_tasks), flush=True)
    await asyncio.Event().wait()  # serve forever


def run(argv):
    if "--no-async" not in argv:
        try:
            asyncio.run(main(argv))
        except (RuntimeError, asyncio.CancelledError) as exc:
            # The loop was stopped or the main task cancelled from outside (lifecycle-top's
            # agent): main() is over, the process is not. Like a real service, it now idles
            # in the main thread; Ctrl-C (KeyboardInterrupt) still goes to demo.py, and then
            # the non-daemon thread keeps the interpreter waiting in threading._shutdown.
            print("demo: asyncio.run() ended: %r" % (exc,), flush=True)
    while True:
        time.sleep(1.0)
