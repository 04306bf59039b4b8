"""Differential test of the core's fast paths (COMMON.md: "Fast paths need a
differential test"): the receive fast path (ESTABLISHED, in order, plain
ACK) and the sender's bulk path must behave exactly like the general paths.

Two connections start from the same handshake; one is a subclass with
``fast_path = False``.  Hypothesis drives both with the same random stream
of peer segments (in order, out of order, old, beyond the window, duplicate
ACKs, SACK blocks, timestamps), application calls and clock steps, and after
every step the output segments, the events, the next deadline and the
sequence variables must be identical."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ustack.tcp import TcpConfig, TcpConnection
from ustack.tcp import events as ev
from ustack.wire.tcp import ACK, FIN, PSH, SYN, TcpOptions, TcpSegment

ISS = 0xFFFFF000  # near the wrap on purpose
PEER = 0xFFFFFF00
MASK = 0xFFFFFFFF


class GeneralPathConnection(TcpConnection):
    __slots__ = ()
    fast_path = False


def _pair(cfg: TcpConfig, ts: bool, sack: bool) -> tuple[TcpConnection, TcpConnection]:
    opts = TcpOptions(mss=1000, wscale=2, sack_permitted=sack,
                      timestamp=(100, 0) if ts else None)
    syn = TcpSegment(40000, 80, PEER, 0, SYN, 65535, 0, opts)
    conns = []
    for cls in (TcpConnection, GeneralPathConnection):
        c = cls.accept(syn, ISS, 0.0, cfg)
        c.segments_to_send(0.0)
        c.receive(TcpSegment(40000, 80, (PEER + 1) & MASK, (ISS + 1) & MASK, ACK, 16000, 0,
                             TcpOptions(timestamp=(101, 1) if ts else None)), 0.001)
        c.segments_to_send(0.001)
        conns.append(c)
    return conns[0], conns[1]


def _key(seg: TcpSegment) -> tuple[object, ...]:
    o = seg.options
    return (seg.seq, seg.ack, seg.flags, seg.window, bytes(seg.payload), o.timestamp,
            tuple(o.sack_blocks), o.mss)


def _state(c: TcpConnection) -> tuple[object, ...]:
    snd = c.snd
    return (c.state, c.snd_una, c.snd_nxt, c.snd_wnd, c.rcv_nxt, c.rcv_adv, c.cc.cwnd,
            c.cc.ssthresh, c.rtt.srtt, c.rtt.rto, c.readable(), c.send_queue, c.eof_received,
            # the sender's own state (the nothing-to-send exit of Sender.push)
            snd.ptr, snd.sml, snd.force, snd.probe, snd.pacing_rate, snd.chrono.kind,
            snd.cwnd_limited, snd.max_flight, snd.cwnd_usage_seq, snd.last_data_send,
            snd.release, snd.more, snd.more_cork,
            c.timers.pending(), c.info(c.last_recv))


step = st.one_of(
    # peer segment: seq offset from RCV.NXT (mostly 0), ack offset from SND.UNA,
    # payload length, window, flags choice, SACK choice
    st.tuples(st.just("seg"), st.sampled_from([0, 0, 0, 0, 1000, 2000, -500, -1000, 70000]),
              st.integers(-2000, 12000), st.sampled_from([0, 0, 1, 500, 1000, 1000, 3000]),
              st.sampled_from([16000, 16000, 16000, 8000, 0, 100]),
              st.sampled_from([ACK, ACK, ACK | PSH, ACK | FIN]), st.integers(0, 3)),
    st.tuples(st.just("send"), st.sampled_from([0, 1, 100, 1000, 5000, 20000]),
              st.sampled_from([False, False, False, True])),  # MSG_MORE
    st.tuples(st.just("recv"), st.sampled_from([10, 1000, 100000])),
    st.tuples(st.just("time"), st.sampled_from([0.0001, 0.001, 0.01, 0.04, 0.3, 1.5])),
    # TCP_CORK off (the next output is forced, even with nothing queued)
    st.tuples(st.just("uncork")),
    # MSG_EOR: the bytes queued so far end a record
    st.tuples(st.just("eor")),
)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(step, min_size=1, max_size=80), ts=st.booleans(), sack=st.booleans(),
       nodelay=st.booleans())
def test_fast_paths_match_general_paths(steps: list[tuple[object, ...]], ts: bool, sack: bool,
                                        nodelay: bool) -> None:
    cfg = TcpConfig(recv_buffer=32768, send_buffer=65536, nodelay=nodelay)
    fast, ref = _pair(cfg, ts, sack)
    now = 0.002
    tsval = 200
    for s in steps:
        kind = s[0]
        if kind == "seg":
            _, dseq, dack, plen, win, flags, nsack = s
            assert isinstance(dseq, int) and isinstance(dack, int) and isinstance(plen, int)
            assert isinstance(win, int) and isinstance(flags, int) and isinstance(nsack, int)
            seq = (fast.rcv_nxt + dseq) & MASK
            flight = (fast.snd_nxt - fast.snd_una) & MASK
            ack = (fast.snd_una + min(max(dack, -1), flight)) & MASK if dack >= 0 else \
                (fast.snd_una + dack) & MASK
            blocks = []
            if nsack and flight > 2000:
                for i in range(nsack):
                    left = (fast.snd_una + 1000 * (2 * i + 1)) & MASK
                    blocks.append((left, (left + 1000) & MASK))
            tsval += 1
            opts = TcpOptions(timestamp=(tsval, (int(now * 1000) + fast._ts_offset) & MASK)
                              if ts else None, sack_blocks=blocks)
            seg = TcpSegment(40000, 80, seq, ack, flags, win, 0, opts, bytes([seq & 0xFF]) * plen)
            fast.receive(seg, now)
            ref.receive(seg, now)
        elif kind == "send":
            n, more = s[1], s[2]
            assert isinstance(n, int) and isinstance(more, bool)
            data = bytes(range(256)) * (n // 256 + 1)
            for c in (fast, ref):
                try:
                    r: object = c.send(data[:n], now, more=more)
                except OSError as exc:
                    r = type(exc)
                if c is fast:
                    got = r
                else:
                    assert r == got
        elif kind == "eor":
            fast.mark_record_end()
            ref.mark_record_end()
        elif kind == "uncork":
            fast.set_cork(False)
            ref.set_cork(False)
        elif kind == "recv":
            n = s[1]
            assert isinstance(n, int)
            assert fast.recv(n, now) == ref.recv(n, now)
        else:
            dt = s[1]
            assert isinstance(dt, float)
            now += dt
            for c in (fast, ref):
                d = c.next_deadline()
                if d is not None and d <= now:
                    c.handle_timer(now)
        out_f = [_key(x) for x in fast.segments_to_send(now)]
        out_r = [_key(x) for x in ref.segments_to_send(now)]
        assert out_f == out_r
        assert fast.next_deadline() == ref.next_deadline()
        assert _state(fast) == _state(ref)
        ev_f: list[ev.Event] = []
        ev_r: list[ev.Event] = []
        while (e := fast.next_event()) is not None:
            ev_f.append(e)
        while (e := ref.next_event()) is not None:
            ev_r.append(e)
        assert ev_f == ev_r


def test_general_path_subclass_really_takes_the_general_path() -> None:
    """The reference connection must not take the fast path (else the test
    above compares a path with itself): a bulk send builds the same segments
    one by one, and an in-order segment goes through _receive_general."""
    cfg = TcpConfig()
    fast, ref = _pair(cfg, True, True)
    calls: list[str] = []
    orig = GeneralPathConnection._receive_general

    def spy(self: TcpConnection, seg: TcpSegment, now: float) -> None:
        calls.append("general")
        orig(self, seg, now)

    GeneralPathConnection._receive_general = spy  # type: ignore[method-assign]
    try:
        seg = TcpSegment(40000, 80, ref.rcv_nxt, ref.snd_una, ACK, 16000, 0,
                         TcpOptions(timestamp=(300, 1)), b"x" * 100)
        ref.receive(seg, 0.01)
        fast.receive(seg, 0.01)
    finally:
        GeneralPathConnection._receive_general = orig  # type: ignore[method-assign]
    assert calls == ["general"]
    assert fast.rcv_nxt == ref.rcv_nxt


def _rr_round(c: TcpConnection, now: float, tsval: int, ts: bool) -> list[object]:
    """One request/response as a client sees it: a 1-byte write (what it
    sends), then the peer's 1-byte answer acknowledging it."""
    c.send(b"q", now)
    sent: list[object] = [_key(x) for x in c.segments_to_send(now)]
    c.receive(TcpSegment(40000, 80, c.rcv_nxt, c.snd_nxt, ACK | PSH, 16000, 0,
                         TcpOptions(timestamp=(tsval, (int(now * 1000) + c._ts_offset) & MASK)
                                    if ts else None), b"r"), now + 0.00003)
    return sent


