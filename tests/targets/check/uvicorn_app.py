"""A tiny ASGI app served by uvicorn (installed by .ci/run): `python3 uvicorn_app.py PORT`.

uvicorn handles SIGTERM itself (graceful shutdown, then lifespan shutdown). It binds the
socket after lifespan startup, so tests wait with --ready-port (or --ready-log on its
"Uvicorn running on" line). Expected under `check`: clean, exit 0.
"""
import sys

import uvicorn


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                print("LIFESPAN SHUTDOWN", flush=True)
                await send({"type": "lifespan.shutdown.complete"})
                return
    elif scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok\n"})


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="info")
