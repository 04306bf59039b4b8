"""Per-connection IPv4 header fields (IP_TOS, IP_MTU_DISCOVER): the IP
layer's send builds them, the TCP table routes a connection that has them
through that send (and every other connection through the unchanged fast
path), on the SYN already when set before the first output."""

from __future__ import annotations

import asyncio
from typing import Any

import dpkt
import pytest

from ustack.driver.port import TcpPort, _takes_ip_opts
from ustack.driver.tcp_table import TcpTable
from ustack.net.arp import ArpCache
from ustack.net.ipv4 import IpLayer
from ustack.wire import arp as warp
from ustack.wire import ethernet as eth
from ustack.wire.tcp import SYN, TcpSegment

US_MAC, PEER_MAC = bytes.fromhex("020000000002"), bytes.fromhex("020000000001")
US, PEER = bytes([10, 77, 0, 2]), bytes([10, 77, 0, 1])


def test_ip_layer_send_sets_tos_and_df() -> None:
    out: list[bytes] = []
    ip = IpLayer(address=US, prefixlen=24, mac=US_MAC, transmit=out.append, clock=lambda: 1.0,
                 arp_cache=ArpCache(retry_interval=1.0, requests=3))
    ip.receive([(eth.encode_frame(eth.BROADCAST, PEER_MAC, eth.ETHERTYPE_ARP,
                                  warp.request(PEER_MAC, PEER, US).encode()), False)])
    out.clear()
    ip.send(PEER, 6, b"x" * 20)
    ip.send(PEER, 6, b"x" * 20, tos=0x28, df=False)
    plain, shaped = (dpkt.ethernet.Ethernet(f).data for f in out)
    assert (plain.tos, plain.df) == (0, 1)
    assert (shaped.tos, shaped.df) == (0x28, 0)
    assert shaped.sum == dpkt.ip.IP(bytes(shaped)).sum  # header checksum still right
    assert _takes_ip_opts(ip.send)


class Owner:
    def tcp_event(self, event: object) -> None:
        pass


def _port(plain: list[Any], shaped: list[Any] | None) -> TcpPort:
    def send_opts(d: bytes, p: int, b: bytes, *, tos: int = 0, df: bool = True) -> None:
        assert shaped is not None
        shaped.append((TcpSegment.decode(bytes(b)), tos, df))

    return TcpPort(local_addr=US, mtu=1500,
                   send=lambda d, p, b: plain.append(TcpSegment.decode(bytes(b))),
                   send_many=None, send_tcp_many=None, tcp_encoder=None, send_gso=None,
                   reachable=None, loop=asyncio.get_running_loop(),
                   send_ip_opts=send_opts if shaped is not None else None)


async def test_table_routes_a_shaped_connection_through_send_ip_opts() -> None:
    plain: list[TcpSegment] = []
    shaped: list[tuple[TcpSegment, int, bool]] = []
    table = TcpTable(_port(plain, shaped))
    ep = table.connect(PEER, 80, Owner())
    table.set_ip_options(ep, 0x20, False)  # before the SYN leaves
    other = table.connect(PEER, 81, Owner())
    await asyncio.sleep(0)
    assert [(s.flags, s.dst_port, tos, df) for s, tos, df in shaped] == [(SYN, 80, 0x20, False)]
    assert [(s.flags, s.dst_port) for s in plain] == [(SYN, 81)]
    assert table.ip_options(ep) == (0x20, False) and table.ip_options(other) == (0, True)
    table.set_ip_options(ep)  # back to the defaults: the fast path again
    assert table.ip_options(ep) == (0, True) and not table._ip_opts
    with pytest.raises(ValueError):
        table.set_ip_options(ep, 256)


async def test_an_ip_layer_without_the_fields_refuses_them() -> None:
    table = TcpTable(_port([], None))
    ep = table.connect(PEER, 80, Owner())
    table.set_ip_options(ep, 0, True)  # the defaults are always fine
    with pytest.raises(ValueError):
        table.set_ip_options(ep, 0x20, True)
