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
from typing import Any

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


def golden_records() -> list[SocketRecord]:
    """A fixed set covering every view: a listener with a queued connection, an
    established connection with full figures, TIME-WAIT with its timer,
    CLOSE-WAIT (receive side shut), FIN-WAIT-2 (send side shut), SYN-SENT
    retransmitting, and a connection on another subnet."""
    base: dict[str, Any] = {"pid": 4242, "comm": "python3", "uid": 0}
    return [
        SocketRecord("LISTEN", "10.77.0.2", 8080, "0.0.0.0", 0, 1, 128, ino=1, sk=0x7F01, **base),
        SocketRecord(
            "ESTAB", "10.77.0.2", 41234, "10.77.0.1", 5001, 0, 1448, ino=2, sk=0x7F02,
            timer_name="on", timer_expires=0.2, timer_count=0,
            ts_enabled=True, sack_enabled=True, wscale_enabled=True, ca_name="reno",
            snd_wscale=7, rcv_wscale=7, rto=0.204, srtt=0.000412, rttvar=0.000206, ato=0.04,
            mss=1448, pmtu=1500, rcvmss=536, advmss=1460, cwnd=10, ssthresh=0x7FFFFFFF,
            bytes_sent=14480, bytes_acked=13033, bytes_received=100, segs_out=12, segs_in=9,
            data_segs_out=10, data_segs_in=1, last_send=0.004, last_recv=0.25, last_ack=0.004,
            delivery_rate=3_500_000.0, delivered=9, unacked=1, rcv_space=14600,
            rcv_ssthresh=64088, notsent=0, min_rtt=0.000301, snd_wnd=64256, rcv_wnd=64240,
            rcvbuf=131072, sndbuf=262144, **base,
        ),
        SocketRecord(
            "TIME-WAIT", "10.77.0.2", 41236, "10.77.0.1", 80, 0, 0, ino=3, sk=0x7F03,
            timer_name="timewait", timer_expires=59.4, timer_count=0, **base,
        ),
        SocketRecord(
            "CLOSE-WAIT", "10.77.0.2", 8080, "10.77.0.1", 52000, 5, 0, ino=4, sk=0x7F04,
            shut_rd=True, ca_name="reno", rto=1.0, srtt=0.0015, rttvar=0.00075, mss=1448,
            cwnd=10, bytes_received=6, segs_in=3, segs_out=2, data_segs_in=1,
            last_send=65.5, last_recv=65.5, last_ack=65.5, rcvbuf=131072, sndbuf=262144, **base,
        ),
        SocketRecord(
            "FIN-WAIT-2", "10.77.0.2", 41240, "10.77.0.1", 443, 0, 0, ino=5, sk=0x7F05,
            timer_name="timewait", timer_expires=1.5, shut_wr=True, ca_name="reno",
            rto=0.2, srtt=0.0009, rttvar=0.0004, mss=1448, cwnd=7, ssthresh=7,
            bytes_sent=3000, bytes_retrans=1448, bytes_acked=3001, segs_out=5, segs_in=4,
            retransmits=0, total_retrans=1, reordering=4, **base,
        ),
        SocketRecord(
            "SYN-SENT", "10.77.0.2", 41242, "193.233.7.9", 22, 0, 0, ino=6, sk=0x7F06,
            timer_name="on", timer_expires=3.0, timer_count=2, rto=4.0, backoff=2,
            ca_name="reno", cwnd=1, **base,
        ),
    ]
