"""N concurrent GETs of URL with one httpx AsyncClient (TLS verified
against CAFILE, or the default trust store when it is "-"); print one JSON
line with the statuses and sha256 values seen.  ``httpx_get.py URL CAFILE N``"""

import asyncio
import hashlib
import json
import ssl
import sys

import httpx


async def main() -> int:
    url, cafile, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    verify: ssl.SSLContext | bool = True
    if cafile != "-":
        verify = ssl.create_default_context(cafile=cafile)
    async with httpx.AsyncClient(verify=verify) as client:
        responses = await asyncio.gather(*(client.get(url) for _ in range(n)))
    print(json.dumps({
        "statuses": sorted({r.status_code for r in responses}),
        "sha256": sorted({hashlib.sha256(r.content).hexdigest() for r in responses}),
        "count": len(responses),
    }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
