"""The send buffer: bytes from SND.UNA onwards, acknowledged or not yet sent
(RFC 9293 3.8.6 "send buffer").  Bounded, so ``send`` back-pressures the
streams layer.

A ``bytearray`` with deletion from the front: CPython moves its start pointer
instead of copying, so acknowledging is O(1) and no whole-buffer re-slicing
happens per segment.
"""

from __future__ import annotations


class SendBuffer:
    """Unacknowledged + unsent bytes; position 0 is SND.UNA."""

    __slots__ = ("_buf", "limit")

    def __init__(self, limit: int) -> None:
        self._buf = bytearray()
        self.limit = limit

    def __len__(self) -> int:
        return len(self._buf)

    @property
    def space(self) -> int:
        """Bytes ``write`` would accept now."""
        free = self.limit - len(self._buf)
        return free if free > 0 else 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Append as much of ``data`` as fits; return the count taken."""
        free = self.limit - len(self._buf)
        if free <= 0:
            return 0
        n = len(data)
        if n <= free:
            self._buf += data
            return n
        self._buf += data[:free]
        return free

    def peek(self, offset: int, length: int) -> bytes:
        """A copy of ``length`` bytes starting ``offset`` bytes after SND.UNA."""
        with memoryview(self._buf) as view:
            return view[offset:offset + length].tobytes()

    def acknowledge(self, n: int) -> None:
        """Drop ``n`` bytes from the front (they were acknowledged)."""
        del self._buf[:n]

    def clear(self) -> None:
        self._buf.clear()
