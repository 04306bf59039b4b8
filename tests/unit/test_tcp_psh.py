"""Where the sender puts PSH (Linux's rule, checked on the wire against 6.18).

Linux marks PSH on the end of each write (tcp_push -> tcp_mark_push) and,
since 5.4 ("tcp: force a PSH flag on TSO packets"), on every packet of more
than one segment (__tcp_transmit_skb: tcp_skb_pcount > 1); a lone
full-sized segment in the middle of the data carries none.
"""

from __future__ import annotations

from ustack.tcp import TcpConfig, TcpConnection
from ustack.tcp.testing import Script
from ustack.wire.tcp import PSH, SYN, TcpOptions, TcpSegment

ISS = 10_000
PEER = 0


def established(cfg: TcpConfig) -> Script:
    syn = TcpSegment(40000, 80, PEER, 0, SYN, 65535, 0, TcpOptions(mss=1000))
    s = Script(TcpConnection.accept(syn, ISS, 0.0, cfg), ISS, PEER)
    s.drain()
    s.inject(s.seg(".", 1, 1))
    s.events.clear()
    return s


def test_every_super_segment_carries_psh() -> None:
    s = established(TcpConfig(max_segment=4000, initial_cwnd=10))
    s.conn.send(b"x" * 9000, s.now)
    out = s.drain()
    assert [len(seg.payload) for seg in out] == [4000, 4000, 1000]
    # the two super-segments by the pcount > 1 rule, the last by end of data
    assert all(seg.flags & PSH for seg in out), s.lines(out)


def test_full_sized_segments_before_the_end_carry_no_psh() -> None:
    s = established(TcpConfig(max_segment=0, initial_cwnd=10))
    s.conn.send(b"x" * 3500, s.now)
    out = s.drain()
    assert [len(seg.payload) for seg in out] == [1000, 1000, 1000, 500]
    assert [bool(seg.flags & PSH) for seg in out] == [False, False, False, True]


def test_a_window_limited_super_segment_still_carries_psh() -> None:
    # the peer's 3000-byte window cuts a 10000-byte write to 3 MSS: one
    # super-segment, not the end of the data, PSH all the same (pcount 3)
    s = established(TcpConfig(max_segment=64000, initial_cwnd=10))
    s.inject(s.seg(".", 1, 1, win=3000))
    s.conn.send(b"x" * 10000, s.now)
    out = s.drain()
    assert [len(seg.payload) for seg in out] == [3000]
    assert out[0].flags & PSH
