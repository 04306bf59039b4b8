"""A finished connection is freed by reference counting, not left for the
cyclic garbage collector: no reference cycle runs through a TcpConnection
and its rooms (the recovery room's timestamp clock used to be the
connection's bound method, so all ~20 objects of every connection that ended
or went into a compact TIME-WAIT record waited for a collection: ~10 % of a
connect+close client's CPU went to the collector).  And the clock the room
gets gives exactly the connection's TSval."""

from __future__ import annotations

import asyncio
import gc
import socket
from collections.abc import Iterator
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ustack.link.memory import MemoryPair
from ustack.stack import Stack
from ustack.tcp.config import TcpConfig
from ustack.tcp.connection import TcpConnection

A, B = "10.78.0.1", "10.78.0.2"

#: the core's per-connection classes (the rooms and what they hold)
_CORE = {"TcpConnection", "Sender", "Receiver", "Timers", "Recovery", "RttEstimator",
         "SendBuffer", "Chrono", "Scoreboard", "RateSampler", "Rack", "WindowedMin",
         "Segment", "Cubic", "Reno", "Bbr", "Reassembly", "TimeWait"}


@pytest.fixture
def no_gc() -> Iterator[None]:
    was = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if was:
            gc.enable()


def _cyclic_core_garbage() -> dict[str, int]:
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        found: dict[str, int] = {}
        for obj in gc.garbage:
            name = type(obj).__name__
            if name in _CORE:
                found[name] = found.get(name, 0) + 1
        return found
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


def _nodelay(w: asyncio.StreamWriter) -> None:
    """What bench/aio_peer.py's echo server does with every connection."""
    sock = w.get_extra_info("socket")
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    assert w.get_extra_info("socket") is sock  # (the same object while held)


async def _connect_close_many(n: int, request: bool,
                              ask_socket: bool = False) -> tuple[int, int]:
    a_dev, b_dev = MemoryPair()
    a = await Stack.start(address=f"{A}/24", device=a_dev, diagnostics=False)
    b = await Stack.start(address=f"{B}/24", device=b_dev, diagnostics=False)
    try:
        async def echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            if ask_socket:
                _nodelay(w)
            while data := await r.read(1024):
                w.write(data)
            w.close()

        await b.start_server(echo, port=7000)
        for _ in range(n):
            r, w = await a.open_connection(B, 7000)
            if ask_socket:
                _nodelay(w)
            if request:
                w.write(b"ping")
                assert await r.readexactly(4) == b"ping"
            w.close()
            await w.wait_closed()
        for _ in range(200):  # until the server side is CLOSED and removed
            if len(b.tcp) == 0 and all(
                    type(ep.conn).__name__ == "TimeWait" for ep in a.tcp.endpoints()):
                break
            await asyncio.sleep(0.01)
        return len(a.tcp), len(b.tcp)
    finally:
        await a.close()
        await b.close()


@pytest.mark.parametrize("request_", [False, True])
def test_finished_connections_leave_no_cycles(no_gc: None, request_: bool) -> None:
    n = 20
    in_a, in_b = asyncio.run(_connect_close_many(n, request_))
    assert in_a == n and in_b == 0  # client: n TIME-WAIT records; server: all gone
    assert _cyclic_core_garbage() == {}


@pytest.mark.parametrize("request_", [False, True])
def test_connections_whose_socket_was_asked_for_leave_no_cycles(
        no_gc: None, request_: bool) -> None:
    """``get_extra_info("socket")`` on both sides (the socket object refers to
    its transport: the transport keeps it weakly, else a cycle through the
    transport, its endpoint and the whole connection)."""
    n = 20
    in_a, in_b = asyncio.run(_connect_close_many(n, request_, ask_socket=True))
    assert in_a == n and in_b == 0
    assert _cyclic_core_garbage() == {}


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(0, 1e7, allow_nan=False))
def test_recovery_room_clock_is_the_connections_tsval(iss: int, now: float) -> None:
    conn = TcpConnection.connect(40000, 80, iss, 0.0, TcpConfig())
    conn.ts_ok = True  # (as the handshake sets it when both offer timestamps)
    clock = conn._ts_clock()
    assert clock is not None
    assert clock(now) == conn._ts_val(now)
    off = TcpConnection.connect(40000, 80, iss, 0.0, TcpConfig(timestamps=False))
    off.ts_ok = False
    assert off._ts_clock() is None


def test_segment_to_a_compact_time_wait_record_is_answered() -> None:
    """A FIN reaching a TIME-WAIT record through the table is answered by the
    record (what it answers is test_tcp_timewait's) and raises nothing (the receive
    path once read the record's missing receive room: AttributeError, the
    frame counted as dropped)."""
    from ustack.tcp.timewait import TimeWait
    from ustack.wire.tcp import ACK, FIN, TcpSegment

    async def main() -> tuple[int, str | None, int]:
        a_dev, b_dev = MemoryPair()
        a = await Stack.start(address=f"{A}/24", device=a_dev, diagnostics=False)
        b = await Stack.start(address=f"{B}/24", device=b_dev, diagnostics=False)
        try:
            async def closer(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
                await r.read()
                w.close()

            await b.start_server(closer, port=7000)
            r, w = await a.open_connection(B, 7000)
            w.close()
            await w.wait_closed()
            for _ in range(200):
                eps = list(a.tcp.endpoints())
                if eps and type(cast(Any, eps[0].conn)) is TimeWait:
                    break
                await asyncio.sleep(0.01)
            ep = list(a.tcp.endpoints())[0]
            record = ep.conn
            assert type(cast(Any, record)) is TimeWait
            out0 = a.tcp.counters["tcp_segs_out"]
            fin = TcpSegment(7000, ep.local_port, (record.rcv_nxt - 1) & 0xFFFFFFFF,
                             record.snd_nxt, FIN | ACK, 65535, 0)
            raddr, laddr = ep.remote_addr, ep.local_addr
            dropped = a.tcp.ip_input(raddr, laddr, fin.encode(raddr, laddr))
            for _ in range(5):
                await asyncio.sleep(0)
            return a.tcp.counters["tcp_segs_out"] - out0, dropped, len(a.tcp)
        finally:
            await a.close()
            await b.close()

    sent, dropped, left = asyncio.run(main())
    assert dropped is None and sent == 1 and left in (0, 1)
