"""Ephemeral port selection (RFC 6056 section 3.3.3, "Double-Hash Port
Selection Algorithm"), the shape Linux's ``__inet_hash_connect`` follows.

``offset = F(laddr, raddr, rport, secret1)``; a small table of per-bucket
counters indexed by ``G(laddr, raddr, rport, secret2)`` spreads successive
connections to the same destination.  The range is Linux's default
``ip_local_port_range`` 32768-60999.
"""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Callable, Container
from typing import Final

#: at most this many destinations keep their (F, G) hashes (PortAllocator.choose)
_HASH_CACHE_MAX: Final = 1024


class PortAllocator:
    """RFC 6056 Algorithm 3 with its own secrets and counter table."""

    __slots__ = ("_s1", "_s2", "_table", "low", "high", "_hashes")

    def __init__(self, low: int = 32768, high: int = 60999, *, secret: bytes | None = None,
                 table_size: int = 256) -> None:
        if not 0 < low <= high <= 65535:
            raise ValueError(f"bad port range {low}-{high}")
        key = secret if secret is not None else os.urandom(32)
        self._s1 = hashlib.blake2s(key + b"1").digest()[:16]
        self._s2 = hashlib.blake2s(key + b"2").digest()[:16]
        self._table = [0] * table_size
        self.low = low
        self.high = high
        #: (laddr, raddr, rport) -> (F, G): both keyed hashes depend only on
        #: the destination, so successive connections to one server hash once
        self._hashes: dict[tuple[bytes, bytes, int], tuple[int, int]] = {}

    def _hash(self, key: bytes, laddr: bytes, raddr: bytes, rport: int) -> int:
        d = hashlib.blake2s(laddr + raddr + rport.to_bytes(2, "big"), key=key, digest_size=4)
        return int.from_bytes(d.digest(), "big")

    def choose(self, laddr: bytes, raddr: bytes, rport: int,
               in_use: Container[int] | Callable[[int], bool]) -> int:
        """A free local port for a connection to (raddr, rport).

        ``in_use`` is a container of taken ports or a predicate.  Raises
        ``OSError(EADDRNOTAVAIL)`` when the range is exhausted (as connect(2)).
        """
        taken: Callable[[int], bool] = in_use if callable(in_use) else in_use.__contains__
        num = self.high - self.low + 1
        offset, index = self._start(laddr, raddr, rport)
        for _ in range(num):
            port = self.low + (offset + self._table[index]) % num
            self._table[index] += 1
            if not taken(port):
                return port
        raise OSError(errno.EADDRNOTAVAIL, "no free ephemeral port (RFC 6056 range exhausted)")

    def choose_free(self, laddr: bytes, raddr: bytes, rport: int,
                    conns: Container[tuple[int, bytes, int]], listeners: Container[int]) -> int:
        """:meth:`choose` for a connection table: a port is taken when
        ``(port, raddr, rport)`` is in ``conns`` or the port is in
        ``listeners``.  The same ports in the same order as ``choose`` with
        that predicate (tests/unit/test_conn_setup_isn_ports.py), without a
        predicate object per connect."""
        num = self.high - self.low + 1
        offset, index = self._start(laddr, raddr, rport)
        table = self._table
        low = self.low
        for _ in range(num):
            port = low + (offset + table[index]) % num
            table[index] += 1
            if (port, raddr, rport) not in conns and port not in listeners:
                return port
        raise OSError(errno.EADDRNOTAVAIL, "no free ephemeral port (RFC 6056 range exhausted)")

    def _start(self, laddr: bytes, raddr: bytes, rport: int) -> tuple[int, int]:
        """Algorithm 3's ``offset = F(...)`` and the counter index ``G(...)
        % table size`` of a destination (remembered, bounded)."""
        key = (laddr, raddr, rport)
        hashes = self._hashes.get(key)
        if hashes is None:
            if len(self._hashes) >= _HASH_CACHE_MAX:
                self._hashes.clear()
            g = self._hash(self._s2, laddr, raddr, rport) % len(self._table)
            hashes = self._hashes[key] = (self._hash(self._s1, laddr, raddr, rport), g)
        return hashes


_DEFAULT: PortAllocator | None = None


def choose_ephemeral_port(laddr: bytes, raddr: bytes, rport: int,
                          in_use: Container[int] | Callable[[int], bool],
                          *, allocator: PortAllocator | None = None) -> int:
    """RFC 6056 port choice with a process-wide allocator unless one is given."""
    global _DEFAULT
    if allocator is None:
        if _DEFAULT is None:
            _DEFAULT = PortAllocator()
        allocator = _DEFAULT
    return allocator.choose(laddr, raddr, rport, in_use)
