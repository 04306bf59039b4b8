"""tcp_info's sender-limit chronographs and ca_state (Linux tcp_chrono_*,
tcp_get_info_chrono_stats; packetdrill tcp_info/tcp-info-rwnd-limited.pkt)."""

from __future__ import annotations

import pytest

from ustack.tcp import TcpConfig, TcpConnection
from ustack.tcp.chrono import BUSY, RWND_LIMITED, SNDBUF_LIMITED, Chrono
from ustack.tcp.testing import Script
from ustack.wire.tcp import SYN, TcpOptions, TcpSegment

ISS = 10_000
PEER = 0


def test_the_more_interesting_chronograph_takes_over_and_stopping_falls_back() -> None:
    c = Chrono()
    c.start(BUSY, 1.0)
    c.start(RWND_LIMITED, 2.0)
    c.start(BUSY, 2.5)  # less interesting: ignored
    c.stop(RWND_LIMITED, 4.0, False)  # back to busy
    c.start(SNDBUF_LIMITED, 5.0)
    c.stop(SNDBUF_LIMITED, 6.0, True)  # all acknowledged: nothing runs
    assert c.totals(10.0) == pytest.approx((5.0, 2.0, 1.0))


def established(win: int) -> Script:
    syn = TcpSegment(40000, 80, PEER, 0, SYN, 65535, 0, TcpOptions(mss=1000))
    s = Script(TcpConnection.accept(syn, ISS, 0.0, TcpConfig()), ISS, PEER)
    s.drain()
    s.inject(s.seg(".", 1, 1, win=win))
    return s


def test_a_closed_window_counts_as_rwnd_limited_busy_time() -> None:
    s = established(0)
    s.now = 1.0
    s.conn.send(b"x" * 1000, s.now)
    assert s.drain() == []
    s.now = 1.1
    info = s.conn.info(s.now)
    assert info.rwnd_limited == pytest.approx(0.1)
    assert info.busy_time == pytest.approx(0.1)
    s.now = 1.2
    assert len(s.inject(s.seg(".", 1, 1, win=2000))) == 1  # the data goes
    s.now = 1.25
    s.inject(s.seg(".", 1, 1001, win=2000))  # all acknowledged
    s.now = 2.0
    info = s.conn.info(s.now)
    assert info.rwnd_limited == pytest.approx(0.2)
    assert info.busy_time == pytest.approx(0.25)
    assert info.sndbuf_limited == 0.0


def test_ca_state_is_linux_enum_tcp_ca_state() -> None:
    s = established(65535)
    assert s.conn.info(s.now).ca_state == 0  # Open
    s.conn.send(b"x" * 1000, s.now)
    s.drain()
    deadline = s.conn.next_deadline()
    assert deadline is not None
    for _ in range(5):  # TLP first, then the RTO
        s.now = deadline
        s.conn.handle_timer(s.now)
        s.drain()
        if s.conn.info(s.now).ca_state == 4:
            break
        deadline = s.conn.next_deadline()
        assert deadline is not None
    assert s.conn.info(s.now).ca_state == 4  # Loss
