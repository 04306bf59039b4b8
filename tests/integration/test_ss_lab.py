"""``ustack ss`` against a stack in a lab whose peer is the Linux kernel.

The stack (in this process) holds a listener and connections in ESTABLISHED
(outbound and inbound), TIME-WAIT, FIN-WAIT-2 and CLOSE-WAIT; ``ustack ss
-tanoiem`` runs as a separate process and must show each with its state and
sane figures (rtt > 0, cwnd >= 1, a timewait timer on the TIME-WAIT one).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from ustack.lab import Lab

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

_names = itertools.count(1)

# Kernel peer: a server on 5001 whose behaviour is chosen by the first byte a
# connection sends: H = hold (never close), C = close after EOF, X = close now;
# then a client to ustack's port 8080 that holds its connection open.
PEER_CODE = r"""
import socket, sys, threading, time
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", 5001)); srv.listen(16)
held = []
def serve(c):
    mode = c.recv(1)
    if mode == b"X":
        c.close(); return
    if mode == b"C":
        while c.recv(65536):
            pass
        c.close(); return
    held.append(c)
    while c.recv(65536):
        pass
def accept():
    while True:
        c, _ = srv.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()
threading.Thread(target=accept, daemon=True).start()
print("READY", flush=True)
sys.stdin.readline()  # "connect": open a connection to ustack and hold it
cli = socket.create_connection((sys.argv[1], 8080), timeout=5)
cli.sendall(b"hi")
print("CONNECTED", flush=True)
sys.stdin.readline()
"""


@pytest.fixture
def hs_lab(lab_factory: Callable[..., Lab]) -> Lab:
    return lab_factory(name=f"hs{os.getpid() % 0xFFFF:x}{next(_names)}")


@pytest.fixture
async def stack(hs_lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    from ustack.stack import Stack

    monkeypatch.setenv("USTACK_RUN_DIR", str(tmp_path / "run"))
    with hs_lab.enter_stack_ns():
        s = await Stack.start(iface=hs_lab.stack_if, address=hs_lab.stack_address)
    try:
        yield s
    finally:
        await s.close()


async def _wait_for(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def _rows(text: str) -> list[tuple[str, str]]:
    """(socket line, its tab-indented -i/-m line) pairs."""
    lines = text.splitlines()[1:]
    rows = []
    for i, line in enumerate(lines):
        if not line.startswith("\t"):
            info = lines[i + 1] if i + 1 < len(lines) and lines[i + 1].startswith("\t") else ""
            rows.append((line, info))
    return rows


async def test_ss_shows_every_state_with_sane_figures(
    hs_lab: Lab, stack: Any, run_ss: Callable[..., Awaitable[str]]
) -> None:
    peer_ip = hs_lab.peer_address
    accepted: list[Any] = []

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append((reader, writer))

    server = await stack.start_server(on_client, port=8080)
    peer = hs_lab.popen_in_peer(
        [sys.executable, "-c", PEER_CODE, stack.address],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert peer.stdout is not None and peer.stdin is not None
        assert peer.stdout.readline().startswith("READY")

        # ESTABLISHED, outbound, with data both ways acknowledged
        _r_est, w_est = await stack.open_connection(peer_ip, 5001, timeout=10)
        w_est.write(b"H" + b"x" * 20000)
        await w_est.drain()
        # FIN-WAIT-2: we shut our side, the kernel never closes its side
        _r_fw2, w_fw2 = await stack.open_connection(peer_ip, 5001, timeout=10)
        w_fw2.write(b"H")
        w_fw2.write_eof()
        # TIME-WAIT: we close first, the kernel closes after our FIN
        r_tw, w_tw = await stack.open_connection(peer_ip, 5001, timeout=10)
        w_tw.write(b"C")
        w_tw.write_eof()
        # CLOSE-WAIT: the kernel closes first, we never close
        r_cw, w_cw = await stack.open_connection(peer_ip, 5001, timeout=10)
        w_cw.write(b"X")
        await asyncio.wait_for(r_cw.read(), 10)  # EOF from the kernel
        await asyncio.wait_for(r_tw.read(), 10)  # the kernel's FIN: we are in TIME-WAIT
        # ESTABLISHED, inbound (accepted from the listener)
        peer.stdin.write("connect\n")
        peer.stdin.flush()
        # read in a thread: the loop must keep running to answer the kernel's SYN
        loop = asyncio.get_running_loop()
        line = await asyncio.wait_for(loop.run_in_executor(None, peer.stdout.readline), 15)
        assert line.startswith("CONNECTED")
        await _wait_for(lambda: len(accepted) == 1, "the inbound connection")

        def states() -> list[str]:
            return sorted(r.state for r in stack.sockets())

        want = ["CLOSE-WAIT", "ESTAB", "ESTAB", "FIN-WAIT-2", "LISTEN", "TIME-WAIT"]
        await _wait_for(lambda: states() == want, f"states {want} (have {states()})")

        text = await run_ss("-tanoiem")
        rows = _rows(text)
        by_state: dict[str, list[tuple[str, str]]] = {}
        for line, info in rows:
            by_state.setdefault(line.split()[0], []).append((line, info))
        assert sorted(by_state) == sorted(set(want)), text
        assert len(by_state["ESTAB"]) == 2

        local = stack.address
        (listen, _), = by_state["LISTEN"]
        assert f"{local}:8080" in listen and "0.0.0.0:*" in listen

        for state in ("ESTAB", "FIN-WAIT-2", "CLOSE-WAIT", "TIME-WAIT"):
            for line, info in by_state[state]:
                assert line.split()[3].startswith(f"{local}:"), line
                cwnd = re.search(r" cwnd:(\d+)", info)
                assert cwnd and int(cwnd.group(1)) >= 1, (state, info)
                if state != "TIME-WAIT":
                    rtt = re.search(r" rtt:([\d.]+)/([\d.]+)", info)
                    assert rtt and float(rtt.group(1)) > 0, (state, line, info, text)
                    assert " mss:" in info
        out_est = next(li for li in by_state["ESTAB"] if f"{peer_ip}:5001" in li[0])
        assert re.search(r" bytes_acked:(\d+)", out_est[1])
        assert "ino:" in out_est[0] and out_est[0].rstrip().endswith("<->")
        (tw_line, _), = by_state["TIME-WAIT"]
        timer = re.search(r"timer:\(timewait,([^,]+),0\)", tw_line)
        assert timer, tw_line
        assert "sec" in timer.group(1) or "ms" in timer.group(1)
        (fw2_line, _), = by_state["FIN-WAIT-2"]
        assert fw2_line.rstrip().endswith("<--")
        (cw_line, _), = by_state["CLOSE-WAIT"]
        assert cw_line.rstrip().endswith("-->")
        assert "skmem:(" in by_state["ESTAB"][0][1]

        # filters run by the stack; one selected state drops the State column
        est = await run_ss("-tn", "state", "established", "( dport = :5001 or sport = :8080 )")
        assert est.splitlines()[0].startswith("Recv-Q") and len(est.splitlines()) == 3
        tw_only = await run_ss("-tan", "state", "time-wait")
        assert len(tw_only.splitlines()) == 2
        listening = await run_ss("-tln")
        assert len(listening.splitlines()) == 2 and ":8080" in listening
        procs = await run_ss("-tnp", "sport", "=", ":8080")
        assert f"pid={os.getpid()}," in procs

        # -j: one JSON array a parser reads, exactly as the acceptance runs it
        pipeline = await asyncio.create_subprocess_shell(
            f"{sys.executable} -m ustack ss -tanoi -j | "
            f"{sys.executable} -c 'import json,sys; print(len(json.load(sys.stdin)))'",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(pipeline.communicate(), 60)
        assert pipeline.returncode == 0 and out.strip() == b"6", (out, err)
        objs = json.loads(await run_ss("-tanoiemp", "-j"))
        assert sorted(o["state"] for o in objs) == want
        for o in objs:
            assert o["local_address"] == local and "skmem" in o and "users" in o
            if o["state"] not in ("LISTEN", "TIME-WAIT"):
                assert o["rtt"] > 0 and o["cwnd"] >= 1 and o["mss"] > 0, o
                assert isinstance(o["bytes_acked"], int)
        tw = next(o for o in objs if o["state"] == "TIME-WAIT")
        assert tw["timer"]["name"] == "timewait" and tw["timer"]["expire_ms"] > 0
        # -s counts as the kernel's ss: TIME-WAIT in closed, CLOSE-WAIT in estab
        summary = await run_ss("-s")
        assert "TCP:   6 (estab 3, closed 1, orphaned 0, timewait 1)" in summary, summary
        assert json.loads(await run_ss("-s", "-j"))["tcp"]["timewait"] == 1
    finally:
        if peer.poll() is None:
            peer.kill()
        peer.wait()
        server.close()


SLOW_READER = r"""
import socket, sys
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a window that closes soon
srv.bind(("0.0.0.0", 5002)); srv.listen(1)
print("READY", flush=True)
c, _ = srv.accept()
sys.stdin.readline()  # never read until told
"""


async def test_zero_window_shows_persist_timer_and_backoff(
    hs_lab: Lab, stack: Any, run_ss: Callable[..., Awaitable[str]]
) -> None:
    """A peer that stops reading: ss -o shows ``timer:(persist,EXPIRE,N)`` as
    iproute2 names IDIAG_TIMER_PROBE0, and -i ``backoff:N`` (Linux backs off
    icsk_backoff with each zero-window probe)."""
    peer = hs_lab.popen_in_peer([sys.executable, "-c", SLOW_READER],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert peer.stdout is not None and peer.stdin is not None
        assert peer.stdout.readline().startswith("READY")
        _reader, writer = await stack.open_connection(hs_lab.peer_address, 5002, timeout=10)
        writer.write(b"z" * 2_000_000)

        def probing() -> bool:
            return any(r.timer_name == "persist" and r.timer_count >= 2
                       for r in stack.sockets() if r.remote_port == 5002)

        await _wait_for(probing, "zero-window probes", timeout=30)
        text = await run_ss("-tnoi", "dport", "=", ":5002")
        (line, info), = _rows(text)
        timer = re.search(r"timer:\(persist,([^,]*),(\d+)\)", line)
        assert timer and int(timer.group(2)) >= 2, text
        backoff = re.search(r" backoff:(\d+)", info)
        assert backoff and int(backoff.group(1)) >= 2, text
        obj, = json.loads(await run_ss("-tnoi", "-j", "dport", "=", ":5002"))
        assert obj["timer"]["name"] == "persist" and obj["backoff"] >= 2
        assert obj["snd_wnd"] == 0
        writer.transport.abort()
    finally:
        if peer.poll() is None:
            peer.kill()
        peer.wait()
