"""Per-ACK cost of the sender: a link-like loop where the receiver ACKs every
two segments and the sender answers each ACK with one output round.

    python bench/ack_path.py [--mb 20] [--rounds 1] [--profile] [--cc cubic]

Times are process CPU time (``time.process_time``), not wall time, so other
jobs on a shared machine change them less.  Besides the whole round (both
ends) it reports the sender's share: ``a.receive(ack)`` plus the output
round ``a.segments_to_send`` it triggers (per ACK), split by
``time.perf_counter_ns`` around the calls.  ``--rounds N`` repeats the run
and reports the minimum.  Runs against any tree with the same core API
(``PYTHONPATH=<tree>``), e.g. the pre-rebuild commit for a side-by-side ratio.
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


def run(total: int, cc: str | None = None) -> tuple[float, int, float, float]:
    """Returns (CPU seconds, ACKs, sender receive ns per ACK, sender output ns per ACK)."""
    kw = {"congestion": cc} if cc else {}
    cfg = TcpConfig(sack=True, timestamps=True, send_buffer=4 << 20, recv_buffer=4 << 20,
                    **kw)  # type: ignore[arg-type]
    now = 0.0
    a, b = connected_pair(cfg, now)
    chunk = bytes(range(256)) * 256
    sent = received = acks = 0
    rx_ns = tx_ns = 0
    clock = time.perf_counter_ns
    wire: deque[TcpSegment] = deque()
    t0 = time.process_time()
    while received < total:
        now += 0.00002
        while sent < total:
            k = a.send(chunk, now)
            sent += k
            if k < len(chunk):
                break
        t1 = clock()
        wire.extend(a.segments_to_send(now))
        tx_ns += clock() - t1
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
            t1 = clock()
            a.receive(seg, now)
            rx_ns += clock() - t1
        d = a.next_deadline()
        if d is not None and d <= now:
            a.handle_timer(now)
    elapsed = time.process_time() - t0
    n = max(acks, 1)
    return elapsed, acks, rx_ns / n, tx_ns / n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mb", type=int, default=20)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--cc", default=None, help="congestion control (default: the config's)")
    p.add_argument("--profile", action="store_true")
    args = p.parse_args()
    prof = cProfile.Profile() if args.profile else None
    if prof:
        prof.enable()
    results = [run(args.mb * 1_000_000, args.cc) for _ in range(max(args.rounds, 1))]
    if prof:
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(30)
    elapsed, acks, rx, tx = min(results)
    rx = min(r[2] for r in results)
    tx = min(r[3] for r in results)
    print(f"ack_path: {args.mb} MB in {elapsed:.2f} s CPU = {args.mb / elapsed:.1f} MB/s, "
          f"{acks} ACKs, {elapsed / max(acks, 1) * 1e6:.1f} us CPU per ACK round (both ends); "
          f"sender {(rx + tx) / 1000:.1f} us per ACK (receive {rx / 1000:.1f} + "
          f"output {tx / 1000:.1f})")


if __name__ == "__main__":
    main()
