"""Setting TCP_NODELAY pushes what Nagle or TCP_CORK held back (Linux
tcp_sock_set_nodelay -> tcp_push_pending_frames; packetdrill
nagle/sockopt_cork_nodelay.pkt)."""

from __future__ import annotations

from ustack.tcp import TcpConfig, TcpConnection
from ustack.tcp.testing import Script
from ustack.wire.tcp import SYN, TcpOptions, TcpSegment

ISS = 10_000
PEER = 0


def established(cfg: TcpConfig | None = None) -> Script:
    syn = TcpSegment(40000, 80, PEER, 0, SYN, 65535, 0, TcpOptions(mss=1000))
    s = Script(TcpConnection.accept(syn, ISS, 0.0, cfg), ISS, PEER)
    s.drain()
    s.inject(s.seg(".", 1, 1))
    return s


def test_nodelay_pushes_corked_bytes() -> None:
    s = established()
    s.conn.set_cork(True)
    s.conn.send(b"a" * 40, s.now)
    s.conn.send(b"b" * 40, s.now)
    assert s.drain() == []
    s.conn.set_nodelay(True)
    out = s.drain()
    assert [len(seg.payload) for seg in out] == [80]
    # the cork stays on: the next small write waits again
    s.inject(s.seg(".", 1, 81))
    s.conn.send(b"c" * 40, s.now)
    assert s.drain() == []


def test_nodelay_pushes_what_nagle_held() -> None:
    s = established()
    s.conn.send(b"a" * 10, s.now)
    assert len(s.drain()) == 1  # first small segment goes
    s.conn.send(b"b" * 10, s.now)
    assert s.drain() == []  # Nagle: a small segment is unacknowledged
    s.conn.set_nodelay(True)
    out = s.drain()
    assert [len(seg.payload) for seg in out] == [10]
