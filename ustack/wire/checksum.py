"""The Internet checksum (RFC 1071), computed with Python's big integers.

Summing 16-bit words in ones' complement is the same as reducing the whole
buffer, read as one big-endian integer, modulo 0xFFFF (2**16 is 1 modulo
0xFFFF).  ``int.from_bytes`` does the reading in C, so a 1460-byte payload
costs a few microseconds instead of hundreds.
"""

from __future__ import annotations

from collections.abc import Iterable

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
