"""Differential test of ACK coalescing (``TcpConnection.coalescible_ack`` /
``ack_supersedes`` and the driver's fold in ``TcpTable.ip_input``).

Two senders start from the same handshake with the same data in flight.
Hypothesis draws a receive batch: plain cumulative ACKs at random points,
duplicate ACKs, window updates, SACK blocks, text, old ACKs, timestamps that
sometimes go backwards.  Sender A receives every segment in order; sender B
gets the batch folded the way the driver folds it (a held plain ACK is
replaced by a later one that supersedes it, anything else first releases
the held one).  Afterwards everything the two show of the ACK processing
must be the same -- the send sequence space and window, TS.Recent, the
state, events, bytes and segments counted in, the scoreboard, RACK, the
delivered count, which timers are armed and the segments the sender then
emits -- except what a stretch ACK legitimately changes (the SRTT gets one
sample instead of several, so the RTO deadline moves; a model-based
controller may size cwnd differently, and growth that stops at the ACK
ending the cwnd limit continues to the end of a stretch ACK).  With Reno
in slow start and still cwnd-limited the released segments are identical.
And only plain advancing ACKs are ever superseded.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from table_fakes import FakeStack

from ustack.driver import tcp_table as tt
from ustack.tcp import TcpConfig, TcpConnection
from ustack.wire.tcp import ACK, FIN, PSH, SYN, TcpOptions, TcpSegment

ISS = 0xFFFFF000  # near the wrap on purpose
PEER = 0xFFFFFF00
MASK = 0xFFFFFFFF
MSS = 1000


def _sender(cfg: TcpConfig, ts: bool, sack: bool,
            cls: type[TcpConnection] = TcpConnection) -> TcpConnection:
    opts = TcpOptions(mss=MSS, wscale=2, sack_permitted=sack,
                      timestamp=(100, 0) if ts else None)
    syn = TcpSegment(40000, 80, PEER, 0, SYN, 65535, 0, opts)
    c = cls.accept(syn, ISS, 0.0, cfg)
    c.segments_to_send(0.0)
    c.receive(TcpSegment(40000, 80, (PEER + 1) & MASK, (ISS + 1) & MASK, ACK, 60000, 0,
                         TcpOptions(timestamp=(101, 1) if ts else None)), 0.001)
    c.segments_to_send(0.001)
    return c


def _key(seg: TcpSegment) -> tuple[object, ...]:
    o = seg.options
    return (seg.seq, seg.ack, seg.flags, seg.window, bytes(seg.payload), o.timestamp,
            tuple(o.sack_blocks))


def _view(c: TcpConnection) -> dict[str, Any]:
    rec = c.rec
    assert rec is not None
    sb = rec.sb
    rack = rec.rack
    return {
        "state": c.state, "una": c.snd_una, "nxt": c.snd_nxt, "wnd": c.snd_wnd,
        "wl1": c.snd_wl1, "wl2": c.snd_wl2, "max_wnd": c.max_snd_wnd,
        "ts_recent": c._ts_recent, "ts_stamp": c._ts_recent_stamp,
        "bytes_acked": c.bytes_acked, "segs_in": c.segs_in, "data_segs_in": c.data_segs_in,
        "send_queue": len(c.snd.buf), "rcv_nxt": c.rcv.nxt, "readable": c.readable(),
        "last_recv": c.last_recv, "last_ack": c.last_ack,
        "records": [(r.start, r.end, r.pcount, r.sent, r.sacked, r.lost, r.rtx)
                    for r in sb],
        "sb": (sb.una, sb.nxt, sb.fack, sb.packets_out, sb.sacked_out, sb.lost_out,
               sb.retrans_out, sb.lost_total),
        "rack": (rack.xmit_ts, rack.xmit_id, rack.end_seq, rack.rtt, rack.advanced),
        "rate": (rec.rate.delivered, rec.rate.delivered_time, rec.rate.first_tx_time,
                 rec.rate.app_limited),
        "ca_state": rec.state, "reordering": rec.reordering,
        "timers": sorted(c.timers.as_dict()),
    }


# one segment of the batch: kind, ack position (% of the flight), window, TS step
seg_st = st.tuples(
    st.sampled_from(["ack"] * 6 + ["dup", "sack", "data", "old", "fin", "window"]),
    st.integers(0, 100), st.sampled_from([60000, 60000, 60000, 30000, 0]),
    st.sampled_from([0, 0, 1, 1, 2, -1]))


def _batch(c: TcpConnection, draws: list[tuple[str, int, int, int]], ts: bool,
           t0: float) -> list[tuple[TcpSegment, float]]:
    """Peer segments at increasing arrival times, built against ``c``'s
    state before the batch (the receiver sent them one after another)."""
    una, nxt = c.snd_una, c.snd_nxt
    flight = (nxt - una) & MASK
    acked = 0
    tsval = 200
    seq = (PEER + 1) & MASK
    out = []
    t = t0
    for kind, pct, win, step in draws:
        tsval = (tsval + step) & MASK
        opts_ts = (tsval, (int(t * 1000) - 5) & MASK) if ts else None
        sack: list[tuple[int, int]] = []
        payload = b""
        flags = ACK
        if kind == "ack":
            acked = max(acked, flight * pct // 100)
        elif kind == "sack" and acked + 2 * MSS < flight:
            s = (una + acked + MSS) & MASK
            sack = [(s, (s + MSS) & MASK)]
        elif kind == "data":
            payload = b"x" * (1 + pct)
            flags = ACK | PSH
        elif kind == "fin":
            flags = ACK | FIN
        ack = (una + acked) & MASK if kind != "old" else (una - 1 - pct) & MASK
        out.append((TcpSegment(40000, 80, seq, ack, flags, win >> 2, 0,
                               TcpOptions(timestamp=opts_ts, sack_blocks=sack), payload), t))
        seq = (seq + len(payload) + (1 if flags & FIN else 0)) & MASK
        t += 0.00001 * (1 + pct % 3)
    return out


def _fold(c: TcpConnection, batch: list[tuple[TcpSegment, float]],
          superseded: list[tuple[TcpSegment, TcpSegment, int]]) -> None:
    """The driver's rule (TcpTable.ip_input / release_held), on one connection."""
    held: TcpSegment | None = None
    held_at = 0.0
    for seg, t in batch:
        if held is not None:
            if c.ack_supersedes(held, seg):
                superseded.append((held, seg, c.snd_una))
                c.absorb_ack(held)
                held, held_at = seg, t
                continue
            c.receive(held, held_at)
            held = None
        if c.coalescible_ack(seg):
            held, held_at = seg, t
            continue
        c.receive(seg, t)
    if held is not None:
        c.receive(held, held_at)


