"""Hypothesis: random segment streams, plausible and garbage, interleaved with
application calls and timer runs, never raise out of the core and never break
its invariants (SND.UNA <= SND.NXT, buffers within bounds, sane output)."""

from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ustack.tcp import TcpConfig, TcpConnection, TcpState
from ustack.wire.seq import seq_le, seq_sub
from ustack.wire.tcp import ACK, FIN, PSH, RST, SYN, URG, TcpOptions, TcpSegment

ISS = 0xFFFFFF00  # near the wrap on purpose
PEER = 0xFFFFFFF0
CFG = TcpConfig(recv_buffer=8192, send_buffer=16384, window_scaling=True, window_scale=2)

flag_sets = st.sampled_from([ACK, ACK | PSH, ACK | FIN, ACK | RST, RST, SYN, SYN | ACK, FIN,
                             0, ACK | URG, SYN | FIN, ACK | FIN | PSH])
garbage_flags = st.integers(0, 0xFF)
options = st.one_of(
    st.just(TcpOptions()),
    st.builds(lambda v, e: TcpOptions(timestamp=(v, e)), st.integers(0, 2**32 - 1),
              st.integers(0, 2**32 - 1)),
    st.builds(lambda blocks: TcpOptions(sack_blocks=blocks),
              st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)),
                       max_size=4)),
    st.builds(lambda m, w: TcpOptions(mss=m, wscale=w, sack_permitted=True),
              st.integers(0, 65535), st.integers(0, 255)),
)


@st.composite
def segment(draw: st.DrawFn, conn_holder: list[TcpConnection]) -> TcpSegment:
    conn = conn_holder[0]
    plausible = draw(st.booleans())
    if plausible:
        seq = (conn.rcv_nxt + draw(st.integers(-3000, 12000))) & 0xFFFFFFFF
        ack = (conn.snd_una + draw(st.integers(-100, 20000))) & 0xFFFFFFFF
        flags = draw(flag_sets)
    else:
        seq = draw(st.integers(0, 2**32 - 1))
        ack = draw(st.integers(0, 2**32 - 1))
        flags = draw(garbage_flags)
    payload = draw(st.binary(max_size=3000)) if draw(st.booleans()) else b""
    return TcpSegment(conn.remote_port, conn.local_port, seq, ack, flags,
                      draw(st.integers(0, 65535)), draw(st.integers(0, 65535)),
                      draw(options), payload)


def _new_conn(kind: int) -> TcpConnection:
    syn = TcpSegment(40000, 80, PEER, 0, SYN, 65535, 0,
                     TcpOptions(mss=1000, wscale=3, sack_permitted=True, timestamp=(5, 0)))
    if kind == 0:
        return TcpConnection.connect(40000, 80, ISS, 0.0, CFG)
    conn = TcpConnection.accept(syn, ISS, 0.0, CFG)
    if kind == 2:
        conn.segments_to_send(0.0)
        conn.receive(TcpSegment(40000, 80, (PEER + 1) & 0xFFFFFFFF, (ISS + 1) & 0xFFFFFFFF,
                                ACK, 1000, 0, TcpOptions(timestamp=(6, 0))), 0.01)
        assert conn.state is TcpState.ESTABLISHED
    return conn


def _check(conn: TcpConnection, out: list[TcpSegment]) -> None:
    assert seq_le(conn.snd_una, conn.snd_nxt)
    assert 0 <= seq_sub(conn.snd_nxt, conn.snd_una) <= conn.send_queue + 2
    # Linux's rule: past the bound by at most what the last skb started below
    # it takes (a size goal) plus one refill of a partly sent skb
    assert conn.send_queue <= CFG.send_buffer + 2 * conn._size_goal()
    slack = 1 << max(conn.rcv_wscale, 0)
    assert conn.readable() + conn._ooo.nbytes <= CFG.recv_buffer + slack
    assert seq_sub(conn.rcv_adv, conn.rcv_nxt) >= 0 or conn.state is not TcpState.ESTABLISHED
    assert conn.cc.cwnd >= 1
    d = conn.next_deadline()
    assert d is None or math.isfinite(d)
    if conn.state is TcpState.CLOSED:
        assert d is None
    for seg in out:
        assert 0 <= seg.window <= 0xFFFF
        assert 0 <= seg.seq <= 0xFFFFFFFF and 0 <= seg.ack <= 0xFFFFFFFF
        assert (seg.src_port, seg.dst_port) == (conn.local_port, conn.remote_port)
        assert len(seg.payload) <= max(conn.send_mss, 1000)
        seg.encode(b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02")  # always encodable
    info = conn.info(1.0)
    assert info.state == conn.state.ss_name


actions = st.lists(
    st.one_of(
        st.tuples(st.just("seg"), st.integers(0, 2**31)),
        st.tuples(st.just("send"), st.integers(0, 20000)),
        st.tuples(st.just("recv"), st.integers(0, 5000)),
        st.tuples(st.just("time"), st.integers(0, 5000)),
        st.tuples(st.just("shutdown"), st.just(0)),
        st.tuples(st.just("close"), st.just(0)),
        st.tuples(st.just("abort"), st.just(0)),
    ),
    min_size=1, max_size=60,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.integers(0, 2), steps=actions, data=st.data())
def test_random_segment_streams_never_raise_and_keep_invariants(
        kind: int, steps: list[tuple[str, int]], data: st.DataObject) -> None:
    conn = _new_conn(kind)
    holder = [conn]
    now = 0.02
    out = conn.segments_to_send(now)
    _check(conn, out)
    for action, arg in steps:
        if action == "seg":
            conn.receive(data.draw(segment(holder)), now)
        elif action == "send":
            try:
                conn.send(bytes(arg), now)
            except OSError:
                assert conn.shut_wr or conn.state in (TcpState.CLOSED, TcpState.TIME_WAIT,
                                                      TcpState.FIN_WAIT_2)
        elif action == "recv":
            conn.recv(arg, now)
        elif action == "time":
            now += arg / 100.0
            d = conn.next_deadline()
            if d is not None and d <= now:
                conn.handle_timer(now)
        elif action == "shutdown":
            conn.shutdown(now)
        elif action == "close":
            conn.close(now)
        elif action == "abort":
            conn.abort(now)
        out = conn.segments_to_send(now)
        while conn.next_event() is not None:
            pass
        _check(conn, out)


@settings(max_examples=150, deadline=None)
@given(stream=st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1),
                                 garbage_flags, st.binary(max_size=200)), max_size=40))
