"""Retry limits as Linux's time budgets (ustack.tcp.retry_budget, Linux
tcp_timer.c retransmits_timed_out / tcp_model_timeout; RFC 1122 4.2.3.5
allows a time or a count), catalogue 45c and the SYN-SENT limits measured
against Linux 6.18."""

from __future__ import annotations

import errno

import pytest

from ustack.tcp import events as ev
from ustack.tcp.config import TcpConfig
from ustack.tcp.connection import TcpConnection
from ustack.tcp.retry_budget import model_timeout, timed_out
from ustack.tcp.testing import Script

ISS = 10_000


def established(cfg: TcpConfig | None = None) -> Script:
    return Script.passive_open(cfg, iss=ISS)


def active(cfg: TcpConfig | None = None) -> Script:
    s = Script(TcpConnection.connect(40000, 80, ISS, 0.0, cfg), ISS, 0)
    assert s.lines(s.drain()) == ["S 0:0(0) win 64240"]
    return s


def failed(s: Script) -> bool:
    return ev.ConnectionFailed(errno.ETIMEDOUT) in s.events


@pytest.mark.parametrize(("boundary", "base", "cap", "seconds"), [
    (15, 0.2, 120.0, 924.6),  # Linux's documented tcp_retries2 default
    (2, 0.2, 120.0, 1.4),  # catalogue 45c
    (8, 0.2, 120.0, 102.2),  # tcp_orphan_retries 0 = 8
    (9, 0.2, 120.0, 204.6),  # the last exponential step (ilog2(600) = 9)
    (10, 0.2, 120.0, 324.6),  # then 120 s each
    (1, 1.0, 120.0, 3.0),  # tcp_syn_retries=1 from TCP_TIMEOUT_INIT
    (6, 1.0, 120.0, 127.0),
    (7, 1.0, 120.0, 247.0),  # ilog2(120) = 6: the 7th retry adds 120 s
    (0, 0.2, 120.0, 0.0),
])
def test_model_timeout_is_linux_tcp_model_timeout(boundary: int, base: float, cap: float,
                                                  seconds: float) -> None:
    assert model_timeout(boundary, base, cap) == pytest.approx(seconds)


def test_no_retransmission_never_times_out() -> None:
    assert not timed_out(0, 0.0, 1e6, 2, 0.2, 120.0)
    assert timed_out(1, 0.0, 1.4, 2, 0.2, 120.0)
    assert not timed_out(1, 0.0, 1.39, 2, 0.2, 120.0)


def test_45c_retries2_2_allows_a_third_retransmission() -> None:
    """Catalogue 45c: tcp_retries2=2 is 1.4 s from the first retransmission;
    with RTOs of ~0.2, 0.4, 0.8 s the third goes out 1.2 s after the first,
    the fourth RTO (2.8 s after it) ends the connection, no RST."""
    s = established(TcpConfig(retries2=2))
    s.conn.send(b"d" * 100, 0.0)
    s.drain()
    sent = s.run_timers(100)
    assert [line for _, line in sent] == ["P. 1:101(100) ack 1 win 65535"] * 3
    assert [t for t, _ in sent] == [pytest.approx(0.2, abs=1e-3), pytest.approx(0.6, abs=1e-3),
                                    pytest.approx(1.4, abs=1e-3)]
    assert failed(s) and s.now == pytest.approx(3.0, abs=1e-3)


def test_45c_counted_retries2_stops_after_two() -> None:
    s = established(TcpConfig(retries2=2, retries_timed=False))
    s.conn.send(b"d" * 100, 0.0)
    s.drain()
    sent = s.run_timers(100)
    assert len(sent) == 2 and failed(s) and s.now == pytest.approx(1.4, abs=1e-3)


def test_budget_restarts_after_an_ack_of_new_data() -> None:
    s = established(TcpConfig(retries2=2))
    s.conn.send(b"d" * 100, 0.0)
    s.drain()
    assert len(s.run_timers(1.0)) == 2  # 0.2 and 0.6 s
    s.inject(s.seg(".", 1, 101))  # all acknowledged: the episode ends
    s.conn.send(b"e" * 100, s.now)
    s.drain()
    sent = s.run_timers(s.now + 100)
    # the ACK of retransmitted data is no RTT sample (Karn): the backoff
    # stays, RTO 0.8 s.  The budget's clock restarts at this episode's first
    # retransmission (1.4 s), so the next RTO, 1.6 s later, ends it
    assert [t for t, _ in sent] == [pytest.approx(1.4, abs=1e-3)]
    assert failed(s) and s.now == pytest.approx(3.0, abs=1e-3)


def test_syn_retries_1_ends_at_3_s_despite_linear_timeouts() -> None:
    """Linux 6.18 (measured): tcp_syn_retries=1 with tcp_syn_linear_timeouts=4:
    SYNs at 0, 1, 2 s and ETIMEDOUT at 3 s, the time budget of one backed-off
    retry from 1 s (3 s since the first SYN) beating the count of 5."""
    s = active(TcpConfig(syn_retries=1))
    sent = s.run_timers(100)
    assert [t for t, _ in sent] == [1, 2]
    assert failed(s) and s.now == 3


def test_syn_retries_2_ends_at_7_s() -> None:
    """Linux 6.18 (measured): tcp_syn_retries=2: SYNs at 0..5 s, ETIMEDOUT at 7 s."""
    s = active(TcpConfig(syn_retries=2))
    assert [t for t, _ in s.run_timers(100)] == [1, 2, 3, 4, 5]
    assert failed(s) and s.now == 7


def test_counted_syn_retries_use_the_count_only() -> None:
    s = active(TcpConfig(syn_retries=1, retries_timed=False))
    assert [t for t, _ in s.run_timers(100)] == [1, 2, 3, 4, 5]
    assert failed(s) and s.now == 7
