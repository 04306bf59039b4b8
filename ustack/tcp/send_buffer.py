"""The send buffer: bytes from SND.UNA onwards, acknowledged or not yet sent
(RFC 9293 3.8.6 "send buffer").  Bounded, so ``send`` back-pressures the
streams layer.

A list of immutable chunks: a ``bytes`` object (or a contiguous view of one)
handed to :meth:`write` is kept as is (no copy on the way in), :meth:`peek`
slices the one chunk a segment usually falls in (one copy, or none when a
segment is a whole chunk; :meth:`peek_view` hands out a view of it instead,
so a GSO super-segment reaches the device's gather send uncopied), and
acknowledging drops whole chunks and moves an offset into the first.  A cursor
remembers where the last peek ended, so building consecutive segments never
rescans the buffer.  Small writes are coalesced into a ``bytearray`` tail so
interactive traffic does not make thousands of tiny chunks; the first of them
is kept as it came until a second one arrives (a request/response exchange
writes, sends and has acknowledged one small message at a time: no copy).

The bound follows Linux (net/ipv4/tcp.c tcp_sendmsg_locked, net/core/stream.c):
queued data is charged in skb truesize units (payload plus a per-skb
overhead, :func:`charged`), a write appends to the unsent tail skb up to
the size goal without checking the bound and starts a new skb only while
the charge is below it (:func:`admit`, so a write may go past the bound by
what the current chunk allows), and a blocked writer is woken only when at
least a third of the buffer is free (:func:`writable`).
"""

from __future__ import annotations

from typing import Final

_SMALL: Final = 2048  # writes below this are coalesced
_TAIL_MAX: Final = 65536  # ... into a tail chunk of at most this size
_PIECE: Final = 65536  # a large write that is not bytes is copied in pieces of this size

#: what Linux charges an skb beyond its payload: SKB_TRUESIZE of the head
#: tcp_stream_alloc_skb allocates (MAX_TCP_HEADER in a 1 KB slab object plus
#: struct sk_buff and skb_shared_info on x86_64); packetdrill's
#: timestamping/partial.pkt pins it between 548 and 1315 bytes
SKB_OVERHEAD: Final = 1280
#: Linux SOCK_MIN_SNDBUF (2 * TCP_SKB_MIN_TRUESIZE): setsockopt(SO_SNDBUF)
#: never sets less
SOCK_MIN_SNDBUF: Final = 4608


