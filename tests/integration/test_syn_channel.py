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
        assert stack.syn_device is not None and stack.syn_batch is not None  # the default
        accepted = 0

        async def on_connect(reader: asyncio.StreamReader,
                             writer: asyncio.StreamWriter) -> None:
            nonlocal accepted
            accepted += 1
            await reader.read(1)
            writer.close()

        server = await stack.start_server(on_connect, port=PORT)
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
