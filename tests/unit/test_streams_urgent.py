"""TcpTransport.write_urgent (send(MSG_OOB), conformance 46) over two TCP
tables wired together in memory: the segment carries URG with the pointer
one past the urgent byte, the bytes arrive in order (ustack's receiver keeps
the urgent byte inline), and the transport refuses while earlier writes are
still buffered in it."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ustack import streams
from ustack.driver.tcp_table import TcpTable
from ustack.wire.tcp import URG, TcpSegment

A_IP, B_IP = "10.9.1.1", "10.9.1.2"


class MemoryIp:
    def __init__(self, src: str) -> None:
        self.src = socket.inet_aton(src)
        self.peer: TcpTable | None = None
        self.segments: list[TcpSegment] = []

    def send(self, dst: bytes, protocol: int, payload: bytes) -> None:
        self.segments.append(TcpSegment.decode(payload))
        if self.peer is not None:
            asyncio.get_running_loop().call_soon(self.peer.ip_input, self.src, dst, payload)


class MemoryStack:
    def __init__(self, address: str) -> None:
        self.address = address
        self.ip = MemoryIp(address)
        self.tcp: TcpTable = None  # type: ignore[assignment]


@pytest.fixture
async def pair() -> AsyncIterator[tuple[MemoryStack, MemoryStack]]:
    a, b = MemoryStack(A_IP), MemoryStack(B_IP)
    a.tcp = TcpTable(a)
    b.tcp = TcpTable(b)
    a.ip.peer, b.ip.peer = b.tcp, a.tcp
    yield a, b
    a.tcp.close()
    b.tcp.close()


async def test_write_urgent_sends_urg_and_the_bytes_arrive(pair: Any) -> None:
    a, b = pair
    got: asyncio.Queue[bytes] = asyncio.Queue()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await got.put(await reader.readexactly(15))
        writer.close()

    server = await streams.start_server(handle, port=7001, stack=b)
    reader, writer = await streams.open_connection(B_IP, 7001, stack=a)
    transport: Any = writer.transport
    writer.write(b"0123456789")
    transport.write_urgent(b"abcd!")
    data = await asyncio.wait_for(got.get(), 5)
    assert data == b"0123456789abcd!"
    urgent = [s for s in a.ip.segments if s.flags & URG]
    assert urgent and all(s.seq + s.urgent == urgent[0].seq + urgent[0].urgent
                          for s in urgent)
    first = [s for s in a.ip.segments if s.payload][0]
    assert urgent[0].seq + urgent[0].urgent == first.seq + 15  # one past the "!"
    writer.close()
    server.close()
    await server.wait_closed()


async def test_write_urgent_refuses_behind_buffered_writes(pair: Any) -> None:
    a, b = pair
    server = await streams.start_server(lambda r, w: None, port=7002, stack=b)
    _, writer = await streams.open_connection(B_IP, 7002, stack=a)
    transport: Any = writer.transport
    transport._queue(b"held")  # as if the send buffer had been full
    with pytest.raises(BlockingIOError):
        transport.write_urgent(b"!")
    writer.close()
    server.close()
    await server.wait_closed()
