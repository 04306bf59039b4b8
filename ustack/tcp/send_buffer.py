"""The send buffer: bytes from SND.UNA onwards, acknowledged or not yet sent
(RFC 9293 3.8.6 "send buffer").  Bounded, so ``send`` back-pressures the
streams layer.

A list of immutable chunks: a ``bytes`` object handed to :meth:`write` is kept
as is (no copy on the way in), :meth:`peek` slices the one chunk a segment
usually falls in (one copy, or none when a segment is a whole chunk), and
acknowledging drops whole chunks and moves an offset into the first.  A cursor
remembers where the last peek ended, so building consecutive segments never
rescans the buffer.  Small writes are coalesced into a ``bytearray`` tail so
interactive traffic does not make thousands of tiny chunks.
"""

from __future__ import annotations

_SMALL = 2048  # writes below this are coalesced
_TAIL_MAX = 65536  # ... into a tail chunk of at most this size


class SendBuffer:
    """Unacknowledged + unsent bytes; position 0 is SND.UNA."""

    __slots__ = ("_chunks", "_head", "_len", "limit", "_cur_idx", "_cur_start", "_base",
                 "_tail_open")

    def __init__(self, limit: int) -> None:
        self._chunks: list[bytes | bytearray] = []
        self._head = 0  # bytes of chunks[0] already acknowledged
        self._len = 0  # live bytes
        self.limit = limit
        self._base = 0  # absolute stream position of chunks[0][0]
        self._cur_idx = 0  # peek cursor: chunk index ...
        self._cur_start = 0  # ... and the absolute position where it starts
        self._tail_open = False  # chunks[-1] is a bytearray still accepting small writes

    def __len__(self) -> int:
        return self._len

    @property
    def space(self) -> int:
        """Bytes ``write`` would accept now."""
        free = self.limit - self._len
        return free if free > 0 else 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Append as much of ``data`` as fits; return the count taken.  A
        ``bytes`` object is stored without copying."""
        free = self.limit - self._len
        n = len(data)
        if free <= 0 or n == 0:
            return 0
        if n > free:
            n = free
            data = data[:n]
        chunks = self._chunks
        if n < _SMALL:
            if self._tail_open and len(chunks[-1]) + n <= _TAIL_MAX:
                chunks[-1] += data  # the bytearray tail
            else:
                chunks.append(bytearray(data))
                self._tail_open = True
        else:
            chunks.append(data if type(data) is bytes else bytes(data))
            self._tail_open = False
        self._len += n
        return n

    def peek(self, offset: int, length: int) -> bytes:
        """A copy of ``length`` bytes starting ``offset`` bytes after SND.UNA
        (fewer if the buffer ends first)."""
        chunks = self._chunks
        pos = self._base + self._head + offset
        idx, start = self._cur_idx, self._cur_start
        if pos < start or idx >= len(chunks):
            idx, start = 0, self._base
        n_chunks = len(chunks)
        while idx < n_chunks and pos >= start + len(chunks[idx]):
            start += len(chunks[idx])
            idx += 1
        if idx >= n_chunks:
            return b""
        self._cur_idx, self._cur_start = idx, start
        chunk = chunks[idx]
        a = pos - start
        b = a + length
        if b <= len(chunk):
            if type(chunk) is bytes:
                return chunk[a:b] if (a or b != len(chunk)) else chunk
            return bytes(chunk[a:b])
        parts = [chunk[a:]]
        need = b - len(chunk)
        idx += 1
        while need > 0 and idx < n_chunks:
            c = chunks[idx]
            parts.append(c[:need] if need < len(c) else c)
            need -= len(c)
            idx += 1
        return b"".join(parts)

    def acknowledge(self, n: int) -> None:
        """Drop ``n`` bytes from the front (they were acknowledged)."""
        if n <= 0:
            return
        if n >= self._len:
            self.clear(keep_position=self._base + self._head + self._len)
            return
        self._len -= n
        head = self._head + n
        chunks = self._chunks
        k = 0
        while head >= len(chunks[k]):
            size = len(chunks[k])
            head -= size
            self._base += size
            k += 1
        if k:
            del chunks[:k]
            self._cur_idx -= k
            if self._cur_idx < 0:
                self._cur_idx, self._cur_start = 0, self._base
        self._head = head

    def clear(self, keep_position: int | None = None) -> None:
        self._chunks.clear()
        self._head = 0
        self._len = 0
        self._base = keep_position if keep_position is not None else 0
        self._cur_idx, self._cur_start = 0, self._base
        self._tail_open = False
