"""SYN cookies (RFC 4987 section 3.6), encoded as Linux ``net/ipv4/syncookies.c``.

When a listener's SYN queue is full the SYN-ACK's initial sequence number
carries the connection instead of a request sock:

    ISS = H1 + SEG.SEQ + (minute << 24) + ((H2 + data) mod 2**24)
    H1 || H2 = H(4-tuple, minute)   (one keyed 64-bit hash, two 32-bit halves)

``data`` is the index of the peer's MSS in :data:`MSS_TABLE` (the largest
entry not above it).  ``H`` is BLAKE2s keyed with a per-stack secret
(Linux uses SipHash with ``syncookie_secret``; hashlib has no SipHash, and
one in Python costs ~20 us per SYN against ~1 us).  Linux keeps H1
independent of the minute so its check can read the minute out of the top
8 bits; here both
halves come from one hash call, so a SYN costs one hash (under a flood every
SYN does) and the check, which runs only for ACKs, tries each of the
:data:`MAX_AGE` minutes a cookie may come from and requires the top 8 bits to
match that minute.  The returning ACK has ``SEG.ACK - 1 = ISS`` and
``SEG.SEQ - 1`` = the SYN's sequence number, so the listener recomputes the
hash and recovers ``data`` without having kept anything.

With timestamps on, the options the ISS has no room for ride in the low
:data:`TS_BITS` bits of our SYN-ACK's TSval (Linux ``cookie_init_timestamp``):
bits 0-3 the peer's window-scale shift (0xF = none), bit 4 SACK-permitted,
bit 5 ECN.  The peer echoes the TSval in TSecr.  Without timestamps a cookie
connection has neither window scaling nor SACK (as Linux).

Pure functions of their arguments plus the secret: no clock, no I/O.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Final

#: Linux ``msstab``: the MSS values a cookie can carry (index = 2 bits;
#: :func:`mss_index` spells the table out)
MSS_TABLE = (536, 1300, 1440, 1460)
COOKIE_BITS: Final = 24
COOKIE_MASK: Final = (1 << COOKIE_BITS) - 1
#: Linux MAX_SYNCOOKIE_AGE: a cookie is good for the minute it was made and one more
MAX_AGE: Final = 2
#: Linux TCP_SYNCOOKIE_VALID: ACKs are checked as cookies this long after the
#: listener last sent one (``tcp_synq_no_recent_overflow``)
VALID_PERIOD: Final = 120.0

TS_BITS: Final = 6
TS_MASK: Final = (1 << TS_BITS) - 1
TS_WSCALE_MASK: Final = 0x0F
TS_SACK: Final = 1 << 4
TS_ECN: Final = 1 << 5

MASK32: Final = 0xFFFFFFFF
_TUPLE: Final = struct.Struct("!4s4sHHI")

def minute(now: float) -> int:
    """Linux ``tcp_cookie_time``: the minute counter (32 bits)."""
    return int(now // 60) & MASK32


class CookieJar:
    """The per-stack secret and the cookie arithmetic."""

    __slots__ = ("_base",)

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("a SYN cookie secret needs at least 16 bytes")
        # the keyed hash state after the key block, derived so any secret of
        # 16 bytes or more works; each hash copies it (no key setup per SYN)
        self._base = hashlib.blake2s(key=hashlib.blake2s(secret + b"\x00").digest(),
                                     digest_size=8)

    def digest(self, data: bytes) -> bytes:
        """H over :func:`hash_input` bytes: 8 bytes, H1 then H2 (big-endian)."""
        h = self._base.copy()
        h.update(data)
        return h.digest()

    def digests(self, data: bytes) -> bytes:
        """:meth:`digest` of each 16-byte piece of ``data``, concatenated
        (the batch path: one call for a whole array of SYNs)."""
        base = self._base
        out: list[bytes] = []
        append = out.append
        for i in range(0, len(data), 16):
            h = base.copy()
            h.update(data[i:i + 16])
            append(h.digest())
        return b"".join(out)

    def _hash(self, saddr: bytes, daddr: bytes, sport: int, dport: int,
              count: int) -> tuple[int, int]:
        d = int.from_bytes(self.digest(_TUPLE.pack(saddr, daddr, sport, dport, count)), "big")
        return d >> 32, d & MASK32

    def make(self, saddr: bytes, daddr: bytes, sport: int, dport: int, seq: int, mss: int,
             now: float) -> tuple[int, int]:
        """The cookie ISS for a SYN with sequence number ``seq`` and MSS
        option ``mss`` from ``saddr:sport`` to ``daddr:dport``, and the MSS
        the cookie encodes (Linux ``__cookie_v4_init_sequence``)."""
        index = mss_index(mss)
        count = minute(now)
        h1, h2 = self._hash(saddr, daddr, sport, dport, count)
        return cookie_of(h1, h2, seq, count, index), MSS_TABLE[index]

    def check(self, saddr: bytes, daddr: bytes, sport: int, dport: int, seq: int,
              cookie: int, now: float) -> int | None:
        """The MSS a returning ACK's cookie carries, or None when it is not
        one of ours or older than :data:`MAX_AGE` minutes (Linux
        ``__cookie_v4_check``).  ``seq`` is SEG.SEQ - 1 and ``cookie`` is
        SEG.ACK - 1 of the ACK."""
        now_count = minute(now)
        for age in range(MAX_AGE):
            count = (now_count - age) & MASK32
            h1, h2 = self._hash(saddr, daddr, sport, dport, count)
            rest = (cookie - h1 - seq) & MASK32
            if rest >> COOKIE_BITS != count & (MASK32 >> COOKIE_BITS):
                continue
            index = (rest - h2) & COOKIE_MASK
            if index < len(MSS_TABLE):
                return MSS_TABLE[index]
        return None


def hash_input(saddr: bytes, daddr: bytes, sport: int, dport: int, count: int) -> bytes:
    """The 16 bytes H is computed over: source and destination address, source
    and destination port, the minute counter (network byte order)."""
    return _TUPLE.pack(saddr, daddr, sport, dport, count)


def cookie_of(h1: int, h2: int, seq: int, count: int, index: int) -> int:
    """The cookie ISS from the hash halves, the SYN's sequence number, the
    minute counter and the MSS index (the formula in the module docstring)."""
    return (h1 + seq + (count << COOKIE_BITS) + ((h2 + index) & COOKIE_MASK)) & MASK32


def mss_index(mss: int) -> int:
    """Index of the largest :data:`MSS_TABLE` entry not above ``mss`` (0 below 536)."""
    # (spelled out: this runs for every SYN of a flood)
    return 3 if mss >= 1460 else 2 if mss >= 1440 else 1 if mss >= 1300 else 0


def encode_timestamp(ts_now: int, wscale: int | None, sack: bool, ecn: bool = False) -> int:
    """Our SYN-ACK TSval carrying the options (Linux ``cookie_init_timestamp``):
    ``ts_now`` with its low bits replaced, never above ``ts_now`` (so later
    TSvals stay monotonic for the peer's PAWS)."""
    options = (TS_WSCALE_MASK if wscale is None else min(wscale, 14)) \
        | (TS_SACK if sack else 0) | (TS_ECN if ecn else 0)
    ts = (ts_now & ~TS_MASK & MASK32) | options
    if ts > ts_now:
        ts = (ts - (1 << TS_BITS)) & MASK32
    return ts


def decode_timestamp(tsecr: int) -> tuple[int | None, bool, bool]:
    """(window-scale shift or None, SACK, ECN) from an ACK's TSecr
    (Linux ``cookie_timestamp_decode``)."""
    wscale = tsecr & TS_WSCALE_MASK
    return (None if wscale == TS_WSCALE_MASK else wscale, bool(tsecr & TS_SACK),
            bool(tsecr & TS_ECN))


__all__ = ["CookieJar", "MSS_TABLE", "cookie_of", "hash_input", "MAX_AGE", "VALID_PERIOD",
           "encode_timestamp", "decode_timestamp", "mss_index", "minute"]
