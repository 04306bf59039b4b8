"""The typed port a transport driver gets instead of the whole Stack
(DESIGN.md, "Transport driver"): the local address, the MTU, the IP layer's
send paths, the clock and the scheduler.  ``Stack`` builds one from its IP
layer and device (:meth:`ustack.stack.Stack.tcp_port`); :func:`port_of`
builds one from any object shaped like a Stack (the unit tests' fakes).
"""

from __future__ import annotations

import asyncio
import inspect
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ustack.wire.tcp import SegmentEncoder, TcpSegment

Buffer = bytes | memoryview


@dataclass(slots=True)
class TcpPort:
    """What the TCP driver may use of the layers under it."""

    #: our IPv4 address (4 bytes)
    local_addr: bytes
    #: the link MTU (IPv4 packet size)
    mtu: int
    #: ``send(dst, protocol, payload)``: one IPv4 packet
    send: Callable[[bytes, int, Buffer], None]
    #: ``send_many(dst, protocol, payloads)``: a burst to one destination
    send_many: Callable[[bytes, int, Iterable[Buffer]], None] | None
    #: the fused Ethernet + IPv4 + TCP burst path and its per-destination encoder
    send_tcp_many: Callable[[bytes, Sequence[TcpSegment], SegmentEncoder], None] | None
    tcp_encoder: Callable[[bytes], SegmentEncoder] | None
    #: ``send_gso(dst, protocol, payload, gso_size) -> bool`` when the device
    #: segments TCP for us (PACKET_VNET_HDR), else None
    send_gso: Callable[[bytes, int, Buffer, int], bool] | None
    #: ``reachable(dst, now) -> bool``: may a SYN-ACK be sent there now (the
    #: IP layer's neighbour check under a SYN flood), None: always
    reachable: Callable[[bytes, float], bool] | None
    #: the scheduler (``call_soon``/``call_at``/``time``) and its clock
    loop: asyncio.AbstractEventLoop
    #: what transports report as ``get_extra_info("stack")`` (the Stack)
    owner: Any = None
    #: ``send_ip_opts(dst, protocol, payload, tos=N, df=B)``: one IPv4 packet
    #: with the TOS byte and DF bit of a socket's IP_TOS / IP_MTU_DISCOVER
    #: (None: the IP layer cannot, those options are refused)
    send_ip_opts: Callable[..., None] | None = None
    #: ``cork()`` / ``uncork()``: hold the frames sent in between and hand
    #: them to the device in one burst (IpLayer.cork); None: no corking
    cork: Callable[[], None] | None = None
    uncork: Callable[[], None] | None = None
    #: ``send_tcp_round(dst, items, encoder) -> send times | None``: one
    #: output round (segments and GSO super-segments) in one device call
    #: (IpLayer.send_tcp_round); None: the round goes out piece by piece
    send_tcp_round: Callable[[bytes, Sequence[Any], SegmentEncoder], list[float] | None] \
        | None = None


def port_of(stack: Any, loop: asyncio.AbstractEventLoop | None = None) -> TcpPort:
    """A port for anything shaped like a Stack (``address``, ``ip.send`` and
    optionally ``ip.send_many``/``send_tcp_many``/``tcp_encoder``/
    ``transmit_gso``+``send_gso``/``reachable``, ``device.mtu``)."""
    ip = stack.ip
    gso = getattr(ip, "send_gso", None) if getattr(ip, "transmit_gso", None) is not None \
        else None
    return TcpPort(
        local_addr=socket.inet_aton(stack.address),
        mtu=int(getattr(getattr(stack, "device", None), "mtu", 1500) or 1500),
        send=ip.send,
        send_many=getattr(ip, "send_many", None),
        send_tcp_many=getattr(ip, "send_tcp_many", None),
        tcp_encoder=getattr(ip, "tcp_encoder", None),
        send_gso=gso,
        reachable=getattr(ip, "reachable", None),
        send_ip_opts=ip.send if _takes_ip_opts(ip.send) else None,
        cork=getattr(ip, "cork", None),
        send_tcp_round=getattr(ip, "send_tcp_round", None)
        if gso is not None and getattr(ip, "transmit_round", None) is not None else None,
        uncork=getattr(ip, "uncork", None),
        loop=loop or asyncio.get_running_loop(),
        owner=stack,
    )


def _takes_ip_opts(send: Callable[..., None]) -> bool:
    try:
        params = inspect.signature(send).parameters
    except (TypeError, ValueError):
        return False
    return "tos" in params and "df" in params


__all__ = ["TcpPort", "port_of"]
