"""Sending urgent data (conformance 46; ustack.tcp.urgent): URG on every
segment before SND.UP with the pointer one past the last urgent byte (RFC
6093, BSD/Linux), Nagle bypassed, urgent mode over once the urgent byte is
acknowledged; GSO super-segments cut so each piece has its own pointer."""

from __future__ import annotations

from ustack.tcp.config import TcpConfig
from ustack.tcp.connection import TcpConnection
from ustack.tcp.testing import Script
from ustack.tcp.urgent import mark
from ustack.wire.tcp import ACK, FIN, PSH, SYN, URG, TcpOptions, TcpSegment, flags_to_str

ISS = 10_000


def established(cfg: TcpConfig | None = None, mss: int = 1460) -> Script:
    syn = TcpSegment(40000, 80, 0, 0, SYN, 65535, 0, TcpOptions(mss=mss))
    s = Script(TcpConnection.accept(syn, ISS, 0.0, cfg), ISS, 0)
    s.drain()
    s.inject(s.seg(".", 1, 1))
    return s


def wire(segs: list[TcpSegment]) -> list[tuple[str, int, int, int]]:
    """(flags, relative seq, length, urgent pointer) of each segment."""
    return [(flags_to_str(g.flags), (g.seq - ISS) & 0xFFFFFFFF, len(g.payload), g.urgent)
            for g in segs]


def test_46_urgent_pointer_one_past_the_urgent_byte() -> None:
    s = established()
    assert s.conn.send_urgent(b"u" * 10, 0.0) == 10
    assert wire(s.drain()) == [("PU.", 1, 10, 10)]
    assert s.conn.urgent_pointer == (ISS + 11) & 0xFFFFFFFF


def test_each_segment_points_at_the_end_of_the_urgent_write() -> None:
    s = established()
    s.conn.send_urgent(b"u" * 3000, 0.0)
    assert wire(s.drain()) == [("U.", 1, 1460, 3000), ("U.", 1461, 1460, 1540),
                               ("PU.", 2921, 80, 80)]


def test_urgent_mode_ends_when_the_urgent_byte_is_acknowledged() -> None:
    s = established()
    s.conn.send_urgent(b"u" * 10, 0.0)
    s.drain()
    s.inject(s.seg(".", 1, 11))
    assert s.conn.urgent_pointer is None
    s.conn.send(b"n" * 10, 0.01)
    assert wire(s.drain()) == [("P.", 11, 10, 0)]


def test_rto_retransmission_carries_urg() -> None:
    s = established()
    s.conn.send_urgent(b"u" * 10, 0.0)
    s.drain()
    d = s.conn.next_deadline()
    assert d is not None
    s.now = d
    s.conn.handle_timer(d)
    assert wire(s.drain()) == [("PU.", 1, 10, 10)]


def test_acks_before_snd_up_carry_urg() -> None:
    """A closed window holds the urgent data back; an ACK we send meanwhile
    (seq SND.NXT, before SND.UP) carries URG and the pointer, as Linux's:
    the urgent notification passes a closed window (RFC 9293 3.8.5)."""
    s = established()
    s.inject(s.seg(".", 1, 1, win=0))
    s.conn.send_urgent(b"u" * 10, 0.0)
    assert s.drain() == []
    s.conn.receive(s.seg("P.", 1, 1, payload=b"x", win=0), 0.01)
    assert wire(s.drain()) == [("U.", 1, 0, 10)]


def test_nagle_does_not_hold_urgent_data() -> None:
    s = established()
    s.conn.send(b"a" * 10, 0.0)
    assert wire(s.drain()) == [("P.", 1, 10, 0)]
    s.conn.send(b"b" * 5, 0.001)
    assert s.drain() == []  # Nagle: a small segment is unacknowledged
    s.conn.send_urgent(b"c" * 5, 0.002)
    assert wire(s.drain()) == [("PU.", 11, 10, 10)]


def test_super_segments_are_cut_with_a_pointer_each() -> None:
    seg = TcpSegment(80, 40000, 1000, 1, ACK | PSH | FIN, 100, 0, None, b"x" * 2500)
    out = mark([seg], 1000 + 1200, 1000 + 2501, 1000)
    assert [(g.seq, len(g.payload), g.flags, g.urgent) for g in out] == [
        (1000, 1000, ACK | URG, 1200), (2000, 1000, ACK | URG, 200),
        (3000, 500, ACK | PSH | FIN, 0)]  # after SND.UP: no URG


def test_far_pointer_is_0xffff() -> None:
    # SND.UP more than 64 KB ahead: 0xFFFF while the segment is within 64 KB
    # of SND.NXT (Linux __tcp_transmit_skb)
    seg = TcpSegment(80, 40000, 0, 1, ACK, 100, 0, None, b"x" * 100)
    (g,) = mark([seg], 100_000, 100, 1460)
    assert g.flags & URG and g.urgent == 0xFFFF


def test_gso_connection_sends_urgent_data_in_mss_pieces() -> None:
    s = established(TcpConfig(max_segment=65160))
    s.conn.send_urgent(b"u" * 5000, 0.0)
    out = wire(s.drain())
    assert all(n <= 1460 for _, _, n, _ in out) and sum(n for _, _, n, _ in out) == 5000
    assert [p for _, _, _, p in out] == [5000 - seq + 1 for _, seq, _, _ in out]
    assert all("U" in f for f, _, _, _ in out)
