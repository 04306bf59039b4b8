"""IPv4 header codec (RFC 791) with the header checksum (RFC 1071).

Options are carried as raw bytes and otherwise ignored (skipped safely);
fragments decode normally and report :attr:`Ipv4Packet.is_fragment` so the
net layer can drop and count them (no reassembly yet).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Final

from ustack.wire.checksum import fold, partial_sum
from ustack.wire.errors import ParseError

HEADER: Final = struct.Struct("!BBHHHBBH4s4s")
HEADER_LEN: Final = 20
MAX_PACKET_LEN: Final = 0xFFFF

PROTO_ICMP: Final = 1
PROTO_TCP: Final = 6
PROTO_UDP: Final = 17

FLAG_DF: Final = 0x4000
FLAG_MF: Final = 0x2000
OFFSET_MASK: Final = 0x1FFF

DEFAULT_TTL: Final = 64

Buffer = bytes | bytearray | memoryview


@dataclass(slots=True)
class Ipv4Packet:
    """A decoded IPv4 packet: header fields and the payload (a view, no copy)."""

    src: bytes
    dst: bytes
    protocol: int
    payload: Buffer = b""
    ttl: int = DEFAULT_TTL
    tos: int = 0
    ident: int = 0
    flags_fragment: int = FLAG_DF  # the 16-bit flags + fragment offset word
    options: bytes = b""
    total_length: int = 0  # as decoded; computed on encode
    checksum: int | None = None  # as decoded; computed on encode

    @property
    def header_len(self) -> int:
        return HEADER_LEN + len(self.options)

    @property
    def is_fragment(self) -> bool:
        """More-fragments set or a non-zero offset (RFC 791 s.3.2)."""
        return bool(self.flags_fragment & (FLAG_MF | OFFSET_MASK))

    @property
    def dont_fragment(self) -> bool:
        return bool(self.flags_fragment & FLAG_DF)

    def encode(self) -> bytes:
        """Header plus payload, checksum computed; options padded to 4 bytes."""
        opts = self.options
        if len(opts) % 4:
            opts = opts + b"\x00" * (4 - len(opts) % 4)
        if len(opts) > 40:
            raise ValueError(f"IPv4 options too long ({len(opts)} bytes, at most 40)")
        hlen = HEADER_LEN + len(opts)
        total = hlen + len(self.payload)
        if total > MAX_PACKET_LEN:
            raise ValueError(f"IPv4 packet too long ({total} bytes)")
        hdr = HEADER.pack(0x40 | (hlen // 4), self.tos, total, self.ident & 0xFFFF,
                          self.flags_fragment, self.ttl, self.protocol, 0, self.src,
                          self.dst) + opts
        csum = fold(partial_sum(hdr))
        return hdr[:10] + csum.to_bytes(2, "big") + hdr[12:] + bytes(self.payload)

    @classmethod
    def decode(cls, data: Buffer, *, verify_checksum: bool = True,
               strict_length: bool = True) -> Ipv4Packet:
        """Decode one packet.  Raises :class:`ParseError` with reasons
        ``ip-truncated``, ``ip-bad-version``, ``ip-bad-ihl``, ``ip-bad-length``,
        ``ip-bad-checksum``.

        Bytes after ``total_length`` (Ethernet padding) are not part of the
        payload.  ``strict_length=False`` accepts a buffer shorter than
        ``total_length`` (the quoted header inside an ICMP error).
        """
        n = len(data)
        if n < HEADER_LEN:
            raise ParseError("ip-truncated", f"{n} bytes")
        vihl, tos, total, ident, frag, ttl, proto, csum, src, dst = HEADER.unpack_from(data)
        if vihl >> 4 != 4:
            raise ParseError("ip-bad-version", f"version {vihl >> 4}")
        hlen = (vihl & 0x0F) * 4
        if hlen < HEADER_LEN:
            raise ParseError("ip-bad-ihl", f"IHL {hlen // 4}")
        if hlen > n:
            raise ParseError("ip-truncated", f"header {hlen} bytes, have {n}")
        if total < hlen:
            raise ParseError("ip-bad-length", f"total length {total} < header {hlen}")
        if total > n:
            if strict_length:
                raise ParseError("ip-bad-length", f"total length {total} > {n} bytes received")
            total_end = n
        else:
            total_end = total
        if verify_checksum and not header_checksum_ok(data[:hlen]):
            raise ParseError("ip-bad-checksum", f"checksum {csum:#06x}")
        view = data if isinstance(data, memoryview) else memoryview(data)
        options = bytes(view[HEADER_LEN:hlen]) if hlen > HEADER_LEN else b""
        return cls(src, dst, proto, view[hlen:total_end], ttl, tos, ident, frag, options,
                   total, csum)


def header_checksum_ok(header: Buffer) -> bool:
    """True when the header (with its checksum field) sums to ones' complement zero."""
    value = int.from_bytes(header, "big")
    return value == 0 or value % 0xFFFF == 0


def build_header(src: bytes, dst: bytes, protocol: int, payload_len: int, ident: int, *,
                 ttl: int = DEFAULT_TTL, tos: int = 0, dont_fragment: bool = True) -> bytes:
    """A 20-byte header with checksum: the send fast path (no objects)."""
    total = HEADER_LEN + payload_len
    if total > MAX_PACKET_LEN:
        raise ValueError(f"IPv4 packet too long ({total} bytes)")
    hdr = HEADER.pack(0x45, tos, total, ident & 0xFFFF, FLAG_DF if dont_fragment else 0, ttl,
                      protocol, 0, src, dst)
    csum = fold(int.from_bytes(hdr, "big"))
    return hdr[:10] + csum.to_bytes(2, "big") + hdr[12:]


def parse_address(text: str) -> bytes:
    """Dotted quad to 4 bytes; ValueError with the input named otherwise."""
    try:
        return ipaddress.IPv4Address(text).packed
    except ValueError:
        raise ValueError(f"invalid IPv4 address {text!r}") from None


def format_address(addr: bytes) -> str:
    return ".".join(str(b) for b in addr)
