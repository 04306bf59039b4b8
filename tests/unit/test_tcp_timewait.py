"""The compact TIME-WAIT record (ustack.tcp.timewait) answers segments exactly
as the full TcpConnection does in TIME-WAIT: hypothesis drives a connection
and the record made of a copy of it with the same random segments and
timer runs and compares every segment sent, the state, the deadline, the
events, the SYN handed back for reuse and the MIB counters."""

from __future__ import annotations

import copy
import os
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ustack.tcp import TcpConnection
from ustack.tcp.config import TcpConfig
from ustack.tcp.state import TcpState
from ustack.tcp.testing import MemoryPair
from ustack.tcp.timewait import TimeWait, can_compact
from ustack.wire.tcp import ACK, FIN, PSH, RST, SYN, TcpOptions, TcpSegment

EXAMPLES = int(os.environ.get("HR_EXAMPLES", "100"))
MASK = 0xFFFFFFFF


def time_wait_conn(ts: bool, sack: bool, ws: bool, simultaneous: bool) -> TcpConnection:
    """A client connection in TIME-WAIT after a short exchange."""
    cfg = TcpConfig(timestamps=ts, sack=sack, window_scaling=ws)
    p = MemoryPair(cfg, cfg)
    p.handshake()
    p.a.send(b"x" * 3000, p.now)
    p.b.send(b"y" * 2000, p.now)
    p.run(lambda: p.a.readable() == 2000 and p.b.readable() == 3000, max_time=p.now + 60)
    p.a.recv(5000, p.now)
    p.b.recv(5000, p.now)
    if simultaneous:
        p.a.shutdown(p.now)
        p.b.shutdown(p.now)
    else:
        p.a.shutdown(p.now)
        p.run(lambda: p.a.state is TcpState.FIN_WAIT_2, max_time=p.now + 60)
        p.b.shutdown(p.now)
    p.run(lambda: p.a.state is TcpState.TIME_WAIT
          and p.b.state in (TcpState.CLOSED, TcpState.TIME_WAIT), max_time=p.now + 60)
    conn = p.a
    conn.segments_to_send(p.now)
    while conn.next_event() is not None:
        pass
    assert can_compact(conn), "the connection should be quiet in TIME-WAIT"
    return conn


def seg_key(seg: TcpSegment) -> tuple[Any, ...]:
    o = seg.options
    return (seg.src_port, seg.dst_port, seg.seq, seg.ack, seg.flags, seg.window, seg.urgent,
            o.mss, o.wscale, o.sack_permitted, o.timestamp, tuple(o.sack_blocks),
            bytes(seg.payload))


_FLAGS = st.sampled_from([ACK, ACK | PSH, FIN | ACK, FIN, SYN, SYN | ACK, RST, RST | ACK,
                          SYN | FIN, SYN | RST, 0])
_SEQ_OFF = st.one_of(st.integers(-3, 3), st.sampled_from([-1000, 1000, 65535, 1 << 20,
                                                          1 << 31, -(1 << 31)]))
_TS = st.one_of(st.none(), st.integers(-5, 5), st.sampled_from([1 << 31, -(1 << 30)]))
_OP = st.one_of(
    st.tuples(st.just("seg"), _FLAGS, _SEQ_OFF, st.integers(-2, 2), _TS,
              st.sampled_from([b"", b"z", b"data" * 10]),
              st.one_of(st.sampled_from([0.0, 0.1, 0.3, 0.6, 1.0]), st.floats(0, 40)),
              st.integers(1, 3)),
    st.tuples(st.just("time"), st.floats(0, 70)),
)


@pytest.mark.pure_python("deep-copies a connection")
@settings(max_examples=EXAMPLES, deadline=None)
@given(ts=st.booleans(), sack=st.booleans(), ws=st.booleans(), simultaneous=st.booleans(),
       ops=st.lists(_OP, max_size=12))
