"""The Stack on a real veth with the Linux kernel as the peer: ARP, ping both
ways, ICMP errors from the kernel reach the protocol's error handler, ARP
failure is reported, under asyncio and uvloop."""

from __future__ import annotations

import asyncio
import errno
import itertools
import os
import secrets
import struct
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest
import uvloop

from ustack.lab import Lab
from ustack.lab.fixtures import require_netns
from ustack.net.icmp import IpError
from ustack.stack import Stack
from ustack.wire.ipv4 import parse_address

pytestmark = pytest.mark.integration

_names = itertools.count(1)
_run = secrets.token_hex(1)


def hn_name() -> str:
    return f"hn{os.getpid() % 0xFFF:x}{_run}{next(_names)}"


@pytest.fixture(scope="module")
def hn_lab() -> Iterator[Lab]:
    require_netns()
    lab = Lab.create(hn_name())
    try:
        yield lab.up()
    finally:
        lab.down()


def run_on(kind: str, fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
    if kind == "uvloop":
        uvloop.run(asyncio.wait_for(fn(), 30))
    else:
        asyncio.run(asyncio.wait_for(fn(), 30))


async def start_stack(lab: Lab, **kw: Any) -> Stack:
    with lab.enter_stack_ns():
        return await Stack.start(iface=lab.stack_if, address=lab.stack_address, **kw)


async def in_peer(lab: Lab, *argv: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", lab.peer_ns, *argv,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_kernel_pings_stack_and_learns_its_mac(hn_lab: Lab, loop_kind: str) -> None:
    async def main() -> None:
        await in_peer(hn_lab, "ip", "neigh", "flush", "dev", hn_lab.peer_if)
        async with await start_stack(hn_lab) as stack:
            rc, out = await in_peer(hn_lab, "ping", "-c", "5", "-i", "0.2", "-W", "2",
                                    hn_lab.stack_ip)
            assert rc == 0, out
            assert "5 received" in out, out
            _, neigh = await in_peer(hn_lab, "ip", "neigh", "show", hn_lab.stack_ip)
            assert stack.mac in neigh.lower(), neigh
            c = stack.counters()
            assert c["icmp_echo_replies"] == 5 and c["arp_replies"] >= 1
            assert c.get("drop.ip-bad-checksum", 0) == 0

    run_on(loop_kind, main)


def test_stack_pings_kernel(hn_lab: Lab) -> None:
    async def main() -> None:
        async with await start_stack(hn_lab) as stack:
            rtts = [await stack.ping(hn_lab.peer_address, timeout=2.0) for _ in range(3)]
            assert all(0 < r < 2.0 for r in rtts)
            assert stack.ip.arp.lookup(parse_address(hn_lab.peer_address),
                                       stack.loop.time()) == hn_lab.mac("peer")
            assert await stack.resolve(hn_lab.peer_address) == hn_lab.mac("peer").hex(":")

    run_on("uvloop", main)


def test_kernel_port_unreachable_reaches_error_handler(hn_lab: Lab) -> None:
    """UDP to a closed kernel port: the kernel answers ICMP port unreachable,
    which must arrive as IpError(ECONNREFUSED) quoting our ports."""

    async def main() -> None:
        async with await start_stack(hn_lab) as stack:
            errors: asyncio.Queue[IpError] = asyncio.Queue()
            stack.ip.register(17, lambda *a: None, verify_checksum=False)
            stack.ip.register_error(17, errors.put_nowait)
            udp = struct.pack("!HHHH", 45678, 9, 8 + 5, 0) + b"hello"
            stack.ip.send(parse_address(hn_lab.peer_address), 17, udp)
            err = await asyncio.wait_for(errors.get(), 5)
            assert (err.errno, err.fatal, err.origin) == (errno.ECONNREFUSED, True, "icmp")
            assert (err.local_port, err.remote_port) == (45678, 9)
            assert err.remote_addr == parse_address(hn_lab.peer_address)

    run_on("asyncio", main)


def test_arp_failure_reports_host_unreachable(hn_lab: Lab) -> None:
    async def main() -> None:
        async with await start_stack(hn_lab, arp_retry_interval=0.2, arp_requests=2) as stack:
            errors: asyncio.Queue[IpError] = asyncio.Queue()
            stack.ip.register(253, lambda *a: None)
            stack.ip.register_error(253, errors.put_nowait)
            stack.ip.send(parse_address("10.77.0.99"), 253, b"12345678")
            err = await asyncio.wait_for(errors.get(), 5)
            assert (err.errno, err.origin) == (errno.EHOSTUNREACH, "arp")
            assert stack.counters()["tx_drop.arp-unresolved"] == 1
            with pytest.raises(TimeoutError):
                await stack.ping("10.77.0.98", timeout=0.3)

    run_on("asyncio", main)


def test_unknown_interface_is_named(hn_lab: Lab) -> None:
    async def main() -> None:
        with pytest.raises(OSError, match="nosuch-hn0"), hn_lab.enter_stack_ns():
            await Stack.start(iface="nosuch-hn0", address="10.77.0.2/24")

    run_on("asyncio", main)
