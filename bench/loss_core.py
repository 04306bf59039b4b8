"""Sender CPU cost under random loss, in memory (no network, no asyncio).

The loop of ``bench/ack_path.py`` with a seeded random drop of data segments
at the receiver's input (what ``bench/loss.py``'s nftables rule does): the
receiver takes two segments per 20 us round off the wire and ACKs as its ACK
policy says (every out-of-order segment at once, with SACK blocks); the
sender answers each batch of ACKs with one output round.  Prints the
sender's process CPU time per ACK and per MB (what decides the lab figure
when the sender is the bottleneck), the simulated goodput (what cwnd and
recovery achieve, independent of CPU), retransmissions and RTOs.

    python bench/loss_core.py [--mb 20] [--loss 1] [--cc cubic] [--seed 1] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import sys
import time
from collections import deque
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tcp_core import connected_pair  # noqa: E402

from ustack.tcp import TcpConfig  # noqa: E402
from ustack.wire.tcp import TcpSegment  # noqa: E402


def run(total: int, loss: float, cc: str, seed: int, per_round: int = 2) -> dict[str, float]:
    cfg = TcpConfig(sack=True, timestamps=True, send_buffer=4 << 20, recv_buffer=4 << 20,
                    congestion=cc)
    now = 0.0
    a, b = connected_pair(cfg, now)
    rng = random.Random(seed)
    chunk = bytes(range(256)) * 256
    sent = received = acks = sack_acks = dropped = data_segs = 0
    wire: deque[TcpSegment] = deque()
    cpu = 0.0
    clock = time.process_time
    t_start = clock()
    while received < total:
        now += 0.00002
        t0 = clock()
        while sent < total:
            k = a.send(chunk, now)
            sent += k
            if k < len(chunk):
                break
        out = a.segments_to_send(now)
        cpu += clock() - t0
        data_segs += len(out)
        wire.extend(out)
        for _ in range(per_round):
            if not wire:
                break
            seg = wire.popleft()
            if loss and seg.payload and rng.random() < loss:
                dropped += 1
                continue
            b.receive(seg, now)
        while True:
            data = b.recv(1 << 20, now)
            if not data:
                break
            received += len(data)
        back = b.segments_to_send(now)
        t0 = clock()
        for seg in back:
            acks += 1
            if seg.options.sack_blocks:
                sack_acks += 1
            a.receive(seg, now)
        d = a.next_deadline()
        if d is not None and d <= now:
            a.handle_timer(now)
        cpu += clock() - t0
    total_cpu = clock() - t_start
    info = a.rec.info() if a.rec is not None else None
    return {"sender_cpu": cpu, "total_cpu": total_cpu, "acks": acks, "sack_acks": sack_acks,
            "dropped": dropped, "data_segs": data_segs, "sim_seconds": now,
            "retrans": info.total_retrans if info else 0,
            "rto": a.mib["TcpExtTCPTimeouts"],
            "tlp": info.tlp_probes if info else 0, "undos": info.undos if info else 0}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mb", type=float, default=20)
    p.add_argument("--loss", type=float, default=1.0, help="percent of data segments dropped")
    p.add_argument("--cc", default="cubic")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--sort", default="tottime")
    args = p.parse_args()
    total = int(args.mb * 1_000_000)
    prof = cProfile.Profile() if args.profile else None
    if prof:
        prof.enable()
    r = run(total, args.loss / 100, args.cc, args.seed)
    if prof:
        prof.disable()
        pstats.Stats(prof).sort_stats(args.sort).print_stats(35)
    acks = max(int(r["acks"]), 1)
    print(f"loss_core: {args.mb:g} MB {args.cc} loss {args.loss:g}% seed {args.seed}: "
          f"sender {r['sender_cpu'] / acks * 1e6:.1f} us/ACK, "
          f"{r['sender_cpu'] / (total / 1e6) * 1e3:.1f} ms/MB; total cpu {r['total_cpu']:.2f} s; "
          f"{r['acks']} ACKs ({r['sack_acks']} with SACK), {r['data_segs']} segs, "
          f"{r['dropped']} dropped, {r['retrans']} retrans, rto {r['rto']}, tlp {r['tlp']}, "
          f"undo {r['undos']}; sim {total / r['sim_seconds'] / 1e6:.1f} MB/s")


if __name__ == "__main__":
    main()
