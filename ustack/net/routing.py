"""Routing for one interface: the on-link subnet plus an optional default
gateway (RFC 1122 s.3.3.1)."""

from __future__ import annotations

import ipaddress
from typing import Final

LIMITED_BROADCAST: Final = b"\xff\xff\xff\xff"


class Routes:
    """Next-hop selection for a stack with one address."""

    __slots__ = ("address", "prefixlen", "gateway", "_net", "_mask", "broadcast", "network")

    def __init__(self, address: bytes, prefixlen: int, gateway: bytes | None = None) -> None:
        if not 0 <= prefixlen <= 32:
            raise ValueError(f"invalid prefix length {prefixlen}")
        self.address = address
        self.prefixlen = prefixlen
        self._mask = (0xFFFFFFFF << (32 - prefixlen)) & 0xFFFFFFFF
        self._net = int.from_bytes(address, "big") & self._mask
        self.network = self._net.to_bytes(4, "big")
        #: the directed broadcast of the subnet (none for /31 and /32, RFC 3021)
        self.broadcast: bytes | None = (
            (self._net | (~self._mask & 0xFFFFFFFF)).to_bytes(4, "big") if prefixlen < 31 else None
        )
        if gateway is not None and not self.on_link(gateway):
            raise ValueError(
                f"gateway {ipaddress.IPv4Address(gateway)} is not inside "
                f"{ipaddress.IPv4Address(self.network)}/{prefixlen}"
            )
        self.gateway = gateway

    def on_link(self, dst: bytes) -> bool:
        return int.from_bytes(dst, "big") & self._mask == self._net

    def is_broadcast(self, dst: bytes) -> bool:
        return dst == LIMITED_BROADCAST or dst == self.broadcast

    def next_hop(self, dst: bytes) -> bytes | None:
        """The neighbour to send ``dst``'s packets to, or None (no route)."""
        if self.on_link(dst):
            return dst
        return self.gateway
