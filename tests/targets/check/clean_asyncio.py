"""Clean asyncio shutdown: one task, no threads; SIGTERM sets an Event, main returns.

Expected under `check`: clean, exit 0 (prints READY when ready, STOPPED on the way out).
"""
import asyncio
import signal


async def main():
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("READY", flush=True)
    await stop.wait()
    print("STOPPED", flush=True)


asyncio.run(main())
