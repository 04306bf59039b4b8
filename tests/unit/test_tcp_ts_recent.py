"""TS.Recent is taken only from segments whose ACK is acceptable (RFC 7323
4.3; Linux tcp_ack: "ts_recent update must be made after we are sure that
the packet is in window").  packetdrill ts_recent/invalid_ack.pkt."""

from __future__ import annotations

from ustack.tcp import TcpConnection
from ustack.tcp.testing import Script
from ustack.wire.tcp import SYN, TcpOptions, TcpSegment

ISS = 10_000
PEER = 0


def established() -> Script:
    syn = TcpSegment(40000, 80, PEER, 0, SYN, 20000, 0,
                     TcpOptions(mss=1000, sack_permitted=True, timestamp=(100, 0)))
    s = Script(TcpConnection.accept(syn, ISS, 0.0), ISS, PEER)
    s.drain()
    s.inject(s.seg(".", 1, 1, win=20000, options=TcpOptions(timestamp=(200, 0))))
    return s


def test_a_segment_acking_unsent_data_does_not_move_ts_recent() -> None:
    s = established()
    # ACK far beyond SND.NXT with a huge TSval: dropped, TS.Recent unchanged
    s.inject(s.seg("F.", 1, 9999, win=20000, options=TcpOptions(timestamp=(200000, 0))))
    assert s.conn._ts_recent == 200
    # so the next in-order data (TSval 201) passes PAWS and is ACKed, echoing 201
    out = s.conn
    s.conn.receive(s.seg(".", 1, 1, win=20000, payload=b"d" * 1000,
                         options=TcpOptions(timestamp=(201, 0))), s.now)
    segs = s.drain()
    assert out.rcv.nxt == 1001
    acks = [seg for seg in segs if seg.ack == 1001]
    assert acks and acks[-1].options.timestamp is not None
    assert acks[-1].options.timestamp[1] == 201


def test_a_plain_ack_beyond_snd_nxt_on_the_fast_path_does_not_move_it() -> None:
    s = established()
    s.inject(s.seg(".", 1, 9999, win=20000, options=TcpOptions(timestamp=(300000, 0))))
    assert s.conn._ts_recent == 200


def test_an_acceptable_ack_still_updates_it() -> None:
    s = established()
    s.inject(s.seg(".", 1, 1, win=20000, options=TcpOptions(timestamp=(250, 0))))
    assert s.conn._ts_recent == 250
