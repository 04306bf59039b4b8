"""The probe's raw endpoint: its own MAC and IPv4 address on one interface.

It reuses ustack's device (:class:`~ustack.link.af_packet.AfPacketDevice`, or
any :class:`~ustack.link.base.Device`) and wire codecs, answers ARP for its
own address itself (RFC 826; the kernel never owns that address, so the
kernel never answers for it nor sends RSTs on its behalf, DESIGN.md trap 1),
resolves the peer's MAC once, and hands every TCP segment from the peer to
the probe.  There is no TCP state here: the probe decides every byte it sends.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Sequence
from typing import Any

from ustack.link.base import Device
from ustack.probe.packet import IpFields
from ustack.probe.probe import TcpHandler
from ustack.wire import arp as wire_arp
from ustack.wire import ethernet
from ustack.wire.checksum import partial_sum, pseudo_header_sum, verify
from ustack.wire.errors import ParseError
from ustack.wire.ipv4 import FLAG_DF, PROTO_TCP, Ipv4Packet, format_address, parse_address
from ustack.wire.tcp import TcpSegment


def random_mac() -> bytes:
    """A locally administered unicast MAC (02:xx:...)."""
    return bytes([0x02]) + secrets.token_bytes(5)


class RawEndpoint:
    """Own MAC + own IPv4 address on ``device``; ARP for itself; TCP up."""

    def __init__(self, device: Device, address: str, peer_address: str) -> None:
        self.device = device
        self.mac = device.mac
        self.address = parse_address(address.split("/")[0])
        self.peer_address = parse_address(peer_address)
        self.peer_mac: bytes | None = None
        self._resolved = asyncio.Event()
        self._handler: TcpHandler | None = None
        self._loop = asyncio.get_running_loop()
        self._ident = secrets.randbelow(0x10000)
        self.counters: dict[str, int] = {"bad_checksum": 0, "parse_errors": 0,
                                         "arp_replies_sent": 0, "other": 0}
        self.icmp_received: list[tuple[float, bytes]] = []
        #: (TOS, DF) of the IPv4 header of the last TCP segment handed on
        self.last_ip: tuple[int, bool] | None = None
        #: payload per segment of a GSO super-segment (None: what fits the MTU)
        self.gso_size: int | None = None
        device.attach(self._loop, self._receive)

    @classmethod
    def open(cls, iface: str, address: str, peer_address: str, *,
             mac: bytes | None = None, netns: str | None = None,
             pcap: str | None = None) -> RawEndpoint:
        """Open ``iface`` (inside network namespace ``netns`` if given) with
        its own MAC (random unless given); ``pcap`` records every frame the
        probe sends and receives."""
        from ustack.link.af_packet import AfPacketDevice

        mac = mac or random_mac()
        if netns is not None:
            from ustack.lab import enter_netns

            with enter_netns(netns):
                device: Device = AfPacketDevice.open(iface, mac=mac, vnet_hdr=True,
                                                    rx_ring=False)
        else:
            device = AfPacketDevice.open(iface, mac=mac, vnet_hdr=True, rx_ring=False)
        if pcap is not None:
            from ustack.link.pcap import PcapDevice

            device = PcapDevice(device, pcap)
        return cls(device, address, peer_address)

    def close(self) -> None:
        self.device.close()

    def set_tcp_handler(self, handler: TcpHandler) -> None:
        self._handler = handler

    def describe(self) -> str:
        return (f"{format_address(self.address)} ({self.mac.hex(':')}) on {self.device.name}"
                f" -> {format_address(self.peer_address)}")

    # ------------------------------------------------------------ ARP
    async def resolve(self, timeout: float = 3.0) -> bytes:
        """The peer's MAC, asking with ARP requests (one every 0.5 s) if needed."""
        deadline = self._loop.time() + timeout
        while self.peer_mac is None:
            request = wire_arp.request(self.mac, self.address, self.peer_address)
            self.device.send(ethernet.encode_frame(ethernet.BROADCAST, self.mac,
                                                   ethernet.ETHERTYPE_ARP, request.encode()))
            remaining = deadline - self._loop.time()
            if remaining <= 0:
                raise TimeoutError(
                    f"no ARP reply from {format_address(self.peer_address)} on "
                    f"{self.device.name} within {timeout:.1f} s")
            try:
                await asyncio.wait_for(self._resolved.wait(), min(0.5, remaining))
            except TimeoutError:
                continue
        return self.peer_mac

    def _on_arp(self, data: memoryview | bytes) -> None:
        try:
            pkt = wire_arp.ArpPacket.decode(data)
        except ParseError:
            self.counters["parse_errors"] += 1
            return
        if pkt.sender_ip == self.peer_address:
            self.peer_mac = pkt.sender_mac
            self._resolved.set()
        if pkt.op == wire_arp.OP_REQUEST and pkt.target_ip == self.address \
                and not pkt.is_gratuitous:
            reply = wire_arp.reply(self.mac, self.address, pkt)
            self.device.send(ethernet.encode_frame(pkt.sender_mac, self.mac,
                                                   ethernet.ETHERTYPE_ARP, reply.encode()))
            self.counters["arp_replies_sent"] += 1

    # ------------------------------------------------------------ IPv4
    def send_ip(self, protocol: int, payload: bytes, fields: IpFields) -> None:
        """One IPv4 packet to the peer (its MAC must be resolved)."""
        if self.peer_mac is None:
            raise RuntimeError("peer MAC unknown: await endpoint.resolve() first")
        self._ident = (self._ident + 1) & 0xFFFF
        df = True if fields.df is None else fields.df
        packet = Ipv4Packet(
            src=self.address, dst=self.peer_address, protocol=protocol, payload=payload,
            ttl=64 if fields.ttl is None else fields.ttl, tos=fields.tos or 0,
            ident=self._ident if fields.ident is None else fields.ident,
            flags_fragment=0x4000 if df else 0)
        frame = ethernet.encode_frame(self.peer_mac, self.mac, ethernet.ETHERTYPE_IPV4,
                                      packet.encode())
        mtu = int(getattr(self.device, "mtu", 1500) or 1500)
        if len(frame) - ethernet.HEADER_LEN > mtu and protocol == PROTO_TCP:
            # larger than the link: one GSO super-segment, which crosses the
            # veth whole, so the peer's TCP sees one segment of that length,
            # as packetdrill's TUN device delivers it (PACKET_VNET_HDR)
            send_gso = getattr(self.device, "send_gso", None)
            if send_gso is None or not getattr(self.device, "supports_gso", False):
                raise ValueError(f"a {len(frame) - ethernet.HEADER_LEN}-byte packet does not "
                                 f"fit the {mtu}-byte link and the device cannot do GSO")
            header = (payload[12] >> 4) * 4
            send_gso(frame, self.gso_size or mtu - 20 - header)
            return
        self.device.send(frame)

    def _receive(self, frames: Sequence[tuple[bytes, bool]]) -> None:
        now = self._loop.time()
        for frame, trusted in frames:
            if len(frame) < ethernet.HEADER_LEN:
                continue
            dst = frame[0:6]
            if dst != self.mac and dst != ethernet.BROADCAST:
                continue
            ethertype = (frame[12] << 8) | frame[13]
            view = memoryview(frame)[ethernet.HEADER_LEN:]
            if ethertype == ethernet.ETHERTYPE_ARP:
                self._on_arp(view)
            elif ethertype == ethernet.ETHERTYPE_IPV4:
                self._on_ipv4(now, view, trusted)
            else:
                self.counters["other"] += 1

    def _on_ipv4(self, now: float, data: memoryview, trusted: bool) -> None:
        try:
            pkt = Ipv4Packet.decode(data)
        except ParseError:
            self.counters["parse_errors"] += 1
            return
        if pkt.dst != self.address or pkt.src != self.peer_address or pkt.is_fragment:
            self.counters["other"] += 1
            return
        if pkt.protocol == PROTO_TCP:
            payload = bytes(pkt.payload)
            if not trusted:
                total = pseudo_header_sum(pkt.src, pkt.dst, PROTO_TCP, len(payload))
                if not verify(total + partial_sum(payload)):
                    self.counters["bad_checksum"] += 1
                    return
            try:
                seg = TcpSegment.decode(payload)
            except ParseError:
                self.counters["parse_errors"] += 1
                return
            if self._handler is not None:
                self.last_ip = (pkt.tos, bool(pkt.flags_fragment & FLAG_DF))
                self._handler(now, seg)
        else:
            self.icmp_received.append((now, bytes(pkt.payload)))

    def stats(self) -> dict[str, Any]:
        return {**self.counters, **self.device.counters()}
