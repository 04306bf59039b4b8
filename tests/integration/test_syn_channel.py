"""The SYN channel (on by default) and a burst of legitimate connects.

A kernel client in the peer namespace opens 32 connections at once, round
after round, to a ustack listener started with the stack's defaults, as
bench/cps.py's 32-in-flight server run does.  Every connect must complete
and no SYN may be shed: the channel's CPU share is for a flood's pressure,
and a listener whose SYN queue has room keeps a request for every SYN (with
the channel on by default, commit cf700a5, SYNs over a wakeup's plain-path
allowance were dropped: ~400 of 560 in five rounds, connects took 1-7 s of
SYN retransmissions, and bench/cps.py --quick had connects hang).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable

import pytest

from ustack.lab import Lab
from ustack.stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

IN_FLIGHT = 32
ROUNDS = 5
PORT = 7101

#: the kernel client: ROUNDS bursts of IN_FLIGHT non-blocking connects, each
#: round waits for all (or 20 s), sends a byte on each and closes them
CLIENT = r"""
import json, selectors, socket, sys, time
host, port, n, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
out = []
for _ in range(rounds):
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex((host, port))
        socks.append(s)
    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_WRITE)
    ok = failed = 0
    t0 = time.monotonic()
    while ok + failed < n and time.monotonic() - t0 < 20:
        for key, _ in sel.select(0.1):
            sel.unregister(key.fileobj)
            if key.fileobj.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                failed += 1
            else:
                ok += 1
                key.fileobj.send(b"x")
    out.append({"ok": ok, "failed": failed})
    for s in socks:
        s.close()
    time.sleep(0.2)
print(json.dumps(out))
"""


async def test_a_connect_burst_with_the_defaults_loses_no_syn(
        lab_factory: Callable[..., Lab]) -> None:
    lab = lab_factory()
    with lab.enter_stack_ns():
        stack = await Stack.start(iface=lab.stack_if, address=lab.stack_address,
                                  diagnostics=False)
    try:
        assert stack.syn_device is not None  # the default
        # the batch path is built with the first listener, not before
        assert stack.syn_batch is None
        accepted = 0

        async def on_connect(reader: asyncio.StreamReader,
                             writer: asyncio.StreamWriter) -> None:
            nonlocal accepted
            accepted += 1
            await reader.read(1)
            writer.close()

        server = await stack.start_server(on_connect, port=PORT)
        assert stack.syn_batch is not None
        proc = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", lab.peer_ns, sys.executable, "-c", CLIENT, lab.stack_ip,
            str(PORT), str(IN_FLIGHT), str(ROUNDS), stdout=asyncio.subprocess.PIPE)
        out, _ = await asyncio.wait_for(proc.communicate(), 110)
        assert proc.returncode == 0
        rounds = json.loads(out)
        counters = stack.counters()
        server.close()
        assert rounds == [{"ok": IN_FLIGHT, "failed": 0}] * ROUNDS, (rounds, counters)
        assert counters.get("drop.tcp-syn-overload", 0) == 0, counters
        assert counters["TcpExtListenDrops"] == 0, counters
        assert counters["TcpExtSyncookiesSent"] == 0, counters  # the queue had room
        # every SYN came in on the channel, each got a request sock
        assert counters["syn_dev.rx_frames"] >= IN_FLIGHT * ROUNDS, counters
        assert counters["tcp_syn_requests"] >= IN_FLIGHT * ROUNDS, counters
        assert accepted > 0
    finally:
        await stack.close()


#: a client-only stack: start, connect to the kernel's listener, close; then
#: say whether numpy (the SYN channel's batch path) was imported
CLIENT_ONLY = r"""
import asyncio, json, sys
from ustack.stack import Stack

async def main(iface, address, host, port):
    stack = await Stack.start(iface=iface, address=address, diagnostics=False)
    try:
        reader, writer = await stack.open_connection(host, port)
        writer.write(b"x")
        await writer.drain()
        writer.close()
        channel, batch = stack.syn_device is not None, stack.syn_batch is not None
    finally:
        await stack.close()
    print(json.dumps({"channel": channel, "batch": batch, "numpy": "numpy" in sys.modules}))

asyncio.run(main(*sys.argv[1:4], int(sys.argv[4])))
"""


async def test_a_client_only_stack_builds_no_batch_path_and_imports_no_numpy(
        lab_factory: Callable[..., Lab]) -> None:
    """The batch path is built with the first listener: a stack that only
    connects has the SYN channel (its SYNs get RSTs the plain way) but
    never imports numpy (~0.1-0.2 s of every Stack.start before)."""
    lab = lab_factory()
    server = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", lab.peer_ns, sys.executable, "-c",
        "import socket,sys\ns=socket.create_server(('0.0.0.0', int(sys.argv[1])))\n"
        "c,_=s.accept(); c.recv(1); c.close()", str(PORT))
    try:
        await asyncio.sleep(0.3)
        proc = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", lab.stack_ns, sys.executable, "-c", CLIENT_ONLY,
            lab.stack_if, lab.stack_address, lab.peer_address, str(PORT),
            stdout=asyncio.subprocess.PIPE)
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0
        assert json.loads(out) == {"channel": True, "batch": False, "numpy": False}
    finally:
        if server.returncode is None:
            server.kill()
        await server.wait()
