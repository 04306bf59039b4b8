"""UDP headers (RFC 768): encode with the pseudo-header checksum, decode.

The checksum covers the IPv4 pseudo-header, the 8-byte header and the data
(RFC 768 "Fields", RFC 1071).  A computed checksum of zero is sent as 0xFFFF;
a received checksum of zero means the sender computed none (RFC 768).
"""

from __future__ import annotations

import struct
from typing import Final, NamedTuple

from ustack.wire.checksum import Buffer, fold, partial_sum, pseudo_header_sum, verify
from ustack.wire.errors import ParseError

PROTO_UDP: Final = 17
HEADER_LEN: Final = 8
HEADER: Final = struct.Struct("!HHHH")
#: largest payload of one IPv4 datagram: 65535 - 20 (IP) - 8 (UDP)
MAX_PAYLOAD: Final = 65535 - 20 - HEADER_LEN


class UdpDatagram(NamedTuple):
    src_port: int
    dst_port: int
    payload: bytes
    checksum: int


def encode(src_ip: bytes, dst_ip: bytes, src_port: int, dst_port: int, payload: Buffer) -> bytes:
    """Header + payload with the checksum filled in (never 0, RFC 768)."""
    length = HEADER_LEN + len(payload)
    if length > 65535 - 20:
        raise ValueError(f"UDP datagram too long ({len(payload)} bytes of data)")
    header = HEADER.pack(src_port, dst_port, length, 0)
    total = pseudo_header_sum(src_ip, dst_ip, PROTO_UDP, length) + partial_sum(header) \
        + partial_sum(payload)
    csum = fold(total) or 0xFFFF  # a computed zero is sent as all ones (RFC 768)
    return HEADER.pack(src_port, dst_port, length, csum) + bytes(payload)


def checksum_ok(src_ip: bytes, dst_ip: bytes, segment: Buffer) -> bool:
    """True when the checksum of ``segment`` (exactly the UDP length field's
    bytes) is valid or absent (zero, RFC 768)."""
    if len(segment) < HEADER_LEN:
        return False
    if segment[6] == 0 and segment[7] == 0:
        return True
    return verify(pseudo_header_sum(src_ip, dst_ip, PROTO_UDP, len(segment))
                  + partial_sum(segment))


def decode(segment: Buffer) -> UdpDatagram:
    """Parse one datagram; the length field bounds the payload (Ethernet
    padding and trailing bytes ignored).  ParseError on a bad length."""
    if len(segment) < HEADER_LEN:
        raise ParseError("udp-truncated", f"{len(segment)} bytes")
    sport, dport, length, csum = HEADER.unpack_from(segment, 0)
    if length < HEADER_LEN or length > len(segment):
        raise ParseError("udp-bad-length", f"length {length}, have {len(segment)}")
    return UdpDatagram(sport, dport, bytes(segment[HEADER_LEN:length]), csum)


__all__ = ["PROTO_UDP", "HEADER_LEN", "MAX_PAYLOAD", "UdpDatagram", "encode", "decode",
           "checksum_ok"]
