"""While loss recovery runs the connection transmits after each ACK
(``TcpConnection._send_after_ack``): a receive batch of dupACKs, handed over
before the output is asked for (as the driver ``TcpTable`` does), gives the
same segments as the same ACKs one by one with the output drained after each
(Linux transmits after every ACK: RFC 3042 limited transmit, RFC 6937 PRR).
In OPEN a batch still acts as one stretch ACK: nothing is sent before the
output is asked for."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from table_fakes import FakeIp, FakeStack

from ustack.driver import tcp_table as tt
from ustack.tcp import TcpConfig, TcpConnection
from ustack.tcp.congestion.base import CaState
from ustack.tcp.testing import Script
from ustack.wire.tcp import SYN, TcpOptions, TcpSegment

ISS = 10_000
MSS = 1000
PEER_ADDR = b"\x0a\x4d\x00\x01"


def _connection(cls: type[TcpConnection] = TcpConnection) -> Script:
    """Reno, cwnd 4, 20 segments queued, the first four sent at 0.1."""
    syn = TcpSegment(40000, 80, 0, 0, SYN, 65535, 0,
                     TcpOptions(mss=MSS, sack_permitted=True))
    cfg = TcpConfig(initial_cwnd=4, congestion="reno")
    s = Script(cls.accept(syn, ISS, 0.0, cfg), ISS, 0)
    s.drain()
    s.now = 0.1
    s.inject(s.seg(".", 1, 1))
    s.conn.send(b"x" * 20 * MSS, s.now)
    assert len(s.drain()) == 4
    s.now += 0.1
    return s


def _dupacks(s: Script) -> list[TcpSegment]:
    """Segment 1:1001 lost; three dupACKs SACK 1001:2001, :3001, :4001."""
    return [s.seg(".", 1, 1, options=TcpOptions(sack_blocks=[
        ((ISS + 1001) & 0xFFFFFFFF, (ISS + 1 + k * MSS) & 0xFFFFFFFF)]))
        for k in (2, 3, 4)]


def _ranges(segs: list[TcpSegment]) -> list[tuple[int, int]]:
    return [((x.seq - ISS) & 0xFFFFFFFF, len(x.payload)) for x in segs if x.payload]


def _through_table(s: Script, segs: list[TcpSegment],
                   after_each: Callable[[FakeStack], None] | None = None
                   ) -> list[tuple[int, int]]:
    """Hand ``segs`` to a real TcpTable in one receive batch (no loop turn in
    between; ``after_each`` looks at the fake stack after every segment), then
    let the batch's deferred flush run; return what went out."""
    loop = asyncio.new_event_loop()
    try:
        stack = FakeStack()
        table = tt.TcpTable(stack, loop=loop)
        table._clock = lambda: s.now
        ep = tt.TcpEndpoint(table, s.conn, table.local_addr, 80, PEER_ADDR, 40000)
        table._conns[ep.key] = ep
        for seg in segs:
            table.ip_input(PEER_ADDR, table.local_addr, seg.encode(PEER_ADDR, table.local_addr))
            if after_each is not None:
                after_each(stack)
        loop.call_soon(loop.stop)
        loop.run_forever()  # the batch's call_soon flush, if any
        return _ranges(stack.ip.take())
    finally:
        loop.close()


def test_a_batch_of_dupacks_gets_the_per_ack_output() -> None:
    per_ack = _connection()
    out: list[TcpSegment] = []
    for seg in _dupacks(per_ack):
        per_ack.conn.receive(seg, per_ack.now)
        out += per_ack.drain()
    expected = _ranges(out)
    # RFC 3042 on the first two dupACKs, then the forced fast retransmit
    assert expected == [(4001, MSS), (5001, MSS), (1, MSS)]
    batched = _connection()
    assert _through_table(batched, _dupacks(batched)) == expected
    assert batched.conn.rec is not None and batched.conn.rec.state is CaState.RECOVERY
    assert batched.conn.cc.cwnd == per_ack.conn.cc.cwnd


def test_the_connection_alone_gives_the_per_ack_output_for_a_batch() -> None:
    per_ack = _connection()
    expected: list[TcpSegment] = []
    for seg in _dupacks(per_ack):
        per_ack.conn.receive(seg, per_ack.now)
        expected += per_ack.drain()
    s = _connection()
    for seg in _dupacks(s):
        s.conn.receive(seg, s.now)
    assert _ranges(s.drain()) == _ranges(expected)
    assert s.conn.cc.cwnd == per_ack.conn.cc.cwnd
    assert s.conn.rec is not None and per_ack.conn.rec is not None
    assert s.conn.rec.prr_out == per_ack.conn.rec.prr_out
    assert s.conn.rec.prr_delivered == per_ack.conn.rec.prr_delivered


def test_in_open_a_batch_is_drained_once() -> None:
    """Clean ACKs of one batch: nothing goes out before the batch ends."""
    s = _connection()
    acks = [s.seg(".", 1, 1 + k * MSS) for k in (1, 2)]
    assert s.conn.rec is not None and s.conn.rec.state is CaState.OPEN

    def nothing_sent(stack: FakeStack) -> None:
        assert stack.ip.take() == []  # nothing sent inside the batch

    assert len(_through_table(s, acks, nothing_sent)) >= 2  # the batch's output, once


