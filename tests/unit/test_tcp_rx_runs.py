"""Differential test of receive runs (``TcpTable.ip_input`` collecting the
segments that continue an in-order text segment exactly, and
``TcpConnection.run_ok`` / ``receive_run`` / ``Receiver.accept_run``
taking them at once): a table with runs and one without are fed the same
batches of wire segments, from a peer that sends text in order, out of
order, retransmitted, beyond the window, with PSH toggling, TSval ticking
or going back, window changes, ACKs of our own data, a FIN, a second flow
interleaved and damaged headers; the application reads and writes at
random between batches.  Afterwards everything must be identical: the
segments each table sent (to the byte), the bytes read, the events, the
table's counters and MIB, and the connections' receive and send state,
timers and counters.  A version that got one of these wrong fails it
(see test_a_broken_run_is_caught).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from table_fakes import FakeStack

from ustack.driver import tcp_table as tt
from ustack.link import rxtime
from ustack.tcp import TcpConfig
from ustack.tcp import connection as tcp_connection
from ustack.tcp import receiver as tcp_receiver
from ustack.wire.tcp import ACK, FIN, PSH, SYN, TcpOptions, TcpSegment

PEER = bytes([10, 77, 0, 1])
LOCAL = bytes([10, 77, 0, 2])
MASK = 0xFFFFFFFF
PEER_ISN = 0xFFFFF000  # near the wrap on purpose


class Owner:
    def __init__(self) -> None:
        self.events: list[str] = []

    def tcp_event(self, event: Any) -> None:
        self.events.append(type(event).__name__)


class Side:
    """One table (runs on or off) with one connection to the peer, plus a
    second connection (the interleaved flow)."""

    def __init__(self, runs: bool, cfg: TcpConfig) -> None:
        import asyncio

        self.loop = asyncio.new_event_loop()
        self.clock = [100.0]
        self.table = tt.TcpTable(FakeStack(), config=cfg, loop=self.loop)
        self.table.merge_runs = runs
        self.table._clock = lambda: self.clock[0]
        self.table.set_isn_secret(b"k" * 16)
        self.owners = [Owner(), Owner()]
        self.eps = [self.table.connect(PEER, 80, self.owners[0], local_port=50000),
                    self.table.connect(PEER, 81, self.owners[1], local_port=50001)]
        self.table.flush_now()
        self.read: list[bytes] = [b"", b""]

    def feed(self, batch: list[tuple[bytes, float]]) -> None:
        t = self.table
        t.begin_batch()
        try:
            for wire, arrival in batch:
                rxtime.CURRENT.t = arrival
                t.ip_input(PEER, LOCAL, memoryview(wire))
        finally:
            rxtime.CURRENT.t = None
            t.end_batch()

    def sent(self) -> list[bytes]:
        ip: Any = self.table.stack.ip  # type: ignore[attr-defined]
        out = [p for _, _, p in ip.sent]
        ip.sent = []
        return out

    def close(self) -> None:
        self.loop.close()


def _view(side: Side) -> dict[str, Any]:
    counters = dict(side.table.counters)
    counters.pop("tcp_segs_merged")  # (what differs: how many were taken as runs)
    out: dict[str, Any] = {"counters": counters,
                           "mib": dict(side.table.mib), "read": list(side.read)}
    for i, ep in enumerate(side.eps):
        c = ep.live
        r = c.rcv
        rec = c.rec
        out[f"conn{i}"] = {
            "state": c.state, "removed": ep.removed, "held": ep.held is not None,
            "una": c.snd_una, "nxt": c.snd_nxt, "wnd": c.snd_wnd, "wl1": c.snd_wl1,
            "wl2": c.snd_wl2, "max_wnd": c.max_snd_wnd, "ts_recent": c._ts_recent,
            "ts_stamp": c._ts_recent_stamp, "segs_in": c.segs_in,
            "data_segs_in": c.data_segs_in, "last_recv": c.last_recv,
            "rcv": (r.nxt, r.adv, r.acked, r.pos, bytes(r.buf), r.ooo.nbytes, r.ooo.fin_pos,
                    r.dsack, r.quickacks, r.ack_now, r.mss, r.lrcv, r.pingpong,
                    r.bytes_received),
            "timers": c.timers.as_dict(), "deadline": c.next_deadline(),
            "ack_time": None if rec is None else (rec.ack_time, rec.ack_time_first),
            "events": list(side.owners[i].events),
        }
    return out


def _tcp(sport: int, seq: int, ack: int, flags: int, window: int,
         ts: tuple[int, int] | None, payload: bytes = b"", sack: bool = False) -> bytes:
    return TcpSegment(sport, 50000 + sport - 80, seq, ack, flags, window,
                      options=TcpOptions(timestamp=ts, sack_permitted=sack),
                      payload=payload).encode(PEER, LOCAL)


def _handshake(a: Side, b: Side, ts: bool, wscale: int) -> tuple[list[int], int]:
    """Answer both SYNs (the same in both tables); the ISS of each flow."""
    syns_a = [TcpSegment.decode(p) for p in a.sent()]
    syns_b = [TcpSegment.decode(p) for p in b.sent()]
    assert [(s.seq, s.flags) for s in syns_a] == [(s.seq, s.flags) for s in syns_b]
    iss = []
    batch = []
    for syn in syns_a:
        iss.append(syn.seq)
        tsopt = (1000, syn.options.timestamp[0]) if ts and syn.options.timestamp else None
        batch.append((TcpSegment(syn.dst_port, syn.src_port, PEER_ISN, (syn.seq + 1) & MASK,
                                 SYN | ACK, 65535,
                                 options=TcpOptions(mss=1460, wscale=wscale,
                                                    sack_permitted=True, timestamp=tsopt)
                                 ).encode(PEER, LOCAL), 99.9))
    for side in (a, b):
        side.feed(batch)
    return iss, (iss[0] + 1) & MASK


# one peer segment: kind, length, PSH, TS step
seg_st = st.tuples(
    st.sampled_from(["data"] * 10 + ["gap", "fill", "dup", "window", "ack", "ts_back",
                                     "other", "pure", "mangle", "big", "zero_win",
                                     "burst", "burst", "gro", "gro"]),
    st.integers(1, 1448), st.booleans(), st.sampled_from([0, 0, 0, 0, 1]))
app_st = st.tuples(st.sampled_from([0, 0, 1000, 5000, 1 << 20]),  # bytes read
                   st.sampled_from([0, 0, 0, 100, 3000]))  # bytes written


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ts=st.booleans(), wscale=st.sampled_from([0, 7]),
       small_buffer=st.booleans(), quickack=st.booleans(),
       batches=st.lists(st.tuples(st.lists(seg_st, min_size=1, max_size=40), app_st),
                        min_size=1, max_size=6),
       fin=st.booleans())
# an ACK inside the batch right before a run: the next SEG.SEQ equals the
# last ACK sent, so that segment updates TS.Recent and cannot join a run
@example(ts=True, wscale=0, small_buffer=True, quickack=False,
         batches=[([("data", 138, False, 0), ("data", 667, False, 0), ("data", 667, False, 0),
                    ("burst", 1, False, 1)], (0, 0))], fin=False)
def test_runs_equal_segment_by_segment(ts: bool, wscale: int, small_buffer: bool,
                                       quickack: bool,
                                       batches: list[tuple[list[tuple[str, int, bool, int]],
                                                         tuple[int, int]]],
                                       fin: bool) -> None:
    _check(ts, wscale, small_buffer, quickack, batches, fin)


def _check(ts: bool, wscale: int, small_buffer: bool, quickack: bool,
           batches: list[tuple[list[tuple[str, int, bool, int]], tuple[int, int]]],
           fin: bool) -> int:
    cfg = TcpConfig(recv_buffer=8000 if small_buffer else 1 << 20, timestamps=ts,
                    quickack_segments=16 if quickack else 0)
    a, b = Side(True, cfg), Side(False, cfg)
    try:
        iss, _ = _handshake(a, b, ts, wscale)
        assert a.sent() == b.sent()
        assert _view(a) == _view(b)
        nxt = (PEER_ISN + 1) & MASK  # the peer's next new byte
        other_nxt = nxt
        hole: tuple[int, int] | None = None
        tsval = 1001
        window = 500
        our_acked = [(i + 1) & MASK for i in iss]
        arrival = 200.0
        for segs, (read, write) in batches:
            batch = []
            for kind, n, psh, step in segs:
                tsval = (tsval + step) & MASK
                tsopt = (tsval, 5) if ts else None
                flags = ACK | (PSH if psh else 0)
                ack = our_acked[0]
                if kind == "data" or kind == "big":
                    size = n if kind == "data" else 1448
                    batch.append(_tcp(80, nxt, ack, flags, window, tsopt, bytes([n % 251]) * size))
                    nxt = (nxt + size) & MASK
                elif kind == "gro":  # a coalesced (GRO) frame: more than an MSS of text
                    size = 2896 + n
                    batch.append(_tcp(80, nxt, ack, flags, window, tsopt, bytes([n % 7]) * size))
                    nxt = (nxt + size) & MASK
                elif kind == "burst":  # a train of full segments (crosses small windows)
                    for i in range(8):
                        batch.append(_tcp(80, nxt, ack, ACK | (PSH if psh and i == 7 else 0),
                                          window, tsopt, bytes([i]) * 1448))
                        nxt = (nxt + 1448) & MASK
                elif kind == "gap" and hole is None:
                    hole = (nxt, n)
                    nxt = (nxt + n) & MASK
                elif kind == "fill" and hole is not None:
                    batch.append(_tcp(80, hole[0], ack, flags, window, tsopt, b"h" * hole[1]))
                    hole = None
                elif kind == "dup":
                    s = (nxt - n) & MASK
                    batch.append(_tcp(80, s, ack, flags, window, tsopt, b"d" * min(n, 100)))
                elif kind == "window":
                    window = [0, 3, 500, 65535][n % 4]
                elif kind == "zero_win":
                    batch.append(_tcp(80, nxt, ack, ACK, 0, tsopt))
                elif kind == "ack":
                    # the peer acknowledges what we sent (the reply to `write`)
                    conn = a.eps[0].live
                    our_acked[0] = conn.snd_nxt
                    batch.append(_tcp(80, nxt, our_acked[0], ACK, window, tsopt))
                elif kind == "ts_back" and ts:
                    batch.append(_tcp(80, nxt, ack, flags, window,
                                      ((tsval - 1000) & MASK, 5), b"b" * n))
                    nxt = (nxt + n) & MASK
                elif kind == "other":
                    batch.append(_tcp(81, other_nxt, our_acked[1], flags, window, tsopt,
                                      b"o" * n))
                    other_nxt = (other_nxt + n) & MASK
                elif kind == "pure":
                    batch.append(_tcp(80, nxt, ack, ACK, window, tsopt))
                elif kind == "mangle":
                    # the next text with another option layout (SACK-permitted
                    # where none belongs): not a run member, still accepted
                    batch.append(_tcp(80, nxt, ack, flags, window, tsopt, b"m" * n, sack=True))
                    nxt = (nxt + n) & MASK
            arrivals = []
            for wire in batch:
                arrival += 0.00001
                arrivals.append((wire, arrival))
            for side in (a, b):
                side.feed(arrivals)
            a_out, b_out = a.sent(), b.sent()
            assert a_out == b_out
            va, vb = _view(a), _view(b)
            assert va == vb, {k: (va[k], vb[k]) for k in va if va[k] != vb[k]}
            # the application, then time passes
            for side in (a, b):
                side.clock[0] += 0.001
                ep = side.eps[0]
                if read and ep.live.readable():
                    side.read[0] += ep.live.recv(read, side.clock[0])
                    side.table.touch(ep)
                if write and ep.live.state.synchronized and not ep.removed:
                    ep.live.send(b"w" * write, side.clock[0])
                    side.table.touch(ep)
                side.table.flush_now()
            assert a.sent() == b.sent()
            va, vb = _view(a), _view(b)
            assert va == vb, {k: (va[k], vb[k]) for k in va if va[k] != vb[k]}
        if fin:
            last = [(_tcp(80, nxt, our_acked[0], ACK | FIN, window, (tsval, 5) if ts else None),
                     arrival + 0.001)]
            for side in (a, b):
                side.feed(last)
            assert a.sent() == b.sent()
            assert _view(a) == _view(b)
        return a.table.counters["tcp_segs_merged"]
    finally:
        a.close()
        b.close()


def test_runs_form_in_a_plain_transfer() -> None:
    """In-order full-sized text with a steady TSval: one segment opens a run,
    the rest of the batch joins it (ip_input takes them without decoding)."""
    cfg = TcpConfig()
    a, b = Side(True, cfg), Side(False, cfg)
    try:
        _handshake(a, b, True, 7)
        a.sent()
        b.sent()
        conn = a.eps[0].live
        nxt = (PEER_ISN + 1) & MASK
        ack = conn.snd_nxt
        batch = []
        for i in range(40):
            batch.append((_tcp(80, nxt, ack, ACK | (PSH if i % 7 == 6 else 0), 500,
                               (2000, 5), bytes([i]) * 1448), 300.0 + i * 1e-5))
            nxt = (nxt + 1448) & MASK
        for side in (a, b):
            side.feed(batch)
        assert a.table.counters["tcp_segs_merged"] == 39
        assert b.table.counters["tcp_segs_merged"] == 0
        assert a.sent() == b.sent()
        assert _view(a) == _view(b)
        assert bytes(conn.rcv.buf) == b"".join(bytes([i]) * 1448 for i in range(40))
        assert a.table.counters["tcp_segs_in"] == b.table.counters["tcp_segs_in"]
    finally:
        a.close()
        b.close()


@pytest.mark.pure_python("replaces a method of the TCP core")
def test_a_broken_run_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The differential check fails on a receive_run that forgets one thing
    the segment-by-segment path does (here: the last segment's arrival)."""
    orig = tcp_connection.TcpConnection.receive_run

    def broken(self: Any, seg: TcpSegment, payloads: list[Any], hlen: int, last_seq: int,
               now: float, arrival: float | None) -> None:
        orig(self, seg, payloads, hlen, last_seq, now, None)

    monkeypatch.setattr(tcp_connection.TcpConnection, "receive_run", broken)
    draws = [([("data", 1448, False, 0)] * 10, (0, 0))]
    with pytest.raises(AssertionError):
        _check(True, 7, False, False, draws, False)
    # and one that forgets the ACK rule (at least every second full segment)
    monkeypatch.setattr(tcp_connection.TcpConnection, "receive_run", orig)
    orig_accept = tcp_receiver.Receiver.accept_run

    def broken_accept(self: Any, segments: list[Any], hlen: int, now: float) -> None:
        due = self.ack_now
        orig_accept(self, segments, hlen, now)
        self.ack_now = due

    monkeypatch.setattr(tcp_receiver.Receiver, "accept_run", broken_accept)
    draws = [([("data", 700, False, 0)] * 10, (0, 0))]
    with pytest.raises(AssertionError):
        _check(True, 7, False, False, draws, False)
    monkeypatch.setattr(tcp_receiver.Receiver, "accept_run", orig_accept)
    assert _check(True, 7, False, False, draws, False) == 9


