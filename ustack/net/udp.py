"""UDP for one stack (RFC 768, RFC 1122 s.4.1): ports, demultiplexing,
bounded receive queues and ICMP errors both ways.

* **Input** (IP protocol 17): the checksum is checked here (a zero checksum
  means none was sent, RFC 768), the datagram goes to the socket bound to
  its destination port (a connected socket only takes datagrams from its
  peer, as Linux), else we answer ICMP port unreachable (RFC 1122 s.4.1.3.1;
  never for broadcasts, RFC 1122 s.3.2.2).
* **Receive queues** are bounded in bytes like SO_RCVBUF: a datagram that
  does not fit is dropped and counted (Linux ``RcvbufErrors``).
* **ICMP errors** quoting a datagram we sent reach the connected socket of
  that port and peer (Linux reports errors on connected sockets only,
  without IP_RECVERR).

The layer does no I/O of its own: it sends through the IP layer and tells a
socket's owner through ``on_readable``/``on_error`` callbacks.
"""

from __future__ import annotations

import errno
import os
import socket
from collections import deque
from collections.abc import Callable, Iterator
from typing import Final, Protocol

from ustack.net.icmp import IpError
from ustack.wire import icmp as wicmp
from ustack.wire import udp as wudp
from ustack.wire.errors import ParseError
from ustack.wire.ipv4 import build_header

#: Linux's net.core.rmem_default
DEFAULT_RCVBUF: Final = 212_992
EPHEMERAL_RANGE = (32768, 60999)

Address = tuple[str, int]


class IpPort(Protocol):
    """What UDP needs from the IP layer (``ustack.net.ipv4.IpLayer``)."""

    address: bytes

    def send(self, dst: bytes, protocol: int, payload: bytes) -> None: ...

    def send_icmp_error(self, dst: bytes, typ: int, code: int, original: bytes) -> None: ...


class UdpSocket:
    """One bound UDP port (optionally connected to one peer)."""

    def __init__(self, layer: UdpLayer, port: int, rcvbuf: int) -> None:
        self.layer = layer
        self.local_port = port
        self.remote: tuple[bytes, int] | None = None
        self.rcvbuf = rcvbuf
        self.queue: deque[tuple[bytes, Address]] = deque()
        self.queued_bytes = 0
        self.drops = 0
        self.datagrams_in = 0
        self.datagrams_out = 0
        self.closed = False
        #: called when the queue goes from empty to non-empty
        self.on_readable: Callable[[], None] | None = None
        #: ``on_error(exc)`` for an ICMP error about a datagram we sent
        self.on_error: Callable[[OSError], None] | None = None

    @property
    def sockname(self) -> Address:
        return (socket.inet_ntoa(self.layer.local_addr), self.local_port)

    @property
    def peername(self) -> Address | None:
        if self.remote is None:
            return None
        return (socket.inet_ntoa(self.remote[0]), self.remote[1])

    def connect(self, addr: bytes, port: int) -> None:
        """Fix the peer: ``send`` without a destination goes there, and only
        its datagrams are received (Linux connected UDP)."""
        if not 0 < port < 65536:
            raise ValueError(f"port must be 1..65535, not {port}")
        self.remote = (addr, port)

    def sendto(self, data: bytes, addr: bytes | None = None, port: int | None = None) -> None:
        if self.closed:
            raise OSError(errno.EBADF, "UDP socket is closed")
        if addr is None or port is None:
            if self.remote is None:
                raise OSError(errno.EDESTADDRREQ, os.strerror(errno.EDESTADDRREQ))
            addr, port = self.remote
        if not 0 < port < 65536:
            raise ValueError(f"port must be 1..65535, not {port}")
        if len(data) > wudp.MAX_PAYLOAD:
            raise OSError(errno.EMSGSIZE, os.strerror(errno.EMSGSIZE))
        self.datagrams_out += 1
        self.layer._send(self.local_port, addr, port, data)

    def recv(self) -> tuple[bytes, Address] | None:
        """The oldest queued datagram and its sender, or None."""
        if not self.queue:
            return None
        data, addr = self.queue.popleft()
        self.queued_bytes -= len(data)
        return data, addr

    def _deliver(self, data: bytes, src: bytes, sport: int) -> None:
        if self.queued_bytes + len(data) > self.rcvbuf:
            self.drops += 1
            self.layer.counters["udp_rcvbuf_errors"] += 1
            return
        was_empty = not self.queue
        self.queue.append((data, (socket.inet_ntoa(src), sport)))
        self.queued_bytes += len(data)
        self.datagrams_in += 1
        if was_empty and self.on_readable is not None:
            self.on_readable()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.queue.clear()
        self.queued_bytes = 0
        self.layer._sockets.pop(self.local_port, None)

    def __repr__(self) -> str:
        return f"<UdpSocket {self.sockname} -> {self.peername}>"


