"""Per-ACK cost of the sender: a link-like loop where the receiver ACKs every
two segments and the sender answers each ACK with one output round.

    python bench/ack_path.py [--mb 20] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from collections import deque
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tcp_core import connected_pair  # noqa: E402

from ustack.tcp import TcpConfig  # noqa: E402
from ustack.wire.tcp import TcpSegment  # noqa: E402


def run(total: int) -> tuple[float, int]:
    cfg = TcpConfig(sack=True, timestamps=True, send_buffer=4 << 20, recv_buffer=4 << 20)
    now = 0.0
    a, b = connected_pair(cfg, now)
    chunk = bytes(range(256)) * 256
    sent = received = acks = 0
    wire: deque[TcpSegment] = deque()
    t0 = time.perf_counter()
    while received < total:
        now += 0.00002
        while sent < total:
            k = a.send(chunk, now)
            sent += k
            if k < len(chunk):
                break
        wire.extend(a.segments_to_send(now))
        for _ in range(2):
            if wire:
                b.receive(wire.popleft(), now)
        while True:
            data = b.recv(1 << 20, now)
            if not data:
                break
            received += len(data)
        for seg in b.segments_to_send(now):
            acks += 1
            a.receive(seg, now)
        d = a.next_deadline()
        if d is not None and d <= now:
            a.handle_timer(now)
    return time.perf_counter() - t0, acks


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mb", type=int, default=20)
    p.add_argument("--profile", action="store_true")
    args = p.parse_args()
    prof = cProfile.Profile() if args.profile else None
    if prof:
        prof.enable()
    elapsed, acks = run(args.mb * 1_000_000)
    if prof:
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    print(f"ack_path: {args.mb} MB in {elapsed:.2f} s = {args.mb / elapsed:.1f} MB/s, "
          f"{acks} ACKs, {elapsed / max(acks, 1) * 1e6:.1f} us per ACK round (both ends)")


if __name__ == "__main__":
    main()