def test_a_run_opens_only_when_a_second_segment_comes() -> None:
    """Inside a batch the segment a run would start with is only a
    candidate: a batch of one segment (request/response) opens no run,
    the batch's end forgets the candidate, and the next segment from the
    same address opens the run it would have joined (outside a batch the
    run opens at once, as before)."""
    cfg = TcpConfig()
    a, b = Side(True, cfg), Side(False, cfg)
    try:
        _handshake(a, b, True, 7)
        t = a.table
        conn = a.eps[0].live
        nxt = (PEER_ISN + 1) & MASK
        ack = conn.snd_nxt
        t.begin_batch()
        t.ip_input(PEER, LOCAL, memoryview(_tcp(80, nxt, ack, ACK | PSH, 500, (2000, 5), b"q")))
        assert t._run_ep is None and t._cand_ep is a.eps[0]
        t.end_batch()
        assert t._cand_ep is None and t._run_ep is None and a.eps[0].held is None
        nxt = (nxt + 1) & MASK
        t.begin_batch()
        for _ in range(2):
            t.ip_input(PEER, LOCAL, memoryview(_tcp(80, nxt, ack, ACK, 500, (2000, 5),
                                                    b"r" * 100)))
            nxt = (nxt + 100) & MASK
        assert t._run_ep is a.eps[0] and t.counters["tcp_segs_merged"] == 0
        t.end_batch()
        assert t.counters["tcp_segs_merged"] == 1 and t._run_ep is None
        assert conn.readable() == 201  # the lone segment and the run, all taken
        t.ip_input(PEER, LOCAL, memoryview(_tcp(80, nxt, ack, ACK, 500, (2000, 5), b"s")))
        assert t._run_ep is a.eps[0] and t._cand_ep is None  # no batch: at once
        t.flush_now()
        assert t._run_ep is None
    finally:
        a.close()
        b.close()


