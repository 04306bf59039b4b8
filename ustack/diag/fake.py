"""Synthetic socket records and a fake stack serving them, for tests and
``bench/ss_bench.py``: ``python -m ustack.diag.fake --count 50000`` serves
that many records on a diagnostics endpoint until stdin closes or it is killed
(it prints the endpoint path once listening)."""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys

from ustack.diag.records import SocketRecord

_STATES = (
    ["ESTAB"] * 80 + ["TIME-WAIT"] * 8 + ["CLOSE-WAIT"] * 4 + ["FIN-WAIT-2"] * 3
    + ["FIN-WAIT-1", "SYN-SENT", "SYN-RECV", "LAST-ACK", "CLOSING"]
)


def synthetic_records(count: int, seed: int = 1, pid: int = 4242) -> list[SocketRecord]:
    """``count`` plausible records: two listeners, the rest connections from
    10.77.0.2 to 10.77.0.1 ports 80/443/5001/22 with varied figures."""
    rng = random.Random(seed)
    records = [
        SocketRecord(
            "LISTEN", "10.77.0.2", 8080, "0.0.0.0", 0, 0, 128, pid, "python3", 0, 1, 0x1000
        ),
        SocketRecord("LISTEN", "10.77.0.2", 22, "0.0.0.0", 0, 1, 16, pid, "python3", 0, 2, 0x1001),
    ]
    for i in range(max(0, count - 2)):
        state = rng.choice(_STATES)
        rport = rng.choice((80, 443, 5001, 22))
        srtt = rng.uniform(0.0001, 0.05)
        timer = ("timewait", rng.uniform(0, 60), 0) if state == "TIME-WAIT" else (
            ("on", rng.uniform(0.2, 1.0), 0) if rng.random() < 0.3 else ("", 0.0, 0)
        )
        records.append(
            SocketRecord(
                state, "10.77.0.2", 32768 + i % 28000, "10.77.0.1" if i % 7 else "10.78.1.9",
                rport, rng.randrange(0, 70000) if i % 5 == 0 else 0, rng.randrange(0, 4000),
                pid, "python3", 0, 3 + i, 0x2000 + i,
                timer[0], timer[1], timer[2], state == "CLOSE-WAIT", False,
                True, True, False, True, "reno", 7, 7, 0.2 + srtt, 0, srtt, srtt / 2,
                0.04, 1448, 1500, 1448, 1460, rng.randrange(1, 100), 0x7FFFFFFF,
                rng.randrange(0, 10**9), 0, rng.randrange(0, 10**9), rng.randrange(0, 10**6),
                rng.randrange(1, 10**5), rng.randrange(1, 10**5), rng.randrange(0, 10**5),
                rng.randrange(0, 10**5), rng.uniform(0, 5), rng.uniform(0, 5), rng.uniform(0, 5),
            )
        )
    return records


async def _serve(count: int, path: str | None) -> None:
    from ustack.diag.endpoint import serve_diagnostics

    records = synthetic_records(count, pid=os.getpid())
    server = await serve_diagnostics(lambda detail: records, path=path)
    print(server.path, flush=True)
    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(None, sys.stdin.read)
    finally:
        await server.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--path", default=None)
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.count, args.path))


if __name__ == "__main__":
    main()
