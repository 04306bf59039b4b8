"""Packet specifications for the probe: what to send and what to expect.

A :class:`PacketSpec` is one packetdrill-style packet line with every number
relative to an ISN: for segments the probe *sends*, ``seq`` is relative to the
probe's own ISN and ``ack`` (and SACK blocks) to the peer's ISN; for segments
it *expects* from the peer it is the other way round.  ``None`` in a field of
an expectation means "any value" (written ``*`` in the text format).

Options are kept as an ordered list of :class:`Opt` so that a sent SYN carries
exactly the bytes the script wrote (``<mss 1460,sackOK,nop,wscale 7>``), which
:meth:`ustack.wire.tcp.TcpOptions.encode` (Linux's fixed layout) cannot do.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field

from ustack.wire.tcp import (
    ACK,
    OPT_EOL,
    OPT_MSS,
    OPT_NOP,
    OPT_SACK,
    OPT_SACK_PERMITTED,
    OPT_TIMESTAMP,
    OPT_WSCALE,
    TcpOptions,
    flags_to_str,
    str_to_flags,
)

MASK32 = 0xFFFFFFFF


class ScriptSyntaxError(ValueError):
    """A packet line or option list that cannot be parsed (message says where)."""


@dataclass(frozen=True, slots=True)
class Opt:
    """One TCP option as written in a script.

    ``kind`` is one of ``mss wscale sackOK TS sack nop eol raw``; ``a``/``b``
    hold the numbers (``mss`` value, ``wscale`` shift, ``TS`` val and ecr),
    ``None`` meaning "any" in an expectation (and, for a sent TS ecr, "echo the
    peer's last TSval").  ``blocks`` are SACK blocks, relative; ``raw`` the
    bytes of a ``raw`` option (sent verbatim).
    """

    kind: str
    a: int | None = None
    b: int | None = None
    blocks: tuple[tuple[int, int], ...] = ()
    raw: bytes = b""

    def __str__(self) -> str:
        def n(v: int | None) -> str:
            return "*" if v is None else str(v)

        if self.kind in ("mss", "wscale"):
            return f"{self.kind} {n(self.a)}"
        if self.kind == "TS":
            return f"TS val {n(self.a)} ecr {n(self.b)}"
        if self.kind == "sack":
            return "sack " + " ".join(f"{left}:{right}" for left, right in self.blocks)
        if self.kind == "raw":
            return "raw " + self.raw.hex()
        return self.kind


_SIMPLE = {"sackOK", "nop", "eol"}


def parse_options(text: str) -> list[Opt]:
    """``"mss 1460,sackOK,TS val 100 ecr 0,nop,wscale 7"`` (no angle brackets)."""
    opts: list[Opt] = []
    text = text.strip()
    if not text:
        return opts
    for part in text.split(","):
        words = part.split()
        if not words:
            raise ScriptSyntaxError(f"empty option in <{text}>")
        kind = words[0]
        try:
            if kind in _SIMPLE and len(words) == 1:
                opts.append(Opt(kind))
            elif kind in ("mss", "wscale") and len(words) == 2:
                opts.append(Opt(kind, _num(words[1])))
            elif kind == "TS" and len(words) == 5 and words[1] == "val" and words[3] == "ecr":
                opts.append(Opt("TS", _num(words[2]), _num(words[4])))
            elif kind == "sack" and len(words) >= 2:
                blocks = []
                for w in words[1:]:
                    left, _, right = w.partition(":")
                    blocks.append((int(left), int(right)))
                opts.append(Opt("sack", blocks=tuple(blocks)))
            elif kind == "raw" and len(words) >= 2:
                opts.append(Opt("raw", raw=bytes.fromhex("".join(words[1:]))))
            else:
                raise ValueError
        except ValueError:
            raise ScriptSyntaxError(
                f"bad TCP option {part.strip()!r}: expected mss N, wscale N, sackOK, "
                "TS val N ecr N, sack L:R ..., nop, eol or raw HEX"
            ) from None
    return opts


def _num(word: str) -> int | None:
    if word == "*":
        return None
    return int(word, 0)


def encode_options(opts: list[Opt], *, sack_base: int, ts_echo: int) -> bytes:
    """Wire bytes in the order written, zero-padded (EOL) to 4 bytes.

    ``sack_base`` turns relative SACK blocks absolute; ``ts_echo`` fills a TS
    ecr written as ``*``.
    """
    out = bytearray()
    for o in opts:
        if o.kind == "mss":
            out += struct.pack("!BBH", OPT_MSS, 4, (o.a or 0) & 0xFFFF)
        elif o.kind == "wscale":
            out += struct.pack("!BBB", OPT_WSCALE, 3, (o.a or 0) & 0xFF)
        elif o.kind == "sackOK":
            out += struct.pack("!BB", OPT_SACK_PERMITTED, 2)
        elif o.kind == "TS":
            ecr = ts_echo if o.b is None else o.b
            out += struct.pack("!BBII", OPT_TIMESTAMP, 10, (o.a or 0) & MASK32, ecr & MASK32)
        elif o.kind == "sack":
            out += struct.pack("!BB", OPT_SACK, 2 + 8 * len(o.blocks))
            for left, right in o.blocks:
                out += struct.pack("!II", (sack_base + left) & MASK32, (sack_base + right) & MASK32)
        elif o.kind == "nop":
            out.append(OPT_NOP)
        elif o.kind == "eol":
            out.append(OPT_EOL)
        elif o.kind == "raw":
            out += o.raw
    pad = (-len(out)) % 4
    out += b"\x00" * pad
    if len(out) > 40:
        raise ValueError(f"TCP options too long ({len(out)} bytes, at most 40)")
    return bytes(out)


def options_of(decoded: TcpOptions, *, sack_base: int) -> list[Opt]:
    """The meaningful options of a received segment, relative, in wire order
    (padding ``nop``/``eol`` left out)."""
    out: list[Opt] = []
    order = decoded.order or (OPT_MSS, OPT_SACK_PERMITTED, OPT_TIMESTAMP, OPT_WSCALE, OPT_SACK)
    for kind in order:
        if kind == OPT_MSS and decoded.mss is not None:
            out.append(Opt("mss", decoded.mss))
        elif kind == OPT_WSCALE and decoded.wscale is not None:
            out.append(Opt("wscale", decoded.wscale))
        elif kind == OPT_SACK_PERMITTED and decoded.sack_permitted:
            out.append(Opt("sackOK"))
        elif kind == OPT_TIMESTAMP and decoded.timestamp is not None:
            out.append(Opt("TS", decoded.timestamp[0], decoded.timestamp[1]))
        elif kind == OPT_SACK and decoded.sack_blocks:
            out.append(Opt("sack", blocks=tuple(
                ((left - sack_base) & MASK32, (right - sack_base) & MASK32)
                for left, right in decoded.sack_blocks)))
    return out


def options_mismatch(expected: list[Opt], actual: list[Opt]) -> str | None:
    """Why ``actual`` does not match ``expected`` (``None`` when it does).

    Padding (``nop``, ``eol``) and order are ignored: two stacks may lay the
    same options out differently.  Every meaningful option must be present on
    both sides, with equal values where the expectation is not ``*``.
    """
    want = {o.kind: o for o in expected if o.kind not in ("nop", "eol", "raw")}
    have = {o.kind: o for o in actual}
    missing = [k for k in want if k not in have]
    extra = [k for k in have if k not in want]
    if missing or extra:
        parts = []
        if missing:
            parts.append("missing " + ", ".join(missing))
        if extra:
            parts.append("unexpected " + ", ".join(extra))
        return "; ".join(parts)
    for kind, w in want.items():
        h = have[kind]
        if w.a is not None and w.a != h.a:
            return f"{kind}: expected {w}, got {h}"
        if w.b is not None and w.b != h.b:
            return f"{kind}: expected {w}, got {h}"
        if kind == "sack" and w.blocks != h.blocks:
            return f"sack: expected {w}, got {h}"
    return None


@dataclass(slots=True)
class IpFields:
    """IPv4 header fields a sent packet may set (``None`` = the default)."""

    ttl: int | None = None
    df: bool | None = None
    ident: int | None = None
    tos: int | None = None


@dataclass(slots=True)
class PacketSpec:
    """One TCP segment to send or to expect; ``None`` fields mean "any" (or,
    when sending, "the probe's default")."""

    flags: str | None = None
    seq: int | None = None
    length: int | None = None
    ack: int | None = None
    win: int | None = None
    urg: int | None = None
    options: list[Opt] | None = None
    payload: bytes | None = None
    bad_checksum: bool = False
    ip: IpFields = field(default_factory=IpFields)

    def __str__(self) -> str:
        return format_spec(self)


def format_spec(spec: PacketSpec) -> str:
    """The spec as one packetdrill-style line body (``*`` for any)."""
    def n(v: int | None) -> str:
        return "*" if v is None else str(v)

    length = spec.length if spec.length is not None else (
        len(spec.payload) if spec.payload is not None else None)
    if spec.seq is not None and length is not None:
        rng = f"{spec.seq}:{(spec.seq + length) & MASK32}({length})"
    else:
        rng = f"{n(spec.seq)}:*({n(length)})"
    shown = "*" if spec.flags is None else (spec.flags or "-")
    text = f"{shown} {rng}"
    flags = str_to_flags(spec.flags) if spec.flags and spec.flags != "*" else 0
    if spec.ack is not None or flags & ACK:
        text += f" ack {n(spec.ack)}"
    if spec.win is not None:
        text += f" win {spec.win}"
    if spec.urg is not None:
        text += f" urg {spec.urg}"
    if spec.options is not None:
        text += " <" + ",".join(str(o) for o in spec.options) + ">"
    if spec.bad_checksum:
        text += " badsum"
    return text


def format_relative(flags: int, seq: int, length: int, ack: int | None, win: int,
                    urg: int, options: list[Opt]) -> str:
    """An actual segment as one packetdrill-style line body (relative numbers)."""
    text = f"{flags_to_str(flags)} {seq}:{(seq + length) & MASK32}({length})"
    if ack is not None:
        text += f" ack {ack}"
    text += f" win {win}"
    if urg:
        text += f" urg {urg}"
    if options:
        text += " <" + ",".join(str(o) for o in options) + ">"
    return text


# ---------------------------------------------------------------- parsing
_RANGE = re.compile(r"^(\*|-?\d+):(\*|-?\d+)\((\*|\d+)\)$")


def parse_segment(text: str, *, expectation: bool, require_ack: bool = True) -> PacketSpec:
    """Parse ``FLAGS SEQ:END(LEN) [ack N] [win N] [urg N] [<opts>] [extras]``.

    Extras (probe only, for sent segments): ``badsum``, ``ttl N``, ``df``,
    ``nodf``, ``id N``, ``tos N``, ``payload HEX``; in an expectation ``tos N``,
    ``df`` and ``nodf`` check the IPv4 header.  In an expectation any
    number may be ``*``; an omitted ``win`` or ``<...>`` is not checked
    (write ``<>`` to require no options).
    """
    opts: list[Opt] | None = None
    m = re.search(r"<([^>]*)>", text)
    if m:
        opts = parse_options(m.group(1))
        text = text[: m.start()] + " " + text[m.end():]
    words = text.split()
    if len(words) < 2:
        raise ScriptSyntaxError(f"expected 'FLAGS SEQ:END(LEN) ...', got {text.strip()!r}")
    spec = PacketSpec(options=opts)
    flags = words[0]
    if flags == "-":  # packetdrill: no flags at all
        flags = ""
    if flags != "*":
        try:
            str_to_flags(flags)
        except ValueError as exc:
            raise ScriptSyntaxError(str(exc)) from None
    spec.flags = None if flags == "*" else flags
    rm = _RANGE.match(words[1])
    if not rm:
        raise ScriptSyntaxError(f"bad sequence range {words[1]!r}: expected START:END(LEN)")
    start, end, length = (None if g == "*" else int(g) for g in rm.groups())
    if start is not None and end is not None and length is not None and \
            (end - start) & MASK32 != length:
        raise ScriptSyntaxError(f"sequence range {words[1]!r}: END - START != LEN")
    spec.seq = start
    spec.length = length
    i = 2
    while i < len(words):
        w = words[i]
        arg = words[i + 1] if i + 1 < len(words) else None
        if w in ("ack", "win", "urg", "ttl", "id", "tos", "payload") and arg is None:
            raise ScriptSyntaxError(f"{w!r} needs a value")
        if w == "ack":
            spec.ack = _num(arg or "")
            i += 2
        elif w == "win":
            spec.win = _num(arg or "")
            i += 2
        elif w == "urg":
            spec.urg = _num(arg or "")
            i += 2
        elif w == "badsum" and not expectation:
            spec.bad_checksum = True
            i += 1
        elif w in ("df", "nodf"):
            spec.ip.df = w == "df"
            i += 1
        elif w in ("ttl", "id", "tos") and (w == "tos" or not expectation):
            value = int(arg or "", 0)
            if w == "ttl":
                spec.ip.ttl = value
            elif w == "id":
                spec.ip.ident = value
            else:
                spec.ip.tos = value
            i += 2
        elif w == "payload" and not expectation:
            spec.payload = bytes.fromhex(arg or "")
            i += 2
        else:
            raise ScriptSyntaxError(f"unexpected word {w!r} in {text.strip()!r}")
    if not expectation:
        if spec.flags is None or spec.seq is None or spec.length is None:
            raise ScriptSyntaxError("a sent segment needs explicit flags and SEQ:END(LEN)")
        if spec.payload is not None and len(spec.payload) != spec.length:
            raise ScriptSyntaxError("payload length differs from LEN")
        if spec.ack is None and require_ack and str_to_flags(spec.flags) & ACK:
            raise ScriptSyntaxError(f"flags {spec.flags!r} carry ACK: give 'ack N'")
    return spec
