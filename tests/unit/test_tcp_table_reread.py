"""After a receive batch that sent data the connection table reads the
device's ring again while frames wait in it (``TcpTable._reread``), at most
``reread_rounds`` times, before it goes back to the loop: the ACKs to what
the drain just sent are read and answered in the same callback (on a veth
they arrive inside our own send call).  A batch that sent no data does not
look at the ring; the batches read this way do not re-read themselves."""

from __future__ import annotations

import asyncio

from table_fakes import FakeStack

from ustack.driver import tcp_table as tt
from ustack.tcp import TcpConfig, TcpConnection
from ustack.tcp.mib import TcpMib
from ustack.tcp.testing import Script
from ustack.wire.tcp import SYN, TcpOptions, TcpSegment

ISS = 10_000
MSS = 1000
PEER_ADDR = b"\x0a\x4d\x00\x01"
SLOT = 64


class FakeRing:
    """A receive ring of one slot whose status byte says whether one of the
    queued ACKs waits; ``poll`` delivers the next one as the device's
    callback would (one receive batch), as the Stack's BatchReceiver does."""

    def __init__(self, table: tt.TcpTable, acks: list[TcpSegment]) -> None:
        self.table = table
        self.acks = acks
        self.ring = bytearray(SLOT)
        self.polls = 0
        self.looks = 0
        self.nested = 0
        self._set()

    def _set(self) -> None:
        self.ring[0] = 1 if self.acks else 0  # TP_STATUS_USER

    def state(self) -> tuple[bytearray, int, int, int, int, int]:
        self.looks += 1
        return (self.ring, SLOT, 1, 0, 0, 0)

    def poll(self) -> None:
        self.polls += 1
        if self.table._rereading is False:
            self.nested += 1  # (only _reread should poll here)
        table = self.table
        table.begin_batch()
        try:
            seg = self.acks.pop(0)
            self._set()
            table.ip_input(PEER_ADDR, table.local_addr, seg.encode(PEER_ADDR, table.local_addr))
        finally:
            table.end_batch()


def _setup(rounds: int | None = None) -> tuple[Script, tt.TcpTable, FakeStack,
                                                asyncio.AbstractEventLoop]:
    syn = TcpSegment(40000, 80, 0, 0, SYN, 65535, 0, TcpOptions(mss=MSS))
    cfg = TcpConfig(initial_cwnd=2, congestion="reno")
    mib = TcpMib()  # (the table's: every connection it makes counts there)
    s = Script(TcpConnection.accept(syn, ISS, 0.0, cfg, mib=mib), ISS, 0)
    s.drain()
    s.now = 0.1
    s.inject(s.seg(".", 1, 1))
    s.conn.send(b"x" * 40 * MSS, s.now)
    assert len(s.drain()) == 2  # 1:1001, 1001:2001 in flight
    s.now += 0.001
    loop = asyncio.new_event_loop()
    stack = FakeStack()
    table = tt.TcpTable(stack, loop=loop)
    table.mib = mib
    table._clock = lambda: s.now
    if rounds is not None:
        table.reread_rounds = rounds
    ep = tt.TcpEndpoint(table, s.conn, table.local_addr, 80, PEER_ADDR, 40000)
    table._conns[ep.key] = ep
    return s, table, stack, loop


def _ack(s: Script, upto: int) -> TcpSegment:
    return s.seg(".", 1, upto)


def _first_batch(table: tt.TcpTable, seg: TcpSegment) -> None:
    table.begin_batch()
    try:
        table.ip_input(PEER_ADDR, table.local_addr, seg.encode(PEER_ADDR, table.local_addr))
    finally:
        table.end_batch()


def _sent(stack: FakeStack) -> list[int]:
    return [(x.seq - ISS) & 0xFFFFFFFF for x in stack.ip.take() if x.payload]


def test_the_acks_waiting_after_a_sending_batch_are_read_in_the_same_callback() -> None:
    s, table, stack, loop = _setup()
    try:
        ring = FakeRing(table, [_ack(s, 2001), _ack(s, 4001)])
        table.poll_input = ring.poll
        table.ring_state = ring.state
        _first_batch(table, _ack(s, 1001))  # opens the cwnd: new data goes out
        # both waiting ACKs were read (and answered) before end_batch returned
        assert ring.polls == 2 and ring.acks == []
        assert ring.nested == 0
        assert s.conn.snd_una == (ISS + 4001) & 0xFFFFFFFF
        sent = _sent(stack)
        assert sent and max(sent) > 4001  # what the re-read ACKs allowed went out
    finally:
        loop.close()


def test_at_most_reread_rounds_reads() -> None:
    s, table, stack, loop = _setup(rounds=1)
    try:
        ring = FakeRing(table, [_ack(s, 2001), _ack(s, 3001), _ack(s, 4001)])
        table.poll_input = ring.poll
        table.ring_state = ring.state
        _first_batch(table, _ack(s, 1001))
        assert ring.polls == 1 and len(ring.acks) == 2  # the rest waits for the loop
    finally:
        loop.close()


def test_off_and_without_a_ring_nothing_is_read() -> None:
    s, table, stack, loop = _setup(rounds=0)
    try:
        ring = FakeRing(table, [_ack(s, 2001)])
        table.poll_input = ring.poll
        table.ring_state = ring.state
        _first_batch(table, _ack(s, 1001))
        assert ring.polls == 0 and ring.looks == 0
    finally:
        loop.close()
    s, table, stack, loop = _setup()
    try:
        ring = FakeRing(table, [_ack(s, 2001)])
        table.poll_input = ring.poll  # (ring_state stays None: no ring)
        _first_batch(table, _ack(s, 1001))
        assert ring.polls == 0
    finally:
        loop.close()


def test_a_batch_that_sent_no_data_does_not_look_at_the_ring() -> None:
    s, table, stack, loop = _setup()
    try:
        ring = FakeRing(table, [_ack(s, 2001)])
        table.poll_input = ring.poll
        table.ring_state = ring.state
        # data from the peer that acknowledges nothing new: only an ACK goes out
        _first_batch(table, s.seg(".", 1, 1, payload=b"q" * 100))
        assert _sent(stack) == []
        assert ring.polls == 0 and ring.looks == 0
    finally:
        loop.close()


def test_an_empty_ring_ends_the_rereads() -> None:
    s, table, stack, loop = _setup()
    try:
        ring = FakeRing(table, [])
        table.poll_input = ring.poll
        table.ring_state = ring.state
        _first_batch(table, _ack(s, 1001))
        assert _sent(stack)
        assert ring.polls == 0 and ring.looks == 1
    finally:
        loop.close()
