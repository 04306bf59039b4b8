"""``ustack ss`` asks each stack once for TCP and UDP (``"netid": "all"``),
falls back to two requests with a stack that does not know it, and ``ss -s``
counts the UDP sockets (issue 10 item 5)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ustack.diag.client import query_endpoint_both, query_stacks_both
from ustack.diag.endpoint import DiagnosticsServer, RequestError
from ustack.diag.fake import golden_records
from ustack.diag.records import SocketRecord

ROOT = Path(__file__).resolve().parents[2]


def udp_records() -> list[SocketRecord]:
    pid = os.getpid()
    return [
        SocketRecord("UNCONN", "10.77.0.2", 5353, "0.0.0.0", 0, 0, 0, pid, "py", 0, 5353, 1),
        SocketRecord("ESTAB", "10.77.0.2", 40001, "10.77.0.1", 53, 12, 0, pid, "py", 0,
                     40001, 2),
    ]


class OldServer(DiagnosticsServer):
    """A stack from before ``"netid": "all"``: it answers it with an error."""

    def _query(self, request: bytes) -> Any:
        if b'"all"' in request:
            raise RequestError('"netid" must be "tcp" or "udp", not \'all\'')
        return super()._query(request)


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = asyncio.new_event_loop()
    thread = threading.Thread(target=lp.run_forever, daemon=True)
    thread.start()
    try:
        yield lp
    finally:
        lp.call_soon_threadsafe(lp.stop)
        thread.join(5)
        lp.close()


def _serve(loop: asyncio.AbstractEventLoop, tmp_path: Path,
           kind: type[DiagnosticsServer] = DiagnosticsServer) -> DiagnosticsServer:
    tcp, udp = golden_records(), udp_records()
    server = kind(lambda detail: tcp, path=str(tmp_path / "run" / f"stack-{os.getpid()}-1.sock"),
                  udp_snapshot_fn=lambda detail: udp)
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)
    return server


def _ss(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, USTACK_RUN_DIR=str(tmp_path / "run"), PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "ustack", "ss", *argv], capture_output=True,
                          text=True, timeout=30, env=env)


def test_plain_ss_asks_each_stack_once(loop: asyncio.AbstractEventLoop,
                                       tmp_path: Path) -> None:
    server = _serve(loop, tmp_path)
    out = _ss(tmp_path, "-an")
    assert out.returncode == 0, out.stderr
    assert server.requests == 1
    netids = [line.split()[0] for line in out.stdout.splitlines()[1:]]
    assert netids.count("udp") == 2 and netids.count("tcp") == len(golden_records())
    assert "5353" in out.stdout and "10.77.0.1:53" in out.stdout


def test_summary_counts_udp(loop: asyncio.AbstractEventLoop, tmp_path: Path) -> None:
    server = _serve(loop, tmp_path)
    out = _ss(tmp_path, "-s")
    assert out.returncode == 0, out.stderr
    lines = {line.split("\t")[0]: line.split() for line in out.stdout.splitlines()
             if "\t" in line}
    assert lines["UDP"][1:3] == ["2", "2"]
    tcp_inuse = int(lines["TCP"][1])
    assert int(lines["INET"][1]) == tcp_inuse + 2
    total = int(out.stdout.split("Total:")[1].split()[0])
    tcp_total = int(out.stdout.split("TCP:")[1].split()[0])
    assert total == tcp_total + 2
    summary = json.loads(_ss(tmp_path, "-s", "-j").stdout)
    assert summary["transport"]["udp"] == {"total": 2, "ip": 2, "ipv6": 0}
    assert server.requests == 2  # one per ss run


def test_both_in_one_request_and_fallback_for_an_old_stack(
        loop: asyncio.AbstractEventLoop, tmp_path: Path) -> None:
    new = _serve(loop, tmp_path)
    both = query_endpoint_both(new.path, detail=False)
    assert both is not None
    tcp, udp = both
    assert [r.local_port for r in udp] == [5353, 40001]
    assert [r[:7] for r in tcp] == [r[:7] for r in golden_records()]
    assert new.requests == 1
    asyncio.run_coroutine_threadsafe(new.close(), loop).result(10)

    old = _serve(loop, tmp_path, OldServer)
    tcp2, udp2 = query_stacks_both(detail=False, paths=[old.path])
    assert [r[:7] for r in tcp2] == [r[:7] for r in tcp]
    assert [r[:7] for r in udp2] == [r[:7] for r in udp]
    assert old.requests == 3  # "all" refused, then tcp and udp
