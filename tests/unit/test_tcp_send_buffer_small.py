"""SendBuffer keeps the first small ``bytes`` write of a tail as it came
(no copy) and copies it into the coalescing bytearray at the next small
write: against a model bytearray over random writes of every type and size
class, peeks, acknowledgments and clears, every peek is ``bytes``, equals
the model, and stays unchanged whatever the buffer does afterwards."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ustack.tcp.send_buffer import _SMALL, _TAIL_MAX, SendBuffer

sizes = st.sampled_from([1, 2, 7, _SMALL - 1, _SMALL, _SMALL + 1, 3000]) | st.integers(1, 100)
kinds = st.sampled_from(["bytes", "bytearray", "memoryview"])
ops = st.lists(
    st.one_of(
        st.tuples(st.just("write"), sizes, kinds, st.booleans()),
        st.tuples(st.just("peek"), st.integers(0, 10_000), st.integers(1, 6000)),
        st.tuples(st.just("ack"), st.integers(0, 10_000)),
        st.tuples(st.just("clear")),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(ops, st.sampled_from([100, 5000, 1 << 20]))
def test_send_buffer_small_writes_against_a_model(steps: list[tuple[Any, ...]], limit: int) -> None:
    b = SendBuffer(limit)
    model = bytearray()
    seen: list[tuple[bytes, bytes]] = []  # (what peek returned, a copy of it)
    counter = 0
    for step in steps:
        if step[0] == "write":
            _, n, kind, bounded = step
            counter += 1
            raw = bytes((counter + i) & 0xFF for i in range(n))
            data = raw if kind == "bytes" else (
                bytearray(raw) if kind == "bytearray" else memoryview(raw))
            room = limit - len(model) if bounded else None
            k = b.write(data, room)
            if isinstance(data, bytearray):
                data[:] = bytes(len(data))  # the caller reuses its buffer
            free = (limit - len(model)) if room is None else room
            assert k == max(0, min(n, free))
            model += raw[:k]
        elif step[0] == "peek" and model:
            off = step[1] % len(model)
            got = b.peek(off, step[2])
            assert type(got) is bytes
            assert got == bytes(model[off:off + step[2]])
            seen.append((got, bytes(got)))
        elif step[0] == "ack":
            n = step[1] % (len(model) + 1)
            b.acknowledge(n)
            del model[:n]
        elif step[0] == "clear":
            b.clear()
            model.clear()
        assert len(b) == len(model)
        for got, copy in seen:
            assert got == copy  # nothing handed out ever changes
    if model:
        assert b.peek(0, len(model)) == bytes(model)


def test_a_lone_small_write_is_not_copied_and_a_second_one_coalesces() -> None:
    b = SendBuffer(1 << 20)
    first = b"x" * 3
    assert b.write(first) == 3
    assert b.peek(0, 3) is first  # the request/response case: no copy
    assert b.write(b"yz") == 2
    assert b.peek(0, 5) == b"xxxyz" and first == b"xxx"
    assert len(b._chunks) == 1  # one coalesced tail
    b.acknowledge(5)
    again = b"q"
    b.write(again)
    assert b.peek(0, 1) is again
    # the tail never grows past _TAIL_MAX
    b.clear()
    for _ in range(_TAIL_MAX // (_SMALL - 1) + 2):
        b.write(b"a" * (_SMALL - 1))
    assert max(len(c) for c in b._chunks) <= _TAIL_MAX