def charged(queued: int, goal: int) -> int:
    """The send-buffer charge of ``queued`` bytes in skbs of ``goal`` bytes
    (Linux sk_wmem_queued: each skb's truesize is its payload plus
    :data:`SKB_OVERHEAD`)."""
    return queued + SKB_OVERHEAD * (-(-queued // goal)) if queued else 0


def writable(queued: int, goal: int, limit: int) -> bool:
    """Linux __sk_stream_is_writeable: the free space is at least half the
    charge (sk_stream_wspace >= sk_stream_min_wspace, i.e. at most 2/3 of
    the buffer charged) and below the bound (sk_stream_memory_free).  Both
    poll's POLLOUT and the wakeup of a blocked writer (sk_stream_write_space)
    use it."""
    c = charged(queued, goal)
    return c < limit and limit - c >= c >> 1


def admit(n: int, queued: int, unsent: int, out: int, goal: int, limit: int,
          tail_closed: bool = False) -> int:
    """How many of ``n`` bytes one write takes (Linux tcp_sendmsg_locked).

    ``queued`` bytes are in the buffer, the last ``unsent`` of them not yet
    sent; ``out`` more bytes would leave at once (whole segments the window
    and cwnd allow).  The write fills the unsent tail skb up to ``goal``
    (tcp_send_mss's size goal) unchecked; a new skb is started only while the
    charge is below ``limit`` (sk_stream_memory_free).  A full skb at the
    head of the unsent data goes out at once as far as ``out`` allows
    (tcp_push_one), which leaves its unsent rest as a tail skb with room
    again (tso_fragment).  ``tail_closed``: the tail ends a record (MSG_EOR),
    nothing is appended to it."""
    c = charged(queued, goal)
    if c + n + SKB_OVERHEAD * (n // goal + 1) < limit:
        return n  # every skb this write starts begins below the bound
    pos = queued
    sent = queued - unsent
    wire_end = sent + out
    tail = 0
    if unsent and not tail_closed:
        tail = unsent % goal or goal
    taken = 0
    while taken < n:
        if 0 < tail < goal:
            k = goal - tail
        else:
            if c >= limit:
                break
            k = goal
            c += SKB_OVERHEAD
            tail = 0
        if k > n - taken:
            k = n - taken
        taken += k
        tail += k
        c += k
        pos += k
        if tail == goal and pos - tail <= sent < wire_end:
            sent = pos if pos < wire_end else wire_end
            tail = pos - sent
    return taken


#: the chunk list of every empty buffer: only read, never changed (write
#: gives a buffer its own list, clear hands this one back), so an idle
#: connection keeps no list (issue 14)
_NO_CHUNKS: Final[list[bytes | bytearray | memoryview]] = []


def _immutable_view(data: bytes | bytearray | memoryview) -> bool:
    """``data`` is a contiguous byte view of a ``bytes`` object: its bytes
    can never change, so the buffer may keep the view instead of a copy
    (a view of a bytearray, mmap or any writable exporter is copied)."""
    if type(data) is not memoryview:
        return False
    return (type(data.obj) is bytes and data.c_contiguous and data.itemsize == 1
            and data.ndim == 1)


class SendBuffer:
    """Unacknowledged + unsent bytes; position 0 is SND.UNA."""

    __slots__ = ("_chunks", "_head", "_len", "limit", "_cur_idx", "_cur_start", "_base",
                 "_tail_open")

    def __init__(self, limit: int) -> None:
        self._chunks: list[bytes | bytearray | memoryview] = _NO_CHUNKS
        self._head = 0  # bytes of chunks[0] already acknowledged
        self._len = 0  # live bytes
        self.limit = limit
        self._base = 0  # absolute stream position of chunks[0][0]
        self._cur_idx = 0  # peek cursor: chunk index ...
        self._cur_start = 0  # ... and the absolute position where it starts
        #: chunks[-1] still takes small writes: a bytearray, or the bytes
        #: of one small write (copied into a bytearray by the next one)
        self._tail_open = False

    def __len__(self) -> int:
        return self._len

    @property
    def space(self) -> int:
        """Bytes ``write`` would accept now."""
        free = self.limit - self._len
        return free if free > 0 else 0

    def write(self, data: bytes | bytearray | memoryview, room: int | None = None) -> int:
        """Append as much of ``data`` as fits (``room`` bytes when given,
        else what :attr:`limit` leaves); return the count taken.  A ``bytes``
        object is stored without copying."""
        free = self.limit - self._len if room is None else room
        n = len(data)
        if free <= 0 or n == 0:
            return 0
        if n > free:
            n = free
            data = data[:n]
        chunks = self._chunks
        if chunks is _NO_CHUNKS:
            chunks = self._chunks = []
        if n < _SMALL:
            if self._tail_open and len(chunks[-1]) + n <= _TAIL_MAX:
                tail = chunks[-1]
                if type(tail) is not bytearray:  # the first small write, kept as it came
                    tail = chunks[-1] = bytearray(tail)
                tail += data  # the bytearray tail
            else:
                # a small bytes write opens the tail as is (no copy: peek
                # hands it out whole, the request/response case); the next
                # small write copies it into a bytearray and appends there
                chunks.append(data if type(data) is bytes else bytearray(data))
                self._tail_open = True
        elif type(data) is bytes or _immutable_view(data):
            # kept as it came: bytes, or a view of bytes (no copy; peek_view
            # hands out views of it)
            chunks.append(data)
            self._tail_open = False
        else:
            # a copy in pieces of at most _PIECE bytes: one big copy of a
            # megabyte write was a fresh mmap (glibc's threshold is 128 KB)
            # whose pages faulted in as they were written and went back to
            # the kernel when acknowledged (~20 % of a bulk sender's CPU);
            # heap-sized pieces are reused
            view = memoryview(data)
            for i in range(0, n, _PIECE):
                chunks.append(bytes(view[i:i + _PIECE]))
            self._tail_open = False
        self._len += n
        return n

    def _seek(self, pos: int) -> int:
        """The index of the chunk holding stream position ``pos`` (the
        cursor moves there: ``_cur_start`` is where it starts), -1 when the
        buffer ends before ``pos``."""
        chunks = self._chunks
        idx, start = self._cur_idx, self._cur_start
        if pos < start or idx >= len(chunks):
            idx, start = 0, self._base
        n_chunks = len(chunks)
        while idx < n_chunks and pos >= start + len(chunks[idx]):
            start += len(chunks[idx])
            idx += 1
        if idx >= n_chunks:
            return -1
        self._cur_idx, self._cur_start = idx, start
        return idx

    def _join(self, idx: int, a: int, b: int) -> bytes:
        """Bytes ``a`` to ``b`` counted from the start of chunk ``idx``, which
        they run past: views of the pieces, so the join is the one copy
        (slices of bytes would copy each piece first: a super-segment across
        two chunks was copied twice)."""
        chunks = self._chunks
        chunk = chunks[idx]
        parts: list[bytes | bytearray | memoryview] = [memoryview(chunk)[a:]]
        need = b - len(chunk)
        idx += 1
        n_chunks = len(chunks)
        while need > 0 and idx < n_chunks:
            c = chunks[idx]
            parts.append(memoryview(c)[:need] if need < len(c) else c)
            need -= len(c)
            idx += 1
        return b"".join(parts)

    def peek(self, offset: int, length: int) -> bytes:
        """A copy of ``length`` bytes starting ``offset`` bytes after SND.UNA
        (fewer if the buffer ends first)."""
        idx = self._seek(self._base + self._head + offset)
        if idx < 0:
            return b""
        chunk = self._chunks[idx]
        a = self._base + self._head + offset - self._cur_start
        b = a + length
        if b <= len(chunk):
            if type(chunk) is bytes:
                return chunk[a:b] if (a or b != len(chunk)) else chunk
            return bytes(chunk[a:b])
        return self._join(idx, a, b)

    def peek_view(self, offset: int, length: int) -> bytes | memoryview:
        """:meth:`peek` without the copy where it can: bytes that lie in one
        immutable chunk (bytes, or a view of bytes) come as a read-only view
        of it, else as :meth:`peek`'s copy (the bytearray tail still grows,
        so no view of it may live on).  A view stays valid after its bytes
        are acknowledged: it holds its chunk."""
        idx = self._seek(self._base + self._head + offset)
        if idx < 0:
            return b""
        chunk = self._chunks[idx]
        a = self._base + self._head + offset - self._cur_start
        b = a + length
        if b <= len(chunk):
            if type(chunk) is bytes:
                return memoryview(chunk)[a:b] if (a or b != len(chunk)) else chunk
            if type(chunk) is memoryview:
                return chunk[a:b]
            return bytes(chunk[a:b])
        return self._join(idx, a, b)

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
        self._chunks = _NO_CHUNKS
        self._head = 0
        self._len = 0
        self._base = keep_position if keep_position is not None else 0
        self._cur_idx, self._cur_start = 0, self._base
        self._tail_open = False
