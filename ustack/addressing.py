"""The stack's own address: ``A.B.C.D/PREFIXLEN`` checked once, where the
Stack, the event loop and the CLI all read it (RFC 1122 s.3.2.1.3: no
network, broadcast, loopback or multicast address as a host's own)."""

from __future__ import annotations

import ipaddress

_LIMITED_BROADCAST = ipaddress.IPv4Address("255.255.255.255")


def parse_interface(address: str) -> ipaddress.IPv4Interface:
    """``"10.77.0.2/24"`` → IPv4Interface; ValueError naming the input otherwise."""
    if not isinstance(address, str) or "/" not in address:
        raise ValueError(f"invalid address {address!r}: expected A.B.C.D/PREFIXLEN, "
                         "e.g. 10.77.0.2/24")
    try:
        iface = ipaddress.IPv4Interface(address)
    except ValueError as exc:
        raise ValueError(f"invalid address {address!r}: {exc}") from None
    ip = iface.ip
    if ip.is_multicast or ip.is_unspecified or ip.is_loopback or ip == _LIMITED_BROADCAST:
        raise ValueError(f"invalid address {address!r}: not a unicast host address")
    net = iface.network
    if net.prefixlen < 31 and ip in (net.network_address, net.broadcast_address):
        raise ValueError(f"invalid address {address!r}: that is the subnet's "
                         f"{'network' if ip == net.network_address else 'broadcast'} address")
    return iface


__all__ = ["parse_interface"]