@settings(max_examples=40, deadline=None)
@given(ts=st.booleans(), sack=st.booleans(), nodelay=st.booleans(),
       gaps=st.lists(st.sampled_from([0.00005, 0.0002, 0.001, 0.05, 0.3]), min_size=1,
                     max_size=40))
def test_request_response_rounds_match_the_general_path(ts: bool, sack: bool, nodelay: bool,
                                                         gaps: list[float]) -> None:
    """The request/response pattern (issue 14: every drain after the answer
    has nothing to send) gives the same segments, timers and state on both
    paths, round after round."""
    cfg = TcpConfig(nodelay=nodelay)
    fast, ref = _pair(cfg, ts, sack)
    now = 0.002
    for i, gap in enumerate(gaps):
        assert _rr_round(fast, now, 300 + i, ts) == _rr_round(ref, now, 300 + i, ts)
        assert fast.recv(10, now) == ref.recv(10, now) == b"r"
        out_f = [_key(x) for x in fast.segments_to_send(now + 0.00004)]
        out_r = [_key(x) for x in ref.segments_to_send(now + 0.00004)]
        assert out_f == out_r
        assert _state(fast) == _state(ref)
        assert fast.next_deadline() == ref.next_deadline()
        now += gap
        for c in (fast, ref):
            d = c.next_deadline()
            if d is not None and d <= now:
                c.handle_timer(now)
        assert [_key(x) for x in fast.segments_to_send(now)] == \
            [_key(x) for x in ref.segments_to_send(now)]
        assert _state(fast) == _state(ref)


