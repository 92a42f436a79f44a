"""Seed warning `never_awaited`: the SIGTERM path calls a coroutine function without
awaiting it: "RuntimeWarning: coroutine 'flush_metrics' was never awaited".

Expected under `check`: exit 0 within budget, NOT clean by `no warnings`.
"""
import asyncio
import gc
import signal


async def flush_metrics():
    await asyncio.sleep(0)


async def main():
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("READY", flush=True)
    await stop.wait()
    flush_metrics()
    gc.collect()


asyncio.run(main())
