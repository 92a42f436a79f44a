"""Clean by systemd's rule: no SIGTERM handler, so SIGTERM's default action ends it.

Expected under `check`: clean (death by the stop signal), no warnings.
"""
import asyncio


async def main():
    print("READY", flush=True)
    await asyncio.Event().wait()


asyncio.run(main())