def test_runs_stop_at_the_window() -> None:
    """Text beyond the advertised window is trimmed, not taken into a run:
    a small receive buffer the application does not read."""
    draws = [([("burst", 1, False, 0)] * 3, (0, 0)), ([("burst", 1, True, 0)] * 2, (5000, 0))]
    assert _check(True, 7, True, False, draws, False) > 0
    assert _check(False, 0, True, True, draws, True) > 0


@settings(max_examples=200, deadline=None)
@given(chunks=st.lists(st.binary(min_size=0, max_size=3000), min_size=1, max_size=8),
       reads=st.lists(st.integers(-1, 5000), min_size=1, max_size=10))
def test_read_into_equals_read(chunks: list[bytes], reads: list[int]) -> None:
    """Receiver.read_into hands the bytes read() would return (as a view),
    takes them from the buffer the same way, and leaves the same window
    decision (TcpConnection.recv_into vs recv)."""
    cfg = TcpConfig(recv_buffer=20000)
    a, b = Side(True, cfg), Side(True, cfg)
    try:
        _handshake(a, b, True, 7)
        ca, cb = a.eps[0].live, b.eps[0].live
        for chunk in chunks:
            for c in (ca, cb):
                c.rcv.buf.append(chunk)
        for n in reads:
            want = ca.recv(n, 1.0)
            got: list[bytes] = []  # (one view per big chunk or run of small ones)
            k = cb.recv_into(lambda v, got=got: got.append(bytes(v)), n, 1.0)  # type: ignore[misc]
            assert (k, b"".join(got)) == (len(want), want)
            assert bytes(ca.rcv.buf) == bytes(cb.rcv.buf)
            assert ca.rcv.ack_now == cb.rcv.ack_now
    finally:
        a.close()
        b.close()


