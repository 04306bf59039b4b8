"""The TCP driver runs on a typed port alone (DESIGN.md "Transport driver"):
no Stack, only the local address, MTU, send paths and the loop."""

from __future__ import annotations

import asyncio
import socket

from ustack.driver.port import TcpPort, port_of
from ustack.driver.tcp_table import TcpTable
from ustack.wire.tcp import SYN, TcpSegment

LOCAL, PEER = socket.inet_aton("10.9.0.1"), socket.inet_aton("10.9.0.2")


async def test_table_on_a_bare_port_sends_through_it() -> None:
    sent: list[tuple[bytes, int, bytes]] = []
    port = TcpPort(local_addr=LOCAL, mtu=1500, send=lambda d, p, b: sent.append((d, p, bytes(b))),
                   send_many=None, send_tcp_many=None, tcp_encoder=None, send_gso=None,
                   reachable=None, loop=asyncio.get_running_loop(), owner="the owner")
    table = TcpTable(port)
    assert table.local_addr == LOCAL and table.stack == "the owner"

    class Owner:
        def tcp_event(self, event: object) -> None:
            pass

    ep = table.connect(PEER, 80, Owner())
    await asyncio.sleep(0)
    (dst, proto, raw), = sent
    seg = TcpSegment.decode(raw)
    assert (dst, proto, seg.flags, seg.dst_port, seg.src_port) == (PEER, 6, SYN, 80,
                                                                    ep.local_port)
    table.close()


async def test_port_of_a_stack_shaped_object() -> None:
    class Ip:
        def send(self, dst: bytes, protocol: int, payload: bytes) -> None:
            pass

        def reachable(self, dst: bytes, now: float) -> bool:
            return True

    class Dev:
        mtu = 9000

    class StackLike:
        address = "10.9.0.1"
        ip = Ip()
        device = Dev()

    s = StackLike()
    port = port_of(s)
    assert (port.local_addr, port.mtu, port.owner, port.send_gso) == (LOCAL, 9000, s, None)
    assert port.reachable is not None and port.send_many is None