@pytest.mark.pure_python("deep-copies a connection")
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ts=st.booleans(), sack=st.booleans(),
       cc=st.sampled_from(["reno", "cubic", "bbr"]),
       sends=st.lists(st.integers(1, 30_000), min_size=1, max_size=4),
       batches=st.lists(st.lists(seg_st, min_size=1, max_size=12), min_size=1, max_size=4))
def test_coalesced_batches_act_as_the_separate_acks(
        ts: bool, sack: bool, cc: str, sends: list[int],
        batches: list[list[tuple[str, int, int, int]]]) -> None:
    cfg = TcpConfig(sack=sack, timestamps=ts, congestion=cc, send_buffer=1 << 20,
                    recv_buffer=1 << 20)
    a = _sender(cfg, ts, sack)
    now = 0.01
    merged = 0
    for i, batch_draws in enumerate(batches):
        # each batch from the same state (where the senders stand after a
        # stretch ACK legitimately differs: SRTT, cwnd growth at the end of
        # the cwnd limit), later batches from wherever A got to
        b = copy.deepcopy(a)
        n = sends[i % len(sends)]
        for c in (a, b):
            c.send(b"d" * n, now)
        out_a = [_key(s) for s in a.segments_to_send(now)]
        out_b = [_key(s) for s in b.segments_to_send(now)]
        assert out_a == out_b
        now += 0.0005
        batch = _batch(a, batch_draws, ts, now)
        for seg, t in batch:
            a.receive(seg, t)
        superseded: list[tuple[TcpSegment, TcpSegment, int]] = []
        _fold(b, batch, superseded)
        merged += len(superseded)
        for old, new, una in superseded:
            # only plain ACKs that advance SND.UNA, covered by the next one
            assert old.flags == ACK and not old.payload
            assert not (sack and old.options.sack_blocks)
            assert 0 < ((old.ack - una) & MASK) < ((new.ack - una) & MASK)
        now = batch[-1][1]
        va, vb = _view(a), _view(b)
        ra, rb = va.pop("rack"), vb.pop("rack")
        qa, qb = va.pop("rate"), vb.pop("rate")
        assert va == vb, {k: (va[k], vb[k]) for k in va if va[k] != vb[k]}
        if ra != rb or qa != qb:
            # ACKs that each cover less than one MSS of a record give RACK and
            # the rate sampler no evidence (Linux acks whole segments only);
            # their sum may cover a whole segment, and the evidence is then
            # taken at the later ACK, as a stretch ACK gives it: never older
            assert (rb[0], rb[1]) >= (ra[0], ra[1]) and rb[3] >= ra[3], (ra, rb)
            assert qa[0] == qb[0] and qa[3] == qb[3] and qb[1] >= qa[1] and qb[2] >= qa[2]
        ev_a = [type(e) for e in iter(a.next_event, None)]
        ev_b = [type(e) for e in iter(b.next_event, None)]
        assert ev_a == ev_b
        now += 0.0001
        sa, sb_ = a.segments_to_send(now), b.segments_to_send(now)
        limited = a.cc.cwnd < 2 * a.snd.max_flight  # Linux tcp_is_cwnd_limited, slow start
        if cc == "reno" and a.cc.cwnd < a.cc.ssthresh and limited:
            # slow start grows by the bytes acknowledged: the same window
            # (while still cwnd-limited after the batch, every ACK of it was)
            assert a.cc.cwnd == b.cc.cwnd
            assert [_key(s) for s in sa] == [_key(s) for s in sb_]
        elif cc == "reno" and a.cc.cwnd < a.cc.ssthresh:
            # separately, growth stops at the ACK that ends the cwnd limit;
            # one stretch ACK grows by all it acknowledges (Linux does the
            # same for a stretch ACK)
            assert b.cc.cwnd >= a.cc.cwnd
        else:
            # the same ACKs, windows and options; the amount may differ
            assert [_key(s)[1:4] for s in sa[:1]] == [_key(s)[1:4] for s in sb_[:1]] \
                or not sa or not sb_


