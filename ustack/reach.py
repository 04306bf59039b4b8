"""Which IPv4 destinations go through a ustack stack and which stay the
kernel's: the one rule the event loop, the resolver and the streams share.

A destination goes through the stack when it is a unicast IPv4 address the
stack can route: inside its subnet, or anywhere else when it has a default
gateway.  Loopback (127/8), the unspecified address, multicast and the
limited broadcast stay the kernel's (ustack has no loopback interface).
"""

from __future__ import annotations

import ipaddress

_LIMITED_BROADCAST = ipaddress.IPv4Address("255.255.255.255")


def via_stack(interface: ipaddress.IPv4Interface, gateway: str | None, host: str) -> bool:
    """True when ``host`` (an address literal) should use the stack."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if not isinstance(ip, ipaddress.IPv4Address):
        return False
    if ip.is_loopback or ip.is_unspecified or ip.is_multicast or ip == _LIMITED_BROADCAST:
        return False
    if ip == interface.ip:
        return False  # our own address: ustack does not talk to itself
    return ip in interface.network or gateway is not None


def is_ipv4_literal(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True


__all__ = ["via_stack", "is_ipv4_literal"]
