"""CPU cost of the recovery room alone (ustack.tcp.recovery) on a lossy path.

A sender that obeys cwnd and the room's retransmission choices, a path with
a fixed delay and seeded random loss, and a receiver that ACKs every segment
with a cumulative ACK and SACK blocks (RFC 2018: the block of the newest
segment first, at most 3) as Linux does for out-of-order data.  Only the
calls into the room are timed (process CPU time): ``on_sent``, ``on_ack``,
``next_to_retransmit``, ``in_flight``, ``on_timer``.

    python bench/recovery_core.py [--segments 20000] [--loss 1] [--cc cubic] [--gso 1]
                                  [--profile] [--replay N]
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import heapq
import pstats
import random
import time
from typing import Any

from ustack.tcp.congestion import create
from ustack.tcp.recovery import Recovery
from ustack.tcp.rtt import RttEstimator
from ustack.tcp.testing import SequenceReceiver

MSS = 1448


def run(segments: int, loss: float, cc: str, seed: int, delay: float,
        log: list[tuple[Any, ...]] | None = None, gso: int = 1) -> dict[str, float]:
    rng = random.Random(seed)
    rtt = RttEstimator(1.0, 0.2, 120.0, True)
    ctl = create(cc, MSS, 10)
    room = Recovery(0, MSS, rtt, ctl, sack=True)
    rec: Any = room if log is None else Recorder(room, log)
    rcv = SequenceReceiver()
    total = segments * MSS
    now = 0.0
    nxt = 0
    events: list[tuple[float, int, str, int, int, list[tuple[int, int]]]] = []
    counter = 0
    stats = {"rto": 0, "probe": 0, "reorder": 0, "sent": 0, "acks": 0, "sack_acks": 0}
    clock = time.process_time
    cpu = 0.0
    cat: dict[str, float] = {}
    ncat: dict[str, int] = {}

    def emit(seq: int, n: int) -> None:
        nonlocal counter
        rec.on_sent(seq, n, now)
        stats["sent"] += 1
        for s in range(seq, seq + n, MSS):  # a GSO burst is cut into MSS frames
            if rng.random() < loss:
                continue
            counter += 1
            heapq.heappush(events, (now + delay, counter, "data", s, min(s + MSS, seq + n), []))

    def pump() -> None:
        nonlocal nxt
        while rec.in_flight() < ctl.cwnd:
            r = rec.next_to_retransmit()
            if r is not None:
                emit(r[0], min(r[1], MSS))
                continue
            if nxt >= total:
                break
            room = max(ctl.cwnd - rec.in_flight(), MSS)
            n = min(MSS * max(min(gso, room // MSS), 1), total - nxt)
            emit(nxt, n)
            nxt += n

    t0 = clock()
    pump()
    cpu += clock() - t0
    while rec.una < total or events:
        t = rec.timer()
        if events and (t is None or events[0][0] <= t[1]):
            at, _, kind, a, b, blocks = heapq.heappop(events)
            now = max(now, at)
            if kind == "data":
                ack, sacks = rcv.receive(a, b)
                counter += 1
                heapq.heappush(events, (now + delay, counter, "ack", ack, 0, sacks))
                continue
            if a > rec.sb.nxt:
                continue
            stats["acks"] += 1
            stats["sack_acks"] += bool(blocks)
            kind = "sack" if blocks else ("open" if rec.state.name == "OPEN" else "rec")
            t0 = clock()
            out = rec.on_ack(a, blocks, now, can_send_new=nxt < total)
            t1 = clock()
            cat[kind] = cat.get(kind, 0.0) + t1 - t0
            ncat[kind] = ncat.get(kind, 0) + 1
            if out.frto_new_data and nxt < total:
                n = min(MSS, total - nxt)
                emit(nxt, n)
                nxt += n
            # with GSO, ACKs arriving together are one receive batch: one push
            if gso == 1 or not (events and events[0][0] <= now and events[0][2] == "ack"):
                pump()
            cpu += clock() - t0
        elif t is not None:
            now = max(now, t[1])
            stats[t[0]] += 1
            t0 = clock()
            action = rec.on_timer(now, can_send_new=nxt < total)
            if action.retransmit is not None:
                emit(action.retransmit[0], action.retransmit[1])
            elif action.probe_new and nxt < total:
                n = min(MSS, total - nxt)
                emit(nxt, n)
                nxt += n
            pump()
            cpu += clock() - t0
        else:
            break
    assert rcv.nxt == total and rec.una == total
    return {"cpu": cpu, "sim": now, "retrans": rec.total_retrans, **stats,
            **{f"on_ack_{k}": cat[k] / ncat[k] for k in cat}, **{f"n_{k}": ncat[k] for k in ncat}}


class Recorder:
    """Wraps a Recovery and logs every call made on it (for --record)."""

    def __init__(self, rec: Recovery, log: list[tuple[Any, ...]]) -> None:
        self._rec = rec
        self._log = log

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._rec, name)
        if name in ("on_sent", "on_ack", "on_timer", "in_flight", "next_to_retransmit",
                    "timer"):
            log = self._log

            def call(*a: Any, **k: Any) -> Any:
                log.append((name, a, k))
                return attr(*a, **k)
            return call
        return attr


def replay(log: list[tuple[Any, ...]], cc: str, rounds: int) -> tuple[float, str]:
    """Run the recorded calls on fresh rooms; (best CPU seconds, digest of
    every answer) -- the digest must not change when the room is optimised."""
    best = float("inf")
    digest = ""
    for _ in range(rounds):
        rec = Recovery(0, MSS, RttEstimator(1.0, 0.2, 120.0, True), create(cc, MSS, 10),
                       sack=True)
        h = hashlib.sha256()
        calls = [(getattr(rec, name), a, k) for name, a, k in log]
        t0 = time.process_time()
        outs = [fn(*a, **k) for fn, a, k in calls]
        t = time.process_time() - t0
        best = min(best, t)
        for o in outs:
            h.update(repr(o).encode())
        h.update(repr((rec.sb.una, rec.sb.nxt, rec.cc.cwnd, rec.total_retrans,
                       rec.rtt.srtt)).encode())
        digest = h.hexdigest()[:16]
    return best, digest


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--segments", type=int, default=20000)
    p.add_argument("--loss", type=float, default=1.0, help="percent")
    p.add_argument("--cc", default="cubic")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--delay", type=float, default=0.0001, help="one-way, seconds")
    p.add_argument("--gso", type=int, default=1,
                   help="new data goes out in records of up to N segments (GSO bursts)")
    p.add_argument("--profile", action="store_true")
    p.add_argument("--replay", type=int, default=0, metavar="N",
                   help="record the room's calls, replay them N times on fresh rooms and "
                        "print the best CPU time and a digest of the answers")
    args = p.parse_args()
    if args.replay:
        log: list[tuple[Any, ...]] = []
        run(args.segments, args.loss / 100, args.cc, args.seed, args.delay, log, args.gso)
        best, digest = replay(log, args.cc, args.replay)
        n_acks = sum(1 for c in log if c[0] == "on_ack")
        print(f"recovery_core replay: {args.segments} segs {args.cc} loss {args.loss:g}%: "
              f"{best * 1e3:.1f} ms for {len(log)} calls ({n_acks} ACKs), "
              f"{best / max(n_acks, 1) * 1e6:.2f} us/ACK; digest {digest}")
        return
    prof = cProfile.Profile() if args.profile else None
    if prof:
        prof.enable()
    r = run(args.segments, args.loss / 100, args.cc, args.seed, args.delay, gso=args.gso)
    if prof:
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(30)
    acks = max(int(r["acks"]), 1)
    print(f"recovery_core: {args.segments} segs {args.cc} loss {args.loss:g}%: "
          f"{r['cpu'] / acks * 1e6:.2f} us/ACK (room + sender loop), {r['acks']} ACKs "
          f"({r['sack_acks']} with SACK), {r['retrans']} retrans, rto {r['rto']}, "
          f"probe {r['probe']}, reorder {r['reorder']}; "
          f"sim {args.segments * MSS / r['sim'] / 1e6:.1f} MB/s")
    print("  on_ack us by kind: " + ", ".join(
        f"{k[7:]} {r[k] * 1e6:.2f} (n={r['n_' + k[7:]]})" for k in sorted(r)
        if k.startswith("on_ack_")))


if __name__ == "__main__":
    main()
