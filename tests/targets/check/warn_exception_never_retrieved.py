"""Seed warning `exception_never_retrieved`: on SIGTERM, a gather() over a task that is
then cancelled is dropped without retrieving its result (the seed's
"_GatheringFuture exception was never retrieved"), and a task that raised is dropped too
("Task exception was never retrieved").

Expected under `check`: exit 0 within budget, NOT clean by `no warnings`.
"""
import asyncio
import gc
import signal


async def fails():
    raise ConnectionError("backend went away")


async def main():
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("READY", flush=True)
    await stop.wait()
    child = asyncio.ensure_future(asyncio.sleep(10))
    gathered = asyncio.gather(child)
    child.cancel()
    failing = asyncio.ensure_future(fails())
    await asyncio.sleep(0.05)
    del gathered, failing, child
    gc.collect()


asyncio.run(main())
