"""asyncio's StreamReader with a buffer of chunks (issue 14, bulk download).

:class:`asyncio.StreamReader` keeps what is fed in one ``bytearray``:
``feed_data`` extends it (a copy, and a move of everything buffered whenever
it grows after a read from the front), ``read(n)`` slices it and makes
``bytes`` of the slice (two more copies on Python 3.11), then deletes the
front.  Receiving 64 KB GRO frames that was about a fifth of the stack
process's CPU.

:class:`StreamReader` is the same API (a subclass: ``isinstance`` and every
method keep working) whose fed data stays in a list of chunks, each a
``bytes`` (what is fed as ``bytes`` is kept as it is, anything else is
copied once, as asyncio's ``extend`` does) or, for small pieces, one
``bytearray`` tail they are appended to (as asyncio's buffer, so a stream
of tiny feeds is not as many objects).  ``read(n)`` takes the chunks it
needs: a whole ``bytes`` chunk is returned as it is, several are joined
(one copy).  ``readexactly`` takes the same way when enough is buffered.
Everything else (``readuntil``, ``readline``, iteration, a wait inside
``readexactly``) first joins the chunks into asyncio's own ``_buffer``
(after what it already holds) and runs asyncio's code on it, so their
results, limits and errors are asyncio's.  The flow control is asyncio's,
on the bytes of both: the transport is paused above twice the limit and
resumed at the limit or below.

``tests/unit/test_stream_reader.py`` drives this reader and asyncio's with
the same random feeds and reads and compares every result.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

Chunk = bytes | bytearray | memoryview

#: feeds shorter than this are appended to the bytearray tail chunk ...
SMALL: Final = 2048
#: ... while it is shorter than this
TAIL_MAX: Final = 65536

#: the chunk list of a reader that was never fed: only read, never changed
_NO_CHUNKS: Final[list[Chunk]] = []


class StreamReader(asyncio.StreamReader):
    """:class:`asyncio.StreamReader` whose fed data is kept as chunks and
    joined only when a read asks for it (module docstring)."""

    # asyncio's own fields (set by its __init__; typeshed does not declare them)
    _buffer: bytearray
    _eof: bool
    _paused: bool
    _limit: int
    _exception: BaseException | None
    _transport: Any

    #: data fed and not yet read or joined into ``_buffer``, oldest first
    #: (after ``_buffer``'s bytes); the shared empty list until a feed
    _chunks: list[Chunk] = _NO_CHUNKS
    #: how many bytes ``_chunks`` holds
    _chunked: int = 0

    def _join_chunks(self) -> None:
        """Move the chunks into asyncio's ``_buffer`` (after its bytes)."""
        chunks = self._chunks
        if chunks:
            buf: bytearray = self._buffer
            for chunk in chunks:
                buf += chunk
            self._chunks = []
            self._chunked = 0

    def _buffered(self) -> int:
        return len(self._buffer) + self._chunked

    def __repr__(self) -> str:
        text = super().__repr__()  # (it counts _buffer's bytes only)
        if self._chunked:
            held = len(self._buffer)
            was = f"<StreamReader {held} bytes" if held else "<StreamReader"
            text = text.replace(was, f"<StreamReader {held + self._chunked} bytes", 1)
        return text

    # ------------------------------------------------------------ feeding

    def feed_data(self, data: Any) -> None:
        assert not self._eof, "feed_data after feed_eof"
        n = data.nbytes if type(data) is memoryview else len(data)
        if not n:
            return
        # kept as it is when it is bytes, else copied (the caller may reuse
        # or release it)
        self._store(data, n, data if type(data) is bytes else None)
        self._chunked += n
        self._fed()

    def feed_chunks(self, chunks: list[Chunk]) -> None:
        """:meth:`feed_data` of each of ``chunks`` in turn, kept as they are
        (no copy: the caller hands them over and never changes them; the
        transport's ``TcpConnection.recv_chunks``), one wakeup and flow
        control check at the end."""
        assert not self._eof, "feed_data after feed_eof"
        total = 0
        for chunk in chunks:
            n = chunk.nbytes if type(chunk) is memoryview else len(chunk)
            if n:
                self._store(chunk, n, chunk)
                total += n
        if total:
            self._chunked += total
            self._fed()

    def _store(self, data: Any, n: int, keep: Chunk | None) -> None:
        """Append ``n`` > 0 bytes of ``data``: ``keep`` (``data`` itself, or
        None: a copy is kept) as a chunk of its own, or small ones
        (:data:`SMALL`) into the bytearray tail."""
        chunks = self._chunks
        if chunks is _NO_CHUNKS:
            chunks = self._chunks = []
        if n >= SMALL or not chunks:
            chunks.append(bytes(data) if keep is None else keep)
            return
        last: Any = chunks[-1]
        if type(last) is bytearray and len(last) < TAIL_MAX:
            last += data  # the tail: ours, never handed out
        elif len(last) < SMALL:
            tail = bytearray(last)
            tail += data
            chunks[-1] = tail
        else:
            chunks.append(bytearray(data))

    def _fed(self) -> None:
        """After a feed: asyncio's wakeup and pause above twice the limit."""
        self._wakeup_waiter()  # type: ignore[attr-defined]
        transport = self._transport
        if transport is not None and not self._paused and (
                self._buffered() > 2 * self._limit):
            try:
                transport.pause_reading()
            except NotImplementedError:
                # (asyncio's: a transport that cannot pause is forgotten)
                self._transport = None
            else:
                self._paused = True

    def at_eof(self) -> bool:
        return self._eof and not self._buffer and not self._chunked

    def _maybe_resume_transport(self) -> None:
        if self._paused and self._buffered() <= self._limit:
            self._paused = False
            self._transport.resume_reading()

    async def _wait_for_data(self, func_name: str) -> None:
        # asyncio's own read methods (readuntil, readexactly) look at
        # _buffer after a wait: what came meanwhile goes there
        await super()._wait_for_data(func_name)  # type: ignore[misc]
        self._join_chunks()

    # ------------------------------------------------------------ reading

    def _take(self, n: int) -> bytes:
        """Remove and return the first ``n`` bytes of the chunks (1 <= n <=
        _chunked; ``_buffer`` is empty)."""
        chunks = self._chunks
        first = chunks[0]
        k = len(first)
        if k == n and type(first) is bytes:  # (one whole chunk: no copy)
            del chunks[0]
            self._chunked -= n
            return first
        parts: list[Any] = []
        need = n
        i = 0
        while need:
            chunk = chunks[i]
            k = len(chunk)
            if k <= need:
                parts.append(chunk)
                need -= k
                i += 1
            elif type(chunk) is bytearray:  # the tail: cut in place
                parts.append(chunk[:need])
                del chunk[:need]
                need = 0
            else:
                view = chunk if type(chunk) is memoryview else memoryview(chunk)
                parts.append(view[:need])
                chunks[i] = view[need:]
                need = 0
        del chunks[:i]
        self._chunked -= n
        if len(parts) == 1:
            return bytes(parts[0])
        return b"".join(parts)

    async def read(self, n: int = -1) -> bytes:
        if self._exception is not None:
            raise self._exception
        if n == 0:
            return b""
        if n < 0:  # asyncio's: read(limit) until EOF, joined
            return await super().read(n)
        if not self._buffer and not self._chunked and not self._eof:
            await asyncio.StreamReader._wait_for_data(self, "read")  # type: ignore[attr-defined]
        if self._buffer:
            # what a readuntil or readexactly left there comes first
            self._join_chunks()
            buf: bytearray = self._buffer
            data = bytes(memoryview(buf)[:n])
            del buf[:n]
        elif self._chunked:
            data = self._take(n if n < self._chunked else self._chunked)
        else:
            data = b""
        self._maybe_resume_transport()
        return data

    async def readexactly(self, n: int) -> bytes:
        if (0 < n <= self._chunked and not self._buffer
                and self._exception is None):
            data = self._take(n)
            self._maybe_resume_transport()
            return data
        self._join_chunks()
        return await super().readexactly(n)

    async def readuntil(self, separator: Any = b"\n") -> bytes:
        self._join_chunks()
        return await super().readuntil(separator)
