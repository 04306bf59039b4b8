"""DNS messages, just enough for a stub resolver (RFC 1035 s.4): build an
A query, parse the answer's A records (following CNAMEs) and its RCODE.

Names are compared case-insensitively (RFC 4343); compression pointers
(RFC 1035 s.4.1.4) are followed with a bound so a loop cannot hang the
parser.  Malformed messages raise :class:`~ustack.wire.errors.ParseError`.
"""

from __future__ import annotations

import struct
from typing import Final, NamedTuple

from ustack.wire.errors import ParseError

TYPE_A: Final = 1
TYPE_CNAME: Final = 5
CLASS_IN: Final = 1
RCODE_OK: Final = 0
RCODE_SERVFAIL: Final = 2
RCODE_NXDOMAIN: Final = 3
FLAG_QR: Final = 0x8000
FLAG_TC: Final = 0x0200
FLAG_RD: Final = 0x0100
_HEADER: Final = struct.Struct("!HHHHHH")
_RR: Final = struct.Struct("!HHIH")


class Answer(NamedTuple):
    ident: int
    rcode: int
    truncated: bool
    question: str
    #: IPv4 addresses (4 bytes each) of the question's name, CNAMEs followed
    addresses: list[bytes]
    #: smallest TTL among the records used (seconds)
    ttl: int


def encode_name(name: str) -> bytes:
    """Labels of ``name`` (IDNA-encoded; each 1..63 bytes, total <= 255)."""
    name = name.rstrip(".")
    if not name:
        return b"\0"
    out = bytearray()
    for label in name.split("."):
        raw = label.encode("idna") if not label.isascii() else label.encode()
        if not 0 < len(raw) < 64:
            raise ValueError(f"invalid DNS name {name!r}")
        out.append(len(raw))
        out += raw
    out.append(0)
    if len(out) > 255:
        raise ValueError(f"DNS name too long: {name!r}")
    return bytes(out)


def build_query(ident: int, name: str, qtype: int = TYPE_A) -> bytes:
    """A recursive (RD) query for ``name`` (RFC 1035 s.4.1.1)."""
    return _HEADER.pack(ident & 0xFFFF, FLAG_RD, 1, 0, 0, 0) + encode_name(name) \
        + struct.pack("!HH", qtype, CLASS_IN)


def _read_name(msg: bytes, off: int) -> tuple[str, int]:
    labels: list[str] = []
    end = -1
    jumps = 0
    while True:
        if off >= len(msg):
            raise ParseError("dns-truncated", "name runs past the message")
        n = msg[off]
        if n & 0xC0 == 0xC0:
            if off + 1 >= len(msg):
                raise ParseError("dns-truncated", "pointer")
            if end < 0:
                end = off + 2
            jumps += 1
            if jumps > 64:
                raise ParseError("dns-bad-name", "compression loop")
            off = ((n & 0x3F) << 8) | msg[off + 1]
            continue
        if n & 0xC0:
            raise ParseError("dns-bad-name", f"label type {n:#x}")
        off += 1
        if n == 0:
            break
        if off + n > len(msg):
            raise ParseError("dns-truncated", "label")
        labels.append(msg[off:off + n].decode("ascii", "replace"))
        off += n
    return ".".join(labels), (end if end >= 0 else off)


def parse_response(msg: bytes) -> Answer:
    """The A records for the question of a response (CNAME chains followed)."""
    if len(msg) < _HEADER.size:
        raise ParseError("dns-truncated", f"{len(msg)} bytes")
    ident, flags, qd, an, _ns, _ar = _HEADER.unpack_from(msg, 0)
    if not flags & FLAG_QR:
        raise ParseError("dns-not-response")
    off = _HEADER.size
    question = ""
    for i in range(qd):
        qname, off = _read_name(msg, off)
        off += 4
        if i == 0:
            question = qname
    records: list[tuple[str, int, int, bytes | str]] = []
    for _ in range(an):
        rname, off = _read_name(msg, off)
        if off + _RR.size > len(msg):
            raise ParseError("dns-truncated", "record header")
        rtype, rclass, ttl, rdlen = _RR.unpack_from(msg, off)
        off += _RR.size
        if off + rdlen > len(msg):
            raise ParseError("dns-truncated", "record data")
        if rclass == CLASS_IN and rtype == TYPE_A and rdlen == 4:
            records.append((rname.lower(), rtype, ttl, msg[off:off + 4]))
        elif rclass == CLASS_IN and rtype == TYPE_CNAME:
            records.append((rname.lower(), rtype, ttl, _read_name(msg, off)[0].lower()))
        off += rdlen
    target = question.lower()
    addresses: list[bytes] = []
    ttls: list[int] = []
    for _ in range(16):  # CNAME chain bound
        nxt = None
        for rname, rtype, ttl, data in records:
            if rname != target:
                continue
            if rtype == TYPE_A and isinstance(data, bytes):
                addresses.append(data)
                ttls.append(ttl)
            elif rtype == TYPE_CNAME and isinstance(data, str):
                nxt = data
                ttls.append(ttl)
        if addresses or nxt is None:
            break
        target = nxt
    return Answer(ident, flags & 0xF, bool(flags & FLAG_TC), question, addresses,
                  min(ttls) if ttls else 0)


def build_response(query: bytes, addresses: list[bytes], *, rcode: int = RCODE_OK,
                   ttl: int = 60, truncated: bool = False) -> bytes:
    """A response to ``query`` with A records (for tests and tiny servers);
    ``truncated`` sets TC (RFC 1035 s.4.1.1: the rest did not fit)."""
    ident, _flags, _qd, _an, _ns, _ar = _HEADER.unpack_from(query, 0)
    _name, end = _read_name(query, _HEADER.size)
    question = query[_HEADER.size:end + 4]
    flags = FLAG_QR | FLAG_RD | 0x0080 | (rcode & 0xF) | (FLAG_TC if truncated else 0)
    out = _HEADER.pack(ident, flags, 1, len(addresses), 0, 0) + question
    for addr in addresses:
        out += b"\xc0\x0c" + _RR.pack(TYPE_A, CLASS_IN, ttl, 4) + addr
    return out


__all__ = ["Answer", "build_query", "parse_response", "build_response", "encode_name",
           "TYPE_A", "RCODE_OK", "RCODE_NXDOMAIN", "RCODE_SERVFAIL"]
