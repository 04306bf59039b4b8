"""32-bit sequence number arithmetic (RFC 9293 section 3.4, RFC 1982).

Sequence numbers live modulo 2**32; ``a < b`` means b is at most 2**31 - 1
ahead of a.
"""

from typing import Final

MASK: Final = 0xFFFFFFFF
HALF: Final = 0x80000000


def seq_add(a: int, n: int) -> int:
    """``a + n`` modulo 2**32 (``n`` may be negative)."""
    return (a + n) & MASK


def seq_sub(a: int, b: int) -> int:
    """Signed distance ``a - b`` in [-2**31, 2**31)."""
    d = (a - b) & MASK
    return d - 0x100000000 if d & HALF else d


def seq_lt(a: int, b: int) -> bool:
    return ((a - b) & MASK) >= HALF


def seq_le(a: int, b: int) -> bool:
    return a == b or ((a - b) & MASK) >= HALF


def seq_gt(a: int, b: int) -> bool:
    return ((b - a) & MASK) >= HALF


def seq_ge(a: int, b: int) -> bool:
    return a == b or ((b - a) & MASK) >= HALF


def seq_between(low: int, x: int, high: int) -> bool:
    """``low <= x < high`` modulo 2**32 (empty when low == high)."""
    return ((x - low) & MASK) < ((high - low) & MASK)


def seq_max(a: int, b: int) -> int:
    return b if seq_gt(b, a) else a


def seq_min(a: int, b: int) -> int:
    return b if seq_lt(b, a) else a
