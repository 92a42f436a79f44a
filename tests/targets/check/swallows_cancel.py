"""A task catches CancelledError and keeps running; SIGTERM's handler cancels it and
awaits it, so shutdown hangs.

Expected under `check`: NOT clean (budget overrun; the forced "cancel tasks" cannot stop
the stubborn task either; ends by SIGKILL). The evidence names the task `stubborn`.
"""
import asyncio
import signal


async def stubborn():
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            print("stubborn: ignoring cancel", flush=True)


async def main():
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    task = asyncio.create_task(stubborn(), name="stubborn")
    print("READY", flush=True)
    await stop.wait()
    task.cancel()
    await task


asyncio.run(main())
