"""The receive buffer: in-order bytes the application has not read yet
(RFC 9293 3.8.6 "receive buffer"), first in, first out.

A list of chunks: the text of a received segment is usually a view of its
frame (the receive runs and the IP fast path hand views); a big one (a GRO
frame's) is kept as it came, so appending copies nothing and the frame
stays alive until its bytes are read, while small ones (the exact wire's
1448-byte texts, requests) are copied into a ``bytearray`` tail chunk, as
before, so their frames are freed at once and a full window of them is
not hundreds of views.  Reading copies once: :meth:`read` joins the chunks it
takes into one ``bytes`` (none at all when that is one whole ``bytes``
chunk); :meth:`read_into` hands a sink a view of one big chunk as it is,
or of the small chunks joined; :meth:`take` hands the chunks themselves
over (ustack's StreamReader keeps them and joins them when it is read).
A ``bytearray`` as FIFO copied every byte on the way in and again whenever
it grew after a read from the front (CPython moves the bytes when it
reallocates a buffer with a start offset); with 64 KB GRO frames that was
two of the five copies of each byte on the way to the application (issue 14).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

Chunk = bytes | bytearray | memoryview

#: texts shorter than this are copied into the tail chunk ...
SMALL: Final = 2048
#: ... a bytearray of at most this size
TAIL_MAX: Final = 65536

#: read_into hands a chunk of at least this size to the sink as it is; below
#: it, chunks are joined first (one call, and one feed, for many small
#: segments: the exact wire's 1448-byte texts)
BIG_CHUNK: Final = 16384

#: the chunk list of every empty buffer: only read, never changed (append
#: gives a buffer its own list, a read that empties it hands this one back),
#: so an idle connection keeps no list (issue 14)
_NO_CHUNKS: Final[list[Chunk]] = []


class RecvBuffer:
    """In-order unread bytes as a FIFO of chunks; ``len()`` is their count."""

    __slots__ = ("_chunks", "_len", "_tail_open")

    def __init__(self) -> None:
        self._chunks: list[Chunk] = _NO_CHUNKS
        self._len = 0
        #: chunks[-1] is a bytearray that small texts are appended to
        self._tail_open = False

    def __len__(self) -> int:
        return self._len

    def __bool__(self) -> bool:
        return self._len != 0

    def append(self, data: bytes | memoryview) -> None:
        """Queue ``data``: kept as it is (a view must stay valid while it
        is buffered) unless it is small (:data:`SMALL`), then copied."""
        n = len(data)
        if not n:
            return
        chunks = self._chunks
        if chunks is _NO_CHUNKS:
            chunks = self._chunks = []
        if n < SMALL:
            if self._tail_open:
                tail = chunks[-1]
                if isinstance(tail, bytearray) and len(tail) + n <= TAIL_MAX:
                    tail += data
                    self._len += n
                    return
            chunks.append(bytearray(data))
            self._tail_open = True
        else:
            chunks.append(data)
            self._tail_open = False
        self._len += n

    def append_texts(self, texts: list[bytes | memoryview], total: int) -> None:
        """:meth:`append` of each of ``texts`` (``total`` bytes in all), in
        order: the same bytes.  A stretch of small texts worth a big chunk
        (:data:`BIG_CHUNK`) is joined into one ``bytes`` chunk of at most
        :data:`TAIL_MAX` bytes (one exact-sized copy, where appending them
        one by one grew the tail bytearray by a reallocation per text: a
        receive run of exact-wire segments); shorter stretches go to the
        tail as :meth:`append` puts them."""
        if total < BIG_CHUNK:
            for text in texts:
                self.append(text)
            return
        append = self.append
        group: list[bytes | memoryview] = []
        size = 0
        for text in texts:
            n = len(text)
            if n >= SMALL:
                if group:
                    self._add_group(group, size)
                    group = []
                    size = 0
                append(text)
                continue
            if size + n > TAIL_MAX:
                self._add_group(group, size)
                group = []
                size = 0
            group.append(text)
            size += n
        if group:
            self._add_group(group, size)

    def _add_group(self, group: list[bytes | memoryview], size: int) -> None:
        """Small texts of ``size`` bytes in all: one joined chunk when they
        make a big one, else into the tail one by one."""
        if size < BIG_CHUNK:
            for text in group:
                self.append(text)
            return
        chunks = self._chunks
        if chunks is _NO_CHUNKS:
            chunks = self._chunks = []
        chunks.append(b"".join(group))
        self._tail_open = False
        self._len += size

    def _take(self, max_bytes: int) -> list[Chunk]:
        """Remove and return the chunks of the first ``max_bytes`` bytes
        (>= 1, at most len()), the last one cut to fit."""
        chunks = self._chunks
        if max_bytes >= self._len:
            self._chunks = _NO_CHUNKS
            self._len = 0
            self._tail_open = False
            return chunks
        out: list[Chunk] = []
        need = max_bytes
        i = 0
        while need:
            c = chunks[i]
            k = len(c)
            if k <= need:
                out.append(c)
                need -= k
                i += 1
            else:
                view = c if isinstance(c, memoryview) else memoryview(c)
                out.append(view[:need])
                chunks[i] = view[need:]
                if i == len(chunks) - 1:
                    self._tail_open = False  # (a view of the tail now: closed)
                need = 0
        del chunks[:i]
        self._len -= max_bytes
        return out

    def read(self, max_bytes: int) -> bytes:
        """Remove and return up to ``max_bytes`` bytes (one copy; none when
        they are exactly one ``bytes`` chunk)."""
        if self._len == 0 or max_bytes <= 0:
            return b""
        parts = self._take(max_bytes)
        if len(parts) == 1:
            only = parts[0]
            return only if type(only) is bytes else bytes(only)
        return b"".join(parts)

    def take(self, max_bytes: int) -> list[Chunk]:
        """Remove up to ``max_bytes`` bytes (the count :meth:`read` would
        return) and return the chunks that hold them, in order, without a
        copy: ``bytes``, ``bytearray`` (a whole tail: nothing here refers to
        it any more) or views (of frames, or the cut of a chunk).  The
        caller owns them; none is changed here afterwards."""
        total = self._len
        if total == 0 or max_bytes <= 0:
            return []
        return self._take(max_bytes if max_bytes < total else total)

    def read_into(self, sink: Callable[[memoryview], object], max_bytes: int) -> int:
        """Remove up to ``max_bytes`` bytes (the count :meth:`read` would
        return) and hand them to ``sink`` as views, in order: each big chunk
        (:data:`BIG_CHUNK`) as it is, each run of small ones joined.  Every
        view is released after its call; when a call raises, the bytes are
        taken all the same and the rest is not handed on.  Returns the count."""
        total = self._len
        if total == 0 or max_bytes <= 0:
            return 0
        n = max_bytes if max_bytes < total else total
        parts = self._take(n)
        count = len(parts)
        i = 0
        while i < count:
            piece = parts[i]
            i += 1
            if len(piece) < BIG_CHUNK and i < count and len(parts[i]) < BIG_CHUNK:
                j = i + 1
                while j < count and len(parts[j]) < BIG_CHUNK:
                    j += 1
                piece = b"".join(parts[i - 1:j])
                i = j
            view = piece if isinstance(piece, memoryview) else memoryview(piece)
            try:
                sink(view)
            finally:
                view.release()
        return n

    def tobytes(self) -> bytes:
        """A copy of everything buffered (nothing is removed)."""
        return b"".join(self._chunks)

    def __bytes__(self) -> bytes:
        return self.tobytes()

    def clear(self) -> None:
        self._chunks = _NO_CHUNKS
        self._len = 0
        self._tail_open = False