def _ten_out(cc: str = "reno") -> Script:
    """cwnd 10, 30 segments queued, the first ten sent at 0.1 (RTT 0.1)."""
    syn = TcpSegment(40000, 80, 0, 0, SYN, 65535, 0,
                     TcpOptions(mss=MSS, sack_permitted=True))
    cfg = TcpConfig(initial_cwnd=10, congestion=cc)
    s = Script(TcpConnection.accept(syn, ISS, 0.0, cfg), ISS, 0)
    s.drain()
    s.now = 0.1
    s.inject(s.seg(".", 1, 1))
    s.conn.send(b"x" * 30 * MSS, s.now)
    assert len(_ranges(s.drain())) == 10
    s.now += 0.1
    return s


def _ack_then_sack() -> list[TcpSegment]:
    """A clean ACK of three segments, then an ACK whose SACK blocks show three
    segments above the lost 3001:4001 (DupThresh at once: RACK marks it
    lost with no reordering window, RFC 8985 6.2, and recovery starts)."""
    clean = TcpSegment(40000, 80, 1, (ISS + 3001) & 0xFFFFFFFF, 0x10, 65535, 0, TcpOptions())
    sack = TcpSegment(40000, 80, 1, (ISS + 3001) & 0xFFFFFFFF, 0x10, 65535, 0,
                      TcpOptions(sack_blocks=[((ISS + 4001) & 0xFFFFFFFF,
                                               (ISS + 7001) & 0xFFFFFFFF)]))
    return [clean, sack]


def test_a_loss_ack_after_clean_acks_of_the_batch_gets_the_per_ack_output() -> None:
    """Linux transmits after every ACK (tcp_ack, then tcp_data_snd_check): the
    room a clean ACK opened is used before the next ACK starts recovery, so
    PRR (RFC 6937) starts from a full pipe.  In a receive batch the clean
    ACK's room used to wait for the batch's end, by when recovery had cut
    cwnd to what the small pipe gives: at a small cwnd only the
    retransmission left, and its loss then waited for the RTO."""
    per_ack = _ten_out()
    out: list[TcpSegment] = []
    for seg in _ack_then_sack():
        per_ack.conn.receive(seg, per_ack.now)
        out += per_ack.drain()
    expected = _ranges(out)
    assert (3001, MSS) in expected  # the fast retransmit
    assert sum(1 for seq, _ in expected if seq >= 10001) >= 6  # the clean ACK's room
    assert per_ack.conn.rec is not None and per_ack.conn.rec.state is CaState.RECOVERY
    batched = _ten_out()
    assert _through_table(batched, _ack_then_sack()) == expected
    assert batched.conn.cc.cwnd == per_ack.conn.cc.cwnd
    assert batched.conn.rec is not None
    assert batched.conn.rec.prr_out == per_ack.conn.rec.prr_out
    assert batched.conn.rec.prr_delivered == per_ack.conn.rec.prr_delivered
    assert batched.conn.rec.in_flight() == per_ack.conn.rec.in_flight()


class _OrderIp(FakeIp):
    """Records every transmission, MSS batches and GSO super-segments alike,
    in the order the driver makes them."""

    def __init__(self) -> None:
        super().__init__()
        self.order: list[int] = []  # payload length of each segment, in wire order

    def send(self, dst: bytes, protocol: int, payload: bytes) -> None:
        self.order.append(len(TcpSegment.decode(payload).payload))

    def send_many(self, dst: bytes, protocol: int, payloads: list[bytes]) -> None:
        self.order += [len(TcpSegment.decode(p).payload) for p in payloads]

    def transmit_gso(self) -> bool:
        return True

    def send_gso(self, dst: bytes, protocol: int, packet: bytes, room: int) -> bool:
        self.order.append(len(packet) - 20 - len(TcpSegment.decode(packet).options.encode()))
        return True


class _Fixed(TcpConnection):
    """Sends what the test puts in ``out`` (once set; the real output before)."""

    __slots__ = ()
    out: list[TcpSegment] | None = None

    def segments_to_send(self, now: float) -> list[TcpSegment]:
        if _Fixed.out is None:
            return super().segments_to_send(now)
        out, _Fixed.out = _Fixed.out, []
        return out


def test_the_driver_keeps_the_output_order_on_the_wire() -> None:
    """A retransmission queued before new data (here an MSS segment before a
    GSO super-segment) leaves first: sent after it, RACK would see the new
    data delivered first and take the retransmission for lost again (the
    spurious retransmissions and D-SACKs seen on the wire)."""
    s = _connection(_Fixed)  # (a class made so: compiled objects cannot change __class__)
    loop = asyncio.new_event_loop()
    try:
        stack = FakeStack()
        ip = stack.ip = _OrderIp()
        table = tt.TcpTable(stack, loop=loop)
        table._clock = lambda: s.now
        ep = tt.TcpEndpoint(table, s.conn, table.local_addr, 80, PEER_ADDR, 40000)
        table._conns[ep.key] = ep
        _Fixed.out = [s.seg(".", 1, 1, payload=b"r" * MSS), s.seg(".", 1, 1, payload=b"n" * 3000),
                      s.seg(".", 1, 1, payload=b"m" * MSS)]
        for x in _Fixed.out:
            x.src_port, x.dst_port = 80, 40000
        table.touch(ep)
        table.flush_now()
        assert ip.order == [MSS, 3000, MSS]
    finally:
        _Fixed.out = None
        loop.close()
