"""The RTO backoff ends only with a valid RTT sample (RFC 6298 5 with Karn's
algorithm, RFC 6298 3; Linux ``tcp_ack_update_rtt``: "only reset backoff on
valid RTT measurement"), not on every ACK that acknowledges new data."""

from __future__ import annotations

import pytest

from ustack.tcp import TcpConfig, TcpConnection
from ustack.tcp.testing import Script
from ustack.wire.tcp import SYN, TcpOptions, TcpSegment

ISS = 10_000
PEER = 0


def _established(ts: bool) -> Script:
    opts = TcpOptions(mss=1000, timestamp=(1, 0) if ts else None)
    syn = TcpSegment(40000, 80, PEER, 0, SYN, 65535, 0, opts)
    s = Script(TcpConnection.accept(syn, ISS, 0.0, TcpConfig()), ISS, PEER)
    s.drain()
    s.now = 0.1  # SRTT 100 ms: RTO = 100 ms + max(4 * 50 ms, 200 ms) = 300 ms
    s.inject(s.seg(".", 1, 1, options=TcpOptions(timestamp=(2, s.conn._ts_val(0.0)))
                   if ts else None))
    s.events.clear()
    return s


def test_ack_of_the_retransmitted_head_keeps_the_backoff_without_timestamps() -> None:
    s = _established(ts=False)
    conn = s.conn
    conn.send(b"x" * 2000, s.now)
    s.drain()  # two segments, 1:1001 and 1001:2001
    base = conn.rtt.rto
    rto = conn.next_deadline()
    assert rto is not None
    assert s.at(rto)  # the head is retransmitted; the timer backs off
    assert conn.rtt.backoff == 1
    # the ACK covers only the retransmitted head: ambiguous, no RTT sample
    s.now = rto + 0.1
    s.inject(s.seg(".", 1, 1001))
    s.drain()
    assert conn.rtt.backoff == 1, "backoff cleared without a valid RTT sample"
    # so the timer for what is left runs with the backed-off RTO
    left = conn.next_deadline()
    assert left is not None
    assert left - s.now == pytest.approx(2 * base, rel=0.05)


def test_a_valid_sample_ends_the_backoff() -> None:
    s = _established(ts=False)
    conn = s.conn
    conn.send(b"x" * 1000, s.now)
    s.drain()
    rto = conn.next_deadline()
    assert rto is not None and s.at(rto)
    s.now = rto + 0.1
    s.inject(s.seg(".", 1, 1001))  # retransmitted: no sample, backoff kept
    assert conn.rtt.backoff == 1
    conn.send(b"y" * 1000, s.now)
    s.drain()
    s.now += 0.1
    s.inject(s.seg(".", 1, 2001))  # never retransmitted: a sample (Karn)
    assert conn.rtt.backoff == 0


def test_with_timestamps_the_echo_is_a_sample_and_ends_the_backoff() -> None:
    s = _established(ts=True)
    conn = s.conn
    conn.send(b"x" * 1000, s.now)
    s.drain()
    rto = conn.next_deadline()
    assert rto is not None and s.at(rto)
    s.now = rto + 0.1
    s.inject(s.seg(".", 1, 1001, options=TcpOptions(timestamp=(9, conn._ts_val(rto)))))
    assert conn.rtt.backoff == 0  # RFC 7323 4.3: TSecr gives the RTT


def test_duplicate_acks_and_window_updates_keep_the_backoff() -> None:
    s = _established(ts=False)
    conn = s.conn
    conn.send(b"x" * 3000, s.now)
    s.drain()
    rto = conn.next_deadline()
    assert rto is not None and s.at(rto)
    s.now = rto + 0.05
    s.inject(s.seg(".", 1, 1))  # a duplicate
    s.inject(s.seg(".", 1, 1, win=30000))  # a window update
    assert conn.rtt.backoff == 1
