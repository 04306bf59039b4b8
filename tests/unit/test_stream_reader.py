"""ustack.stream_reader.StreamReader = asyncio.StreamReader: the same random
feeds (bytes, bytearray and memoryview pieces, small and big), EOF or an
exception, and reads (read, readexactly, readuntil, readline, iteration),
also ones that wait for data, given to both in lockstep; after every step
both made the same transport calls (pause/resume), report the same
buffered byte count and at_eof, and every read ended the same (result, or
exception type, args and partial data)."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from ustack.stream_reader import SMALL, StreamReader


class Transport:
    def __init__(self) -> None:
        self.log: list[str] = []

    def pause_reading(self) -> None:
        self.log.append("pause")

    def resume_reading(self) -> None:
        self.log.append("resume")


def _buffered(reader: asyncio.StreamReader) -> int:
    return len(reader._buffer) + getattr(reader, "_chunked", 0)  # type: ignore[attr-defined]


def _outcome(task: asyncio.Task[Any]) -> Any:
    if not task.done():
        return "pending"
    exc = task.exception()
    if exc is None:
        return ("ok", task.result())
    return ("raised", type(exc), exc.args, getattr(exc, "partial", None),
            getattr(exc, "consumed", None))


async def _read_op(reader: asyncio.StreamReader, op: tuple[Any, ...]) -> Any:
    kind = op[0]
    if kind == "read":
        return await reader.read(op[1])
    if kind == "readexactly":
        return await reader.readexactly(op[1])
    if kind == "readuntil":
        return await reader.readuntil(op[1])
    if kind == "readline":
        return await reader.readline()
    if kind == "anext":
        return await reader.__anext__()
    raise AssertionError(kind)


_sizes = st.one_of(st.integers(0, 40), st.integers(SMALL - 5, SMALL + 5),
                   st.integers(3000, 70000))
_feed = st.tuples(st.just("feed"), _sizes, st.sampled_from(["bytes", "bytearray", "view"]),
                  st.sampled_from([b"x", b"\n", b"ab"]))
_read = st.one_of(
    st.tuples(st.just("read"), st.sampled_from([-1, 0, 1, 7, 100, 2047, 4096, 65536, 200000])),
    st.tuples(st.just("readexactly"), st.sampled_from([0, 1, 5, 2048, 5000, 70000])),
    st.tuples(st.just("readuntil"), st.sampled_from([b"\n", b"ab", b"xa\n"])),
    st.tuples(st.just("readline")),
    st.tuples(st.just("anext")),
)
_ops = st.lists(st.one_of(_feed, _feed, _read, st.tuples(st.just("repr"))), max_size=30)


def _data(size: int, kind: str, fill: bytes, n: int) -> Any:
    raw = (fill + bytes([65 + n % 26])) * (size // (len(fill) + 1) + 1)
    raw = raw[:size]
    if kind == "bytearray":
        return bytearray(raw)
    if kind == "view":
        return memoryview(b"--" + raw + b"--")[2:2 + size]
    return raw


async def _lockstep(limit: int, ops: list[tuple[Any, ...]], end: str) -> None:
    loop = asyncio.get_running_loop()
    readers: list[asyncio.StreamReader] = [asyncio.StreamReader(limit=limit, loop=loop),
                                           StreamReader(limit=limit, loop=loop)]
    transports = [Transport(), Transport()]
    for reader, transport in zip(readers, transports, strict=True):
        reader.set_transport(transport)  # type: ignore[arg-type]
    pending: list[asyncio.Task[Any]] | None = None

    async def settle() -> None:
        for _ in range(4):
            await asyncio.sleep(0)

    def check() -> None:
        ref, ours = readers
        assert transports[0].log == transports[1].log
        assert _buffered(ref) == _buffered(ours)
        assert ref.at_eof() == ours.at_eof()
        assert repr(ref.exception()) == repr(ours.exception())
        assert ref._paused == ours._paused  # type: ignore[attr-defined]

    for i, op in enumerate(ops):
        kind = op[0]
        if kind == "feed":
            _, size, how, fill = op
            for reader in readers:
                reader.feed_data(_data(size, how, fill, i))
        elif kind == "repr":
            texts = [repr(r).partition(" transport=")[0] for r in readers]
            assert texts[0] == texts[1]
        elif pending is None:
            pending = [asyncio.ensure_future(_read_op(r, op)) for r in readers]
        await settle()
        if pending is not None:
            outcomes = [_outcome(t) for t in pending]
            assert outcomes[0] == outcomes[1], (op, outcomes)
            if pending[0].done():
                pending = None
        check()
    if end == "eof":
        for reader in readers:
            reader.feed_eof()
    else:
        for reader in readers:
            reader.set_exception(ConnectionResetError("gone"))
    await settle()
    if pending is not None:
        outcomes = [_outcome(t) for t in pending]
        assert outcomes[0] == outcomes[1]
        assert "pending" not in outcomes
    check()
    # what is left, read out the same way (reads after EOF)
    for op in (("readexactly", 7), ("readuntil", b"\n"), ("readline",), ("read", 3),
               ("readexactly", 5000), ("read", 5000), ("read", -1)):
        tasks = [asyncio.ensure_future(_read_op(r, op)) for r in readers]
        await settle()
        outcomes = [_outcome(t) for t in tasks]
        assert outcomes[0] == outcomes[1]
        check()


@settings(max_examples=400, deadline=None)
@given(st.sampled_from([1, 5, 10, 2048, 65536]), _ops, st.sampled_from(["eof", "eof", "error"]))
@example(10, [("feed", 20, "view", b"x"), ("read", 1), ("read", 9)], "eof")  # (the bounds)
def test_the_chunked_reader_equals_asyncios(limit: int, ops: list[tuple[Any, ...]],
                                           end: str) -> None:
    asyncio.run(_lockstep(limit, ops, end))


def test_a_whole_bytes_chunk_is_returned_as_it_is() -> None:
    async def main() -> None:
        reader = StreamReader(loop=asyncio.get_running_loop())
        data = b"y" * 10000
        reader.feed_data(data)
        assert await reader.read(10000) is data
        reader.feed_data(data)
        reader.feed_data(b"z" * 3000)
        assert await reader.read(20000) == data + b"z" * 3000
        assert reader._chunked == 0

    asyncio.run(main())


def test_small_feeds_share_one_tail_chunk() -> None:
    async def main() -> None:
        reader = StreamReader(loop=asyncio.get_running_loop())
        for i in range(1000):
            reader.feed_data(memoryview(bytes([i % 256])))
        assert len(reader._chunks) == 1 and reader._chunked == 1000
        assert await reader.readexactly(10) == bytes(range(10))
        assert await reader.read(2000) == bytes(i % 256 for i in range(10, 1000))

    asyncio.run(main())
