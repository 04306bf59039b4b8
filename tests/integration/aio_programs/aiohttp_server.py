"""An aiohttp web server on 0.0.0.0:PORT: GET / says hello, POST /upload
answers the size and sha256 of the body, GET /quit stops it.
``aiohttp_server.py PORT``"""

import asyncio
import hashlib
import sys

from aiohttp import web


async def main() -> int:
    done = asyncio.Event()

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text=f"hello {request.remote}\n")

    async def upload(request: web.Request) -> web.Response:
        digest = hashlib.sha256()
        size = 0
        async for chunk in request.content.iter_chunked(1 << 16):
            digest.update(chunk)
            size += len(chunk)
        return web.Response(text=f"{size} {digest.hexdigest()}\n")

    async def quit_(request: web.Request) -> web.Response:
        done.set()
        return web.Response(text="bye\n")

    app = web.Application()
    app.add_routes([web.get("/", hello), web.post("/upload", upload), web.get("/quit", quit_)])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "0.0.0.0", int(sys.argv[1]))
    await site.start()
    print("READY", runner.addresses, flush=True)
    await done.wait()
    await asyncio.sleep(0.1)  # let the last response leave
    await runner.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
