"""Reading a trace back: columns per event kind, for plots and checks."""

from __future__ import annotations

import json
import os
import re
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
    #: segments received with the ACK bit (as the pcap reader of ustack.plot;
    #: without it a segment acknowledges nothing, RFC 9293 3.10.7.4, e.g. the
    #: peer's RST to a stray ACK): time, ack, window (bytes), seq, length
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


_SACK = r'(\[\]|\[\[[\d,\[\]]*\]\])'
_NUM = r"(-?[0-9][0-9.e+-]*|null)"
#: the lines TraceWriter formats by hand, matched in bulk without json
_SENT_RE = re.compile(r'^\{"t":([^,]+),"ev":"seg_sent","seq":(\d+),"ack":\d+,"len":(\d+),'
                      r'"flags":"([A-Z.]*)","win":\d+,"sack":' + _SACK + r',"rtx":(t|f)',
                      re.M)
_RECV_RE = re.compile(r'^\{"t":([^,]+),"ev":"seg_recv","seq":(\d+),"ack":(\d+),"len":(\d+),'
                      r'"flags":"([A-Z.]*)","win":(\d+),"sack":' + _SACK + r'\}', re.M)
_CC_RE = re.compile(r'^\{"t":([^,]+),"ev":"cc",' + ",".join(
    f'"{k}":{_NUM}' for k in ("cwnd", "ssthresh", "in_flight", "pacing_rate", "delivery_rate",
                               "srtt", "rttvar", "min_rtt", "rto")) + r',"ca_state":"[^"]*"\}$',
                    re.M)
#: every other line (not one of the three above, in any layout)
_OTHER_RE = re.compile(r'^(?!\{"t":[^,]*,"ev":"(?:seg_sent|seg_recv|cc)").+$', re.M)
_ANY_RE = {"seg_sent": re.compile(r'^\{"t":[^,]*,"ev":"seg_sent".*$', re.M),
           "seg_recv": re.compile(r'^\{"t":[^,]*,"ev":"seg_recv".*$', re.M),
           "cc": re.compile(r'^\{"t":[^,]*,"ev":"cc".*$', re.M)}


def _floats(values: Any) -> array[float]:
    nan = float("nan")
    return array("d", (nan if v == "null" else float(v) for v in values))


def read_trace(path: str | os.PathLike[str]) -> Trace:
    """Parse a JSON Lines trace (docs/trace.md) into a :class:`Trace`.

    Segment and cc lines in the writer's own layout are matched in bulk by
    regular expressions; everything else (and such lines laid out
    differently, e.g. with extra keys) goes through ``json.loads``."""
    tr = Trace()
    nan = float("nan")
    cc = tr.cc = {k: array("d") for k in Trace.CC_KEYS}
    loads = json.loads
    with open(path, encoding="ascii") as f:
        text = f.read()
    others = _OTHER_RE.findall(text)
    fast: dict[str, list[Any]] = {}
    for ev, regex in (("seg_sent", _SENT_RE), ("seg_recv", _RECV_RE), ("cc", _CC_RE)):
        found = regex.findall(text)
        if len(found) == text.count(f'"ev":"{ev}"'):
            fast[ev] = found
        else:  # some other layout: the slow, general way for this event
            others.extend(_ANY_RE[ev].findall(text))
    if fast.get("seg_sent"):
        ts, seqs, lens, flags, _sacks, rtxs = zip(*fast["seg_sent"], strict=True)
        tr.sent_t = array("d", map(float, ts))
        tr.sent_seq = array("q", map(int, seqs))
        tr.sent_len = array("q", map(int, lens))
        tr.sent_rtx = array("q", (r == "t" for r in rtxs))
        tr.sent_flags = list(flags)
    if fast.get("seg_recv"):
        acking = [row for row in fast["seg_recv"] if _has_ack(row[4])]
        ts, seqs, acks, lens, _flags, wins, sacks = (
            zip(*acking, strict=True) if acking else ((),) * 7)
        tr.recv_t = array("d", map(float, ts))
        tr.recv_seq = array("q", map(int, seqs))
        tr.recv_ack = array("q", map(int, acks))
        tr.recv_len = array("q", map(int, lens))
        tr.recv_win = array("q", map(int, wins))
        for t, sack in zip(tr.recv_t, sacks, strict=True):
            if sack != "[]":
                for start, end in loads(sack):
                    tr.sack_t.append(t)
                    tr.sack_start.append(start)
                    tr.sack_end.append(end)
    if fast.get("cc"):
        cc_columns = list(zip(*fast["cc"], strict=True))
        tr.cc_t = array("d", map(float, cc_columns[0]))
        for key, values in zip(Trace.CC_KEYS, cc_columns[1:], strict=True):
            cc[key] = _floats(values)
    slow: set[str] = set()
    # one json.loads over all of them: one C call instead of one per line
    objs = loads("[" + ",".join(others) + "]") if others else []
    for obj in objs:
        ev = obj.get("ev")
        t = float(obj.get("t", 0.0))
        if ev == "seg_sent":
            slow.add(ev)
            tr.sent_t.append(t)
            tr.sent_seq.append(obj["seq"])
            tr.sent_len.append(obj["len"])
            tr.sent_rtx.append(1 if obj.get("rtx") else 0)
            tr.sent_flags.append(obj.get("flags", ""))
        elif ev == "seg_recv":
            if not _has_ack(obj.get("flags", "")):
                continue  # no ACK bit: no acknowledgment, no window (see Trace)
            slow.add(ev)
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
            slow.add(ev)
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
    if "seg_sent" in slow:
        _sort_columns(tr, ("sent_t", "sent_seq", "sent_len", "sent_rtx", "sent_flags"))
    if "seg_recv" in slow:
        _sort_columns(tr, ("recv_t", "recv_ack", "recv_win", "recv_seq", "recv_len"))
        _sort_columns(tr, ("sack_t", "sack_start", "sack_end"))
    if "cc" in slow:
        _sort_cc(tr)
    return tr


def _sort_cc(tr: Trace) -> None:
    order = sorted(range(len(tr.cc_t)), key=tr.cc_t.__getitem__)
    tr.cc_t = array("d", (tr.cc_t[i] for i in order))
    for key, col in list(tr.cc.items()):
        tr.cc[key] = array("d", (col[i] for i in order))


def _has_ack(flags: str) -> bool:
    """The ACK bit in a trace's flags: ``"."`` as ustack writes them
    (tcpdump style, ``"P."``), ``"A"`` in the letter style (``"SA"``)."""
    return "." in flags or "A" in flags


def _sort_columns(tr: Trace, names: tuple[str, ...]) -> None:
    """Columns filled in file order by two passes: put them in time order."""
    cols = [getattr(tr, n) for n in names]
    order = sorted(range(len(cols[0])), key=cols[0].__getitem__)
    for name, col in zip(names, cols, strict=True):
        values = [col[i] for i in order]
        setattr(tr, name, list(values) if isinstance(col, list) else array(col.typecode, values))


__all__ = ["Trace", "read_trace"]
