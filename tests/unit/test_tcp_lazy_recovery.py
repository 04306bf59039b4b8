"""The recovery room is created at its first use (TcpConnection._room), not
when the connection synchronizes: an idle established connection keeps no
Recovery, Scoreboard, RACK or rate sampler (issue 14, memory).

Differential test: a connection of the subclass with ``eager_recovery =
True`` (the room made at the handshake, as before) and a plain one are driven
with the same random stream of peer segments (in order, old, beyond the
window, window updates, SACK and D-SACK blocks also with nothing in flight,
timestamps), application calls, socket options that touch the room (MSS,
path MTU, congestion control) and clock steps (keepalive, delayed ACK,
RTO).  After every step the output segments, the events, the next deadline,
the sequence variables and the whole TcpInfo (what ``ss -i`` prints) must be
identical; at the end both rooms' own figures (``Recovery.info``) too."""

from __future__ import annotations

import contextlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ustack.tcp import TcpConfig, TcpConnection
from ustack.tcp import events as ev
from ustack.wire.tcp import ACK, FIN, PSH, SYN, TcpOptions, TcpSegment

ISS = 0xFFFFF000  # near the wrap on purpose
PEER = 0xFFFFFF00
MASK = 0xFFFFFFFF


class EagerRoomConnection(TcpConnection):
    __slots__ = ()
    eager_recovery = True


def _accepted(cls: type[TcpConnection], cfg: TcpConfig, ts: bool, sack: bool) -> TcpConnection:
    opts = TcpOptions(mss=1000, wscale=2, sack_permitted=sack,
                      timestamp=(100, 0) if ts else None)
    syn = TcpSegment(40000, 80, PEER, 0, SYN, 65535, 0, opts)
    c = cls.accept(syn, ISS, 0.0, cfg)
    c.segments_to_send(0.0)
    c.receive(TcpSegment(40000, 80, (PEER + 1) & MASK, (ISS + 1) & MASK, ACK, 16000, 0,
                         TcpOptions(timestamp=(101, 1) if ts else None)), 0.001)
    c.segments_to_send(0.001)
    return c


def _connected(cls: type[TcpConnection], cfg: TcpConfig, ts: bool, sack: bool) -> TcpConnection:
    c = cls.connect(80, 40000, ISS, 0.0, cfg)
    c.segments_to_send(0.0)
    opts = TcpOptions(mss=1000, wscale=2, sack_permitted=sack,
                      timestamp=(100, (c._ts_offset) & MASK) if ts else None)
    c.receive(TcpSegment(40000, 80, PEER, (ISS + 1) & MASK, SYN | ACK, 65535, 0, opts), 0.001)
    c.segments_to_send(0.001)
    return c


def _key(seg: TcpSegment) -> tuple[object, ...]:
    o = seg.options
    return (seg.seq, seg.ack, seg.flags, seg.window, bytes(seg.payload), o.timestamp,
            tuple(o.sack_blocks), o.mss)


def _state(c: TcpConnection, now: float) -> tuple[object, ...]:
    snd = c.snd
    return (c.state, c.snd_una, c.snd_nxt, c.snd_wnd, c.rcv_nxt, c.rcv_adv, c.cc.cwnd,
            c.cc.ssthresh, c.cc.name, c.send_mss, c.rtt.srtt, c.rtt.rto, c.rtt.backoff,
            c.readable(), c.send_queue, c.eof_received, snd.ptr, snd.sml, snd.force, snd.probe,
            snd.pacing_rate, snd.chrono.kind, snd.cwnd_limited, snd.max_flight,
            snd.cwnd_usage_seq, snd.last_data_send, c.timers.pending(), c.info(now))


