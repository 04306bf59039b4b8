"""A synthetic bulk-transfer trace (docs/trace.md schema) of any size, for
plot tests: segments at a fixed rate, an ACK every second segment one RTT
later, a loss every ``loss_every`` segments repaired after three duplicate
ACKs carrying SACK blocks, a cc event per ACK.  Events are in time order."""

from __future__ import annotations

from collections import deque
from pathlib import Path

from ustack.trace import TraceWriter

MSS = 1448
M32 = 0xFFFFFFFF


def synthetic_trace(path: Path, total: int, *, rtt: float = 0.02, rate: float = 1.25e8,
                    loss_every: int = 5000, isn: int = 4_000_000_000) -> int:
    """Write a trace of ``total`` payload bytes; returns the line count."""
    w = TraceWriter(path, local="10.0.0.1:40000", remote="10.0.1.1:5001", now=0.0)
    lines = [0]

    def ev(t: float, name: str, data: dict[str, object]) -> None:
        w(t, name, data)
        lines[0] += 1

    ev(0.0, "state", {"old": "UNCONN", "new": "SYN-SENT"})
    ev(0.0, "seg_sent", {"seq": isn, "ack": 0, "len": 0, "flags": "S", "win": 64240,
                         "sack": [], "rtx": False})
    ev(rtt, "seg_recv", {"seq": 7, "ack": (isn + 1) & M32, "len": 0, "flags": "SA",
                         "win": 65535, "sack": []})
    ev(rtt, "state", {"old": "SYN-SENT", "new": "ESTAB"})
    gap = MSS / rate
    t = rtt
    seq = isn + 1
    cwnd = 10 * MSS
    lost: int | None = None  # unwrapped seq of the lost segment
    dupacks = 0
    pending: deque[tuple[float, int]] = deque()  # (time, unwrapped end acked)

    def deliver(now: float, end: int) -> None:
        nonlocal lost, dupacks, cwnd
        if lost is not None and end > lost:
            dupacks += 1
            ev(now, "seg_recv", {"seq": 8, "ack": lost & M32, "len": 0, "flags": "A",
                                 "win": 24576, "sack": [[(lost + MSS) & M32, end & M32]]})
            if dupacks == 3:
                ev(now, "recovery", {"reason": "dupthresh", "seq": lost & M32, "lost": 1})
                ev(now, "seg_sent", {"seq": lost & M32, "ack": 8, "len": MSS, "flags": "A",
                                     "win": 502, "sack": [], "rtx": True})
                pending.append((now + rtt, -lost))  # the retransmission's ACK
                cwnd = max(cwnd // 2, 2 * MSS)
        else:
            if end < 0:  # the repair arrived: cumulative ACK jumps
                lost, dupacks = None, 0
                end = max(e for _, e in pending) if pending else -end + MSS
                ev(now, "recovery", {"reason": "exit"})
            ev(now, "seg_recv", {"seq": 8, "ack": end & M32, "len": 0, "flags": "A",
                                 "win": 24576, "sack": []})
            cwnd = min(cwnd + MSS * MSS // cwnd + 1, 4 << 20)
        ev(now, "cc", {"cwnd": cwnd, "ssthresh": None, "in_flight": cwnd,
                       "pacing_rate": None, "delivery_rate": rate, "srtt": rtt * 1.1,
                       "rttvar": rtt / 10, "min_rtt": rtt, "rto": rtt + 0.2,
                       "ca_state": "recovery" if lost is not None else "open"})

    n = 0
    while seq - isn - 1 < total:
        n += 1
        t += gap
        while pending and pending[0][0] <= t:
            when, end = pending.popleft()
            deliver(when, end)
        ev(t, "seg_sent", {"seq": seq & M32, "ack": 8, "len": MSS, "flags": "A", "win": 502,
                           "sack": [], "rtx": False})
        if n % loss_every == 0 and lost is None:
            lost = seq
        elif n % 2 == 0:
            pending.append((t + rtt, seq + MSS))
        seq += MSS
    while pending:
        when, end = pending.popleft()
        deliver(when, end)
    w.close(t + 2 * rtt)
    return lines[0] + 2