@pytest.mark.pure_python("spies on Sender methods")
def test_request_response_takes_the_sender_shortcuts() -> None:
    """The differential test above compares something: on the fast
    connection a 1-byte write with nothing in flight goes through
    Sender._push_one, and the drain after the answer leaves push before
    _after_push; the reference connection takes neither."""
    from ustack.tcp.sender import Sender

    calls: list[str] = []
    one, after = Sender._push_one, Sender._after_push

    def spy_one(self: Sender, *a: object) -> None:
        calls.append("one")
        one(self, *a)  # type: ignore[arg-type]

    def spy_after(self: Sender, *a: object) -> None:
        calls.append("after")
        after(self, *a)  # type: ignore[arg-type]

    Sender._push_one = spy_one  # type: ignore[method-assign,assignment]
    Sender._after_push = spy_after  # type: ignore[method-assign,assignment]
    try:
        got = {}
        for c in _pair(TcpConfig(nodelay=True), True, True):
            calls.clear()
            _rr_round(c, 0.01, 300, True)
            c.recv(10, 0.01)
            c.segments_to_send(0.01004)
            got[type(c).__name__] = list(calls)
    finally:
        Sender._push_one = one  # type: ignore[method-assign]
        Sender._after_push = after  # type: ignore[method-assign]
    assert got == {"TcpConnection": ["one", "after"],
                   "GeneralPathConnection": ["after", "after"]}


def test_a_record_end_keeps_the_one_segment_shortcut_away() -> None:
    """Two MSG_EOR records queued behind a closed peer window with nothing
    in flight: the window update sends them as two segments on both paths
    (the one-segment shortcut would send one)."""
    outs = []
    for c in _pair(TcpConfig(nodelay=True), False, True):
        c.receive(TcpSegment(40000, 80, c.rcv_nxt, c.snd_una, ACK, 0), 0.005)
        c.segments_to_send(0.005)
        c.send(b"a" * 100, 0.01)
        c.mark_record_end()
        c.send(b"b" * 100, 0.01)
        assert c.segments_to_send(0.01) == []  # the window is closed
        c.receive(TcpSegment(40000, 80, c.rcv_nxt, c.snd_una, ACK, 16000), 0.011)
        outs.append([_key(x) for x in c.segments_to_send(0.011)])
    assert outs[0] == outs[1]
    assert [len(k[4]) for k in outs[0]] == [100, 100]  # type: ignore[arg-type]
