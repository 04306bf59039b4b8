"""Kernel sockets that ``loop.sock_connect`` connected over ustack.

aiohttp (through aiohappyeyeballs) and similar code create a kernel
``socket.socket``, ``await loop.sock_connect(sock, addr)`` it, then either
hand it to ``loop.create_connection(sock=sock)`` or talk through
``loop.sock_sendall``/``sock_recv``/``sock_recv_into``.  On the ustack loop
the connection is ustack's; the kernel socket stays unconnected and is only
the key.  :class:`Claims` holds one :class:`Claim` per such socket:

* ``create_connection(sock=)`` takes the claim's transport (bytes a
  ``sock_recv`` buffered but did not return are delivered first);
* the ``sock_*`` calls go through a :class:`SocketProtocol` on the
  transport: received data waits in a bounded buffer (reading pauses above
  it, so the TCP window closes as a socket's would), sends wait while the
  transport is above its high-water mark; a reset raises
  ConnectionResetError, reads after the peer's FIN return ``b""``;
* when the kernel socket is closed (seen at the next ``sock_*`` call, which
  raises EBADF as the kernel would) or garbage collected, a connection used
  through ``sock_*`` is closed (FIN), an unused one (a happy-eyeballs
  loser) is reset.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import weakref
from typing import Any

from ustack import streams

#: bytes a SocketProtocol buffers before it pauses reading (Linux's default
#: receive buffer is of this order; beyond it the peer sees the window close)
BUFFER_LIMIT = 256 * 1024


class SocketProtocol(asyncio.Protocol):
    """Socket semantics over a ustack transport, for the loop's ``sock_*``."""

    def __init__(self, limit: int = BUFFER_LIMIT) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.limit = limit
        self.eof = False
        self.lost = False
        self.error: BaseException | None = None
        self._paused_reading = False
        self._paused_writing = False
        self._waiters: list[asyncio.Future[None]] = []

    # ------------------------------------------------------------ protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > self.limit and not self._paused_reading and self.transport:
            self._paused_reading = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return True  # half-closed: we may still send, as a socket after SHUT_RD by the peer

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.error = exc
        self._wake()

    def pause_writing(self) -> None:
        self._paused_writing = True

    def resume_writing(self) -> None:
        self._paused_writing = False
        self._wake()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def _wait(self) -> None:
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        await fut

    # --------------------------------------------------------- socket calls

    def take(self, n: int) -> bytes:
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        if self._paused_reading and len(self.buffer) <= self.limit // 2 and self.transport:
            self._paused_reading = False
            self.transport.resume_reading()
        return data

    async def recv(self, n: int) -> bytes:
        """Like ``sock_recv``: up to ``n`` bytes, ``b""`` after the peer's FIN."""
        if n < 0:
            raise ValueError("negative buffersize in recv")
        while not self.buffer and not self.eof and not self.lost:
            await self._wait()
        if self.buffer:
            return self.take(n)
        if self.error is not None:
            raise self.error
        return b""

    async def sendall(self, data: bytes | bytearray | memoryview) -> None:
        """Like ``sock_sendall``: queued, returns once below the high-water mark."""
        if self.lost or self.transport is None or self.transport.is_closing():
            raise self.error or BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))
        self.transport.write(data)
        while self._paused_writing and not self.lost:
            await self._wait()
        if self.lost and self.error is not None:
            raise self.error


class Claim:
    """One kernel socket whose connection is ustack's."""

    def __init__(self, transport: streams.TcpTransport,
                 finalizer: weakref.finalize[Any, Any]) -> None:
        self.transport = transport
        self.finalizer = finalizer
        #: set by the first sock_* call
        self.protocol: SocketProtocol | None = None

    def release(self) -> None:
        """Finished with: FIN if it carried data through sock_*, else RST."""
        self.finalizer.detach()
        if self.protocol is not None:
            self.transport.close()
        else:
            self.transport.abort()


class Claims:
    """The claims of one loop, keyed by the kernel socket."""

    def __init__(self) -> None:
        self._by_id: dict[int, Claim] = {}

    def add(self, sock: socket.socket, transport: streams.TcpTransport) -> None:
        key = id(sock)
        old = self._by_id.pop(key, None)
        if old is not None:
            old.release()
        self._by_id[key] = Claim(transport, weakref.finalize(sock, self._collected, key))

    def _collected(self, key: int) -> None:
        claim = self._by_id.pop(key, None)
        if claim is not None:
            claim.release()

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, sock: socket.socket) -> Claim | None:
        return self._by_id.get(id(sock))

    def take(self, sock: socket.socket) -> Claim | None:
        """For ``create_connection(sock=)``: the claim leaves the table and the
        unused kernel socket is closed."""
        claim = self._by_id.pop(id(sock), None)
        if claim is None:
            return None
        claim.finalizer.detach()
        sock.close()
        return claim

    async def socket_protocol(self, sock: socket.socket) -> SocketProtocol | None:
        """The SocketProtocol of a claimed socket (attached on first use);
        None if ``sock`` is not claimed.  OSError(EBADF) once the kernel
        socket was closed (and the connection is closed then)."""
        claim = self._by_id.get(id(sock))
        if claim is None:
            return None
        if sock.fileno() == -1:
            self._by_id.pop(id(sock), None)
            claim.protocol = claim.protocol or SocketProtocol()
            claim.release()
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        if claim.protocol is None:
            claim.protocol = SocketProtocol()
            await streams.attach(claim.transport, claim.protocol)
        return claim.protocol

    def close(self) -> None:
        """The loop closes: reset every claimed connection."""
        for claim in self._by_id.values():
            claim.finalizer.detach()
            claim.transport.abort()
        self._by_id.clear()


def leftover(claim: Claim) -> bytes:
    """What ``create_connection(sock=)`` must deliver to its protocol first:
    bytes a SocketProtocol buffered and no sock_recv returned."""
    proto = claim.protocol
    if proto is None or not proto.buffer:
        return b""
    return proto.take(len(proto.buffer))


def deliver(transport: asyncio.BaseTransport, data: bytes) -> None:
    """Hand ``data`` to the transport's protocol as if it had just arrived."""
    if not data:
        return
    protocol = transport.get_protocol()
    if isinstance(protocol, asyncio.BufferedProtocol):
        asyncio.protocols._feed_data_to_buffered_proto(  # type: ignore[attr-defined]
            protocol, data)
    else:
        protocol.data_received(data)  # type: ignore[attr-defined]


__all__ = ["Claims", "Claim", "SocketProtocol", "BUFFER_LIMIT", "leftover", "deliver"]