@pytest.mark.pure_python("deep-copies a connection")
def test_a_plain_ack_stream_is_coalesced() -> None:
    """The bulk case (one ACK per two segments, all in one batch) folds to
    one ACK per batch and ends where the separate ACKs end."""
    cfg = TcpConfig(sack=True, timestamps=True, send_buffer=1 << 20, recv_buffer=1 << 20)
    a = _sender(cfg, True, True)
    a.send(b"d" * 40_000, 0.01)
    a.segments_to_send(0.01)
    b = copy.deepcopy(a)
    draws = [("ack", p, 60000, 1) for p in range(10, 101, 10)]
    batch = _batch(a, draws, True, 0.012)
    for seg, t in batch:
        a.receive(seg, t)
    superseded: list[tuple[TcpSegment, TcpSegment, int]] = []
    _fold(b, batch, superseded)
    assert len(superseded) == len(batch) - 1
    assert _view(a) == _view(b)


@pytest.mark.parametrize("kind", ["dup", "sack", "data", "fin", "window", "old"])
def test_nothing_but_plain_advancing_acks_is_coalesced(kind: str) -> None:
    cfg = TcpConfig(sack=True, timestamps=True, send_buffer=1 << 20, recv_buffer=1 << 20)
    a = _sender(cfg, True, True)
    a.send(b"d" * 20_000, 0.01)
    a.segments_to_send(0.01)
    draws = [("ack", 30, 60000, 1), (kind, 60, 30000 if kind == "window" else 60000, 1)]
    (first, _), (second, _) = _batch(a, draws, True, 0.012)
    assert a.coalescible_ack(first)
    if kind == "window":
        # same ACK number, new window: a window update, never merged away
        second = TcpSegment(40000, 80, second.seq, first.ack, ACK, 30000 >> 2, 0,
                            second.options)
    assert not a.ack_supersedes(first, second)


