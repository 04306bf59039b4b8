"""Connection teardown, issue 14 (cps19): the 2MSL entries of TIME-WAIT
records wait in the table's FIFO (``TcpTable._tw_fifo``), not in the
timer heap, and the records still end on time.  Two stacks on the
in-memory link, asyncio streams on both, a short ``time_wait``."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from ustack.link.memory import MemoryPair
from ustack.stack import Stack
from ustack.tcp.config import TcpConfig
from ustack.tcp.timewait import TimeWait

A, B = "10.9.3.1", "10.9.3.2"
N = 12
TIME_WAIT = 0.3


def _run() -> dict[str, Any]:
    out: dict[str, Any] = {}

    async def main() -> None:
        a_dev, b_dev = MemoryPair()
        a = await Stack.start(address=f"{A}/24", device=a_dev, diagnostics=False,
                              tcp_config=TcpConfig(time_wait=TIME_WAIT))
        b = await Stack.start(address=f"{B}/24", device=b_dev, diagnostics=False)
        try:
            async def serve(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
                with contextlib.suppress(ConnectionError):
                    await r.read()
                w.close()

            await b.start_server(serve, port=7400)
            writers = [(await a.open_connection(B, 7400))[1] for _ in range(N)]
            closed_at = a.tcp.now()
            for w in writers:
                w.close()
            for w in writers:
                await w.wait_closed()
            for _ in range(50):
                await asyncio.sleep(0.001)
            table = a.tcp
            eps = list(table._conns.values())
            out["records"] = [type(ep.conn) for ep in eps]
            out["fifo_live"] = sum(1 for e in table._tw_fifo
                                   if not e[2].removed and e[2].heap_deadline == e[0])
            out["heap_live"] = sum(1 for e in table._heap
                                   if not e[2].removed and e[2].heap_deadline == e[0])
            deadlines = [e[0] for e in table._tw_fifo]
            out["sorted"] = deadlines == sorted(deadlines)
            async with asyncio.timeout(5):
                while table._conns:
                    await asyncio.sleep(0.02)
            out["gone_after"] = table.now() - closed_at
            out["fifo_left"] = len(table._tw_fifo)
            out["timer"] = table._timer
        finally:
            await a.close()
            await b.close()

    asyncio.run(main())
    return out


def test_time_wait_records_wait_in_the_fifo_and_end_after_2msl() -> None:
    got = _run()
    assert got["records"] == [TimeWait] * N
    assert got["fifo_live"] == N and got["heap_live"] == 0
    assert got["sorted"]
    # ended by the table's timer, not before their time_wait
    assert got["gone_after"] >= TIME_WAIT
    assert got["fifo_left"] == 0 and got["timer"] is None
