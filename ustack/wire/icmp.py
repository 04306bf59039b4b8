"""ICMP for IPv4 (RFC 792): echo, and the error messages that quote a packet
(destination unreachable, time exceeded, parameter problem, RFC 1812 s.4.3.2.3).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from ustack.wire.checksum import fold, partial_sum
from ustack.wire.errors import ParseError
from ustack.wire.ipv4 import HEADER_LEN as IP_HEADER_LEN
from ustack.wire.ipv4 import Ipv4Packet

HEADER: Final = struct.Struct("!BBH4s")
HEADER_LEN: Final = 8

TYPE_ECHO_REPLY: Final = 0
TYPE_DEST_UNREACH: Final = 3
TYPE_SOURCE_QUENCH: Final = 4
TYPE_REDIRECT: Final = 5
TYPE_ECHO_REQUEST: Final = 8
TYPE_TIME_EXCEEDED: Final = 11
TYPE_PARAMETER_PROBLEM: Final = 12

#: types whose body quotes the offending packet's IP header + 8 bytes
ERROR_TYPES: Final = frozenset({TYPE_DEST_UNREACH, TYPE_SOURCE_QUENCH, TYPE_REDIRECT,
                         TYPE_TIME_EXCEEDED, TYPE_PARAMETER_PROBLEM})

# destination unreachable codes (RFC 792, RFC 1122 s.3.2.2.1, RFC 1812 s.5.2.7.1)
CODE_NET_UNREACH: Final = 0
CODE_HOST_UNREACH: Final = 1
CODE_PROTO_UNREACH: Final = 2
CODE_PORT_UNREACH: Final = 3
CODE_FRAG_NEEDED: Final = 4
CODE_SOURCE_ROUTE_FAILED: Final = 5
CODE_NET_UNKNOWN: Final = 6
CODE_HOST_UNKNOWN: Final = 7
CODE_HOST_ISOLATED: Final = 8
CODE_NET_PROHIBITED: Final = 9
CODE_HOST_PROHIBITED: Final = 10
CODE_NET_UNREACH_TOS: Final = 11
CODE_HOST_UNREACH_TOS: Final = 12
CODE_ADMIN_PROHIBITED: Final = 13
CODE_PRECEDENCE_VIOLATION: Final = 14
CODE_PRECEDENCE_CUTOFF: Final = 15

Buffer = bytes | bytearray | memoryview


@dataclass(slots=True)
class IcmpMessage:
    """Any ICMP message: type, code, the 4 type-specific bytes, and the body."""

    type: int
    code: int
    rest: bytes = b"\x00\x00\x00\x00"
    body: Buffer = b""
    checksum: int | None = None  # as decoded; computed on encode

    def encode(self) -> bytes:
        hdr = HEADER.pack(self.type, self.code, 0, self.rest)
        body = bytes(self.body)
        csum = fold(partial_sum(hdr) + partial_sum(body))
        return hdr[:2] + csum.to_bytes(2, "big") + hdr[4:] + body

    @classmethod
    def decode(cls, data: Buffer, *, verify_checksum: bool = True) -> IcmpMessage:
        """Raises :class:`ParseError` (``icmp-truncated``, ``icmp-bad-checksum``)."""
        if len(data) < HEADER_LEN:
            raise ParseError("icmp-truncated", f"{len(data)} bytes")
        typ, code, csum, rest = HEADER.unpack_from(data)
        if verify_checksum:
            value = partial_sum(data)
            if not (value == 0 or value % 0xFFFF == 0):
                raise ParseError("icmp-bad-checksum", f"checksum {csum:#06x}")
        return cls(typ, code, rest, data[HEADER_LEN:], csum)


@dataclass(slots=True)
class IcmpEcho:
    """Echo request or reply (RFC 792 p.14)."""

    ident: int
    seq: int
    data: bytes = b""
    reply: bool = False

    def to_message(self) -> IcmpMessage:
        return IcmpMessage(TYPE_ECHO_REPLY if self.reply else TYPE_ECHO_REQUEST, 0,
                           struct.pack("!HH", self.ident, self.seq), self.data)

    def encode(self) -> bytes:
        return self.to_message().encode()

    @classmethod
    def from_message(cls, msg: IcmpMessage) -> IcmpEcho:
        if msg.type not in (TYPE_ECHO_REQUEST, TYPE_ECHO_REPLY):
            raise ParseError("icmp-not-echo", f"type {msg.type}")
        ident, seq = struct.unpack("!HH", msg.rest)
        return cls(ident, seq, bytes(msg.body), msg.type == TYPE_ECHO_REPLY)


def echo_reply_for(request: IcmpMessage) -> bytes:
    """The reply to an echo request: same identifier, sequence and data."""
    return IcmpMessage(TYPE_ECHO_REPLY, 0, request.rest, request.body).encode()


@dataclass(slots=True)
class QuotedPacket:
    """The offending packet quoted in an ICMP error: its IP header and the
    first bytes (at least 8) of its transport header."""

    ip: Ipv4Packet
    transport: bytes

    @property
    def src(self) -> bytes:
        return self.ip.src

    @property
    def dst(self) -> bytes:
        return self.ip.dst

    @property
    def protocol(self) -> int:
        return self.ip.protocol

    @property
    def src_port(self) -> int:
        """Source port for TCP/UDP (the first two bytes)."""
        return (self.transport[0] << 8) | self.transport[1]

    @property
    def dst_port(self) -> int:
        return (self.transport[2] << 8) | self.transport[3]

    @property
    def tcp_seq(self) -> int:
        """The quoted TCP sequence number (bytes 4..8), for RFC 5927 checks."""
        return int.from_bytes(self.transport[4:8], "big")


@dataclass(slots=True)
class IcmpError:
    """A decoded error message (unreachable, time exceeded, ...)."""

    type: int
    code: int
    quoted: QuotedPacket
    #: next-hop MTU for "fragmentation needed" (RFC 1191), else 0
    mtu: int = 0
    #: octet pointer for parameter problem, else 0
    pointer: int = 0

    @classmethod
    def from_message(cls, msg: IcmpMessage) -> IcmpError:
        """Parse the quoted packet.  Raises :class:`ParseError`
        (``icmp-not-error``, ``icmp-bad-quote``)."""
        if msg.type not in ERROR_TYPES:
            raise ParseError("icmp-not-error", f"type {msg.type}")
        body = msg.body
        try:
            ip = Ipv4Packet.decode(body, verify_checksum=False, strict_length=False)
        except ParseError as exc:
            raise ParseError("icmp-bad-quote", exc.reason) from None
        transport = bytes(ip.payload[:8])
        if len(transport) < 8:
            raise ParseError("icmp-bad-quote", f"{len(transport)} transport bytes quoted, need 8")
        ip.payload = transport
        mtu = int.from_bytes(msg.rest[2:4], "big") if (
            msg.type == TYPE_DEST_UNREACH and msg.code == CODE_FRAG_NEEDED) else 0
        pointer = msg.rest[0] if msg.type == TYPE_PARAMETER_PROBLEM else 0
        return cls(msg.type, msg.code, QuotedPacket(ip, transport), mtu, pointer)


def build_error(type: int, code: int, original: Buffer, *, mtu: int = 0, pointer: int = 0,
                quote_payload: int = 8) -> bytes:
    """An ICMP error message quoting ``original`` (an IPv4 packet): its whole
    IP header plus the first ``quote_payload`` bytes of its payload (RFC 792;
    RFC 1812 s.4.3.2.3 allows more).  Returns the ICMP bytes (the IP payload).
    """
    if len(original) < IP_HEADER_LEN:
        raise ValueError("the quoted packet must hold at least an IPv4 header")
    hlen = (original[0] & 0x0F) * 4
    hlen = max(IP_HEADER_LEN, min(hlen, len(original)))
    quote = bytes(original[: hlen + quote_payload])
    if type == TYPE_PARAMETER_PROBLEM:
        rest = bytes([pointer & 0xFF, 0, 0, 0])
    elif type == TYPE_DEST_UNREACH and code == CODE_FRAG_NEEDED:
        rest = struct.pack("!HH", 0, mtu & 0xFFFF)
    else:
        rest = b"\x00\x00\x00\x00"
    return IcmpMessage(type, code, rest, quote).encode()