def test_read_into_takes_the_bytes_and_releases_the_view() -> None:
    cfg = TcpConfig()
    a, b = Side(True, cfg), Side(True, cfg)
    try:
        _handshake(a, b, True, 7)
        conn = a.eps[0].live
        conn.rcv.buf.append(b"abcdef")
        kept: list[memoryview] = []

        def bad(view: memoryview) -> None:
            kept.append(view)
            raise RuntimeError("sink failed")

        with pytest.raises(RuntimeError):
            conn.recv_into(bad, 4, 1.0)
        assert bytes(conn.rcv.buf) == b"ef"  # taken all the same
        with pytest.raises(ValueError):
            bytes(kept[0])  # released: the buffer may move again
        assert conn.recv_into(lambda v: None, 100, 1.0) == 2 and not conn.rcv.buf
        assert conn.recv_into(lambda v: None, 100, 1.0) == 0
    finally:
        a.close()
        b.close()


def test_only_asyncios_own_stream_protocol_gets_views() -> None:
    """A view of the receive buffer goes only to a protocol known to copy
    it at once (StreamReaderProtocol itself); a subclass or any other
    protocol may keep what it gets and is given bytes."""
    import asyncio

    from ustack import streams

    class Sub(asyncio.StreamReaderProtocol):
        pass

    loop = asyncio.new_event_loop()
    try:
        reader = asyncio.StreamReader(loop=loop)
        assert streams._feeds_a_copy(asyncio.StreamReaderProtocol(reader, loop=loop))
        assert not streams._feeds_a_copy(Sub(reader, loop=loop))
        assert not streams._feeds_a_copy(asyncio.Protocol())
    finally:
        loop.close()
