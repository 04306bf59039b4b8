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


#: answers of :func:`is_ipv4_literal` already worked out (a client that
#: connects again and again to one address parses it once: ipaddress costs
#: ~10 us a call); bounded, cleared when full
_LITERAL: dict[str, bool] = {}
_LITERAL_MAX = 1024


def is_ipv4_literal(host: str) -> bool:
    """True when ``host`` is a dotted-quad IPv4 address (ipaddress's rule)."""
    known = _LITERAL.get(host)
    if known is not None:
        return known
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        known = False
    else:
        known = True
    if type(host) is str:  # (a str subclass could compare equal yet differ)
        if len(_LITERAL) >= _LITERAL_MAX:
            _LITERAL.clear()
        _LITERAL[host] = known
    return known


__all__ = ["via_stack", "is_ipv4_literal"]
