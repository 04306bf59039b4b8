"""websockets both ways: ``ws_peer.py server HOST PORT`` answers each binary
message with its sha256 (text) and the message reversed, until a "quit"
message; ``ws_peer.py client URI NBYTES`` sends NBYTES of random data and
checks both answers, printing OK."""

import asyncio
import hashlib
import os
import sys

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

LIMIT = 4 * 2**20


async def server(host: str, port: int) -> int:
    stop = asyncio.Event()

    async def handler(ws: ServerConnection) -> None:
        async for message in ws:
            if message == "quit":
                stop.set()
                return
            assert isinstance(message, bytes)
            await ws.send(hashlib.sha256(message).hexdigest())
            await ws.send(message[::-1])

    async with serve(handler, host, port, max_size=LIMIT) as srv:
        print("READY", [s.getsockname() for s in srv.sockets], flush=True)
        await stop.wait()
    return 0


async def client(uri: str, nbytes: int) -> int:
    payload = os.urandom(nbytes)
    async with connect(uri, max_size=LIMIT) as ws:
        await ws.send(payload)
        digest = await ws.recv()
        back = await ws.recv()
        await ws.send("quit")
    ok = digest == hashlib.sha256(payload).hexdigest() and back == payload[::-1]
    print("OK" if ok else "MISMATCH", len(back), flush=True)
    return 0 if ok else 1


async def main() -> int:
    if sys.argv[1] == "server":
        return await server(sys.argv[2], int(sys.argv[3]))
    return await client(sys.argv[2], int(sys.argv[3]))


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
