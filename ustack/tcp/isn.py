"""Initial sequence numbers (RFC 6528 section 3).

``ISN = M + F(localip, localport, remoteip, remoteport, secretkey)`` where M is
a 4-microsecond clock and F a keyed hash (here BLAKE2s keyed with a random
128-bit secret, standing in for Linux's SipHash).
"""

from __future__ import annotations

import hashlib
import os


class IsnGenerator:
    """Per-stack ISN source; ``secret`` defaults to 16 random bytes."""

    __slots__ = ("_secret",)

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret if secret is not None else os.urandom(16)

    def isn(self, laddr: bytes, lport: int, raddr: bytes, rport: int, now: float) -> int:
        """The ISN for this 4-tuple at time ``now`` (seconds)."""
        h = hashlib.blake2s(
            laddr + lport.to_bytes(2, "big") + raddr + rport.to_bytes(2, "big"),
            key=self._secret, digest_size=4,
        ).digest()
        m = int(now * 250_000)  # RFC 6528: M ticks every 4 microseconds
        return (m + int.from_bytes(h, "big")) & 0xFFFFFFFF
