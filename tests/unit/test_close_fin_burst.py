"""``TcpTransport.close()`` hands the FIN to the table's drain of the loop
iteration (``TcpEndpoint.touch``) instead of sending it inside the call:
the FINs of every connection closed in one iteration leave in one device
burst, and per connection the segments are the same as when each close
has an iteration (and so a burst) of its own.  Two stacks on the
in-memory link, asyncio streams on both."""

from __future__ import annotations

import asyncio
from typing import Any

from test_tx_cork import _segments, _settled, _shape

from ustack.link.memory import MemoryPair
from ustack.stack import Stack
from ustack.wire.tcp import FIN

A, B = "10.9.1.1", "10.9.1.2"
N = 12


def _fins(frames: list[bytes]) -> int:
    n = 0
    for frame in frames:
        if frame[12:14] == b"\x08\x00" and frame[23] == 6:
            ihl = (frame[14] & 0x0F) * 4
            n += bool(frame[14 + ihl + 13] & FIN)
    return n


def _run(together: bool) -> dict[str, Any]:
    result: dict[str, Any] = {}

    async def main() -> None:
        a_dev, b_dev = MemoryPair()
        a_dev.record_sent = b_dev.record_sent = True
        bursts: list[int] = []  # frames per device call of the client
        one = a_dev.send

        def counted_one(frame: Any) -> None:
            bursts.append(1)
            one(frame)

        def counted_many(frames: Any) -> None:
            bursts.append(len(frames))
            for frame in frames:
                one(frame)

        a_dev.send = counted_one  # type: ignore[method-assign]
        a_dev.send_many = counted_many  # type: ignore[method-assign]
        a = await Stack.start(address=f"{A}/24", device=a_dev, diagnostics=False)
        b = await Stack.start(address=f"{B}/24", device=b_dev, diagnostics=False)
        try:
            async def serve(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
                assert await r.read() == b""
                w.close()

            await b.start_server(serve, port=7200)
            writers = [(await a.open_connection(B, 7200))[1] for _ in range(N)]
            for _ in range(20):
                await asyncio.sleep(0)
            fins0 = _fins(a_dev.sent)
            calls0 = len(bursts)
            if together:
                for w in writers:
                    w.close()
                # not inside close(): in the iteration's drain, one burst
                result["fins_in_call"] = _fins(a_dev.sent) - fins0
                await asyncio.sleep(0)
                result["fins_after"] = _fins(a_dev.sent) - fins0
                result["burst"] = bursts[calls0:]
            else:
                for w in writers:
                    w.close()
                    await asyncio.sleep(0)
            for w in writers:
                await w.wait_closed()
            await _settled(a, b)
            result["segments_a"] = _segments(a_dev.sent)
            result["segments_b"] = _segments(b_dev.sent)
            result["counters"] = tuple(
                {k: v for k, v in s.tcp.counters.items() if k != "tcp_timer_fires"}
                for s in (a, b))
            result["mib"] = (dict(a.tcp.mib.items()), dict(b.tcp.mib.items()))
        finally:
            await a.close()
            await b.close()

    asyncio.run(asyncio.wait_for(main(), 30))
    return result


def test_closes_of_one_iteration_leave_in_one_burst() -> None:
    together = _run(True)
    assert together["fins_in_call"] == 0
    assert together["fins_after"] == N
    assert together["burst"] == [N]  # one device call carried every FIN


def test_per_connection_segments_equal_spread_closes() -> None:
    together = _run(True)
    spread = _run(False)
    assert len(together["segments_a"]) == N
    assert _shape(together["segments_a"]) == _shape(spread["segments_a"])
    assert _shape(together["segments_b"]) == _shape(spread["segments_b"])
    assert together["counters"] == spread["counters"]
    assert together["mib"] == spread["mib"]
