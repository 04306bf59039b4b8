"""The rooms of the TCP core one by one: the state-transition table, the
timer table, microsecond RTT from send times, the windowed min_rtt, the
trace hook and the MIB counters."""

from __future__ import annotations

from typing import Any

import pytest

from ustack.tcp import TcpConfig, TcpConnection, TcpState
from ustack.tcp.mib import TcpMib
from ustack.tcp.rtt import RttEstimator, WindowedMin
from ustack.tcp.state import CHECK_TRANSITIONS, TRANSITIONS, TransitionError, check_transition
from ustack.tcp.testing import BulkApp, MemoryPair, Script, WireProfile
from ustack.tcp.timers import Timers
from ustack.wire.tcp import SYN, TcpOptions, TcpSegment

ISS = 10_000
PEER = 0


def established(cfg: TcpConfig | None = None, ts: bool = True, **kw: Any) -> Script:
    opts = TcpOptions(mss=1460, timestamp=(1, 0) if ts else None, sack_permitted=True)
    syn = TcpSegment(40000, 80, PEER, 0, SYN, 65535, 0, opts)
    s = Script(TcpConnection.accept(syn, ISS, 0.0, cfg, **kw), ISS, PEER)
    s.drain()
    s.now = 0.000250
    s.inject(s.seg(".", 1, 1, options=TcpOptions(timestamp=(2, s.conn._ts_val(0.0)))
                   if ts else None))
    s.events.clear()
    return s


# ------------------------------------------------------------ states
def test_transition_table_is_checked_under_pytest() -> None:
    assert CHECK_TRANSITIONS
    check_transition(TcpState.ESTABLISHED, TcpState.FIN_WAIT_1)
    with pytest.raises(TransitionError):
        check_transition(TcpState.TIME_WAIT, TcpState.ESTABLISHED)
    with pytest.raises(TransitionError):
        check_transition(TcpState.LAST_ACK, TcpState.FIN_WAIT_2)
    # every state has an entry, and every state can reach CLOSED
    for st in TcpState:
        assert st in TRANSITIONS
        if st is not TcpState.CLOSED:
            assert TcpState.CLOSED in TRANSITIONS[st]


def test_set_state_rejects_an_edge_outside_the_table() -> None:
    s = established()
    with pytest.raises(TransitionError):
        s.conn._set_state(TcpState.SYN_SENT)
    assert s.conn.state is TcpState.ESTABLISHED


def test_trace_hook_sees_every_state_change_of_a_whole_connection() -> None:
    seen: list[tuple[str, str]] = []

    def hook(now: float, event: str, data: dict[str, Any]) -> None:
        if event == "state":
            seen.append((data["old"], data["new"]))

    pair = MemoryPair(seed=3)
    pair.a.trace = hook
    pair.handshake()
    pair.a.close(pair.now)
    pair.b.close(pair.now)
    pair.run(lambda: pair.a.state is TcpState.TIME_WAIT, max_time=pair.now + 5)
    # both close at once: the FINs cross (RFC 9293 figure 13)
    assert seen == [("SYN-SENT", "ESTAB"), ("ESTAB", "FIN-WAIT-1"), ("FIN-WAIT-1", "CLOSING"),
                    ("CLOSING", "TIME-WAIT")]


# ------------------------------------------------------------ timers
def test_timer_table_earliest_and_ss_names() -> None:
    t = Timers()
    assert t.earliest() is None and t.pending() is None
    t.delack = 5.0
    t.pacing = 4.0
    t.keepalive = 9.0
    assert t.earliest() == 4.0
    assert t.pending() == ("keepalive", "keepalive", 9.0)  # ss shows keepalive before delack
    t.tlp = 7.0
    assert t.pending() == ("tlp", "on", 7.0)
    assert t.as_dict() == {"tlp": 7.0, "keepalive": 9.0, "delack": 5.0, "pacing": 4.0}
    t.stop_all()
    assert t.earliest() is None


# ------------------------------------------------------------ RTT
def test_windowed_min_forgets_old_minimum_after_the_window() -> None:
    m = WindowedMin(10.0)
    assert m.update(0.0, 0.005) == 0.005
    assert m.update(1.0, 0.007) == 0.005
    assert m.update(5.0, 0.004) == 0.004
    assert m.update(8.0, 0.006) == 0.004
    assert m.update(14.0, 0.006) == 0.004  # 0.004 taken at t=5 is still in the window
    assert m.update(16.0, 0.009) == 0.006  # ... and gone 10 s later
    assert m.update(40.0, 0.010) == 0.010


