"""The Internet checksum (RFC 1071), computed with Python's big integers.

Summing 16-bit words in ones' complement is the same as reducing the whole
buffer, read as one big-endian integer, modulo 0xFFFF (2**16 is 1 modulo
0xFFFF).  ``int.from_bytes`` does the reading in C, so a 1460-byte payload
costs a few microseconds instead of hundreds.

:func:`payload_sum`, the per-segment sum of the send and receive paths, has
an optional C accelerator (``ustack.wire._csum``, built at install time when
a compiler is present): the same results, ~20 times faster.  Without it, or
with ``USTACK_NO_ACCEL=1`` in the environment when this module is imported,
the pure-Python :func:`_py_payload_sum` runs; ``ACCELERATED`` tells which.
tests/unit/test_wire_accel.py checks that the two agree on random inputs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Final

Buffer = bytes | bytearray | memoryview


def partial_sum(data: Buffer) -> int:
    """Unfolded sum of ``data`` as 16-bit words; odd lengths are zero-padded.

    Partial sums of pieces that start at even offsets can be added together.
    """
    value = int.from_bytes(data, "big")
    if len(data) & 1:
        value <<= 8
    return value


def fold(total: int) -> int:
    """Fold an unfolded sum into the 16-bit ones' complement checksum."""
    if total == 0:
        return 0xFFFF
    s = total % 0xFFFF
    if s == 0:
        s = 0xFFFF
    return (~s) & 0xFFFF


def internet_checksum(data: Buffer) -> int:
    """Checksum of one buffer (RFC 1071): the value to write into a header."""
    return fold(partial_sum(data))


def checksum_of(parts: Iterable[Buffer]) -> int:
    """Checksum over several pieces; every piece but the last must be even-sized."""
    return fold(sum(partial_sum(p) for p in parts))


def pseudo_header_sum(src: bytes, dst: bytes, protocol: int, length: int) -> int:
    """Unfolded sum of the IPv4 pseudo-header (RFC 9293 section 3.1)."""
    return (
        int.from_bytes(src, "big")
        + int.from_bytes(dst, "big")
        + protocol
        + length
    )


def verify(total: int) -> bool:
    """True when an unfolded sum that includes the checksum field is valid."""
    return total == 0 or total % 0xFFFF == 0


_M5792: Final = (1 << 5792) - 1
_M2896: Final = (1 << 2896) - 1
_M1456: Final = (1 << 1456) - 1
_M736: Final = (1 << 736) - 1


def reduce_sum(value: int) -> int:
    """``value % 0xFFFF`` for a payload read as one big integer, faster.

    CPython divides a big integer digit by digit, which costs about 2 us for
    a 1448-byte payload.  Since 2**16 is 1 modulo 0xFFFF, ``hi * 2**(16*k) +
    lo`` is congruent to ``hi + lo``: splitting at a multiple of 16 bits and
    adding the halves keeps the ones' complement sum (RFC 1071 "deferred
    carries") while shrinking the number.  Four such folds (cheap shifts,
    masks and additions; no-ops for small values) take an MTU-sized payload
    below 800 bits before the one division.
    """
    value = (value >> 5792) + (value & _M5792)
    value = (value >> 2896) + (value & _M2896)
    value = (value >> 1456) + (value & _M1456)
    value = (value >> 736) + (value & _M736)
    return value % 0xFFFF


def _py_payload_sum(payload: Buffer) -> int:
    """A number congruent modulo 0xFFFF to the RFC 1071 sum of ``payload``
    (big-endian 16-bit words, an odd last byte padded with a zero).

    The sum does not depend on byte order (RFC 1071 2.B): read as
    little-endian words it comes out byte-swapped, and swapping the bytes of
    a 16-bit value is multiplying it by 256 modulo 0xFFFF.  Reading the
    buffer little-endian is a little faster in CPython and pads an odd
    length the right way by itself.  (:func:`reduce_sum` inlined: this runs
    for every segment sent and received.)
    """
    value = int.from_bytes(payload, "little")
    value = (value >> 5792) + (value & _M5792)
    value = (value >> 2896) + (value & _M2896)
    value = (value >> 1456) + (value & _M1456)
    value = (value >> 736) + (value & _M736)
    return (value % 0xFFFF) << 8


def _load_accelerator() -> Callable[[Buffer], int] | None:
    """``ustack.wire._csum.sum16`` unless it is missing or USTACK_NO_ACCEL is set."""
    if os.environ.get("USTACK_NO_ACCEL", "") not in ("", "0"):
        return None
    try:
        from ustack.wire import _csum
    except ImportError:
        return None
    return _csum.sum16


#: the C sum (a number congruent to the RFC 1071 sum, folded to 16 bits), or None
sum16: Final[Callable[[Buffer], int] | None] = _load_accelerator()
#: True when :func:`payload_sum` is the C accelerator
ACCELERATED: Final = sum16 is not None
#: :func:`_py_payload_sum`, or the accelerator when it is available: same
#: value modulo 0xFFFF (all callers reduce modulo 0xFFFF)
payload_sum: Final[Callable[[Buffer], int]] = sum16 if sum16 is not None else _py_payload_sum


def refresh_frame_checksums(frame: bytearray) -> None:
    """Recompute, in place, the IPv4 header checksum and the TCP or ICMP
    checksum of an Ethernet frame (RFC 791 3.1, RFC 9293 3.1, RFC 792), so a
    fuzzer's mutated frame gets past checksum verification.  Frames too short
    or not IPv4 are left alone."""
    if len(frame) < 34 or frame[12:14] != b"\x08\x00":
        return
    hlen = (frame[14] & 0x0F) * 4
    if hlen < 20 or 14 + hlen > len(frame):
        return
    frame[24:26] = b"\0\0"
    frame[24:26] = fold(partial_sum(bytes(frame[14:14 + hlen]))).to_bytes(2, "big")
    total = int.from_bytes(frame[16:18], "big")
    end = min(len(frame), 14 + total)
    start = 14 + hlen
    proto = frame[23]
    if proto == 6 and end - start >= 18:
        frame[start + 16:start + 18] = b"\0\0"
        s = pseudo_header_sum(bytes(frame[26:30]), bytes(frame[30:34]), 6, end - start)
        frame[start + 16:start + 18] = fold(s + partial_sum(bytes(frame[start:end]))).to_bytes(
            2, "big")
    elif proto == 1 and end - start >= 4:
        frame[start + 2:start + 4] = b"\0\0"
        frame[start + 2:start + 4] = fold(partial_sum(bytes(frame[start:end]))).to_bytes(2, "big")
