"""ustack nstat: the TCP MIB of running stacks through the diagnostics
endpoint, in nstat's shape (issue 11 item 3)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path

import pytest

from ustack.cli.nstat import format_nstat
from ustack.link.faults import FaultDevice
from ustack.link.memory import MemoryPair
from ustack.stack import Stack
from ustack.tcp.mib import NAMES

ROOT = Path(__file__).resolve().parents[2]


async def _nstat(env: dict[str, str], *argv: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ustack", "nstat", *argv, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
def nstat_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    run_dir = tmp_path / "run"
    monkeypatch.setenv("USTACK_RUN_DIR", str(run_dir))
    monkeypatch.delenv("USTACK_DIAG", raising=False)
    return {**os.environ, "PYTHONPATH": str(ROOT), "USTACK_RUN_DIR": str(run_dir),
            "USTACK_NSTAT_HISTORY": str(tmp_path / "history")}


async def test_nstat_shows_retransmissions_after_a_lossy_transfer(
        nstat_env: dict[str, str]) -> None:
    pair = MemoryPair()
    a = await Stack.start(address="10.9.0.1/24",
                          device=FaultDevice(pair.a, seed=3, loss=0.05, directions="tx"))
    b = await Stack.start(address="10.9.0.2/24", device=pair.b)
    try:
        done = asyncio.Event()

        async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(-1)
            writer.close()
            done.set()

        await b.start_server(sink, port=9)
        _, writer = await a.open_connection("10.9.0.2", 9)
        writer.write(b"x" * 400_000)
        await writer.drain()
        writer.write_eof()
        await asyncio.wait_for(done.wait(), 60)
        counters = a.counters()
        assert counters["TcpRetransSegs"] > 0 and counters["dev.fault_tx_lost"] > 0

        code, out, err = await _nstat(nstat_env, "-a", "-j", "-s")
        assert code == 0, err
        doc = json.loads(out)
        assert len(doc) == 2  # both stacks of this process
        (ours,) = [v for v in doc.values() if v.get("TcpActiveOpens") == 1]
        assert ours["TcpRetransSegs"] == counters["TcpRetransSegs"]
        assert set(ours) <= set(NAMES) and all(v != 0 for v in ours.values())

        # text: nstat's layout; first run without -a shows everything (no history)
        code, out, err = await _nstat(nstat_env)
        assert code == 0, err
        lines = out.splitlines()
        assert sum(1 for line in lines if line.startswith("#stack-")) == 2
        row = next(line for line in lines if line.startswith("TcpRetransSegs"))
        assert re.fullmatch(r"TcpRetransSegs {18}\d+ +0\.0", row)
        assert row[32:48].strip() == str(counters["TcpRetransSegs"])
        # second run: increments since the first, zeros hidden: nothing moved
        code, out, _ = await _nstat(nstat_env)
        assert "TcpRetransSegs" not in out
        # -z shows the zero increments; a pattern selects counters
        code, out, _ = await _nstat(nstat_env, "-z", "-s", "TcpRetrans*")
        assert [line.split()[0] for line in out.splitlines() if not line.startswith("#")] == [
            "TcpRetransSegs", "TcpRetransSegs"]
    finally:
        await a.close()
        await b.close()


async def test_nstat_without_stacks_prints_nothing(nstat_env: dict[str, str]) -> None:
    code, out, err = await _nstat(nstat_env, "-a")
    assert code == 0 and out == "" and err == ""


def test_format_matches_iproute2() -> None:
    text = format_nstat({"kernel": {"TcpActiveOpens": 5, "TcpExtTCPTimeouts": 123456}}, {})
    assert text == ("#kernel\n"
                    "TcpActiveOpens                  5                  0.0\n"
                    "TcpExtTCPTimeouts               123456             0.0\n")
