"""TcpTable with fake connections: demultiplexing, the RST for unmatched
segments, listener backlog, and the single lazy-heap timer."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from table_fakes import FakeStack

from ustack.driver import tcp_table as tt
from ustack.tcp import events
from ustack.tcp.config import TcpConfig
from ustack.wire.tcp import ACK, RST, SYN, TcpSegment

#: the fake connections (module-function patching of ``_connection_class``,
#: and compiled, TcpEndpoint takes only a TcpConnection or a TimeWait):
#: on the compiled build these tests run on the pure one (docs/compiled.md)
pytestmark = pytest.mark.pure_python("fake connections in the TCP table")

LOCAL = socket.inet_aton("10.77.0.2")
PEER = socket.inet_aton("10.77.0.1")


class FakeConn:
    """Just enough of TcpConnection for the table."""

    instances: list[FakeConn] = []

    def __init__(self, local_port: int, remote_port: int) -> None:
        self.local_port = local_port
        self.remote_port = remote_port
        self.deadline: float | None = None
        self.timer_calls: list[float] = []
        self.received: list[TcpSegment] = []
        self.pending_events: list[events.Event] = []
        self.out: list[TcpSegment] = []
        self.aborted = False
        self.trace: Any = None
        FakeConn.instances.append(self)

    @classmethod
    def connect(cls, local_port: int, remote_port: int, iss: int, now: float,
                config: Any, **observers: Any) -> FakeConn:
        conn = cls(local_port, remote_port)
        conn.trace = observers.get("trace")
        return conn

    @classmethod
    def accept(cls, syn: TcpSegment, iss: int, now: float, config: Any,
               **observers: Any) -> FakeConn:
        conn = cls(syn.dst_port, syn.src_port)
        conn.trace = observers.get("trace")
        conn.out.append(TcpSegment(syn.dst_port, syn.src_port, iss, syn.seq + 1, SYN | ACK, 100))
        return conn

    def receive(self, seg: TcpSegment, now: float) -> None:
        self.received.append(seg)

    def coalescible_ack(self, seg: TcpSegment) -> bool:
        return False

    def ack_supersedes(self, older: TcpSegment, newer: TcpSegment) -> bool:
        return False

    def absorb_ack(self, older: TcpSegment) -> None:
        pass

    def handle_timer(self, now: float) -> None:
        self.timer_calls.append(now)
        self.deadline = None

    def next_event(self) -> events.Event | None:
        return self.pending_events.pop(0) if self.pending_events else None

    def segments_to_send(self, now: float) -> list[TcpSegment]:
        out, self.out = self.out, []
        return out

    def next_deadline(self) -> float | None:
        return self.deadline

    def abort(self, now: float) -> None:
        self.aborted = True
        self.pending_events.append(events.CLOSED)


def fake(ep: tt.TcpEndpoint) -> FakeConn:
    """The fake connection of ``ep``."""
    conn = ep.conn
    assert isinstance(conn, FakeConn)
    return conn


class Owner:
    def __init__(self) -> None:
        self.events: list[events.Event] = []

    def tcp_event(self, event: events.Event) -> None:
        self.events.append(event)


@pytest.fixture
async def table(monkeypatch: pytest.MonkeyPatch) -> tt.TcpTable:
    FakeConn.instances = []
    monkeypatch.setattr(tt, "_connection_class", lambda: FakeConn)
    return tt.TcpTable(FakeStack())


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def test_unmatched_ack_gets_rst_with_seq_from_ack(table: tt.TcpTable) -> None:
    seg = TcpSegment(40000, 9, 1000, 5555, ACK, 100)
    table.segment_received(PEER, LOCAL, seg)
    (rst,) = table.stack.ip.segments()  # type: ignore[attr-defined]
    assert rst.flags == RST and rst.seq == 5555
    assert (rst.src_port, rst.dst_port) == (9, 40000)
    assert table.stack.ip.sent[0][0] == PEER  # type: ignore[attr-defined]


async def test_unmatched_syn_gets_rst_ack(table: tt.TcpTable) -> None:
    table.segment_received(PEER, LOCAL, TcpSegment(40000, 9, 1000, 0, SYN, 100))
    (rst,) = table.stack.ip.segments()  # type: ignore[attr-defined]
    assert rst.flags == RST | ACK and rst.ack == 1001


async def test_unmatched_rst_is_not_answered(table: tt.TcpTable) -> None:
    table.segment_received(PEER, LOCAL, TcpSegment(40000, 9, 1000, 0, RST, 0))
    assert table.stack.ip.sent == []  # type: ignore[attr-defined]


async def test_demux_by_four_tuple(table: tt.TcpTable) -> None:
    a = table.connect(PEER, 80, Owner(), local_port=50000)
    b = table.connect(PEER, 81, Owner(), local_port=50000)
    seg = TcpSegment(81, 50000, 1, 0, ACK, 100)
    table.segment_received(PEER, LOCAL, seg)
    assert fake(b).received == [seg]
    assert fake(a).received == []
    with pytest.raises(OSError):
        table.connect(PEER, 80, Owner(), local_port=50000)


async def test_ephemeral_ports_are_distinct(table: tt.TcpTable) -> None:
    ports = {table.connect(PEER, 80, Owner()).local_port for _ in range(200)}
    assert len(ports) == 200
    assert all(32768 <= p <= 60999 for p in ports)


def _complete(table: tt.TcpTable, port: int, sport: int) -> tt.TcpEndpoint:
    """Send the handshake's ACK for the request sock of ``sport``."""
    listener = next(lst for lst in table.listeners() if lst.port == port)
    req = listener.requests[(port, PEER, sport)]
    table.segment_received(PEER, LOCAL, TcpSegment(sport, port, req.irs + 1, req.iss + 1,
                                                   ACK, 100))
    return table._conns[(port, PEER, sport)]


