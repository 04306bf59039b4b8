"""Routing (on-link + gateway) and the ICMP error → errno mapping."""

from __future__ import annotations

import errno

import pytest

from ustack.net.icmp import IpError, RateLimiter, errno_for
from ustack.net.routing import Routes
from ustack.wire import icmp


def ip(s: str) -> bytes:
    return bytes(int(x) for x in s.split("."))


def test_on_link_and_gateway() -> None:
    r = Routes(ip("10.77.0.2"), 24, ip("10.77.0.1"))
    assert r.next_hop(ip("10.77.0.9")) == ip("10.77.0.9")
    assert r.next_hop(ip("8.8.8.8")) == ip("10.77.0.1")
    assert r.broadcast == ip("10.77.0.255") and r.network == ip("10.77.0.0")
    assert r.is_broadcast(ip("255.255.255.255")) and r.is_broadcast(ip("10.77.0.255"))
    assert Routes(ip("10.77.0.2"), 24).next_hop(ip("8.8.8.8")) is None


def test_gateway_must_be_on_link() -> None:
    with pytest.raises(ValueError, match="not inside"):
        Routes(ip("10.77.0.2"), 24, ip("10.78.0.1"))


def test_point_to_point_has_no_broadcast() -> None:
    assert Routes(ip("10.0.0.0"), 31).broadcast is None
    assert Routes(ip("10.0.0.1"), 32).next_hop(ip("10.0.0.2")) is None


def test_errno_mapping() -> None:
    assert errno_for(icmp.TYPE_DEST_UNREACH, icmp.CODE_PORT_UNREACH) == (errno.ECONNREFUSED, True)
    assert errno_for(icmp.TYPE_DEST_UNREACH, icmp.CODE_HOST_UNREACH) == (errno.EHOSTUNREACH, True)
    assert errno_for(icmp.TYPE_DEST_UNREACH, icmp.CODE_FRAG_NEEDED) == (errno.EMSGSIZE, False)
    assert errno_for(icmp.TYPE_TIME_EXCEEDED, 0) == (errno.EHOSTUNREACH, False)
    assert errno_for(icmp.TYPE_REDIRECT, 0) is None
    assert errno_for(icmp.TYPE_SOURCE_QUENCH, 0) is None


def test_ip_error_fields() -> None:
    transport = (40000).to_bytes(2, "big") + (80).to_bytes(2, "big") + (7).to_bytes(4, "big")
    e = IpError(errno.ECONNREFUSED, True, "icmp", 6, ip("10.77.0.2"), ip("10.77.0.1"), transport)
    assert (e.local_port, e.remote_port, e.seq) == (40000, 80, 7)
    assert IpError(1, True, "arp", 6, b"", b"", b"").seq is None


def test_rate_limiter() -> None:
    rl = RateLimiter(rate=10.0, burst=2)
    assert rl.allow(0.0) and rl.allow(0.0) and not rl.allow(0.0)
    assert rl.allow(0.1)
    assert not rl.allow(0.1)