class UdpLayer:
    """Every UDP socket of one stack; registered as IP protocol 17."""

    def __init__(self, ip: IpPort) -> None:
        self.ip = ip
        self.local_addr: bytes = ip.address
        self._sockets: dict[int, UdpSocket] = {}
        self._next = int.from_bytes(os.urandom(2), "big")
        self.counters: dict[str, int] = {
            "udp_in_datagrams": 0, "udp_out_datagrams": 0, "udp_no_ports": 0,
            "udp_in_errors": 0, "udp_in_csum_errors": 0, "udp_rcvbuf_errors": 0,
        }

    def sockets(self) -> Iterator[UdpSocket]:
        return iter(list(self._sockets.values()))

    def bind(self, port: int = 0, *, rcvbuf: int = DEFAULT_RCVBUF) -> UdpSocket:
        """A socket on ``port`` (0: a free ephemeral port).  EADDRINUSE if taken."""
        if port == 0:
            port = self._free_port()
        elif not 0 < port < 65536:
            raise ValueError(f"port must be 0..65535, not {port}")
        elif port in self._sockets:
            raise OSError(errno.EADDRINUSE, f"{os.strerror(errno.EADDRINUSE)}: "
                          f"UDP port {port} is bound")
        sock = UdpSocket(self, port, rcvbuf)
        self._sockets[port] = sock
        return sock

    def _free_port(self) -> int:
        lo, hi = EPHEMERAL_RANGE
        span = hi - lo + 1
        for i in range(span):
            port = lo + (self._next + i) % span
            if port not in self._sockets:
                self._next += i + 1
                return port
        raise OSError(errno.EADDRINUSE, "no free UDP port")

    def _send(self, sport: int, dst: bytes, dport: int, data: bytes) -> None:
        self.counters["udp_out_datagrams"] += 1
        self.ip.send(dst, wudp.PROTO_UDP, wudp.encode(self.local_addr, dst, sport, dport, data))

    # ---------------------------------------------------------------- input

    def ip_input(self, src: bytes, dst: bytes, payload: bytes | memoryview, trusted: bool) -> None:
        """IP protocol handler (registered with ``verify_checksum=False``:
        UDP's zero checksum means "none", RFC 768)."""
        try:
            dgram = wudp.decode(payload)
        except ParseError:
            self.counters["udp_in_errors"] += 1
            return
        length = wudp.HEADER_LEN + len(dgram.payload)
        if not trusted and not wudp.checksum_ok(src, dst, payload[:length]):
            self.counters["udp_in_errors"] += 1
            self.counters["udp_in_csum_errors"] += 1
            return
        sock = self._sockets.get(dgram.dst_port)
        if sock is not None and sock.remote is not None and sock.remote != (src, dgram.src_port):
            sock = None  # a connected socket takes only its peer's datagrams
        if sock is None:
            self.counters["udp_no_ports"] += 1
            if dst == self.local_addr:  # never about broadcasts (RFC 1122 s.3.2.2)
                self.ip.send_icmp_error(src, wicmp.TYPE_DEST_UNREACH, wicmp.CODE_PORT_UNREACH,
                                        _original_packet(src, dst, payload, length))
            return
        self.counters["udp_in_datagrams"] += 1
        sock._deliver(dgram.payload, src, dgram.src_port)

    def ip_error(self, err: IpError) -> None:
        """An ICMP error (or ARP failure) about a datagram we sent: the
        connected socket of that port and peer gets ``on_error``."""
        sock = self._sockets.get(err.local_port)
        if sock is None or sock.on_error is None:
            return
        if sock.remote is None or sock.remote != (err.remote_addr, err.remote_port):
            return  # unconnected sockets hear nothing (Linux without IP_RECVERR)
        sock.on_error(OSError(err.errno, os.strerror(err.errno)))

    def close(self) -> None:
        for sock in list(self._sockets.values()):
            sock.close()


def _original_packet(src: bytes, dst: bytes, payload: bytes | memoryview, length: int) -> bytes:
    """The IPv4 packet an ICMP error quotes (RFC 792: header + first 8 bytes).
    The IP layer hands the transport a view into the received Ethernet frame;
    its IPv4 header is taken from there, else rebuilt from the addresses."""
    base = payload.obj if isinstance(payload, memoryview) else None
    if isinstance(base, bytes | bytearray) and len(base) >= 34 and base[12:14] == b"\x08\x00":
        hlen = (base[14] & 0x0F) * 4
        return bytes(base[14:14 + hlen]) + bytes(payload[:8])
    return build_header(src, dst, wudp.PROTO_UDP, length, 0) + bytes(payload[:8])


__all__ = ["UdpLayer", "UdpSocket", "DEFAULT_RCVBUF"]
