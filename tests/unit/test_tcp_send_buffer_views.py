"""SendBuffer.peek_view against peek and a model: the same bytes for any mix
of writes (bytes, views of bytes, views of mutable buffers, small writes into
the tail), peeks across chunk edges and acknowledgments; a view only where
the bytes lie in one immutable chunk; a view handed out keeps its bytes when
the buffer acknowledges them and the caller's mutable buffers change."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from ustack.tcp.send_buffer import _PIECE, SendBuffer

_BLOCK = random.Random(11).randbytes(4 * _PIECE + 4096)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(
    st.tuples(st.just("write"), st.sampled_from([1, 100, 1447, 2048, 5000, _PIECE + 1,
                                                 2 * _PIECE + 17]),
              st.sampled_from(["bytes", "view", "bytearray", "mutable-view"]),
              st.integers(0, 4000)),
    st.tuples(st.just("peek"), st.integers(0, 1 << 20),
              st.sampled_from([1, 1448, 20000, 65160, 200000]), st.just(0)),
    st.tuples(st.just("ack"), st.integers(0, 1 << 20), st.just(0), st.just(0)),
), max_size=30))
def test_peek_view_against_a_model(steps: list[tuple[str, int, object, int]]) -> None:
    b = SendBuffer(1 << 20)
    model = bytearray()
    kept: list[tuple[bytes | memoryview, bytes]] = []  # (a view handed out, its bytes then)
    for kind, n, how, start in steps:
        if kind == "write":
            raw = _BLOCK[start:start + n]
            data: bytes | bytearray | memoryview
            if how == "bytes":
                data = raw
            elif how == "view":
                data = memoryview(_BLOCK)[start:start + n]
            elif how == "bytearray":
                data = bytearray(raw)
            else:
                data = memoryview(bytearray(raw))
            k = b.write(data)
            if not isinstance(data, bytes) and not (
                    isinstance(data, memoryview) and data.readonly):
                data[:] = bytes(len(data))  # the caller reuses its buffer
            model += raw[:k]
        elif kind == "peek" and model:
            off = n % len(model)
            view = b.peek_view(off, how)  # type: ignore[arg-type]
            want = bytes(model[off:off + how])  # type: ignore[operator]
            assert bytes(view) == want == b.peek(off, how)  # type: ignore[arg-type]
            if type(view) is memoryview:
                assert view.readonly
                obj = view.obj
                assert type(obj) is bytes
            kept.append((view, want))
        elif kind == "ack":
            k = n % (len(model) + 1)
            b.acknowledge(k)
            del model[:k]
        assert len(b) == len(model)
    for view, want in kept:
        assert bytes(view) == want


def test_a_segment_inside_one_chunk_is_a_view() -> None:
    b = SendBuffer(1 << 22)
    raw = _BLOCK[:3 * _PIECE]
    b.write(memoryview(raw))
    got = b.peek_view(1000, 65160)
    assert type(got) is memoryview and got.obj is raw and bytes(got) == raw[1000:66160]
    b.write(raw)
    whole = b.peek_view(3 * _PIECE, 3 * _PIECE)
    assert whole is raw  # a whole bytes chunk as it is
    across = b.peek_view(3 * _PIECE - 10, 20)  # two chunks: one joined copy
    assert type(across) is bytes and across == raw[-10:] + raw[:10]
