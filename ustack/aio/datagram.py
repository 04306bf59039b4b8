"""asyncio datagram transports over ustack's UDP (:mod:`ustack.net.udp`).

What ``loop.create_datagram_endpoint`` returns on the ustack event loop for
IPv4 endpoints the stack serves.  Received datagrams wait in the socket's
bounded queue (:data:`ustack.net.udp.DEFAULT_RCVBUF` bytes, like SO_RCVBUF)
and are handed to ``protocol.datagram_received`` once per loop iteration;
ICMP errors about our datagrams reach ``protocol.error_received`` on
connected endpoints (Linux's behaviour), as ConnectionRefusedError for a
port unreachable.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from ustack.net.udp import UdpSocket

Address = tuple[str, int]


class UdpTransport(asyncio.DatagramTransport):
    """One UDP socket of a ustack Stack as an asyncio DatagramTransport."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: UdpSocket,
                 protocol: asyncio.DatagramProtocol, stack: Any) -> None:
        super().__init__()
        self._loop = loop
        self._sock = sock
        self._protocol = protocol
        self._stack = stack
        self._closing = False
        self._scheduled = False
        self._paused = False
        sock.on_readable = self._readable
        sock.on_error = self._error

    # ------------------------------------------------------------ transport

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "sockname":
            return self._sock.sockname
        if name == "peername":
            return self._sock.peername if self._sock.remote is not None else default
        if name == "stack":
            return self._stack
        if name == "udp_socket":
            return self._sock
        return default

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._sock.close()
        self._loop.call_soon(self._protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol  # type: ignore[assignment]

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def get_write_buffer_size(self) -> int:
        return 0  # datagrams leave at once

    def pause_reading(self) -> None:
        """Stop delivering; datagrams queue up to the receive buffer, then drop."""
        self._paused = True

    def resume_reading(self) -> None:
        if self._paused:
            self._paused = False
            self._readable()

    def is_reading(self) -> bool:
        return not self._paused and not self._closing

    def sendto(self, data: bytes | bytearray | memoryview,
               addr: Any = None) -> None:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"data argument must be a bytes-like object, "
                            f"not {type(data).__name__!r}")
        if self._closing:
            return
        remote = self._sock.remote
        if addr is not None:
            if not isinstance(addr, tuple) or len(addr) < 2:
                raise TypeError(f"UDP address must be (host, port), not {addr!r}")
            if remote is not None and (socket.inet_aton(addr[0]), addr[1]) != remote:
                raise ValueError(f"Invalid address: must be None or {self._sock.peername}")
            dst: bytes | None = socket.inet_aton(addr[0])
            port: int | None = int(addr[1])
        else:
            dst = port = None
        try:
            self._sock.sendto(bytes(data), dst, port)
        except OSError as exc:
            self._loop.call_soon(self._protocol.error_received, exc)

    # ------------------------------------------------------------- delivery

    def _readable(self) -> None:
        if not self._scheduled and not self._paused and not self._closing:
            self._scheduled = True
            self._loop.call_soon(self._deliver)

    def _deliver(self) -> None:
        self._scheduled = False
        sock = self._sock
        while not self._paused and not self._closing:
            item = sock.recv()
            if item is None:
                return
            self._protocol.datagram_received(item[0], item[1])

    def _error(self, exc: OSError) -> None:
        if not self._closing:
            self._loop.call_soon(self._protocol.error_received, exc)

    def __repr__(self) -> str:
        return f"<UdpTransport {self._sock.sockname} -> {self._sock.peername}>"


__all__ = ["UdpTransport"]
