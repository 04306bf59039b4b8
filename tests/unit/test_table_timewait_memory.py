"""A connection swapped for the compact TIME-WAIT record gives its memory
charge back (Linux tcp_time_wait frees the socket and its buffers).  Before,
each record kept its last charge (the receive window is charged ahead) for
2MSL: a few thousand closes a minute put the whole stack under memory
pressure, and new connections' writes were held until the records expired
(bench/cps.py: 192 of 3000 connect+request+close connections hung)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

pytest.importorskip("ustack.tcp.connection")

from ustack.link.memory import MemoryPair  # noqa: E402
from ustack.stack import Stack  # noqa: E402
from ustack.tcp.timewait import TimeWait  # noqa: E402


async def test_compacted_time_wait_records_hold_no_memory_charge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("USTACK_RUN_DIR", str(tmp_path))
    a_dev, b_dev = MemoryPair()
    a = await Stack.start(device=a_dev, address="10.9.0.1/24", diagnostics=False)
    b = await Stack.start(device=b_dev, address="10.9.0.2/24", diagnostics=False)
    try:
        async def echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            w.write(await r.read(100))
            await r.read()  # the client's FIN
            w.close()

        await a.start_server(echo, port=8080)
        for _ in range(20):  # b closes first: its side keeps TIME-WAIT
            r, w = await b.open_connection("10.9.0.1", 8080)
            w.write(b"x")
            assert await r.readexactly(1) == b"x"
            w.close()
            await w.wait_closed()
        for _ in range(100):
            eps = list(b.tcp.endpoints())
            if eps and all(isinstance(ep.conn, TimeWait) for ep in eps):
                break
            await asyncio.sleep(0.02)
        eps = list(b.tcp.endpoints())
        assert len(eps) == 20 and all(isinstance(ep.conn, TimeWait) for ep in eps)
        assert [ep.mem for ep in eps] == [0] * 20
        assert b.tcp.memory.allocated == 0
    finally:
        await b.close()
        await a.close()
