"""A tiny aiohttp server (installed by .ci/run): `python3 aiohttp_app.py PORT`.

`web.run_app` handles SIGTERM itself (GracefulExit, runs on_shutdown/on_cleanup).
Expected under `check`: clean, exit 0; ready when the port LISTENs.
"""
import sys

from aiohttp import web


async def hello(request):
    return web.Response(text="ok\n")


async def on_cleanup(app):
    print("AIOHTTP CLEANUP", flush=True)


def make_app():
    app = web.Application()
    app.router.add_get("/", hello)
    app.on_cleanup.append(on_cleanup)
    return app


if __name__ == "__main__":
    web.run_app(make_app(), host="127.0.0.1", port=int(sys.argv[1]),
                print=lambda *a: print("READY", *a, flush=True))