async def test_syn_queue_full_answers_with_cookies(table: tt.TcpTable) -> None:
    listener = table.listen(8080, 2, lambda ep: None)
    for i in range(4):
        table.segment_received(PEER, LOCAL, TcpSegment(40000 + i, 8080, 7, 0, SYN, 100))
    assert len(listener.requests) == 2  # the SYN queue stops at the backlog
    synacks = [s for s in table.stack.ip.segments() if s.flags == SYN | ACK]  # type: ignore[attr-defined]
    assert len(synacks) == 4  # two request socks, two cookies (tcp_syncookies 1)
    assert table.mib["TcpExtSyncookiesSent"] == 2
    assert table.mib["TcpExtTCPReqQFullDoCookies"] == 2
    assert listener.syn_dropped == 0 and FakeConn.instances == []  # no connection yet


async def test_syn_queue_full_without_cookies_drops(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeConn.instances = []
    monkeypatch.setattr(tt, "_connection_class", lambda: FakeConn)
    table = tt.TcpTable(FakeStack(), config=TcpConfig(syncookies=0))
    listener = table.listen(8080, 2, lambda ep: None)
    for i in range(4):
        assert (table.segment_received(PEER, LOCAL, TcpSegment(40000 + i, 8080, 7, 0, SYN, 100))
                == (None if i < 2 else "tcp-syn-queue-full"))
    assert len(listener.requests) == 2 and listener.syn_dropped == 2
    synacks = [s for s in table.stack.ip.segments() if s.flags == SYN | ACK]  # type: ignore[attr-defined]
    assert len(synacks) == 2  # the dropped SYNs got nothing (Linux: the peer retries)
    assert table.mib["TcpExtTCPReqQFullDrop"] == 2 and table.mib["TcpExtListenDrops"] == 2
    table.close()


async def test_handshake_ack_moves_request_to_accept_queue(table: tt.TcpTable) -> None:
    accepted: list[tt.TcpEndpoint] = []
    listener = table.listen(8080, 2, accepted.append)
    table.segment_received(PEER, LOCAL, TcpSegment(40000, 8080, 7, 0, SYN, 100))
    child = _complete(table, 8080, 40000)
    assert listener.requests == {}
    assert [s.flags for s in fake(child).received] == [ACK]
    fake(child).pending_events.append(events.CONNECTED)
    await settle()
    assert accepted == [child]
    assert listener.pending == 0 and table.counters["tcp_passive_opens"] == 1


async def test_listener_not_accepting_queues_until_resumed(table: tt.TcpTable) -> None:
    accepted: list[tt.TcpEndpoint] = []
    listener = table.listen(8080, 8, accepted.append)
    listener.set_accepting(False)
    table.segment_received(PEER, LOCAL, TcpSegment(40000, 8080, 7, 0, SYN, 100))
    child = _complete(table, 8080, 40000)
    fake(child).pending_events.append(events.CONNECTED)
    await settle()
    assert accepted == [] and list(listener.accept_queue) == [child]
    listener.set_accepting(True)
    assert accepted == [child]


async def test_closed_event_removes_connection(table: tt.TcpTable) -> None:
    owner = Owner()
    ep = table.connect(PEER, 80, owner)
    assert len(table) == 1
    fake(ep).pending_events.append(events.CLOSED)
    table.touch(ep)
    await settle()
    assert len(table) == 0 and owner.events == [events.CLOSED]
    # a late segment for it now gets the unmatched-segment RST
    table.segment_received(PEER, LOCAL, TcpSegment(80, ep.local_port, 1, 99, ACK, 10))
    assert table.stack.ip.segments()[-1].flags == RST  # type: ignore[attr-defined]


async def test_one_timer_handle_for_many_connections(
    table: tt.TcpTable, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = asyncio.get_running_loop()
    calls: list[float] = []
    real_call_at = loop.call_at

    def counting_call_at(when: float, cb: Any, *args: Any) -> asyncio.TimerHandle:
        calls.append(when)
        return real_call_at(when, cb, *args)

    monkeypatch.setattr(loop, "call_at", counting_call_at)
    base = loop.time() + 100.0
    eps = []
    for i in range(10_000):
        ep = table.connect(PEER, 80, Owner())
        fake(ep).deadline = base + (i % 97)
        eps.append(ep)
    await settle()
    assert len(calls) == 1 and calls[0] == base
    # every connection re-arms later (an ACK moving the RTO): no heap growth,
    # no new timer handles
    heap_before = len(table._heap)
    for ep in eps:
        conn = fake(ep)
        assert conn.deadline is not None
        conn.deadline += 5.0
        table.touch(ep)
    await settle()
    assert len(table._heap) == heap_before
    assert len(calls) == 1


async def test_timer_fires_only_due_connections_and_reschedules_late_ones(
    table: tt.TcpTable,
) -> None:
    loop = asyncio.get_running_loop()
    now = loop.time()
    a = table.connect(PEER, 80, Owner())
    b = table.connect(PEER, 81, Owner())
    c = table.connect(PEER, 82, Owner())
    fake(a).deadline = now + 0.02
    fake(b).deadline = now + 0.05
    fake(c).deadline = now + 0.03
    await settle()
    # c's deadline moves later after it was queued: its stale entry must not fire it
    # (1 s later: a loaded machine may stall the loop well past b's deadline)
    fake(c).deadline = now + 1.0
    table.touch(c)
    await asyncio.sleep(0.08)
    assert len(fake(a).timer_calls) == 1 and fake(a).timer_calls[0] >= now + 0.02
    assert len(fake(b).timer_calls) == 1
    assert fake(c).timer_calls == []
    async with asyncio.timeout(10):
        while not fake(c).timer_calls:
            await asyncio.sleep(0.05)
    assert len(fake(c).timer_calls) == 1 and fake(c).timer_calls[0] >= now + 1.0
    await settle()
    assert table._timer is None  # nothing left to wait for


async def test_deadline_moving_earlier_rearms(table: tt.TcpTable) -> None:
    loop = asyncio.get_running_loop()
    now = loop.time()
    a = table.connect(PEER, 80, Owner())
    fake(a).deadline = now + 10
    await settle()
    fake(a).deadline = now + 0.02
    table.touch(a)
    await asyncio.sleep(0.06)
    assert len(fake(a).timer_calls) == 1


async def test_heap_compacts_under_churn(table: tt.TcpTable) -> None:
    loop = asyncio.get_running_loop()
    ep = table.connect(PEER, 80, Owner())
    for i in range(10_000):  # ever earlier deadlines: one push each
        fake(ep).deadline = loop.time() + 1000 - i * 0.01
        table.touch(ep)
        table.flush_now()
    assert len(table._heap) < 200


async def test_close_resets_everything(table: tt.TcpTable) -> None:
    owner = Owner()
    ep = table.connect(PEER, 80, owner)
    table.listen(8080, 4, lambda e: None)
    table.close()
    assert fake(ep).aborted
    assert len(table) == 0 and list(table.listeners()) == []
    with pytest.raises(RuntimeError):
        table.connect(PEER, 80, Owner())


def test_connections_clock_is_fine_grained_on_uvloop_and_the_loop_clock_elsewhere() -> None:
    import time

    import uvloop

    from ustack.driver.tcp_table import _fine_clock

    uv = uvloop.new_event_loop()
    plain = asyncio.new_event_loop()
    try:
        assert _fine_clock(uv) is time.monotonic  # uvloop's loop.time() is whole ms
        assert abs(uv.time() - time.monotonic()) < 0.1  # ... of the same clock
        assert _fine_clock(plain) == plain.time  # a simulated loop keeps its own clock
    finally:
        uv.close()
        plain.close()


async def test_orphans_beyond_max_orphans_are_reset(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeConn.instances = []
    monkeypatch.setattr(tt, "_connection_class", lambda: FakeConn)
    table = tt.TcpTable(FakeStack(), config=TcpConfig(max_orphans=2))
    eps = [table.connect(PEER, 80, Owner()) for _ in range(3)]
    for ep in eps:
        table.detach(ep)
    assert table.orphans == 2
    assert [fake(ep).aborted for ep in eps] == [False, False, True]
    assert table.mib["TcpExtTCPAbortOnMemory"] == 1
    await settle()
    assert table.orphans == 2  # the reset one is gone, the two others finish
    table.close()
    assert table.orphans == 0


async def test_the_timer_reads_waiting_input_before_handling_deadlines(
        table: tt.TcpTable) -> None:
    """An ACK already in the receive ring when a loss probe is due goes
    first (TcpTable.poll_input, the device's poll): here the "ACK" moves
    the connection's deadline, so the timer finds nothing due (before
    poll_input the probe fired and the ACK came back as a D-SACK)."""
    ep = table.connect(PEER, 80, Owner())
    await settle()
    polled: list[float] = []

    def poll() -> None:  # what the device delivers: an ACK pushing the deadline
        polled.append(table.now())
        fake(ep).deadline = table.now() + 10.0

    # deadline, timer and poll set with no await between them: on a loaded
    # machine a settle() in between outlasted the 10 ms and the timer fired
    # before the poll was in place
    fake(ep).deadline = table.now() + 0.01
    table.touch(ep)
    table.poll_input = poll
    await asyncio.sleep(0.03)
    assert polled  # the timer polled first
    assert fake(ep).timer_calls == []  # and nothing was due


async def test_a_drain_never_hands_a_connection_an_older_time(table: tt.TcpTable) -> None:
    """The drain dispatches a connection's events first; the application's
    callbacks may call into the connection with the present (a close or a
    write takes ``table.now()``).  The segments_to_send that follows must
    not get the older time the drain started with (a trace of the 100 MB lab
    transfer showed a FIN-WAIT-1 state change followed by segments stamped
    17 us earlier)."""
    ticks = iter(range(1, 1_000_000))
    table._clock = lambda: next(ticks) / 1000  # every read is later than the last
    seen: list[tuple[str, float]] = []

    class Closing(Owner):
        def tcp_event(self, event: events.Event) -> None:
            super().tcp_event(event)
            seen.append(("callback", table.now()))  # e.g. writer.close() -> conn.close(now)

    ep = table.connect(PEER, 80, Closing())
    conn = fake(ep)
    sent = conn.segments_to_send

    def recording(now: float) -> list[TcpSegment]:
        seen.append(("segments_to_send", now))
        return sent(now)

    conn.segments_to_send = recording  # type: ignore[method-assign]
    await settle()
    seen.clear()
    conn.pending_events.append(events.CONNECTED)
    table.touch(ep)
    await settle()
    assert [k for k, _ in seen] == ["callback", "segments_to_send"]
    assert seen[1][1] >= seen[0][1]


async def test_timer_takes_heap_and_time_wait_fifo_entries_in_one_order(
    table: tt.TcpTable,
) -> None:
    """TIME-WAIT records' 2MSL entries wait in a FIFO beside the heap; the
    timer takes the due entries of both in (deadline, push order), the
    order one heap gave.  (The fakes are no TimeWait: the FIFO entries are
    put there as ``_schedule`` puts a record's.)"""
    now = table.now()
    eps = [table.connect(PEER, 80 + i, Owner()) for i in range(6)]
    await settle()
    order: list[int] = []

    def recorder(i: int, conn: FakeConn) -> Any:
        def handle_timer(at: float) -> None:
            order.append(i)
            conn.deadline = None
        return handle_timer

    for i, ep in enumerate(eps):
        fake(ep).handle_timer = recorder(i, fake(ep))  # type: ignore[method-assign]
    # (endpoint, deadline, FIFO?) in push order: ties at +0.03 and +0.05
    # between a heap and a FIFO entry, the earlier push first
    pushes = [(0, 0.02, False), (1, 0.01, True), (2, 0.03, False), (3, 0.03, True),
              (5, 0.05, True), (4, 0.05, False)]
    for i, offset, in_fifo in pushes:
        ep = eps[i]
        fake(ep).deadline = now + offset
        if in_fifo:
            ep.heap_deadline = now + offset
            table._tw_fifo.append((now + offset, next(table._heap_counter), ep))
        else:
            table._schedule(ep, now + offset)
    table._clock = lambda: now + 1.0  # every entry is due
    table._on_timer()
    assert order == [1, 0, 2, 3, 5, 4]
    assert not table._tw_fifo and table._timer is None


async def test_stale_time_wait_fifo_entries_arm_no_timer(table: tt.TcpTable) -> None:
    """A FIFO entry whose endpoint went (or got another deadline) is
    dropped when it reaches the head: the timer is armed for the live
    heap entry behind it, or not at all."""
    now = table.now()
    a = table.connect(PEER, 80, Owner())
    b = table.connect(PEER, 81, Owner())
    await settle()
    b.heap_deadline = now + 0.5  # b's entry says +0.1: stale
    table._tw_fifo.append((now + 0.1, next(table._heap_counter), b))
    fake(a).deadline = now + 5.0
    table.touch(a)
    await settle()
    assert not table._tw_fifo
    assert table._timer is not None and table._timer_when == now + 5.0
    table.abort(a)
    await settle()
    assert table._timer is None
