"""ICMP at the network layer: what an error means to a transport, and how
often we may send errors ourselves.

:class:`IpError` is what a protocol's error handler receives, both for ICMP
errors that quote one of our packets (RFC 1122 s.3.2.2, RFC 5927) and for
packets the net layer could not deliver (ARP resolution failed, no route).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import Final

from ustack.wire import icmp

#: (errno, fatal) per destination-unreachable code, as Linux's icmp_err_convert;
#: fatal errors abort a connection that is still opening (RFC 1122 s.4.2.3.9)
UNREACH_ERRNO: Final[dict[int, tuple[int, bool]]] = {
    icmp.CODE_NET_UNREACH: (errno.ENETUNREACH, True),
    icmp.CODE_HOST_UNREACH: (errno.EHOSTUNREACH, True),
    icmp.CODE_PROTO_UNREACH: (errno.ENOPROTOOPT, True),
    icmp.CODE_PORT_UNREACH: (errno.ECONNREFUSED, True),
    icmp.CODE_FRAG_NEEDED: (errno.EMSGSIZE, False),
    icmp.CODE_SOURCE_ROUTE_FAILED: (errno.EOPNOTSUPP, False),
    icmp.CODE_NET_UNKNOWN: (errno.ENETUNREACH, True),
    icmp.CODE_HOST_UNKNOWN: (errno.EHOSTDOWN, True),
    icmp.CODE_HOST_ISOLATED: (errno.ENONET, True),
    icmp.CODE_NET_PROHIBITED: (errno.ENETUNREACH, True),
    icmp.CODE_HOST_PROHIBITED: (errno.EHOSTUNREACH, True),
    icmp.CODE_NET_UNREACH_TOS: (errno.ENETUNREACH, False),
    icmp.CODE_HOST_UNREACH_TOS: (errno.EHOSTUNREACH, False),
    icmp.CODE_ADMIN_PROHIBITED: (errno.EHOSTUNREACH, True),
    icmp.CODE_PRECEDENCE_VIOLATION: (errno.EHOSTUNREACH, True),
    icmp.CODE_PRECEDENCE_CUTOFF: (errno.EHOSTUNREACH, True),
}

ORIGIN_ICMP: Final = "icmp"
ORIGIN_ARP: Final = "arp"
ORIGIN_ROUTE: Final = "route"


def errno_for(icmp_type: int, code: int) -> tuple[int, bool] | None:
    """(errno, fatal) for an ICMP error, or None when a transport should
    ignore it (redirect, source quench: RFC 6633)."""
    if icmp_type == icmp.TYPE_DEST_UNREACH:
        return UNREACH_ERRNO.get(code, (errno.EHOSTUNREACH, False))
    if icmp_type == icmp.TYPE_TIME_EXCEEDED:
        return (errno.EHOSTUNREACH, False)
    if icmp_type == icmp.TYPE_PARAMETER_PROBLEM:
        return (errno.EPROTO, True)
    return None


@dataclass(slots=True, frozen=True)
class IpError:
    """A packet we sent (or tried to send) did not arrive.

    ``transport`` holds the first 8 bytes of that packet's transport header:
    for TCP the ports and the sequence number (:attr:`local_port`,
    :attr:`remote_port`, :attr:`seq`).
    """

    errno: int
    #: hard error: a connection still opening should fail with ``errno``
    fatal: bool
    origin: str  # "icmp", "arp" (resolution timed out) or "route" (no route)
    protocol: int
    local_addr: bytes
    remote_addr: bytes
    transport: bytes
    icmp_type: int | None = None
    icmp_code: int | None = None
    #: who sent the ICMP error (a router or the destination)
    reporter: bytes | None = None
    #: next-hop MTU for "fragmentation needed", else 0
    mtu: int = 0

    @property
    def local_port(self) -> int:
        return int.from_bytes(self.transport[0:2], "big") if len(self.transport) >= 2 else 0

    @property
    def remote_port(self) -> int:
        return int.from_bytes(self.transport[2:4], "big") if len(self.transport) >= 4 else 0

    @property
    def seq(self) -> int | None:
        """The TCP sequence number of the failed segment (RFC 5927 s.4.1 check)."""
        return int.from_bytes(self.transport[4:8], "big") if len(self.transport) >= 8 else None


class RateLimiter:
    """Token bucket for the ICMP errors we send (RFC 1812 s.4.3.2.8), sans-I/O."""

    __slots__ = ("rate", "burst", "_tokens", "_last")

    def __init__(self, rate: float = 100.0, burst: int = 50) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._last: float | None = None

    def allow(self, now: float) -> bool:
        if self._last is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False
