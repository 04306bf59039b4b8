"""Download each URL with aiohttp; print one JSON line per URL (status,
size, sha256).  ``aiohttp_download.py URL [URL...]``"""

import asyncio
import hashlib
import json
import sys

import aiohttp


async def main() -> int:
    async with aiohttp.ClientSession() as session:
        for url in sys.argv[1:]:
            digest = hashlib.sha256()
            size = 0
            async with session.get(url) as resp:
                async for chunk in resp.content.iter_chunked(1 << 16):
                    digest.update(chunk)
                    size += len(chunk)
                print(json.dumps({"url": url, "status": resp.status, "size": size,
                                  "sha256": digest.hexdigest()}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