def test_timestamps_going_backwards_or_failing_paws_are_not_coalesced() -> None:
    cfg = TcpConfig(sack=True, timestamps=True, send_buffer=1 << 20, recv_buffer=1 << 20)
    a = _sender(cfg, True, True)
    a.send(b"d" * 20_000, 0.01)
    a.segments_to_send(0.01)
    (first, _), (second, _) = _batch(a, [("ack", 30, 60000, 1), ("ack", 60, 60000, -1)],
                                     True, 0.012)
    assert a.coalescible_ack(second)
    assert not a.ack_supersedes(first, second)  # TSval went backwards
    (first, _), (second, _) = _batch(a, [("ack", 30, 60000, 0), ("ack", 60, 60000, 0)],
                                     True, 0.012)
    assert a.ack_supersedes(first, second)
    a._ts_recent = 500  # the first would fail PAWS (and be answered): keep both
    assert not a.ack_supersedes(first, second)


# --- the driver: hold, supersede, release -----------------------------------------

class _Recording(TcpConnection):
    """Records what the driver hands it."""

    __slots__ = ()
    seen: list[TcpSegment] = []

    def receive(self, seg: TcpSegment, now: float, arrival: float | None = None,
                first_arrival: float | None = None) -> None:
        _Recording.seen.append(seg)
        super().receive(seg, now, arrival, first_arrival)


def test_driver_holds_supersedes_and_releases_before_anything_else() -> None:
    import asyncio

    loop = asyncio.new_event_loop()
    try:
        table = tt.TcpTable(FakeStack(), loop=loop)
        cfg = TcpConfig(sack=True, timestamps=True, send_buffer=1 << 20,
                        recv_buffer=1 << 20)
        conn = _sender(cfg, True, True, _Recording)
        conn.send(b"d" * 20_000, 0.01)
        conn.segments_to_send(0.01)
        ref = _sender(cfg, True, True)
        ref.send(b"d" * 20_000, 0.01)
        ref.segments_to_send(0.01)
        ep = tt.TcpEndpoint(table, conn, table.local_addr, 80, b"\x0a\x4d\x00\x01", 40000)
        table._conns[ep.key] = ep
        seen = _Recording.seen
        seen.clear()
        batch = _batch(conn, [("ack", 20, 60000, 1), ("ack", 40, 60000, 1),
                              ("ack", 60, 60000, 1), ("data", 5, 60000, 1),
                              ("ack", 80, 60000, 1)], True, 0.012)
        for seg, _ in batch:
            table.ip_input(ep.remote_addr, table.local_addr,
                           seg.encode(ep.remote_addr, table.local_addr))
        # the first two were superseded, the third released by the data
        # segment, the last one is still held
        assert [s.ack for s in seen] == [batch[2][0].ack, batch[3][0].ack]
        assert ep.held is not None and ep.held.ack == batch[4][0].ack
        assert table.counters["tcp_acks_coalesced"] == 2
        table.release_held()
        assert ep.held is None and seen[-1].ack == batch[4][0].ack
        for seg, t in batch:
            ref.receive(seg, t)
        assert conn.snd_una == ref.snd_una and conn.segs_in == ref.segs_in
        assert conn.rcv.nxt == ref.rcv.nxt
    finally:
        loop.close()


@pytest.mark.pure_python("patches TcpConnection methods")
def test_the_differential_check_catches_a_loose_supersede_rule(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from ustack.tcp.state import TcpState

    def loose(self: TcpConnection, older: TcpSegment, newer: TcpSegment) -> bool:
        return (older.flags == newer.flags == ACK and not older.payload
                and not newer.payload and self.state is TcpState.ESTABLISHED)

    def loose_hold(self: TcpConnection, seg: TcpSegment) -> bool:
        return seg.flags == ACK and not seg.payload and self.state is TcpState.ESTABLISHED

    monkeypatch.setattr(TcpConnection, "ack_supersedes", loose)
    monkeypatch.setattr(TcpConnection, "coalescible_ack", loose_hold)
    inner = test_coalesced_batches_act_as_the_separate_acks.hypothesis.inner_test
    # a window update merged into the next ACK, then duplicate ACKs merged
    # (the separate ones count towards DupThresh)
    for batch in ([("ack", 30, 60000, 1), ("window", 0, 30000, 1), ("ack", 60, 30000, 1)],
                  [("ack", 30, 60000, 1)] + [("dup", 0, 60000, 1)] * 4):
        with pytest.raises(AssertionError):
            inner(ts=True, sack=False, cc="reno", sends=[20_000], batches=[batch])