def test_garbage_against_every_state_never_raises(
        stream: list[tuple[int, int, int, bytes]]) -> None:
    for kind in range(3):
        conn = _new_conn(kind)
        now = 0.0
        for seq, ack, flags, payload in stream:
            now += 0.3
            conn.receive(TcpSegment(conn.remote_port, conn.local_port, seq, ack, flags, 1000, 0,
                                    TcpOptions(), payload), now)
            _check(conn, conn.segments_to_send(now))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1),
       loss=st.sampled_from([0.0, 0.02, 0.1]),
       reorder=st.sampled_from([0.0, 0.05]),
       duplicate=st.sampled_from([0.0, 0.02]),
       actions=st.lists(st.tuples(st.sampled_from(["a", "b"]),
                                  st.sampled_from(["send", "recv", "shutdown", "close", "abort"]),
                                  st.integers(0, 40_000), st.floats(0.0, 0.5)),
                        max_size=25))
def test_two_cores_random_app_calls_and_impairments(
        seed: int, loss: float, reorder: float, duplicate: float,
        actions: list[tuple[str, str, int, float]]) -> None:
    """Two real cores over a lossy wire with random application calls at
    random times: nothing raises (except documented send errors), what each
    side reads is a prefix of what the other wrote, and both reach CLOSED."""
    import random as _random

    from ustack.tcp.testing import MemoryPair, WireProfile

    prof = WireProfile(delay=0.003, loss=loss, reorder=reorder, duplicate=duplicate)
    cfg = TcpConfig(recv_buffer=32768, send_buffer=65536, time_wait=5.0, fin_wait2=5.0,
                    keepalive=True, keepalive_idle=30, keepalive_interval=5, keepalive_count=3)
    pair = MemoryPair(cfg, cfg, seed=seed, profile=prof)
    rng = _random.Random(seed)
    written = {"a": bytearray(), "b": bytearray()}
    read = {"a": bytearray(), "b": bytearray()}
    plan = sorted(((t, who, what, n) for who, what, n, t in actions), key=lambda x: x[0])
    idx = 0
    closers: set[str] = set()

    def app(now: float) -> float | None:
        nonlocal idx
        while idx < len(plan) and plan[idx][0] <= now:
            _, who, what, n = plan[idx]
            idx += 1
            conn = pair.client.conn if who == "a" else pair.server.conn
            if conn is None:
                continue
            if what == "send":
                data = rng.randbytes(n)
                try:
                    k = conn.send(data, now)
                except OSError:
                    continue
                written[who] += data[:k]
            elif what == "recv":
                read[who] += conn.recv(n, now)
            elif what == "shutdown":
                conn.shutdown(now)
            elif what == "close":
                read[who] += conn.recv(1 << 30, now)  # drain first half the time
                if n % 2:
                    conn.close(now)
                    closers.add(who)
            else:
                conn.abort(now)
                closers.add(who)
        for who, ep in (("a", pair.client), ("b", pair.server)):
            if ep.conn is not None:
                read[who] += ep.conn.recv(1 << 30, now)
        return plan[idx][0] if idx < len(plan) else None

    end = (plan[-1][0] if plan else 0.0) + 1200.0  # > every timeout incl. retries2

    try:
        pair.run(lambda: idx >= len(plan) and pair.now >= end, app=app, max_time=end + 600)
    except RuntimeError as exc:  # a quiet simulation: nothing left to happen
        assert "stalled" in str(exc)
    assert written["a"].startswith(bytes(read["b"]))
    assert written["b"].startswith(bytes(read["a"]))
    for who, ep in (("a", pair.client), ("b", pair.server)):
        conn = ep.conn
        if conn is not None:
            assert seq_le(conn.snd_una, conn.snd_nxt)
            if conn.state is TcpState.CLOSED:
                assert conn.next_deadline() is None
            if who in closers:  # the application let go: the core must finish
                assert conn.state is TcpState.CLOSED, (who, conn)
