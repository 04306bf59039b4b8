"""Reading a trace back: columns per event kind, for plots and checks."""

from __future__ import annotations

import json
import os
from array import array
from dataclasses import dataclass, field
from typing import Any


def _d() -> array[float]:
    return array("d")


def _q() -> array[int]:
    return array("q")


@dataclass
class Trace:
    """One connection's trace as columns (times in seconds since the open)."""

    header: dict[str, Any] = field(default_factory=dict)
    #: segments sent: time, seq, payload length, flags bit (1 SYN, 2 FIN, 4 RST), retransmitted
    sent_t: array[float] = field(default_factory=_d)
    sent_seq: array[int] = field(default_factory=_q)
    sent_len: array[int] = field(default_factory=_q)
    sent_rtx: array[int] = field(default_factory=_q)
    sent_flags: list[str] = field(default_factory=list)
    #: segments received: time, ack, window (bytes), seq, length
    recv_t: array[float] = field(default_factory=_d)
    recv_ack: array[int] = field(default_factory=_q)
    recv_win: array[int] = field(default_factory=_q)
    recv_seq: array[int] = field(default_factory=_q)
    recv_len: array[int] = field(default_factory=_q)
    #: SACK blocks received: (time, start, end) flattened
    sack_t: array[float] = field(default_factory=_d)
    sack_start: array[int] = field(default_factory=_q)
    sack_end: array[int] = field(default_factory=_q)
    #: cc updates; NaN where a value was null
    cc_t: array[float] = field(default_factory=_d)
    cc: dict[str, array[float]] = field(default_factory=dict)
    states: list[tuple[float, str, str]] = field(default_factory=list)
    recovery: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)
    close: dict[str, Any] | None = None

    CC_KEYS = ("cwnd", "ssthresh", "in_flight", "pacing_rate", "delivery_rate", "srtt",
               "rttvar", "min_rtt", "rto")

    @property
    def local(self) -> str:
        return str(self.header.get("local", ""))

    @property
    def remote(self) -> str:
        return str(self.header.get("remote", ""))

    def bytes_sent(self) -> int:
        """Payload bytes sent, retransmissions included."""
        return sum(self.sent_len)

    def bytes_acked(self) -> int:
        """Bytes the peer acknowledged beyond our first sequence number (SYN/FIN
        count one each, as in TCP): last ACK received - ISN, mod 2^32."""
        if not self.recv_ack or not self.sent_seq:
            return 0
        isn = self.sent_seq[0]
        best = 0
        for ack in self.recv_ack:
            best = max(best, (ack - isn) & 0xFFFFFFFF)
        return best


def read_trace(path: str | os.PathLike[str]) -> Trace:
    """Parse a JSON Lines trace (docs/trace.md) into a :class:`Trace`."""
    tr = Trace()
    nan = float("nan")
    cc = tr.cc = {k: array("d") for k in Trace.CC_KEYS}
    loads = json.loads
    with open(path, encoding="ascii") as f:
        for line in f:
            if not line.strip():
                continue
            obj = loads(line)
            ev = obj.get("ev")
            t = float(obj.get("t", 0.0))
            if ev == "seg_sent":
                tr.sent_t.append(t)
                tr.sent_seq.append(obj["seq"])
                tr.sent_len.append(obj["len"])
                tr.sent_rtx.append(1 if obj.get("rtx") else 0)
                tr.sent_flags.append(obj.get("flags", ""))
            elif ev == "seg_recv":
                tr.recv_t.append(t)
                tr.recv_ack.append(obj["ack"])
                tr.recv_win.append(obj["win"])
                tr.recv_seq.append(obj["seq"])
                tr.recv_len.append(obj["len"])
                for start, end in obj.get("sack") or ():
                    tr.sack_t.append(t)
                    tr.sack_start.append(start)
                    tr.sack_end.append(end)
            elif ev == "cc":
                tr.cc_t.append(t)
                for key, column in cc.items():
                    value = obj.get(key)
                    column.append(nan if value is None else float(value))
            elif ev == "state":
                tr.states.append((t, obj.get("old", ""), obj.get("new", "")))
            elif ev == "recovery":
                tr.recovery.append((t, obj.get("reason", ""), obj))
            elif ev == "open" and not tr.header:
                tr.header = obj
            elif ev == "close":
                tr.close = obj
    return tr


__all__ = ["Trace", "read_trace"]
