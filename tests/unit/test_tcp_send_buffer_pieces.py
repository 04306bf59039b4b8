"""SendBuffer copies a large write that is not ``bytes`` in pieces of
``_PIECE`` bytes (heap-sized allocations, not one fresh mmap per write):
against a model, peeks across the pieces' edges, acknowledgments in between
and writes of every kind give the same bytes, and a later change to the
caller's buffer changes nothing."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from ustack.tcp.send_buffer import _PIECE, SendBuffer

_BLOCK = random.Random(5).randbytes(4 * _PIECE + 999)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(
    st.tuples(st.just("write"), st.sampled_from([_PIECE - 1, _PIECE, _PIECE + 1, 3 * _PIECE + 17,
                                                 5000]),
              st.sampled_from(["bytes", "bytearray", "memoryview"]), st.integers(0, 999)),
    st.tuples(st.just("peek"), st.integers(0, 1 << 20), st.sampled_from([1448, 65160, 200000]),
              st.just(0)),
    st.tuples(st.just("ack"), st.integers(0, 1 << 20), st.just(0), st.just(0)),
), max_size=25))
def test_large_writes_in_pieces_against_a_model(steps: list[tuple[str, int, object, int]]) -> None:
    b = SendBuffer(1 << 20)
    model = bytearray()
    for kind, n, how, start in steps:
        if kind == "write":
            raw = _BLOCK[start:start + n]
            data: bytes | bytearray | memoryview = raw if how == "bytes" else (
                bytearray(raw) if how == "bytearray" else memoryview(bytearray(raw)))
            k = b.write(data)
            if isinstance(data, memoryview):
                data[:] = bytes(len(data))  # the caller reuses its buffer
            elif isinstance(data, bytearray):
                data[:] = bytes(len(data))
            assert k == min(n, (1 << 20) - len(model))
            model += raw[:k]
        elif kind == "peek" and model:
            off = n % len(model)
            got = b.peek(off, how)  # type: ignore[arg-type]
            assert type(got) is bytes
            assert got == bytes(model[off:off + how])  # type: ignore[operator]
        elif kind == "ack":
            k = n % (len(model) + 1)
            b.acknowledge(k)
            del model[:k]
        assert len(b) == len(model)


def test_a_large_view_is_kept_as_pieces_and_bytes_as_it_came() -> None:
    b = SendBuffer(1 << 22)
    raw = _BLOCK[:3 * _PIECE + 5]
    b.write(memoryview(bytearray(raw)))  # a view of a mutable buffer: copied
    assert [len(c) for c in b._chunks] == [_PIECE, _PIECE, _PIECE, 5]
    b.write(raw)
    assert b._chunks[-1] is raw


def test_a_view_of_bytes_is_kept_as_it_came() -> None:
    """Bytes behind a view never change: no copy (the bench's writes)."""
    b = SendBuffer(1 << 22)
    raw = _BLOCK[:3 * _PIECE + 5]
    view = memoryview(raw)[7:]
    b.write(view)
    assert len(b._chunks) == 1 and b._chunks[0] is view
    # not kept: a strided view, a read-only view of a bytearray
    b.write(memoryview(raw)[::2])
    b.write(memoryview(bytearray(raw)).toreadonly())
    assert b._chunks[-1] is not view and type(b._chunks[-1]) is bytes
    assert bytes(b.peek(0, len(b))) == raw[7:] + raw[::2] + raw
