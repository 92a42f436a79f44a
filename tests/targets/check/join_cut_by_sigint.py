"""A thread runs an event loop forever and nothing stops it: the module ends, and the
interpreter waits in threading._shutdown for that non-daemon thread. A SIGINT then raises
KeyboardInterrupt in that wait: CPython prints "Exception ignored in: <module 'threading'>"
and exits with status 0, abandoning the thread mid-work. Not clean whatever the status says.
(SIGTERM, with no handler, kills it: status -15.)"""
import asyncio
import threading

loop = asyncio.new_event_loop()
threading.Thread(target=loop.run_forever, name="loop-runner").start()
print("READY", flush=True)
