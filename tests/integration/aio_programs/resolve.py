"""``resolve.py NAME [NAME...]``: loop.getaddrinfo(NAME, 80) for each; one
JSON line each with the addresses or the gaierror."""

import asyncio
import json
import socket
import sys


async def main() -> int:
    loop = asyncio.get_running_loop()
    for name in sys.argv[1:]:
        try:
            infos = await loop.getaddrinfo(name, 80, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            print(json.dumps({"name": name, "gaierror": exc.errno}), flush=True)
        else:
            print(json.dumps({"name": name, "addresses": [i[4][0] for i in infos]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
