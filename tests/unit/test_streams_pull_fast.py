"""TcpTransport._pull's direct branch (asyncio's own StreamReaderProtocol,
nothing held: every request/response) = the general ``_pull_general``:
random receive buffers (one or several chunks, more than a reader's limit
so that it pauses reading part way), EOF from the peer, a close waiting
for the data, a lost transport; afterwards both transports (one through
``_pull``, one through ``_pull_general``) made the same core calls, their
readers hold the same bytes and EOF, and their flags are the same; with
asyncio's StreamReader (fed views, ``recv_into``) and with ustack's (handed
the chunks, ``recv_chunks``)."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ustack.stream_reader import StreamReader
from ustack.streams import TcpTransport


class Loop:
    def time(self) -> float:
        return 2.0

    def call_soon(self, *args: Any) -> None:
        pass

    def call_exception_handler(self, ctx: dict[str, Any]) -> None:
        pass


class Table:
    def __init__(self, log: list[Any]) -> None:
        self.loop = Loop()
        self.log = log

    def detach(self, ep: Any) -> None:
        self.log.append("detach")


class Conn:
    """The core's read side: ``chunks`` are what readable() reports in turn
    (recv_into hands out a contiguous piece of at most that much)."""

    def __init__(self, log: list[Any], data: bytes, piece: int) -> None:
        self.log = log
        self.buf = bytearray(data)
        self.piece = piece

    def readable(self) -> int:
        self.log.append(("readable", len(self.buf)))
        return len(self.buf)

    def recv_into(self, sink: Any, max_bytes: int, now: float) -> int:
        n = min(max_bytes, self.piece, len(self.buf))
        self.log.append(("recv_into", max_bytes, now, n))
        view = memoryview(bytes(self.buf[:n]))
        del self.buf[:n]
        sink(view)
        return n

    def recv_chunks(self, max_bytes: int, now: float) -> list[Any]:
        n = min(max_bytes, self.piece, len(self.buf))
        self.log.append(("recv_chunks", max_bytes, now, n))
        data = bytes(self.buf[:n])
        del self.buf[:n]
        # (a bytes chunk and a view, as the receive buffer hands them)
        return [data[:n // 2], memoryview(data)[n // 2:]]

    def recv(self, max_bytes: int, now: float) -> bytes:
        n = min(max_bytes, len(self.buf))
        self.log.append(("recv", max_bytes, now))
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data


class Ep:
    def __init__(self, conn: Conn) -> None:
        self.conn = conn
        self.owner: Any = None
        self.removed = False

    @property
    def live(self) -> Conn:
        return self.conn

    def touch(self) -> None:
        self.conn.log.append("touch")


def _transport(data: bytes, piece: int, limit: int, flags: tuple[bool, bool, bool, bool],
               ours: bool = False) -> tuple[TcpTransport, asyncio.StreamReader, list[Any]]:
    log: list[Any] = []
    loop = asyncio.new_event_loop()
    try:
        reader = (StreamReader if ours else asyncio.StreamReader)(limit=limit, loop=loop)
        proto = asyncio.StreamReaderProtocol(reader, loop=loop)
    finally:
        loop.close()
    t = TcpTransport(Table(log), proto)  # type: ignore[arg-type]
    t._bind(Ep(Conn(log, data, piece)))  # type: ignore[arg-type]
    reader.set_transport(t)
    t._connected = True
    peer_eof, lost_when_drained, lost, paused = flags
    t._peer_eof, t._lost_when_drained, t._lost, t._reading_paused = (
        peer_eof, lost_when_drained, lost, paused)
    return t, reader, log


def _view(t: TcpTransport, reader: asyncio.StreamReader, log: list[Any]) -> tuple[Any, ...]:
    held = bytes(reader._buffer) + b"".join(getattr(reader, "_chunks", []))  # type: ignore[attr-defined]
    return (held, reader.at_eof(), reader._eof,  # type: ignore[attr-defined]
            t._reading_paused, t._lost, t._closing, t._eof_delivered, list(t._held),
            list(log))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(1, 120), st.integers(1, 200),
       st.tuples(st.booleans(), st.booleans(), st.sampled_from([False, False, True]),
                 st.sampled_from([False, False, True])), st.booleans())
def test_pull_equals_the_general_path(data: bytes, piece: int, limit: int,
                                      flags: tuple[bool, bool, bool, bool], ours: bool) -> None:
    fast, fast_reader, fast_log = _transport(data, piece, limit, flags, ours)
    ref, ref_reader, ref_log = _transport(data, piece, limit, flags, ours)
    assert fast._direct and ref._direct  # (asyncio's StreamReaderProtocol)
    fast._pull()
    ep = ref._ep
    assert ep is not None
    ref._pull_general(ep, ep.conn, ref._held)
    assert _view(fast, fast_reader, fast_log) == _view(ref, ref_reader, ref_log)


def test_the_direct_branch_delivers_and_stops_at_a_pause() -> None:
    t, reader, log = _transport(b"x" * 100, 30, 10, (False, False, False, False))
    t._pull()
    # the reader paused reading above 2 * limit: the rest stays in the core
    assert t._reading_paused and 0 < len(reader._buffer) < 100  # type: ignore[attr-defined]
    assert ("recv_into", 100, 2.0, 30) in log


def test_ustacks_reader_is_handed_the_chunks_and_pauses_the_same() -> None:
    t, reader, log = _transport(b"x" * 100, 30, 10, (False, False, False, False), ours=True)
    t._pull()
    assert t._reading_paused and reader._chunked == 30  # type: ignore[attr-defined]
    assert ("recv_chunks", 100, 2.0, 30) in log and not [e for e in log if e[0] == "recv_into"]


@settings(max_examples=50, deadline=None)
@given(st.binary(min_size=1, max_size=300), st.integers(1, 120))
def test_a_protocol_whose_reader_is_gone_drops_the_data_on_both_paths(data: bytes,
                                                                     piece: int) -> None:
    # (the direct branch feeds the reader itself; without one it goes
    # through data_received, which drops the data, as the general path does)
    fast, fast_reader, fast_log = _transport(data, piece, 1000, (False, False, False, False))
    ref, ref_reader, ref_log = _transport(data, piece, 1000, (False, False, False, False))
    for t in (fast, ref):
        t._protocol._stream_reader_wr = None  # type: ignore[attr-defined]
    fast._pull()
    ep = ref._ep
    assert ep is not None
    ref._pull_general(ep, ep.conn, ref._held)
    assert _view(fast, fast_reader, fast_log) == _view(ref, ref_reader, ref_log)
    assert fast_reader._buffer == b""  # type: ignore[attr-defined]
    assert ("readable", 0) in fast_log
