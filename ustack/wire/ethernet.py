"""Ethernet II framing (IEEE 802.3, RFC 894).

Decoding is a bounds check plus two slices: the receive path reads the
EtherType straight from the frame and only builds objects when it needs them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from ustack.wire.errors import ParseError

HEADER: Final = struct.Struct("!6s6sH")
HEADER_LEN: Final = 14
#: smallest frame on the wire without the FCS; shorter frames are padded
MIN_FRAME_LEN: Final = 60

ETHERTYPE_IPV4: Final = 0x0800
ETHERTYPE_ARP: Final = 0x0806
ETHERTYPE_IPV6: Final = 0x86DD
ETHERTYPE_VLAN: Final = 0x8100

BROADCAST: Final = b"\xff" * 6
ZERO_MAC: Final = b"\x00" * 6

Buffer = bytes | bytearray | memoryview


@dataclass(slots=True, frozen=True)
class EthernetHeader:
    dst: bytes
    src: bytes
    ethertype: int

    def encode(self) -> bytes:
        return HEADER.pack(self.dst, self.src, self.ethertype)

    @classmethod
    def decode(cls, frame: Buffer) -> EthernetHeader:
        """Decode the 14-byte header.  Raises :class:`ParseError`."""
        if len(frame) < HEADER_LEN:
            raise ParseError("eth-truncated", f"{len(frame)} bytes")
        dst, src, ethertype = HEADER.unpack_from(frame)
        return cls(dst, src, ethertype)


def header(dst: bytes, src: bytes, ethertype: int) -> bytes:
    """The 14 header bytes; callers cache this per next hop and prepend it."""
    return HEADER.pack(dst, src, ethertype)


def encode_frame(dst: bytes, src: bytes, ethertype: int, payload: Buffer, *,
                 pad: bool = True) -> bytes:
    """A whole frame; ``pad`` fills it up to the 60-byte Ethernet minimum."""
    frame = HEADER.pack(dst, src, ethertype) + bytes(payload)
    if pad and len(frame) < MIN_FRAME_LEN:
        frame += b"\x00" * (MIN_FRAME_LEN - len(frame))
    return frame


def parse_mac(text: str) -> bytes:
    """``"02:00:00:00:00:01"`` (or ``-`` separated) to 6 bytes; ValueError otherwise."""
    parts = text.replace("-", ":").split(":")
    if len(parts) != 6 or any(not 1 <= len(p) <= 2 for p in parts):
        raise ValueError(f"invalid MAC address {text!r}: expected 6 hex octets like "
                         "02:00:5e:00:00:01")
    try:
        octets = bytes(int(p, 16) for p in parts)
    except ValueError:
        raise ValueError(f"invalid MAC address {text!r}: octets must be hexadecimal") from None
    return octets


def format_mac(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def is_multicast(mac: bytes) -> bool:
    """Group bit set (includes broadcast)."""
    return bool(mac[0] & 1)