def test_record_answers_as_the_connection(ts: bool, sack: bool, ws: bool, simultaneous: bool,
                                          ops: list[tuple[Any, ...]]) -> None:
    conn = time_wait_conn(ts, sack, ws, simultaneous)
    now = conn.last_recv
    old = copy.deepcopy(conn)
    new = TimeWait(copy.deepcopy(conn))
    # what the record kept is what the connection holds
    assert (new.state, new.snd_nxt, new.rcv_nxt, new.next_deadline()) == (
        old.state, old.snd_nxt, old.rcv_nxt, old.next_deadline())
    for op in ops:
        if op[0] == "time":
            now += op[1]
            for c in (old, new):
                d = c.next_deadline()
                if d is not None and d <= now:
                    c.handle_timer(now)
        else:
            _, flags, seq_off, ack_off, ts_off, payload, dt, repeat = op
            now += dt
            opts = TcpOptions()
            if ts_off is not None:
                opts = TcpOptions(timestamp=((old._ts_recent + ts_off) & MASK, 7))
            seg = TcpSegment(old.remote_port, old.local_port, (old.rcv.nxt + seq_off) & MASK,
                             (old.snd_nxt + ack_off) & MASK if flags & ACK else 0, flags,
                             1000, 0, opts, payload)
            for _ in range(repeat):  # (a burst: the rate limits)
                old.receive(seg, now)
                new.receive(seg, now)
        out_old = [seg_key(s) for s in old.segments_to_send(now)]
        out_new = [seg_key(s) for s in new.segments_to_send(now)]
        assert out_new == out_old
        assert new.state is old.state
        assert new.next_deadline() == old.next_deadline()
        assert (new.reopen_syn is None) == (old.reopen_syn is None)
        ev_old = []
        while (e := old.next_event()) is not None:
            ev_old.append(type(e).__name__)
        ev_new = []
        while (e := new.next_event()) is not None:
            ev_new.append(type(e).__name__)
        assert ev_new == ev_old
        for name in ("TcpExtTW", "TcpOutRsts"):
            assert new.mib[name] == old.mib[name]
        if old.reopen_syn is not None:
            break


def test_golden_time_wait_cases() -> None:
    """RFC 9293 3.10.7.4 / Linux tcp_timewait_state_process, on the record:
    FIN re-ACKed with the 2MSL wait restarted, RST in window closes, a SYN
    with a newer timestamp is handed on, 2MSL expiry closes (TcpExtTW)."""
    conn = time_wait_conn(True, True, True, False)
    now = conn.last_recv
    tw = TimeWait(conn)
    info = tw.info(now)
    assert info.state == "TIME-WAIT" and info.timer is not None and info.timer[0] == "timewait"
    fin = TcpSegment(tw.remote_port, tw.local_port, (tw.rcv_nxt - 1) & MASK, tw.snd_nxt,
                     FIN | ACK, 1000, 0, TcpOptions(timestamp=(tw._ts_recent, 1)))
    tw.receive(fin, now + 10)
    (ack,) = tw.segments_to_send(now + 10)
    assert (ack.flags, ack.seq, ack.ack) == (ACK, tw.snd_nxt, tw.rcv_nxt)
    assert tw.next_deadline() == now + 10 + tw.config.time_wait
    syn = TcpSegment(tw.remote_port, tw.local_port, tw.rcv_nxt, 0, SYN, 1000, 0,
                     TcpOptions(timestamp=((tw._ts_recent + 1) & MASK, 0)))
    tw.receive(syn, now + 11)
    assert tw.reopen_syn is syn and tw.state is TcpState.CLOSED
    assert type(tw.next_event()).__name__ == "Closed" and tw.next_event() is None

    tw = TimeWait(time_wait_conn(True, True, True, False))
    before = tw.mib["TcpExtTW"]
    deadline = tw.next_deadline()
    assert deadline is not None
    tw.handle_timer(deadline)
    assert tw.state is TcpState.CLOSED and tw.mib["TcpExtTW"] == before + 1

    tw = TimeWait(time_wait_conn(False, False, False, True))
    tw.receive(TcpSegment(tw.remote_port, tw.local_port, tw.rcv_nxt, 0, RST, 0), now)
    assert tw.state is TcpState.CLOSED and tw.segments_to_send(now) == []
