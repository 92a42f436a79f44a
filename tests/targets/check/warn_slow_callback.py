"""Seed warning `slow_callback`: debug mode; after SIGTERM the main coroutine blocks the
loop (time.sleep) for 0.3 s, so asyncio logs "Executing <...> took 0.3xx seconds".

Expected under `check`: exit 0 within budget, NOT clean by `no warnings`.
"""
import asyncio
import signal
import time


async def main():
    loop = asyncio.get_running_loop()
    loop.slow_callback_duration = 0.1
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print("READY", flush=True)
    await stop.wait()
    time.sleep(0.3)  # a blocking flush in the shutdown path


asyncio.run(main(), debug=True)
