"""SIGTERM is only noted; the main task keeps waiting for a worker that never ends.

Expected under `check`: NOT clean (budget overrun), then the forced "cancel tasks" cancels
the worker but spares the main task, which finishes its async cleanup in `finally`
(prints CLEANUP DONE) and exits 0. If the main task were cancelled it would print
MAIN TASK CANCELLED.
"""
import asyncio
import signal


async def work():
    await asyncio.sleep(3600)


async def main():
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, lambda: print("SIGTERM noted, still waiting for worker", flush=True))
    worker = asyncio.create_task(work(), name="worker")
    print("READY", flush=True)
    try:
        await asyncio.gather(worker, return_exceptions=True)
    except asyncio.CancelledError:
        print("MAIN TASK CANCELLED", flush=True)
        raise
    finally:
        await asyncio.sleep(0.05)
        print("CLEANUP DONE", flush=True)


asyncio.run(main())