step = st.one_of(
    # peer segment: seq offset from RCV.NXT, ack offset from SND.UNA, payload
    # length, window, flags, SACK blocks (0 none, 1-3 above SND.UNA when there
    # is room, 4 a D-SACK below RCV.NXT-ish / SND.UNA even with nothing in flight)
    st.tuples(st.just("seg"), st.sampled_from([0, 0, 0, 0, 1000, -500, 70000]),
              st.integers(-2000, 12000), st.sampled_from([0, 0, 0, 1, 500, 1000, 3000]),
              st.sampled_from([16000, 16000, 8000, 0, 100, 30000]),
              st.sampled_from([ACK, ACK, ACK | PSH, ACK | FIN]), st.integers(0, 4)),
    st.tuples(st.just("send"), st.sampled_from([0, 1, 100, 1000, 5000, 20000])),
    st.tuples(st.just("recv"), st.sampled_from([10, 1000, 100000])),
    st.tuples(st.just("time"), st.sampled_from([0.0001, 0.001, 0.04, 0.3, 1.5, 30.0])),
    st.tuples(st.just("cc"), st.sampled_from(["reno", "cubic", "bbr"])),
    st.tuples(st.just("maxseg"), st.sampled_from([600, 900])),
    st.tuples(st.just("pmtu"), st.sampled_from([700, 1000])),
    st.tuples(st.just("close")),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(step, min_size=1, max_size=60), ts=st.booleans(), sack=st.booleans(),
       active=st.booleans(), keepalive=st.booleans())
