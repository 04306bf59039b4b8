"""A zero-window peer that goes silent (issue 13 item 2 acceptance), against
the kernel: both as sender facing such a peer, with the same tcp_retries2
and rto_max (kernel: net.ipv4.tcp_retries2 / tcp_rto_max_ms in the peer
namespace; ustack: TcpConfig), both must give up with ETIMEDOUT; ustack also
within its TCP_USER_TIMEOUT when one is set.

"Silent" is an nftables rule in the peer namespace dropping everything from
ustack's address: the kernel then neither receives ustack's probes (ustack as
sender) nor ustack's answers to its own (kernel as sender).  The times from
silence to ETIMEDOUT are printed (``-s``) and written as JSON lines to
``USTACK_TIMEOUT_REPORT`` when set; asserted is that both abort, with
ETIMEDOUT, before a generous deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import sys
import textwrap
import time
from collections.abc import Callable
from typing import Any

import pytest

from ustack.lab import Lab
from ustack.stack import Stack
from ustack.tcp.config import TcpConfig

pytestmark = pytest.mark.integration

RETRIES2 = 5
RTO_MAX = 1.0
PORT = 7070

RECEIVER = textwrap.dedent('''
    import socket, sys, time
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    srv.bind(("0.0.0.0", int(sys.argv[1])))
    srv.listen(1)
    print("ready", flush=True)
    conn, _ = srv.accept()
    time.sleep(float(sys.argv[2]))  # never reads
''')

SENDER = textwrap.dedent('''
    import errno, socket, sys, time
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
    s.settimeout(None)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, b"cubic")
    print("connected", flush=True)
    try:
        while True:
            s.send(b"x" * 65536)
    except OSError as exc:
        print(f"error {exc.errno} {time.monotonic():.6f}", flush=True)
''')


async def _peer(lab: Lab, *argv: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", lab.peer_ns, *argv,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def _run(lab: Lab, *argv: str) -> None:
    proc = await _peer(lab, *argv)
    out, err = await proc.communicate()
    assert proc.returncode == 0, (argv, out, err)


async def _silence(lab: Lab) -> float:
    """Drop everything from ustack in the peer namespace; the time it began."""
    await _run(lab, "nft", "add", "table", "inet", "hn_silent")
    await _run(lab, "nft", "add chain inet hn_silent in { type filter hook input priority 0 ; }")
    await _run(lab, "nft", "add", "rule", "inet", "hn_silent", "in", "ip", "saddr",
               lab.stack_ip, "drop")
    return time.monotonic()


async def _unsilence(lab: Lab) -> None:
    proc = await _peer(lab, "nft", "delete", "table", "inet", "hn_silent")
    await proc.communicate()


async def _kernel_sysctls(lab: Lab) -> None:
    await _run(lab, "sysctl", "-q", "-w", f"net.ipv4.tcp_retries2={RETRIES2}")
    await _run(lab, "sysctl", "-q", "-w", f"net.ipv4.tcp_rto_max_ms={int(RTO_MAX * 1000)}")


async def _ustack_sender(lab: Lab, user_timeout: float) -> dict[str, Any]:
    await _kernel_sysctls(lab)
    receiver = await _peer(lab, sys.executable, "-c", RECEIVER, str(PORT), "120")
    assert receiver.stdout is not None
    assert (await receiver.stdout.readline()).strip() == b"ready"
    cfg = TcpConfig(retries2=RETRIES2, rto_max=RTO_MAX)
    with lab.enter_stack_ns():
        stack = await Stack.start(iface=lab.stack_if, address=lab.stack_address,
                                  tcp_config=cfg)
    try:
        _reader, writer = await stack.open_connection(lab.peer_address, PORT)
        conn = writer.get_extra_info("tcp_connection")
        if user_timeout:
            conn.set_user_timeout(user_timeout)
        writer.write(b"x" * (4 << 20))
        for _ in range(400):  # until the kernel's window is closed
            await asyncio.sleep(0.025)
            if conn.snd_wnd == 0 and conn.snd_nxt == conn.snd_una:
                break
        assert conn.snd_wnd == 0, "the kernel never closed its window"
        t0 = await _silence(lab)
        for _ in range(1200):
            await asyncio.sleep(0.05)
            if conn.error is not None:
                break
        elapsed = time.monotonic() - t0
        return {"who": "ustack", "user_timeout": user_timeout, "errno": conn.error,
                "seconds": round(elapsed, 2),
                "probes": stack.counters().get("TcpExtTCPWinProbe", 0)}
    finally:
        await _unsilence(lab)
        with contextlib.suppress(ProcessLookupError):  # it may have ended already
            receiver.kill()
        await receiver.wait()
        await stack.close()


async def _kernel_sender(lab: Lab) -> dict[str, Any]:
    await _kernel_sysctls(lab)
    cfg = TcpConfig(recv_buffer=16384)
    with lab.enter_stack_ns():
        stack = await Stack.start(iface=lab.stack_if, address=lab.stack_address,
                                  tcp_config=cfg)
    eps: list[Any] = []

    async def never_read(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        eps.append(writer.get_extra_info("tcp_connection"))
        await asyncio.sleep(120)

    server = await stack.start_server(never_read, port=PORT)
    sender = await _peer(lab, sys.executable, "-c", SENDER, lab.stack_ip, str(PORT))
    try:
        assert sender.stdout is not None
        assert (await sender.stdout.readline()).strip() == b"connected"
        for _ in range(400):  # until we advertise a zero window
            await asyncio.sleep(0.025)
            if eps and eps[0].rcv.wnd == 0 and eps[0].readable() > 0:
                break
        t0 = await _silence(lab)
        line = await asyncio.wait_for(sender.stdout.readline(), 120)
        parts = line.split()
        assert parts and parts[0] == b"error", line
        return {"who": "linux", "errno": int(parts[1]),
                "seconds": round(float(parts[2]) - t0, 2)}
    finally:
        await _unsilence(lab)
        with contextlib.suppress(ProcessLookupError):  # it ends after the error
            sender.kill()
        await sender.wait()
        server.close()
        await stack.close()


def _report(result: dict[str, Any]) -> None:
    result.update(retries2=RETRIES2, rto_max=RTO_MAX)
    print("\nzero-window peer gone silent:", json.dumps(result))
    out = os.environ.get("USTACK_TIMEOUT_REPORT")
    if out:
        with open(out, "a") as f:
            f.write(json.dumps(result) + "\n")


@pytest.mark.parametrize("user_timeout", [0.0, 2.0], ids=["retries2", "user-timeout"])
def test_ustack_gives_up_on_a_silent_zero_window_peer(lab_factory: Callable[..., Lab],
                                                      user_timeout: float) -> None:
    lab = lab_factory()
    result = asyncio.run(asyncio.wait_for(_ustack_sender(lab, user_timeout), 120))
    _report(result)
    assert result["errno"] == errno.ETIMEDOUT, result


def test_linux_gives_up_on_a_silent_zero_window_peer(lab_factory: Callable[..., Lab]) -> None:
    """The reference figure: the kernel as sender, same retries2 and rto_max."""
    lab = lab_factory()
    result = asyncio.run(asyncio.wait_for(_kernel_sender(lab), 150))
    _report(result)
    assert result["errno"] == errno.ETIMEDOUT, result
