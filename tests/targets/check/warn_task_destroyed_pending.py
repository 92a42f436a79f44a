"""Seed warning `task_destroyed_pending`: on SIGTERM the loop is stopped and closed by
hand with a task still pending (nobody cancelled it); dropping it logs
"Task was destroyed but it is pending!".

Expected under `check`: exit 0 within budget, NOT clean by `no warnings`.
"""
import asyncio
import gc
import signal

loop = asyncio.new_event_loop()
asyncio.set_event_loop(loop)
stop = asyncio.Event()
pending = []


async def forever():
    await loop.create_future()


async def main():
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    pending.append(loop.create_task(forever()))
    print("READY", flush=True)
    await stop.wait()


loop.run_until_complete(main())
loop.close()
pending.clear()
gc.collect()
print("EXITING", flush=True)
