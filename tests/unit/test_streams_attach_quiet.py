"""``streams.attach`` skips ``resume_reading()`` (a callback and two drains)
when nothing waits for a new connection's protocol.  Differential: every
scenario runs with the shortcut and without it; the protocol sees the same
callbacks with the same data, and the client sends as many segments."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ustack import streams
from ustack.link.memory import MemoryPair
from ustack.stack import Stack

A, B = "10.79.0.1", "10.79.0.2"


class Recorder(asyncio.Protocol):
    def __init__(self, log: list[Any], mode: str) -> None:
        self.log = log
        self.mode = mode
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.log.append("made")
        if self.mode == "pause":
            transport.pause_reading()
            asyncio.get_running_loop().call_later(0.05, transport.resume_reading)
        elif self.mode == "close":
            transport.close()
        elif self.mode == "write":
            transport.write(b"hello")

    def data_received(self, data: bytes) -> None:
        self.log.append(("data", data))
        if self.mode == "write" and b"hello" in b"".join(
                d[1] for d in self.log if isinstance(d, tuple)):
            self.transport.write_eof()

    def eof_received(self) -> bool | None:
        self.log.append("eof")
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.log.append(("lost", type(exc).__name__ if exc else None))


async def _server(r: asyncio.StreamReader, w: asyncio.StreamWriter, kind: str) -> None:
    if kind in ("greet", "greet_fin"):
        w.write(b"greetings")
    if kind in ("greet_fin", "fin"):
        w.close()
        return
    while data := await r.read(1024):
        w.write(data)
    w.close()


async def _scenario(kind: str, mode: str, quiet: bool) -> tuple[list[Any], int]:
    streams._QUIET_ATTACH = quiet
    a_dev, b_dev = MemoryPair()
    a = await Stack.start(address=f"{A}/24", device=a_dev, diagnostics=False)
    b = await Stack.start(address=f"{B}/24", device=b_dev, diagnostics=False)
    try:
        await b.start_server(lambda r, w: _server(r, w, kind), port=7000)
        log: list[Any] = []
        done = asyncio.get_running_loop().create_future()
        proto = Recorder(log, mode)
        orig_lost = proto.connection_lost

        def lost(exc: Exception | None) -> None:
            orig_lost(exc)
            if not done.done():
                done.set_result(None)

        proto.connection_lost = lost  # type: ignore[method-assign]
        transport: Any
        if kind in ("greet", "greet_fin", "fin"):
            # the server's first segments arrive before attach() runs
            transport = await streams.connect_transport(a.tcp, bytes([10, 79, 0, 2]), 7000)
            for _ in range(50):
                await asyncio.sleep(0)
            await streams.attach(transport, proto)
        else:
            transport, _ = await streams.create_connection(lambda: proto, B, 7000, stack=a)
        if mode in ("none", "pause"):
            transport.write(b"ping")
            await asyncio.sleep(0.02)
            transport.write_eof()
        await asyncio.wait_for(done, 10)
        return log, a.tcp.counters["tcp_segs_out"]
    finally:
        streams._QUIET_ATTACH = True
        await a.close()
        await b.close()


@pytest.mark.parametrize("kind,mode", [
    ("echo", "none"), ("echo", "pause"), ("echo", "close"), ("echo", "write"),
    ("greet", "none"), ("greet_fin", "none"), ("fin", "none"), ("greet", "pause"),
])
def test_quiet_attach_equals_resume_reading(kind: str, mode: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    taken: list[bool] = []
    real = streams._nothing_waits

    def spy(transport: Any) -> bool:
        result = real(transport)
        taken.append(result)
        return result

    monkeypatch.setattr(streams, "_nothing_waits", spy)
    fast = asyncio.run(_scenario(kind, mode, True))
    assert taken, "attach did not consult the shortcut"
    if kind == "echo" and mode in ("none", "write"):
        assert taken == [True]  # the shortcut is really taken here
    if kind in ("greet", "greet_fin", "fin") or mode == "close":
        assert taken == [False]  # data, EOF or a close waits: the full path
    plain = asyncio.run(_scenario(kind, mode, False))
    assert fast[0] == plain[0]
    assert fast[1] == plain[1]  # the same number of segments out
    assert fast[0][0] == "made" and fast[0][-1][0] == "lost"
    if kind == "echo" and mode in ("none", "pause"):
        assert ("data", b"ping") in fast[0]
    if kind in ("greet", "greet_fin"):
        assert ("data", b"greetings") in fast[0]
    if kind in ("greet_fin", "fin"):
        assert "eof" in fast[0]
