"""Timeouts that always end (issue 13 item 2): unanswered zero-window probes
count toward retries2 as in Linux tcp_probe_timer; TCP_USER_TIMEOUT (RFC
5482) bounds probing and data retransmission; answered probes never end a
connection (RFC 1122 4.2.2.17)."""

from __future__ import annotations

import errno

import pytest

from ustack.tcp import events as ev
from ustack.tcp.config import TcpConfig
from ustack.tcp.state import TcpState
from ustack.tcp.testing import Script

ISS = 10_000


def established(cfg: TcpConfig) -> Script:
    return Script.passive_open(cfg, iss=ISS)


def zero_window(s: Script) -> None:
    s.inject(s.seg(".", 1, 1, win=0))
    s.conn.send(b"p" * 100, s.now)
    assert s.drain() == []


def failed_with(s: Script) -> int | None:
    fails = [e for e in s.events if isinstance(e, ev.ConnectionFailed)]
    return fails[0].errno if fails else None


def test_silent_zero_window_peer_is_aborted_after_retries2_probes() -> None:
    s = established(TcpConfig(retries2=5, rto_max=2.0))
    zero_window(s)
    sent = s.run_timers(10_000)
    assert len(sent) == 5 and all(line == ". 0:0(0) ack 1 win 65535" for _, line in sent)
    assert s.conn.state is TcpState.CLOSED and failed_with(s) == errno.ETIMEDOUT
    # Linux's time for the same probes: RTO * (2 + 4 + ...) capped at rto_max
    assert s.now == pytest.approx(sent[-1][0] + 2.0)


def test_answered_probes_keep_the_connection() -> None:
    s = established(TcpConfig(retries2=3, rto_max=2.0))
    zero_window(s)
    for _ in range(20):  # every probe answered with window 0: never aborted
        deadline = s.conn.next_deadline()
        assert deadline is not None
        assert s.at(deadline) == [". 0:0(0) ack 1 win 65535"]
        s.inject(s.seg(".", 1, 1, win=0))
    assert s.conn.state is TcpState.ESTABLISHED and failed_with(s) is None
    # then the peer goes silent: three more probes, then ETIMEDOUT
    sent = s.run_timers(s.now + 10_000)
    assert len(sent) == 3 and failed_with(s) == errno.ETIMEDOUT


def test_user_timeout_bounds_probing() -> None:
    s = established(TcpConfig(retries2=15))
    s.conn.set_user_timeout(5.0)
    zero_window(s)
    start = s.conn.next_deadline()  # the first probe
    assert start is not None
    s.run_timers(10_000)
    assert failed_with(s) == errno.ETIMEDOUT
    assert s.now == pytest.approx(start + 5.0)  # not the ~924 s of retries2


def test_user_timeout_bounds_data_retransmission() -> None:
    s = established(TcpConfig(retries2=15))
    s.conn.set_user_timeout(3.0)
    s.conn.send(b"d" * 100, 0.0)
    assert s.lines(s.drain()) == ["P. 1:101(100) ack 1 win 65535"]
    s.run_timers(10_000)
    assert failed_with(s) == errno.ETIMEDOUT
    assert s.now == pytest.approx(3.0, abs=0.01)  # sent at 0, unacknowledged for 3 s


def test_without_user_timeout_data_uses_retries2() -> None:
    s = established(TcpConfig(retries2=3, rto_max=1.0, retries_timed=False))
    s.conn.send(b"d" * 100, 0.0)
    s.drain()
    sent = s.run_timers(10_000)
    assert len(sent) == 3 and failed_with(s) == errno.ETIMEDOUT


def test_user_timeout_must_not_be_negative() -> None:
    s = established(TcpConfig())
    with pytest.raises(ValueError):
        s.conn.set_user_timeout(-1)
