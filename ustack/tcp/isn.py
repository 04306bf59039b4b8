"""Initial sequence numbers (RFC 6528 section 3).

``ISN = M + F(localip, localport, remoteip, remoteport, secretkey)`` where M is
a 4-microsecond clock and F a keyed hash (here BLAKE2s keyed with a random
128-bit secret, standing in for Linux's SipHash).
"""

from __future__ import annotations

import hashlib
import os
import struct
from typing import Any, Final

#: the hashed 4-tuple: local address, local port, remote address, remote port
_TUPLE: Final = struct.Struct("!4sH4sH")


class IsnGenerator:
    """Per-stack ISN source; ``secret`` defaults to 16 random bytes.

    The keyed hash state (the key block already compressed) is built once;
    every ISN copies it and hashes only the 12-byte 4-tuple: the same
    digest as ``blake2s(tuple, key=secret, digest_size=4)``, a third of the
    cost per connection."""

    __slots__ = ("_secret", "_keyed")

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret if secret is not None else os.urandom(16)
        self._keyed: Any = hashlib.blake2s(key=self._secret, digest_size=4)

    def isn(self, laddr: bytes, lport: int, raddr: bytes, rport: int, now: float) -> int:
        """The ISN for this 4-tuple at time ``now`` (seconds)."""
        h = self._keyed.copy()
        h.update(_TUPLE.pack(laddr, lport, raddr, rport))
        m = int(now * 250_000)  # RFC 6528: M ticks every 4 microseconds
        return (m + int.from_bytes(h.digest(), "big")) & 0xFFFFFFFF
