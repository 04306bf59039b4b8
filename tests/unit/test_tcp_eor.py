"""MSG_EOR record boundaries (TcpConnection.mark_record_end).

Linux sets TCP_SKB_CB(skb)->eor on the skb a MSG_EOR send ends: nothing is
appended to it (tcp_skb_can_collapse_to) and retransmission does not merge
across it (tcp_retrans_try_collapse), so no segment carries bytes of two
records; a record's short tail is not the last skb, so Nagle does not hold
it, and it carries the PSH its write marked (packetdrill gtests/net/tcp/eor,
checked against the kernel peer on the wire).
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


def lengths(out: list[TcpSegment]) -> list[int]:
    return [len(seg.payload) for seg in out]


def test_super_segments_stop_at_a_record_end() -> None:
    s = established(TcpConfig(max_segment=64000, initial_cwnd=20))
    s.conn.send(b"a" * 2400, s.now)
    s.conn.mark_record_end()
    s.conn.send(b"b" * 3000, s.now)
    out = s.drain()
    # 2400 = 2 MSS + a 400-byte tail that leaves at once (no Nagle), then 3000
    assert lengths(out) == [2400, 3000], s.lines(out)
    assert all(seg.flags & PSH for seg in out)


def test_without_a_record_end_the_writes_coalesce() -> None:
    s = established(TcpConfig(max_segment=64000, initial_cwnd=20))
    s.conn.send(b"a" * 2400, s.now)
    s.conn.send(b"b" * 3000, s.now)
    assert lengths(s.drain()) == [5000, 400]


def test_small_records_each_get_a_segment_nagle_or_not() -> None:
    s = established(TcpConfig(max_segment=0, initial_cwnd=20))
    for _ in range(3):
        s.conn.send(b"r" * 400, s.now)
        s.conn.mark_record_end()
    s.conn.send(b"t" * 2000, s.now)
    out = s.drain()
    assert lengths(out) == [400, 400, 400, 1000, 1000], s.lines(out)
    assert [bool(seg.flags & PSH) for seg in out] == [True, True, True, False, True]


def test_retransmission_does_not_cross_a_record_end() -> None:
    s = established(TcpConfig(max_segment=0, initial_cwnd=20, tcp_early_retrans=0,
                              nodelay=True))  # the last record: no Nagle wait
    s.conn.send(b"r" * 400, s.now)
    s.conn.mark_record_end()
    s.conn.send(b"s" * 400, s.now)
    s.conn.mark_record_end()
    assert lengths(s.drain()) == [400, 400]
    # the RTO resends the head: the first record only, not 800 bytes
    out = s.run_timers(s.now + 5)
    assert out and out[0][1].startswith("P. 1:401(400)"), out


def test_acknowledged_record_ends_are_forgotten() -> None:
    s = established(TcpConfig(max_segment=64000, initial_cwnd=20))
    s.conn.send(b"r" * 400, s.now)
    s.conn.mark_record_end()
    s.drain()
    s.inject(s.seg(".", 1, 401))
    assert s.conn.snd.eor == [ISS + 401]  # pruned lazily, at the next push
    s.conn.send(b"x" * 3000, s.now)
    assert lengths(s.drain()) == [3000]
    assert s.conn.snd.eor == []