def test_rtt_estimator_update_uses_oldest_for_srtt_newest_for_min() -> None:
    r = RttEstimator(1.0, 0.2, 120.0, True)
    r.update(0.000800, 0.000300, 0.0)
    assert r.srtt == pytest.approx(0.0008) and r.min_rtt == pytest.approx(0.0003)
    assert r.rto == pytest.approx(0.0008 + 0.2)  # Linux floor 200 ms on 4*RTTVAR


@pytest.mark.parametrize("ts", [True, False])
def test_rtt_is_microseconds_from_send_times_not_the_1ms_timestamp(ts: bool) -> None:
    s = established(ts=ts)
    # the handshake: SYN-ACK sent at 0, ACK at 250 us
    assert s.conn.rtt.srtt == pytest.approx(0.000250)
    s.conn.send(b"x" * 1000, s.now)
    assert len(s.drain()) == 1
    s.now += 0.000180
    # the echo is the 1 ms tick of the send time: 0 ms apart from now
    tsecr = s.conn._ts_val(s.now)
    s.inject(s.seg(".", 1, 1001, options=TcpOptions(timestamp=(3, tsecr)) if ts else None))
    assert s.conn.rtt.latest == pytest.approx(0.000180)
    assert s.conn.rtt.min_rtt == pytest.approx(0.000180)
    info = s.conn.info(s.now)
    assert 0 < info.min_rtt < 0.001 and 0 < info.srtt < 0.001


def test_karn_no_sample_from_a_retransmitted_segment_without_timestamps() -> None:
    s = established(ts=False)
    s.conn.send(b"x" * 1000, s.now)
    s.drain()
    before = s.conn.rtt.latest
    rto = s.conn.next_deadline()
    assert rto is not None
    assert s.at(rto)  # the retransmission
    s.now = rto + 0.000100
    s.inject(s.seg(".", 1, 1001))
    assert s.conn.rtt.latest == before  # ambiguous: no sample (RFC 6298 3, Karn)


def test_timestamp_echo_gives_the_sample_after_a_retransmission() -> None:
    s = established(ts=True)
    s.conn.send(b"x" * 1000, s.now)
    s.drain()
    rto = s.conn.next_deadline()
    assert rto is not None
    s.at(rto)
    s.now = rto + 0.003
    # the echo names the retransmission: RTT 3 ms in 1 ms ticks (RFC 7323 4)
    s.inject(s.seg(".", 1, 1001, options=TcpOptions(timestamp=(9, s.conn._ts_val(rto)))))
    assert s.conn.rtt.latest == pytest.approx(0.003, abs=0.0011)


def test_pair_rtt_on_a_sub_millisecond_wire() -> None:
    pair = MemoryPair(seed=1, profile=WireProfile(delay=0.0002))
    pair.handshake()
    app = BulkApp(lambda: pair.client.conn, b"a" * 200_000, pair.rng)
    pair.run(lambda: app.sent == len(app.data) and pair.a.snd_una == pair.a.snd_nxt,
             app=app, max_time=pair.now + 30)
    rtt = pair.a.rtt
    assert 0.00039 <= rtt.min_rtt < 0.001  # 2 x 200 us
    assert 0.00039 <= rtt.srtt < 0.05


# ------------------------------------------------------------ counters
def test_private_mib_by_default_shared_when_passed() -> None:
    shared = TcpMib()
    syn = TcpSegment(40000, 80, PEER, 0, SYN, 65535, 0, TcpOptions(mss=1460))
    a = TcpConnection.accept(syn, ISS, 0.0, None, mib=shared)
    b = TcpConnection.accept(syn, ISS, 0.0, None)
    assert a.mib is shared and b.mib is not shared


def test_mib_counts_opens_retransmissions_and_current_established() -> None:
    mib = TcpMib()
    pair = MemoryPair(seed=5, profile=WireProfile(loss=0.05), mib=mib)
    pair.handshake()
    assert (mib["TcpActiveOpens"], mib["TcpPassiveOpens"], mib["TcpCurrEstab"]) == (1, 1, 2)
    app = BulkApp(lambda: pair.client.conn, b"z" * 300_000, pair.rng)
    srv = BulkApp(lambda: pair.server.conn, b"", pair.rng)

    def both(now: float) -> float | None:
        wakes = [w for w in (app(now), srv(now)) if w is not None]
        return min(wakes) if wakes else None

    # both ends closed at once (the server writes nothing): which one ends in
    # TIME-WAIT depends on which FIN the loss delays (a simultaneous close
    # leaves both there), so either order of the close completes the run
    done = (TcpState.TIME_WAIT, TcpState.CLOSED)
    pair.run(lambda: srv.eof and len(srv.received) == 300_000 and pair.a.state in done
             and pair.server.conn is not None and pair.b.state in done,
             app=both, max_time=pair.now + 300)
    assert bytes(srv.received) == app.data
    assert mib["TcpRetransSegs"] >= pair.a.total_retrans > 0
    assert mib["TcpCurrEstab"] == 0 and mib["TcpEstabResets"] == 0
    assert mib["TcpAttemptFails"] == 0 and mib["TcpOutRsts"] == 0


