"""Microbenchmark of the sans-I/O TCP core: move 100 MB from one connection
to another in memory (no network, no asyncio, no encoding) and print MB/s.

    python bench/tcp_core.py [--mb 100] [--max-segment 0] [--encode] [--profile]

The loop is what a stack does per wake-up: the writer tops up its send buffer,
drains ``segments_to_send``; the reader ``receive``s them, ``recv``s, drains its
ACKs back.  Time advances 50 us per round so RTT samples are non-zero.
``--encode`` additionally encodes and decodes every segment (checksums
included), i.e. the wire codec's cost on top of the core's.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time

from ustack.tcp import TcpConfig, TcpConnection
from ustack.tcp.listener import listener_action
from ustack.wire.tcp import TcpSegment

SRC = b"\x0a\x00\x00\x01"
DST = b"\x0a\x00\x00\x02"


def connected_pair(cfg: TcpConfig, now: float) -> tuple[TcpConnection, TcpConnection]:
    """An active and a passive core after a three-way handshake in memory."""
    a = TcpConnection.connect(40000, 5001, 0xFFFF0000, now, cfg)
    syn = a.segments_to_send(now)[0]
    assert listener_action(syn) == "syn"
    b = TcpConnection.accept(syn, 12345, now, cfg)
    for seg in b.segments_to_send(now):
        a.receive(seg, now)
    for seg in a.segments_to_send(now):
        b.receive(seg, now)
    return a, b


def run(total: int, max_segment: int, encode: bool, sack: bool, ts: bool) -> tuple[float, int]:
    cfg = TcpConfig(max_segment=max_segment, sack=sack, timestamps=ts,
                    send_buffer=4 << 20, recv_buffer=4 << 20)
    now = 0.0
    a, b = connected_pair(cfg, now)
    chunk = bytes(range(256)) * 256  # 64 KiB
    sent = received = 0
    segments = 0
    t0 = time.perf_counter()
    while received < total:
        now += 0.00005
        while sent < total:
            k = a.send(chunk, now)
            sent += k
            if k < len(chunk):
                break
        out = a.segments_to_send(now)
        segments += len(out)
        for seg in out:
            if encode:
                seg = TcpSegment.decode(seg.encode(SRC, DST))
            b.receive(seg, now)
        while True:
            data = b.recv(1 << 20, now)
            if not data:
                break
            received += len(data)
        for seg in b.segments_to_send(now):
            if encode:
                seg = TcpSegment.decode(seg.encode(DST, SRC))
            a.receive(seg, now)
        if a.next_deadline() is not None and a.next_deadline() <= now:  # type: ignore[operator]
            a.handle_timer(now)
    elapsed = time.perf_counter() - t0
    return elapsed, segments


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mb", type=int, default=100)
    p.add_argument("--max-segment", type=int, default=0, help="GSO super-segment size, 0 = MSS")
    p.add_argument("--encode", action="store_true")
    p.add_argument("--no-sack", action="store_true")
    p.add_argument("--no-ts", action="store_true")
    p.add_argument("--profile", action="store_true")
    args = p.parse_args()
    total = args.mb * 1_000_000
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
    elapsed, segs = run(total, args.max_segment, args.encode, not args.no_sack, not args.no_ts)
    if args.profile:
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(15)
    print(f"tcp_core: {args.mb} MB in {elapsed:.2f} s = {total / elapsed / 1e6:.1f} MB/s "
          f"({segs} data segments, {segs / elapsed / 1000:.0f} k seg/s, "
          f"max_segment={args.max_segment or 'MSS'}, encode={args.encode})")


if __name__ == "__main__":
    main()
