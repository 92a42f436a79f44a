"""Seed warning `slow_callback`: debug mode; after SIGTERM the main coroutine blocks the
loop (time.sleep) for 1.5 s, so asyncio logs "Executing <...> took 1.5xx seconds".
The threshold is high until then and 1 s after: a loaded machine must not make the start-up
step or asyncio.run's own clean-up steps "slow" too (CI saw the start-up step take 0.12 s).

Expected under `check`: exit 0 within budget, NOT clean by `no warnings`.
"""
import asyncio
import signal
import time


async def main():
    loop = asyncio.get_running_loop()
    loop.slow_callback_duration = 60.0
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print("READY", flush=True)
    await stop.wait()
    loop.slow_callback_duration = 1.0  # read when this step ends
    time.sleep(1.5)  # a blocking flush in the shutdown path


asyncio.run(main(), debug=True)
