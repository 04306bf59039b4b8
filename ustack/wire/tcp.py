"""TCP header and options codec (RFC 9293 section 3.1, RFC 7323, RFC 2018).

:class:`TcpSegment` is the one representation of a segment everywhere in
ustack: the net layer decodes into it, the TCP core consumes and produces it,
the probe builds it.  Decoding never verifies the checksum (the IPv4 layer
does, with the pseudo-header); encoding computes it unless told not to.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Final

from ustack.wire.checksum import _M736, _M1456, _M2896, _M5792
from ustack.wire.checksum import payload_sum as _payload_sum
from ustack.wire.checksum import sum16 as _sum16
from ustack.wire.errors import ParseError

PROTO_TCP: Final = 6

FIN: Final = 0x01
SYN: Final = 0x02
RST: Final = 0x04
PSH: Final = 0x08
ACK: Final = 0x10
URG: Final = 0x20
ECE: Final = 0x40
CWR: Final = 0x80

OPT_EOL: Final = 0
OPT_NOP: Final = 1
OPT_MSS: Final = 2
OPT_WSCALE: Final = 3
OPT_SACK_PERMITTED: Final = 4
OPT_SACK: Final = 5
OPT_TIMESTAMP: Final = 8

HEADER: Final = struct.Struct("!HHIIBBHHH")
HEADER_LEN: Final = 20

_FLAG_LETTERS = ((SYN, "S"), (FIN, "F"), (RST, "R"), (PSH, "P"), (URG, "U"), (ECE, "E"), (CWR, "W"))


def flags_to_str(flags: int) -> str:
    """packetdrill/tcpdump style: ``S``, ``S.``, ``.``, ``P.``, ``F.``, ``R``, ``R.``."""
    s = "".join(letter for bit, letter in _FLAG_LETTERS if flags & bit)
    if flags & ACK:
        s += "."
    return s or "none"


def str_to_flags(text: str) -> int:
    """Inverse of :func:`flags_to_str` (``"."`` alone is a bare ACK)."""
    flags = 0
    table = {letter: bit for bit, letter in _FLAG_LETTERS}
    for ch in text:
        if ch == ".":
            flags |= ACK
        elif ch in table:
            flags |= table[ch]
        else:
            raise ValueError(f"unknown TCP flag letter {ch!r} in {text!r}")
    return flags


@dataclass(slots=True, init=False)
class TcpOptions:
    """Decoded options.  ``None``/empty means the option is absent.

    ``raw`` overrides encoding entirely when set (the probe uses it to send
    arbitrary option bytes); decoding fills ``order`` with the option kinds as
    they appeared, so a printer can show them in wire order.
    """

    mss: int | None = None
    wscale: int | None = None
    sack_permitted: bool = False
    sack_blocks: list[tuple[int, int]] = field(default_factory=list)
    timestamp: tuple[int, int] | None = None  # (TSval, TSecr)
    raw: bytes | None = None
    order: tuple[int, ...] = ()

    def __init__(self, mss: int | None = None, wscale: int | None = None,
                 sack_permitted: bool = False, sack_blocks: list[tuple[int, int]] | None = None,
                 timestamp: tuple[int, int] | None = None, raw: bytes | None = None,
                 order: tuple[int, ...] = ()) -> None:
        # written out (init=False) instead of the dataclass-generated one:
        # compiled by mypyc, that one runs interpreted and cost ~3 us per
        # object, this one ~0.6 us (issue 14, lat15); the same fields,
        # defaults and order (a new list per object for sack_blocks)
        self.mss = mss
        self.wscale = wscale
        self.sack_permitted = sack_permitted
        self.sack_blocks = [] if sack_blocks is None else sack_blocks
        self.timestamp = timestamp
        self.raw = raw
        self.order = order

    def is_empty(self) -> bool:
        return (
            self.mss is None
            and self.wscale is None
            and not self.sack_permitted
            and not self.sack_blocks
            and self.timestamp is None
            and not self.raw
        )

    def encode(self) -> bytes:
        """Linux's layout: ``mss, sackOK, TS, nop, wscale`` on SYNs,
        ``nop, nop, TS`` then ``nop, nop, sack`` otherwise; padded to 4 bytes."""
        if self.raw is not None:
            out = self.raw
        else:
            parts: list[bytes] = []
            if self.mss is not None:
                parts.append(struct.pack("!BBH", OPT_MSS, 4, self.mss))
            if self.sack_permitted and self.timestamp is not None:
                parts.append(struct.pack("!BBBBII", OPT_SACK_PERMITTED, 2, OPT_TIMESTAMP, 10,
                                         *self.timestamp))
            elif self.sack_permitted:
                parts.append(struct.pack("!BBBB", OPT_NOP, OPT_NOP, OPT_SACK_PERMITTED, 2))
            elif self.timestamp is not None:
                parts.append(struct.pack("!BBBBII", OPT_NOP, OPT_NOP, OPT_TIMESTAMP, 10,
                                         *self.timestamp))
            if self.wscale is not None:
                parts.append(struct.pack("!BBBB", OPT_NOP, OPT_WSCALE, 3, self.wscale))
            if self.sack_blocks:
                blocks = self.sack_blocks[:4 if self.timestamp is None else 3]
                parts.append(struct.pack("!BBBB", OPT_NOP, OPT_NOP, OPT_SACK, 2 + 8 * len(blocks)))
                for left, right in blocks:
                    parts.append(struct.pack("!II", left, right))
            out = b"".join(parts)
        pad = (-len(out)) % 4
        return out + b"\x00" * pad if pad else out


def decode_options(data: bytes | memoryview) -> TcpOptions:
    """Decode the options area.  Malformed options end parsing, as Linux does
    (``tcp_parse_options``): what came before them is kept, the segment is not
    dropped."""
    opts = TcpOptions()
    order: list[int] = []
    i = 0
    n = len(data)
    while i < n:
        kind = data[i]
        if kind == OPT_EOL:
            break
        if kind == OPT_NOP:
            i += 1
            continue
        if i + 1 >= n:
            break
        length = data[i + 1]
        if length < 2 or i + length > n:
            break
        body = data[i + 2 : i + length]
        if kind == OPT_MSS and length == 4:
            opts.mss = (body[0] << 8) | body[1]
        elif kind == OPT_WSCALE and length == 3:
            opts.wscale = body[0]
        elif kind == OPT_SACK_PERMITTED and length == 2:
            opts.sack_permitted = True
        elif kind == OPT_TIMESTAMP and length == 10:
            opts.timestamp = (int.from_bytes(body[0:4], "big"), int.from_bytes(body[4:8], "big"))
        elif kind == OPT_SACK and length >= 10 and (length - 2) % 8 == 0:
            opts.sack_blocks = [
                (int.from_bytes(body[j : j + 4], "big"), int.from_bytes(body[j + 4 : j + 8], "big"))
                for j in range(0, length - 2, 8)
            ]
        order.append(kind)
        i += length
    opts.order = tuple(order)
    return opts


_EMPTY_OPTIONS: Final = TcpOptions()

#: the options area of almost every segment on a timestamp connection
_TS_PREFIX: Final = bytes((OPT_NOP, OPT_NOP, OPT_TIMESTAMP, 10))
_TS_HEADER_LEN: Final = HEADER_LEN + 12
#: a TCP header followed by exactly that options area (the decode fast path)
_TS_SEGMENT: Final = struct.Struct("!HHIIBBHHH4sII")
_TS_ORDER: Final[tuple[int, ...]] = (OPT_TIMESTAMP,)
_TS_OPTION: Final = struct.Struct("!BBBBII")
#: the bound methods of the two, once (compiled code then calls them without
#: a method lookup per segment)
_TS_PACK: Final = _TS_OPTION.pack
_TS_UNPACK_FROM: Final = _TS_SEGMENT.unpack_from
#: _TS_PREFIX as a 32-bit word
_TS_PREFIX_WORD: Final = 0x0101080A
#: the options of Linux's SACK ACKs (tcp_options_write): ``nop, nop, TS`` then
#: ``nop, nop, SACK`` with 1-3 blocks (4 do not fit beside the timestamps);
#: the header is 9 + 2 * blocks words long, the SACK prefix word follows the
#: timestamps at byte 32 and the blocks at byte 36
_TS_SACK_ORDER: Final[tuple[int, ...]] = (OPT_TIMESTAMP, OPT_SACK)
_SACK_PREFIX: Final = struct.Struct("!I")
_SACK_PREFIX_WORD: Final = 0x01010500  # nop, nop, SACK, (length)
_SACK_BLOCKS: Final = (struct.Struct("!II"), struct.Struct("!IIII"), struct.Struct("!IIIIII"))


#: an IPv4 header without options followed by a TCP header (the fused fast path)
IPV4_TCP_HEADER: Final = struct.Struct("!BBHHHBBH4s4sHHIIBBHHH")
_IPV4_DF: Final = 0x4000
_IPV4_DEFAULT_TTL: Final = 64


def _load_frame_accelerator() -> Callable[..., bytes | None] | None:
    """``ustack.wire._csum.tcp4_frame`` (one frame of
    :meth:`SegmentEncoder.encode_ipv4_many` in C, the same bytes) unless the C
    helper is missing, older than this function, or USTACK_NO_ACCEL is set."""
    if os.environ.get("USTACK_NO_ACCEL", "") not in ("", "0"):
        return None
    try:
        from ustack.wire import _csum
    except ImportError:
        return None
    fn: Callable[..., bytes | None] | None = getattr(_csum, "tcp4_frame", None)
    return fn


#: the C frame builder, or None (then the loop's struct.pack path); not
#: Final, so the differential test (tests/unit/test_wire_accel.py) can turn
#: it off in compiled code too
_tcp4_frame: Callable[..., bytes | None] | None = _load_frame_accelerator()


class SegmentEncoder:
    """Encodes segments from ``src_ip`` to ``dst_ip``: the send fast path.

    The TCP checksum (RFC 9293 section 3.1) is the ones' complement of the
    ones' complement sum of the pseudo-header, the header and the payload.
    Ones' complement addition is addition modulo 0xFFFF (RFC 1071), and
    2**16 is 1 modulo 0xFFFF, so a 32-bit header word can be added whole
    instead of as two 16-bit halves and every partial sum can be reduced
    early.  The encoder therefore keeps, once per address pair, the constant
    part of the pseudo-header sum (both addresses and the protocol) and, per
    distinct :class:`TcpOptions` object, its encoded bytes and their sum (a
    connection hands the same options object to a whole burst of segments).
    Per segment only the variable words (seq, ack, offset/flags/window,
    urgent, the length) and the payload sum are added, and the header is
    packed once, with its checksum, by one ``struct.pack``.

    :meth:`encode_ipv4` goes one step further for the IP layer's fast path:
    the IPv4 header (RFC 791, no options, DF set, TTL ``ttl``) and the TCP
    header in one ``struct.pack``, the IPv4 header checksum from the constant
    header words summed once plus the total length and identification.

    The bytes are identical to the straightforward encoding; one encoder
    must not outlive a mutation of an options object it has seen (encoders
    are meant to live for one batch of segments).
    """

    __slots__ = ("src_ip", "dst_ip", "ttl", "_base", "_ip_base", "_opts", "_opt_bytes",
                 "_opt_sum")

    def __init__(self, src_ip: bytes, dst_ip: bytes, *, ttl: int = _IPV4_DEFAULT_TTL) -> None:
        self.src_ip = src_ip
        self.dst_ip = dst_ip
        self.ttl = ttl
        addrs = int.from_bytes(src_ip, "big") + int.from_bytes(dst_ip, "big")
        self._base = addrs + PROTO_TCP
        # version/IHL/TOS, flags/fragment, TTL/protocol, the addresses, and
        # the 20 bytes of IPv4 header counted in the total length
        self._ip_base = 0x4500 + _IPV4_DF + (ttl << 8) + PROTO_TCP + addrs + 20
        self._opts: TcpOptions | None = None
        self._opt_bytes = b""
        self._opt_sum = 0

    def reset(self) -> None:
        """Forget the options seen so far (a cached encoder starts a new
        batch: an options object may have changed since)."""
        self._opts = None

    def _load_options(self, opts: TcpOptions) -> None:
        ts = opts.timestamp
        if (ts is not None and opts.raw is None and opts.mss is None and opts.wscale is None
                and not opts.sack_permitted and not opts.sack_blocks):
            # timestamps only (nearly every segment): encode()'s nop, nop, TS
            tsval, tsecr = ts
            self._opt_bytes = _TS_PACK(OPT_NOP, OPT_NOP, OPT_TIMESTAMP, 10, tsval, tsecr)
            self._opts = opts
            # int.from_bytes(those 12 bytes) % 0xFFFF without the bytes: the
            # words sit at multiples of 2**32, which is 1 modulo 0xFFFF
            self._opt_sum = (_TS_PREFIX_WORD + tsval + tsecr) % 0xFFFF
            return
        opt = opts.encode() if not opts.is_empty() else b""
        if len(opt) > 40:
            raise ValueError(f"TCP options too long ({len(opt)} bytes, at most 40)")
        self._opts = opts
        self._opt_bytes = opt
        self._opt_sum = int.from_bytes(opt, "big") % 0xFFFF

    def options_bytes(self, seg: TcpSegment) -> bytes:
        """The encoded options block of ``seg`` (what :meth:`encode` puts
        after its header; cached by the options object's identity)."""
        if seg.options is not self._opts:
            self._load_options(seg.options)
        return self._opt_bytes

    def header_len(self, seg: TcpSegment) -> int:
        """The TCP header length ``seg`` will be encoded with (20 + options)."""
        if seg.options is not self._opts:
            self._load_options(seg.options)
        return HEADER_LEN + len(self._opt_bytes)

    def encode(self, seg: TcpSegment, *, bad_checksum: bool = False) -> bytes:
        """The wire bytes of ``seg``, checksum filled in (``bad_checksum``
        writes a deliberately wrong one, for the probe)."""
        if seg.options is not self._opts:
            self._load_options(seg.options)
        opt = self._opt_bytes
        payload = seg.payload
        n = len(payload)
        psum = _payload_sum(payload) if n else 0
        hlen = HEADER_LEN + len(opt)
        seq = seg.seq & 0xFFFFFFFF
        ack = seg.ack & 0xFFFFFFFF
        off_flags = (hlen << 10) | (seg.flags & 0xFF)  # (hlen // 4) << 12 | flags
        window = seg.window & 0xFFFF
        urgent = seg.urgent & 0xFFFF
        total = (self._base + hlen + n + ((seg.src_port << 16) | seg.dst_port) + seq + ack
                 + ((off_flags << 16) | window) + urgent + self._opt_sum + psum)
        # fold(): the total is never 0 (it contains the protocol number)
        s = total % 0xFFFF
        csum = 0xFFFF - s if s else 0
        if bad_checksum:
            csum ^= 0x5A5A
        header = HEADER.pack(seg.src_port, seg.dst_port, seq, ack, off_flags >> 8,
                             off_flags & 0xFF, window, csum, urgent)
        if opt:
            return b"".join((header, opt, payload))
        return header + payload

    def encode_ipv4(self, seg: TcpSegment, ident: int, lead: bytes = b"") -> bytes:
        """``lead`` (e.g. the Ethernet header), then the IPv4 packet carrying
        ``seg``: the same bytes as ``lead + build_header(...) + encode(seg)``
        with identification ``ident`` (0..0xFFFF).  Raises ValueError when
        the packet would exceed 65535 bytes.  One segment of
        :meth:`encode_ipv4_many`, which holds the only copy of the fused code."""
        return self.encode_ipv4_many((seg,), iter((ident,)), lead)[0]

    def encode_ipv4_many(self, segs: Iterable[TcpSegment], idents: Iterator[int],
                         lead: bytes = b"") -> list[bytes]:
        """:meth:`encode_ipv4` for a burst, identification numbers drawn from
        ``idents`` (taken modulo 2**16): the same bytes, with the per-segment
        work in one loop over local variables (the exact-wire send path
        spends most of its Python time here)."""
        out: list[bytes] = []
        append = out.append
        join = b"".join
        pack = IPV4_TCP_HEADER.pack
        base, ip_base, ttl = self._base, self._ip_base, self.ttl
        src_ip, dst_ip = self.src_ip, self.dst_ip
        cur = self._opts
        opt, opt_sum = self._opt_bytes, self._opt_sum
        hlen = HEADER_LEN + len(opt)
        sum16 = _sum16
        frame_c = _tcp4_frame
        for seg in segs:
            opts = seg.options
            if opts is not cur:
                self._load_options(opts)
                cur = opts
                opt, opt_sum = self._opt_bytes, self._opt_sum
                hlen = HEADER_LEN + len(opt)
            payload = seg.payload
            n = len(payload)
            drawn = -1  # the identification already drawn for this segment, if any
            if frame_c is not None:
                # the C helper (_csum.tcp4_frame): the arithmetic and the
                # bytes below in one call; None for an argument the struct
                # path refuses, which then raises as it always did
                if hlen + n > 0xFFFF - 20:
                    raise ValueError(f"IPv4 packet too long ({hlen + n + 20} bytes)")
                drawn = next(idents) & 0xFFFF
                frame = frame_c(lead, opt, payload, src_ip, dst_ip, base, ip_base, opt_sum,
                                ttl, drawn, seg.src_port, seg.dst_port, seg.seq & 0xFFFFFFFF,
                                seg.ack & 0xFFFFFFFF, (hlen << 10) | (seg.flags & 0xFF),
                                seg.window & 0xFFFF, seg.urgent & 0xFFFF)
                if frame is not None:
                    append(frame)
                    continue
            if not n:
                psum = 0
            elif sum16 is not None:  # the C accelerator (checksum.payload_sum)
                psum = sum16(payload)
            else:
                # _py_payload_sum(), inlined
                psum = int.from_bytes(payload, "little")
                psum = (psum >> 5792) + (psum & _M5792)
                psum = (psum >> 2896) + (psum & _M2896)
                psum = (psum >> 1456) + (psum & _M1456)
                psum = ((psum >> 736) + (psum & _M736)) << 8
            tcp_len = hlen + n
            if tcp_len > 0xFFFF - 20:
                raise ValueError(f"IPv4 packet too long ({tcp_len + 20} bytes)")
            sport = seg.src_port
            dport = seg.dst_port
            seq = seg.seq & 0xFFFFFFFF
            ack = seg.ack & 0xFFFFFFFF
            off_flags = (hlen << 10) | (seg.flags & 0xFF)
            window = seg.window & 0xFFFF
            urgent = seg.urgent & 0xFFFF
            s = (base + tcp_len + ((sport << 16) | dport) + seq + ack
                 + ((off_flags << 16) | window) + urgent + opt_sum + psum) % 0xFFFF
            ident = next(idents) & 0xFFFF if drawn < 0 else drawn
            ip_s = (ip_base + tcp_len + ident) % 0xFFFF
            append(join((lead, pack(
                0x45, 0, 20 + tcp_len, ident, _IPV4_DF, ttl, PROTO_TCP,
                0xFFFF - ip_s if ip_s else 0, src_ip, dst_ip,
                sport, dport, seq, ack, off_flags >> 8, off_flags & 0xFF, window,
                0xFFFF - s if s else 0, urgent), opt, payload)))
        return out


@dataclass(slots=True, init=False)
class TcpSegment:
    """One TCP segment, header fields as integers, payload as bytes."""

    src_port: int
    dst_port: int
    seq: int
    ack: int = 0
    flags: int = 0
    window: int = 0
    urgent: int = 0
    options: TcpOptions = field(default_factory=TcpOptions)
    payload: bytes | memoryview = b""
    checksum: int | None = None  # as decoded; None means "compute on encode"

    def __init__(self, src_port: int, dst_port: int, seq: int, ack: int = 0, flags: int = 0,
                 window: int = 0, urgent: int = 0, options: TcpOptions | None = None,
                 payload: bytes | memoryview = b"", checksum: int | None = None) -> None:
        # written out (init=False), see TcpOptions.__init__; the default
        # options are a new TcpOptions per segment, as the field's factory
        self.src_port = src_port
        self.dst_port = dst_port
        self.seq = seq
        self.ack = ack
        self.flags = flags
        self.window = window
        self.urgent = urgent
        self.options = TcpOptions() if options is None else options
        self.payload = payload
        self.checksum = checksum

    @property
    def seg_len(self) -> int:
        """SEG.LEN: payload length plus one for SYN and one for FIN."""
        return len(self.payload) + (1 if self.flags & SYN else 0) + (1 if self.flags & FIN else 0)

    def encode(self, src_ip: bytes, dst_ip: bytes, *, bad_checksum: bool = False) -> bytes:
        """Wire bytes with the checksum over the IPv4 pseudo-header.

        ``bad_checksum`` writes a deliberately wrong checksum (for the probe).
        """
        return SegmentEncoder(src_ip, dst_ip).encode(self, bad_checksum=bad_checksum)

    @classmethod
    def decode(cls, data: bytes | memoryview) -> TcpSegment:
        """Decode a TCP segment (the IPv4 payload).  Raises :class:`ParseError`."""
        n = len(data)
        if n >= _TS_HEADER_LEN:
            # fast path: the options area is exactly Linux's ``nop, nop, TS``
            # (every segment of a timestamp connection but SYNs and SACKs),
            # decoded as decode_options() would, without its loop; header,
            # options prefix and timestamps come out of one unpack
            sport, dport, seq, ack, off, flags, win, csum, urg, prefix, tsval, tsecr = \
                _TS_UNPACK_FROM(data)
            if off >> 4 == _TS_HEADER_LEN >> 2 and prefix == _TS_PREFIX:
                # TcpOptions(timestamp=(tsval, tsecr), order=_TS_ORDER), spelled
                # positionally: keyword arguments and the sack_blocks default
                # factory cost half the construction
                options = TcpOptions(None, None, False, [], (tsval, tsecr), None, _TS_ORDER)
                # (TcpSegment, not cls: a direct call of the compiled class)
                return TcpSegment(sport, dport, seq, ack, flags, win, urg, options,
                                  bytes(data[_TS_HEADER_LEN:]) if n > _TS_HEADER_LEN else b"",
                                  csum)
            words = off >> 4
            if (prefix == _TS_PREFIX and words in (11, 13, 15) and n >= words * 4
                    and _SACK_PREFIX.unpack_from(data, _TS_HEADER_LEN)[0]
                    == _SACK_PREFIX_WORD | (words * 4 - _TS_HEADER_LEN - 2)):
                # the SACK ACK of a timestamp connection (every ACK of a
                # lossy transfer): decoded as decode_options() would
                k = (words - 9) >> 1
                b = _SACK_BLOCKS[k - 1].unpack_from(data, _TS_HEADER_LEN + 4)
                blocks = [(b[0], b[1])] if k == 1 else (
                    [(b[0], b[1]), (b[2], b[3])] if k == 2
                    else [(b[0], b[1]), (b[2], b[3]), (b[4], b[5])])
                options = TcpOptions(None, None, False, blocks, (tsval, tsecr), None,
                                     _TS_SACK_ORDER)
                hlen = words * 4
                return TcpSegment(sport, dport, seq, ack, flags, win, urg, options,
                                  bytes(data[hlen:]) if n > hlen else b"", csum)
        elif n < HEADER_LEN:
            raise ParseError("tcp-truncated", f"{n} bytes")
        sport, dport, seq, ack, off, flags, win, csum, urg = HEADER.unpack_from(data)
        hlen = (off >> 4) * 4
        if hlen < HEADER_LEN or hlen > n:
            raise ParseError("tcp-bad-offset", f"data offset {hlen} for {n} bytes")
        options = decode_options(data[HEADER_LEN:hlen]) if hlen > HEADER_LEN else TcpOptions()
        return TcpSegment(sport, dport, seq, ack, flags, win, urg, options,
                          bytes(data[hlen:]) if len(data) > hlen else b"", csum)

    def __str__(self) -> str:
        return format_segment(self)


def format_options(opts: TcpOptions) -> str:
    """tcpdump style: ``<mss 1460,sackOK,TS val 1 ecr 0,nop,wscale 7>``."""
    items: list[str] = []
    if opts.mss is not None:
        items.append(f"mss {opts.mss}")
    if opts.sack_permitted:
        items.append("sackOK")
    if opts.timestamp is not None:
        items.append(f"TS val {opts.timestamp[0]} ecr {opts.timestamp[1]}")
    if opts.wscale is not None:
        items.append(f"wscale {opts.wscale}")
    if opts.sack_blocks:
        items.append("sack " + " ".join(f"{a}:{b}" for a, b in opts.sack_blocks))
    return "<" + ",".join(items) + ">" if items else ""


def format_segment(seg: TcpSegment, seq_base: int = 0, ack_base: int = 0) -> str:
    """One tcpdump/packetdrill-like line: ``S. 0:0(0) ack 1 win 65535 <...>``."""
    seq = (seg.seq - seq_base) & 0xFFFFFFFF
    end = (seq + len(seg.payload)) & 0xFFFFFFFF
    text = (f"{seg.src_port} > {seg.dst_port} {flags_to_str(seg.flags)} "
            f"{seq}:{end}({len(seg.payload)})")
    if seg.flags & ACK:
        text += f" ack {(seg.ack - ack_base) & 0xFFFFFFFF}"
    text += f" win {seg.window}"
    if seg.urgent:
        text += f" urg {seg.urgent}"
    opts = format_options(seg.options)
    return text + (" " + opts if opts else "")
