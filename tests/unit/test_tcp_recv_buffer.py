"""RecvBuffer (the receive buffer as a FIFO of chunks) against the
``bytearray`` FIFO it replaced: the same bytes, counts and order for any mix
of appends (bytes and views of frames, small and big) and reads
(``read``, ``read_into``, ``take``), and what it promises about views and
failures; the chunks ``take`` hands over are never changed afterwards."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ustack.tcp.recv_buffer import BIG_CHUNK, RecvBuffer

_sizes = st.one_of(st.integers(0, 40), st.integers(1000, 1500),
                   st.integers(BIG_CHUNK - 2, BIG_CHUNK + 2), st.integers(20000, 70000))
_op = st.one_of(
    st.tuples(st.just("append"), _sizes, st.booleans(), st.integers(0, 80)),
    st.tuples(st.just("read"), st.integers(-1, 150000), st.booleans(), st.just(0)),
    st.tuples(st.just("into"), st.integers(-1, 150000), st.booleans(), st.just(0)),
    st.tuples(st.just("take"), st.integers(-1, 150000), st.booleans(), st.just(0)),
)


@settings(max_examples=400, deadline=None)
@given(ops=st.lists(_op, min_size=1, max_size=40))
def test_recv_buffer_equals_a_bytearray_fifo(ops: list[tuple[str, int, bool, int]]) -> None:
    buf = RecvBuffer()
    model = bytearray()
    counter = 0
    taken: list[tuple[object, bytes]] = []  # (chunk handed over, its bytes then)
    for kind, n, flag, head in ops:
        if kind == "append":
            # a frame whose text starts after a header: a view, or a bytes copy
            frame = bytes((counter + i) % 251 for i in range(head + n))
            counter += n
            text = memoryview(frame)[head:] if flag else frame[head:]
            buf.append(text)
            model += text
        elif kind == "read":
            want = bytes(model[:n]) if n > 0 else b""
            del model[:len(want)]
            assert buf.read(n) == want
        elif kind == "take":
            want = bytes(model[:n]) if n > 0 else b""
            del model[:len(want)]
            chunks = buf.take(n)
            assert b"".join(chunks) == want and all(chunks)
            taken += [(c, bytes(c)) for c in chunks]
        else:
            want = bytes(model[:n]) if n > 0 else b""
            del model[:len(want)]
            got: list[bytes] = []
            k = buf.read_into(lambda v, got=got: got.append(bytes(v)), n)  # type: ignore[misc]
            assert (k, b"".join(got)) == (len(want), want)
            # every view but a big chunk's is a join of small ones: none empty
            assert all(got)
        assert len(buf) == len(model)
        assert bool(buf) == bool(model)
        assert bytes(buf) == bytes(model)
        assert all(bytes(c) == then for c, then in taken)  # type: ignore[call-overload]


def test_read_into_hands_big_chunks_as_they_are_and_joins_small_ones() -> None:
    buf = RecvBuffer()
    for part in (b"a" * 10, b"b" * 20, b"c" * BIG_CHUNK, b"d" * 5, b"e" * 7):
        buf.append(memoryview(part))
    sizes: list[int] = []
    assert buf.read_into(lambda v: sizes.append(len(v)), 1 << 20) == 30 + BIG_CHUNK + 12
    assert sizes == [30, BIG_CHUNK, 12]
    assert not buf and buf.read(10) == b""


def test_a_whole_bytes_chunk_is_read_without_a_copy() -> None:
    buf = RecvBuffer()
    data = bytes(range(200)) * 20  # (at least SMALL: kept as it came)
    buf.append(data)
    assert buf.read(len(data)) is data


def test_read_into_views_are_released_and_bytes_taken_when_the_sink_fails() -> None:
    buf = RecvBuffer()
    buf.append(b"x" * BIG_CHUNK)
    buf.append(b"y" * BIG_CHUNK)
    buf.append(b"tail")
    kept: list[memoryview] = []

    def bad(view: memoryview) -> None:
        kept.append(view)
        raise RuntimeError("sink failed")

    with pytest.raises(RuntimeError):
        buf.read_into(bad, 2 * BIG_CHUNK + 2)
    assert len(kept) == 1  # the rest was not handed on ...
    with pytest.raises(ValueError):
        bytes(kept[0])  # ... the view handed on is released ...
    assert buf.read(100) == b"il"  # ... and all the bytes asked for are gone


def test_an_emptied_buffer_keeps_no_list() -> None:
    a, b = RecvBuffer(), RecvBuffer()
    a.append(b"abc")
    assert a.read(3) == b"abc"
    b.append(b"x")
    b.clear()
    assert a._chunks is b._chunks  # the shared empty list (issue 14: idle memory)
    assert not a._chunks


def test_small_texts_are_copied_into_one_tail_and_big_ones_kept() -> None:
    buf = RecvBuffer()
    frame = bytes(100) + b"s" * 1448
    for _ in range(3):
        buf.append(memoryview(frame)[100:])
    big = memoryview(bytes(70000))
    buf.append(big)
    buf.append(b"t" * 10)
    assert [type(c) for c in buf._chunks] == [bytearray, memoryview, bytearray]
    assert buf._chunks[1] is big
    # a read that cuts the tail closes it: the next small text starts another
    assert len(buf.read(3 * 1448 + 70000 + 4)) == 3 * 1448 + 70004
    buf.append(b"u" * 5)
    assert bytes(buf) == b"t" * 6 + b"u" * 5


_run_sizes = st.one_of(st.integers(1, 40), st.integers(1400, 1500), st.integers(2040, 2060),
                       st.integers(20000, 66000))


@settings(max_examples=300, deadline=None)
@given(ops=st.lists(st.one_of(
    st.tuples(st.just("run"), st.lists(_run_sizes, min_size=0, max_size=120)),
    st.tuples(st.just("append"), st.lists(_run_sizes, min_size=1, max_size=1)),
    st.tuples(st.just("read"), st.lists(st.integers(1, 200000), min_size=1, max_size=1)),
    st.tuples(st.just("into"), st.lists(st.integers(1, 200000), min_size=1, max_size=1)),
), min_size=1, max_size=12))
def test_append_texts_equals_appending_each(ops: list[tuple[str, list[int]]]) -> None:
    """append_texts (a receive run's texts) against append of each and the
    bytearray FIFO: the same bytes and counts for any mix with appends and
    reads; big texts stay the views they came as."""
    buf = RecvBuffer()
    each = RecvBuffer()
    model = bytearray()
    counter = 0
    for kind, sizes in ops:
        if kind in ("run", "append"):
            texts: list[bytes | memoryview] = []
            frames: list[bytes] = []
            for n in sizes:
                frame = bytes((counter + i) % 251 for i in range(n + 20))
                counter += n
                frames.append(frame)
                texts.append(memoryview(frame)[20:])
            if kind == "run":
                buf.append_texts(texts, sum(len(t) for t in texts))
            else:
                buf.append(texts[0])
            for frame in frames:  # (views of their own: read_into releases a view it hands on)
                each.append(memoryview(frame)[20:])
                model += frame[20:]
            big = [t for t in texts if len(t) >= 2048]
            assert all(any(c is t for c in buf._chunks) for t in big)
        elif kind == "read":
            want = bytes(model[:sizes[0]])
            del model[:len(want)]
            assert buf.read(sizes[0]) == want == each.read(sizes[0])
        else:
            want = bytes(model[:sizes[0]])
            del model[:len(want)]
            got: list[bytes] = []
            k = buf.read_into(lambda v, got=got: got.append(bytes(v)), sizes[0])  # type: ignore[misc]
            assert (k, b"".join(got)) == (len(want), want)
            each.read(sizes[0])
        assert len(buf) == len(model) == len(each)
        assert bytes(buf) == bytes(model)