def test_trace_seg_sent_and_recv_with_rtx_flag() -> None:
    events: list[tuple[str, dict[str, Any]]] = []
    s = established(ts=False)
    s.conn.trace = lambda now, name, data: events.append((name, data))
    s.conn.send(b"x" * 100, s.now)
    s.drain()
    rto = s.conn.next_deadline()
    assert rto is not None
    s.at(rto)
    s.inject(s.seg(".", 1, 101))
    sent = [d for n, d in events if n == "seg_sent"]
    assert [(d["len"], d["rtx"], d["flags"]) for d in sent] == [(100, False, "P."),
                                                                (100, True, "P.")]
    recv = [d for n, d in events if n == "seg_recv"]
    assert recv[-1]["ack"] == (ISS + 101) and recv[-1]["len"] == 0


# ------------------------------------------------------------ pacing
def test_pacing_spaces_bursts_through_next_deadline() -> None:
    cfg = TcpConfig(pacing=True, initial_cwnd=40, send_buffer=1 << 20)
    s = established(cfg)
    s.conn.rtt.srtt = 0.010
    mss = s.conn.send_mss
    s.conn.send(b"p" * 100_000, s.now)
    first = s.drain()
    # cwnd 40 MSS per 10 ms at 200 % (slow start, Linux tcp_pacing_ss_ratio):
    # 1 ms of it is 8 segments
    assert len(first) == 8
    rate = s.conn.snd.pacing_rate
    assert rate == pytest.approx(40 * mss * 2 / 0.010)
    release = s.conn.next_deadline()
    assert release == pytest.approx(s.now + 8 * mss / rate)
    assert s.conn.timers.pacing == release
    assert s.drain() == []  # nothing before the release time
    times = s.run_timers(s.now + 0.0035)
    stamps = sorted({t for t, _ in times})
    assert len(stamps) == 3 and len(times) == 3 * 8  # 3 more bursts of 8, 1 ms apart
    for a, b in zip(stamps, stamps[1:], strict=False):
        assert b - a == pytest.approx(8 * mss / rate, rel=0.01)


def test_no_pacing_by_default_one_window_at_once() -> None:
    s = established(TcpConfig(initial_cwnd=40))
    s.conn.rtt.srtt = 0.010
    s.conn.send(b"p" * 100_000, s.now)
    assert len(s.drain()) == 40
    assert s.conn.timers.pacing is None


# ------------------------------------------------------------ congestion choice
def test_set_congestion_switches_a_live_connection_keeping_the_window() -> None:
    s = established()
    assert s.conn.cc.name == "cubic"  # Linux's default
    s.conn.cc.cwnd = 17 * s.conn.send_mss
    s.conn.cc.ssthresh = 9 * s.conn.send_mss
    s.conn.set_congestion("reno")
    assert s.conn.cc.name == "reno" and s.conn.info(s.now).ca_name == "reno"
    assert s.conn.cc.cwnd == 17 * s.conn.send_mss and s.conn.cc.ssthresh == 9 * s.conn.send_mss
    assert s.conn.cc.mss == s.conn.send_mss
    with pytest.raises(ValueError, match="available"):
        s.conn.set_congestion("nope")
    assert s.conn.cc.name == "reno"


def test_every_trace_event_of_a_lossy_transfer_follows_the_trace_schema() -> None:
    from ustack.trace.schema import validate_event

    seen: dict[str, int] = {}

    def hook(now: float, event: str, data: dict[str, Any]) -> None:
        validate_event({"t": now, "ev": event, **data})
        seen[event] = seen.get(event, 0) + 1

    cfg = TcpConfig(window_scale=5)
    pair = MemoryPair(cfg, cfg, seed=9, profile=WireProfile(loss=0.03, reorder=0.05))
    pair.a.trace = hook
    pair.handshake()
    pair.b.trace = hook
    app = BulkApp(lambda: pair.client.conn, bytes(200_000), pair.rng)
    srv = BulkApp(lambda: pair.server.conn, b"", pair.rng)

    def both(now: float) -> float | None:
        wakes = [w for w in (app(now), srv(now)) if w is not None]
        return min(wakes) if wakes else None

    pair.run(lambda: srv.eof and len(srv.received) == 200_000, app=both,
             max_time=pair.now + 300)
    assert {"state", "seg_sent", "seg_recv", "cc", "recovery"} <= set(seen)


