"""TCP_NOTSENT_LOWAT write sizes and writability as Linux's (packetdrill
notsent_lowat/notsent-lowat-setsockopt.pkt: write(59000) = 26000)."""

from __future__ import annotations

from ustack.tcp import TcpConfig, TcpConnection
from ustack.tcp.testing import Script
from ustack.wire.tcp import SYN, TcpOptions, TcpSegment

ISS = 10_000
PEER = 0


def established(cfg: TcpConfig | None = None) -> Script:
    syn = TcpSegment(40000, 80, PEER, 0, SYN, 32792, 0, TcpOptions(mss=1000, wscale=7))
    s = Script(TcpConnection.accept(syn, ISS, 0.0, cfg or TcpConfig(initial_cwnd=10)),
               ISS, PEER)
    s.drain()
    s.inject(s.seg(".", 1, 1, win=257))
    return s


def test_a_write_fills_what_goes_out_plus_one_size_goal() -> None:
    s = established()
    s.conn.set_notsent_lowat(4000)
    # 10000 leave at once (cwnd 10 x 1000), then one chunk of the size goal:
    # half the peer's window (32896 / 2) in whole MSS = 16000
    assert s.conn.send(b"x" * 59000, s.now) == 26000
    out = s.drain()
    assert sum(len(seg.payload) for seg in out) == 10000
    assert s.conn.send_space() == 0
    assert s.conn.send(b"x" * 1000, s.now) == 0


def test_writable_again_below_half_the_mark() -> None:
    s = established()
    s.conn.set_notsent_lowat(4000)
    s.conn.send(b"x" * 59000, s.now)
    s.drain()
    acked = 1
    while s.conn.snd.unsent(s.conn.snd_una) * 2 >= 4000:
        assert s.conn.send_space() == 0
        acked += 2000
        s.inject(s.seg(".", 1, acked, win=257))
    assert s.conn.send_space() > 0


def test_a_mark_above_the_size_goal_takes_whole_chunks() -> None:
    s = established()
    s.conn.set_notsent_lowat(20000)
    # chunks of 16000 start while < 20000 wait unsent: 16000, then 32000
    assert s.conn.send(b"x" * 100000, s.now) == 10000 + 32000
