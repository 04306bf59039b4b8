"""``Stack.sockets()`` and the endpoint of real Stacks (two stacks over an
in-memory link, the real TCP core and streams), read by ``ustack ss`` in a
separate process."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

pytest.importorskip("ustack.tcp.connection")

from ustack.diag.snapshot import snapshot  # noqa: E402
from ustack.link.memory import MemoryPair  # noqa: E402
from ustack.stack import Stack  # noqa: E402


async def test_sockets_and_ss_of_two_stacks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_ss: Callable[..., Awaitable[str]]
) -> None:
    monkeypatch.setenv("USTACK_RUN_DIR", str(tmp_path))
    a_dev, b_dev = MemoryPair()
    a = await Stack.start(device=a_dev, address="10.9.0.1/24")
    b = await Stack.start(device=b_dev, address="10.9.0.2/24")
    try:
        names = os.listdir(tmp_path)
        endpoints = sorted(n for n in names if n.endswith(".sock"))
        assert len(endpoints) == 2
        # each with its identity file (ustack.stack_identity), nothing else
        assert sorted(names) == sorted(endpoints + [n + ".json" for n in endpoints])
        accepted: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

        async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            accepted.append((r, w))

        await a.start_server(handler, port=8080)
        _r1, w1 = await b.open_connection("10.9.0.1", 8080)  # stays ESTABLISHED
        _r2, w2 = await b.open_connection("10.9.0.1", 8080)  # b half-closes
        _r3, w3 = await b.open_connection("10.9.0.1", 8080)  # b closes first
        for _ in range(100):
            if len(accepted) == 3:
                break
            await asyncio.sleep(0.01)
        w1.write(b"hello")
        await w1.drain()
        w2.write_eof()
        w3.close()
        await asyncio.sleep(0.05)
        accepted[2][1].close()
        await asyncio.sleep(0.1)

        states_a = sorted(r.state for r in a.sockets())
        states_b = sorted(r.state for r in b.sockets())
        assert states_a == ["CLOSE-WAIT", "ESTAB", "LISTEN"]
        assert states_b == ["ESTAB", "FIN-WAIT-2", "TIME-WAIT"]
        listener = next(r for r in a.sockets() if r.state == "LISTEN")
        assert (listener.local_addr, listener.local_port, listener.remote_port) == (
            "10.9.0.1", 8080, 0
        )
        assert listener.send_q >= 1  # the backlog
        for r in a.sockets() + b.sockets():
            assert r.pid == os.getpid() and r.comm
            if r.state != "LISTEN":
                assert r.cwnd >= 1 and r.mss > 0
        for st in (a, b):  # the cheap view (no TcpInfo) agrees with the full one
            full = [tuple(r)[:12] for r in snapshot(st)]
            assert [tuple(r)[:12] for r in snapshot(st, detail=False)] == full
        tw = next(r for r in b.sockets() if r.state == "TIME-WAIT")
        assert tw.timer_name == "timewait" and 0 < tw.timer_expires <= 60

        text = await run_ss("-tanoiem")
        lines = text.splitlines()
        rows = [ln for ln in lines if not ln.startswith("\t")][1:]
        assert sorted(ln.split()[0] for ln in rows) == sorted(states_a + states_b)
        tw_line = next(ln for ln in rows if ln.startswith("TIME-WAIT"))
        assert "timer:(timewait," in tw_line
        cw_line = next(ln for ln in rows if ln.startswith("CLOSE-WAIT"))
        assert cw_line.rstrip().endswith("-->")
        fw_line = next(ln for ln in rows if ln.startswith("FIN-WAIT-2"))
        assert fw_line.rstrip().endswith("<--")
        est = await run_ss("-tn", "state", "established", "dport", "=", ":8080")
        assert len(est.splitlines()) == 2 and "10.9.0.2:" in est
    finally:
        await a.close()
        await b.close()
    assert os.listdir(tmp_path) == []