# ------------------------------------------------------------ socket options
def test_cork_holds_partial_segments_until_uncorked() -> None:
    s = established(TcpConfig(nodelay=True))
    s.conn.set_cork(True)
    s.conn.send(b"c" * 3000, s.now)
    out = s.drain()
    assert [len(x.payload) for x in out] == [s.conn.send_mss, s.conn.send_mss]  # full ones go
    s.conn.send(b"c" * 10, s.now)
    assert s.drain() == []
    s.conn.set_cork(False)
    assert [len(x.payload) for x in s.drain()] == [3000 - 2 * s.conn.send_mss + 10]


def test_quickack_acks_every_segment_and_flushes_a_delayed_ack() -> None:
    s = established(TcpConfig(quickack_segments=0))
    s.inject(s.seg(".", 1, 1, payload=b"a" * 100))
    assert s.conn.timers.delack is not None  # delayed
    s.conn.set_quickack(True)
    assert len(s.drain()) == 1 and s.conn.timers.delack is None
    assert len(s.inject(s.seg(".", 101, 1, payload=b"b" * 100))) == 1  # at once


def test_maxseg_clamps_advertised_and_send_mss() -> None:
    c = TcpConnection.connect(1, 2, 3, 0.0, TcpConfig(maxseg=1000))
    syn = c.segments_to_send(0.0)[0]
    assert syn.options.mss == 1000
    s = established()
    s.conn.set_maxseg(700)
    assert s.conn.send_mss == 700
    s.conn.send(b"m" * 1500, s.now)
    assert [len(x.payload) for x in s.drain()] == [700, 700, 100]
    with pytest.raises(ValueError):
        s.conn.set_maxseg(10)


def test_notsent_lowat_bounds_unsent_bytes_and_reports_space() -> None:
    """Linux's rule (tcp_sendmsg_locked + tcp_stream_memory_free): a write
    takes what cwnd lets out at once plus size-goal chunks (half the peer's
    window), starting none while >= lowat bytes wait unsent; the socket is
    writable again once twice the unsent bytes are below the mark."""
    from ustack.tcp import events as ev

    s = established(TcpConfig(initial_cwnd=2))
    s.conn.set_notsent_lowat(4000)
    mss = s.conn.send_mss
    goal = (65535 >> 1) // mss * mss
    n = s.conn.send(b"w" * 100_000, s.now)
    assert n == 2 * mss + goal
    assert s.conn.send_space() == 0
    assert s.conn.send(b"w", s.now) == 0
    s.drain()  # two segments leave, a size goal of bytes still waits
    assert s.conn.send_space() == 0
    s.events.clear()
    for _ in range(100):
        if 2 * s.conn.snd.unsent(s.conn.snd_una) < 4000:
            break
        assert s.conn.send_space() == 0
        s.now += 0.01
        ack = (s.conn.snd_nxt - ISS) & 0xFFFFFFFF
        s.inject(s.seg(".", 1, ack, options=TcpOptions(timestamp=(3, s.conn._ts_val(s.now)))))
    assert s.conn.send_space() > 0
    assert any(isinstance(e, ev.SendSpaceAvailable) for e in s.events)


def test_send_and_recv_buffer_setters() -> None:
    s = established()
    s.conn.set_send_buffer(5000)
    # Linux's rule (tcp_sendmsg_locked): the write's first skb starts below
    # the bound and takes up to a size goal (22 x 1448 = 31856 here); the
    # socket is not writable above 2/3 of the bound
    assert s.conn.send(b"x" * 9000, s.now) == 9000
    assert s.conn.send_space() == 0
    s.drain()
    assert s.conn.send(b"x" * 40000, s.now) < 40000
    s.conn.set_recv_buffer(1 << 21)
    s.inject(s.seg(".", 1, 1, payload=b"r" * 10))
    assert s.conn.config.recv_buffer == 1 << 21 and s.conn.rcv.size == 1 << 21
    with pytest.raises(ValueError):
        s.conn.set_send_buffer(0)
