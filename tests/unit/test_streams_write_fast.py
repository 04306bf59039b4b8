"""TcpTransport.write's inlined branch (bytes, connected, nothing pending)
= the general ``_write``: random writes (bytes, bytearray, memoryview,
empty, other types) against a core that takes all, part or nothing, or
fails, from random transport states; after every call both transports
(one through ``write``, one through ``_write``) hold the same queue, sizes,
flags and made the same core, table and protocol calls."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from ustack.streams import TcpTransport


class Loop:
    def time(self) -> float:
        return 1.0

    def call_soon(self, *args: Any) -> None:
        pass

    def call_exception_handler(self, ctx: dict[str, Any]) -> None:
        pass


class Table:
    def __init__(self, log: list[Any]) -> None:
        self.loop = Loop()
        self.log = log

    def send_now(self, ep: Any) -> None:
        self.log.append("send_now")

    def detach(self, ep: Any) -> None:
        self.log.append("detach")


class Conn:
    def __init__(self, log: list[Any], takes: list[int | None]) -> None:
        self.log = log
        self.takes = list(takes)

    def send(self, data: bytes, now: float) -> int:
        self.log.append(("send", bytes(data)))
        take = self.takes.pop(0) if self.takes else -1
        if take is None:
            raise ConnectionResetError("reset")
        return len(data) if take < 0 else min(take, len(data))


class Ep:
    def __init__(self, conn: Conn) -> None:
        self.conn = conn
        self.owner: Any = None
        self.removed = False

    @property
    def live(self) -> Conn:  # (TcpEndpoint.live: an owned endpoint's connection)
        return self.conn


class Protocol(asyncio.Protocol):
    def __init__(self, log: list[Any]) -> None:
        self.log = log

    def pause_writing(self) -> None:
        self.log.append("pause")

    def resume_writing(self) -> None:
        self.log.append("resume")

    def connection_lost(self, exc: Exception | None) -> None:
        self.log.append(("lost", type(exc).__name__))


def _transport(state: tuple[bool, bool, bool, bool, bool], takes: list[int | None],
               high: int) -> tuple[TcpTransport, list[Any]]:
    log: list[Any] = []
    t = TcpTransport(Table(log), Protocol(log), write_high=high)  # type: ignore[arg-type]
    t._bind(Ep(Conn(log, takes)))  # type: ignore[arg-type]
    connected, pending, eof, lost, closing = state
    t._connected = connected
    if pending:
        t._queue(b"old")
    t._eof_wanted, t._lost, t._closing = eof, lost, closing
    return t, log


def _view(t: TcpTransport, log: list[Any]) -> tuple[Any, ...]:
    return (list(t._pending), t._pending_size, t._writing_paused, t._lost, t._closing,
            list(log))


payload = st.binary(max_size=40)
datum = st.one_of(payload, payload.map(bytearray), payload.map(lambda b: memoryview(b)),
                  st.just("text"), st.just(b""))


rarely = st.sampled_from([False, False, False, True])


@settings(max_examples=300)
@given(st.tuples(st.sampled_from([True, True, False]), rarely, rarely, rarely, rarely),
       st.lists(st.one_of(st.none(), st.integers(-1, 50)), max_size=12),
       st.lists(datum, min_size=1, max_size=8), st.integers(0, 64))
@example((True, False, False, False, False), [2], [b"abcdef"], 1)  # partial take past high
@example((True, False, False, False, False), [None], [b"ab"], 8)  # the core fails
def test_write_equals_the_general_path(state: tuple[bool, bool, bool, bool, bool],
                                       takes: list[int | None], writes: list[Any],
                                       high: int) -> None:
    fast, fast_log = _transport(state, takes, high)
    ref, ref_log = _transport(state, takes, high)
    for data in writes:
        outcome: list[type[Exception] | None] = []
        for call in (fast.write, ref._write):
            try:
                call(data)
                outcome.append(None)
            except (TypeError, RuntimeError) as exc:
                outcome.append(type(exc))
        assert outcome[0] == outcome[1]
        assert _view(fast, fast_log) == _view(ref, ref_log)


def test_a_request_takes_the_inlined_branch() -> None:
    calls: list[Any] = []

    class Spy(TcpTransport):
        __slots__ = ()

        def _write(self, data: bytes | bytearray | memoryview) -> None:
            calls.append(data)

    log: list[Any] = []
    t = Spy(Table(log), Protocol(log))  # type: ignore[arg-type]
    t._bind(Ep(Conn(log, [])))  # type: ignore[arg-type]
    t._connected = True
    t.write(b"x")
    assert calls == [] and log == [("send", b"x"), "send_now"]
    t.write(bytearray(b"y"))  # not bytes: the general path
    assert calls == [bytearray(b"y")]
