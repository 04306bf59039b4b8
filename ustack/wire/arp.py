"""ARP for IPv4 over Ethernet (RFC 826), plus gratuitous ARP (RFC 5227 s.3)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from ustack.wire.errors import ParseError

PACKET: Final = struct.Struct("!HHBBH6s4s6s4s")
PACKET_LEN: Final = 28

HTYPE_ETHERNET: Final = 1
PTYPE_IPV4: Final = 0x0800
OP_REQUEST: Final = 1
OP_REPLY: Final = 2

Buffer = bytes | bytearray | memoryview


@dataclass(slots=True, frozen=True)
class ArpPacket:
    """An Ethernet/IPv4 ARP packet (the Ethernet payload)."""

    op: int
    sender_mac: bytes
    sender_ip: bytes
    target_mac: bytes
    target_ip: bytes

    def encode(self) -> bytes:
        return PACKET.pack(HTYPE_ETHERNET, PTYPE_IPV4, 6, 4, self.op, self.sender_mac,
                           self.sender_ip, self.target_mac, self.target_ip)

    @classmethod
    def decode(cls, data: Buffer) -> ArpPacket:
        """Decode; anything but Ethernet/IPv4 ARP raises :class:`ParseError`."""
        if len(data) < PACKET_LEN:
            raise ParseError("arp-truncated", f"{len(data)} bytes")
        htype, ptype, hlen, plen, op, sha, spa, tha, tpa = PACKET.unpack_from(data)
        if htype != HTYPE_ETHERNET or ptype != PTYPE_IPV4 or hlen != 6 or plen != 4:
            raise ParseError("arp-unsupported",
                             f"htype={htype} ptype={ptype:#x} hlen={hlen} plen={plen}")
        if op not in (OP_REQUEST, OP_REPLY):
            raise ParseError("arp-bad-op", f"op={op}")
        return cls(op, sha, spa, tha, tpa)

    @property
    def is_gratuitous(self) -> bool:
        return self.sender_ip == self.target_ip


def request(sender_mac: bytes, sender_ip: bytes, target_ip: bytes) -> ArpPacket:
    """Who-has ``target_ip``; the target MAC is zero (RFC 826)."""
    return ArpPacket(OP_REQUEST, sender_mac, sender_ip, b"\x00" * 6, target_ip)


def reply(sender_mac: bytes, sender_ip: bytes, to: ArpPacket) -> ArpPacket:
    """Answer ``to`` (a request for ``sender_ip``)."""
    return ArpPacket(OP_REPLY, sender_mac, sender_ip, to.sender_mac, to.sender_ip)


def announcement(sender_mac: bytes, sender_ip: bytes) -> ArpPacket:
    """Gratuitous ARP announcement: a request with sender IP = target IP (RFC 5227 s.2.3)."""
    return ArpPacket(OP_REQUEST, sender_mac, sender_ip, b"\x00" * 6, sender_ip)