def test_lazy_room_matches_eager_room(steps: list[tuple[object, ...]], ts: bool, sack: bool,
                                      active: bool, keepalive: bool) -> None:
    cfg = TcpConfig(recv_buffer=32768, send_buffer=65536, keepalive=keepalive,
                    keepalive_idle=10.0, keepalive_interval=5.0)
    make = _connected if active else _accepted
    lazy = make(TcpConnection, cfg, ts, sack)
    eager = make(EagerRoomConnection, cfg, ts, sack)
    assert lazy._rec is None and eager._rec is not None
    now = 0.002
    tsval = 200
    for k, s in enumerate(steps):
        kind = s[0]
        if kind == "seg":
            _, dseq, dack, plen, win, flags, nsack = s
            assert isinstance(dseq, int) and isinstance(dack, int) and isinstance(plen, int)
            assert isinstance(win, int) and isinstance(flags, int) and isinstance(nsack, int)
            seq = (eager.rcv_nxt + dseq) & MASK
            flight = (eager.snd_nxt - eager.snd_una) & MASK
            ack = (eager.snd_una + min(max(dack, -1), flight)) & MASK if dack >= 0 else \
                (eager.snd_una + dack) & MASK
            blocks = []
            if nsack == 4:  # D-SACK of something already acknowledged
                blocks.append(((eager.snd_una - 1000) & MASK, (eager.snd_una - 500) & MASK))
            elif nsack and flight > 2000:
                for i in range(nsack):
                    left = (eager.snd_una + 1000 * (2 * i + 1)) & MASK
                    blocks.append((left, (left + 1000) & MASK))
            tsval += 1
            opts = TcpOptions(timestamp=(tsval, (int(now * 1000) + eager._ts_offset) & MASK)
                              if ts else None, sack_blocks=blocks)
            seg = TcpSegment(40000, 80, seq, ack, flags, win, 0, opts, bytes([seq & 0xFF]) * plen)
            lazy.receive(seg, now)
            eager.receive(seg, now)
        elif kind == "send":
            n = s[1]
            assert isinstance(n, int)
            data = bytes(range(256)) * (n // 256 + 1)
            got: object = None
            for c in (eager, lazy):
                try:
                    r: object = c.send(data[:n], now)
                except OSError as exc:
                    r = type(exc)
                if c is eager:
                    got = r
                else:
                    assert r == got
        elif kind == "recv":
            n = s[1]
            assert isinstance(n, int)
            assert lazy.recv(n, now) == eager.recv(n, now)
        elif kind == "cc":
            name = s[1]
            assert isinstance(name, str)
            lazy.set_congestion(name)
            eager.set_congestion(name)
        elif kind == "maxseg":
            n = s[1]
            assert isinstance(n, int)
            lazy.set_maxseg(n)
            eager.set_maxseg(n)
        elif kind == "pmtu":
            n = s[1]
            assert isinstance(n, int)
            lazy.path_mtu_reduced(n, now)
            eager.path_mtu_reduced(n, now)
        elif kind == "close":
            for c in (eager, lazy):
                with contextlib.suppress(OSError):
                    c.close(now)
        else:
            dt = s[1]
            assert isinstance(dt, float)
            now += dt
            for c in (lazy, eager):
                d = c.next_deadline()
                if d is not None and d <= now:
                    c.handle_timer(now)
        assert [_key(x) for x in lazy.segments_to_send(now)] == \
            [_key(x) for x in eager.segments_to_send(now)]
        lazy.segments_sent(now, now)
        eager.segments_sent(now, now)
        assert lazy.next_deadline() == eager.next_deadline()
        assert _state(lazy, now) == _state(eager, now)
        ev_l: list[ev.Event] = []
        ev_e: list[ev.Event] = []
        while (e := lazy.next_event()) is not None:
            ev_l.append(e)
        while (e := eager.next_event()) is not None:
            ev_e.append(e)
        assert ev_l == ev_e
        if lazy._rec is not None:
            # before anything is queued, only a SACK-carrying ACK or an MSS
            # change makes the room (the lazy path is really taken)
            assert any(x[0] in ("maxseg", "pmtu", "close") or (x[0] == "seg" and x[6])
                       or (x[0] == "send" and x[1]) for x in steps[:k + 1])
    lr, er = lazy.rec, eager.rec
    if er is None:
        assert lr is None
    else:
        assert lr is not None
        assert lr.info() == er.info()
        assert (lr.state, lr.una, lr.nxt, lr.mss, lr.cc is lazy.cc, lr.timer()) == \
            (er.state, er.una, er.nxt, er.mss, er.cc is eager.cc, er.timer())


def test_eager_subclass_really_makes_the_room_at_the_handshake() -> None:
    """Else the test above compares the lazy path with itself."""
    for make in (_accepted, _connected):
        assert make(EagerRoomConnection, TcpConfig(), True, True)._rec is not None
        assert make(TcpConnection, TcpConfig(), True, True)._rec is None


def test_idle_connection_keeps_no_room_and_shows_a_new_rooms_figures() -> None:
    """Handshake, keepalive probes answered, window updates, delayed ACKs of
    received data: still no room, and TcpInfo (ss -i: cwnd, ssthresh,
    reordering, ca_state, lost, sacked, timer, cc name) equals the eager
    connection's."""
    cfg = TcpConfig(keepalive=True, keepalive_idle=10.0, keepalive_interval=5.0)
    lazy = _accepted(TcpConnection, cfg, True, True)
    eager = _accepted(EagerRoomConnection, cfg, True, True)
    now = 0.002
    tsval = 300
    for i in range(6):
        for c in (lazy, eager):
            seg = TcpSegment(40000, 80, c.rcv_nxt, c.snd_una, ACK | PSH, 16000 + i, 0,
                             TcpOptions(timestamp=(tsval, 1)), b"d" * 100)
            c.receive(seg, now)
        assert [_key(x) for x in lazy.segments_to_send(now)] == \
            [_key(x) for x in eager.segments_to_send(now)]
        now += 20.0
        tsval += 1
        for c in (lazy, eager):
            if (d := c.next_deadline()) is not None and d <= now:
                c.handle_timer(now)
        assert [_key(x) for x in lazy.segments_to_send(now)] == \
            [_key(x) for x in eager.segments_to_send(now)]
        assert lazy.info(now) == eager.info(now)
        assert lazy.next_deadline() == eager.next_deadline()
    assert lazy._rec is None
    assert lazy.info(now).ca_name == eager.info(now).ca_name == "cubic"
    # the first send makes it, and from then on both run the same
    for c in (lazy, eager):
        c.send(b"x" * 3000, now)
    assert [_key(x) for x in lazy.segments_to_send(now)] == \
        [_key(x) for x in eager.segments_to_send(now)]
    assert lazy._rec is not None
    assert lazy.info(now) == eager.info(now)


def test_late_dsack_on_an_idle_connection_reaches_a_room() -> None:
    """A D-SACK arriving with nothing in flight goes to the recovery room
    (Linux tcp_ack no_queue): the lazy connection makes the room for it and
    counts it as the eager one does."""
    for sack in (True, False):
        conns = [_accepted(cls, TcpConfig(), True, sack)
                 for cls in (TcpConnection, EagerRoomConnection)]
        for c in conns:
            blocks = [((ISS - 1000) & MASK, (ISS - 500) & MASK)]
            c.receive(TcpSegment(40000, 80, c.rcv_nxt, c.snd_una, ACK, 16000, 0,
                                 TcpOptions(timestamp=(500, 1), sack_blocks=blocks)), 0.01)
        lazy, eager = conns
        assert [_key(x) for x in lazy.segments_to_send(0.01)] == \
            [_key(x) for x in eager.segments_to_send(0.01)]
        assert lazy.info(0.01) == eager.info(0.01)
        lr, er = lazy.rec, eager.rec
        assert lr is not None and er is not None
        assert lr.info() == er.info()
        if sack:
            assert er.info().dsack_dups == 1  # the case is live
