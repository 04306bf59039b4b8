"""The composition root of asyncio on ustack: :func:`run` and
:func:`loop_factory` give the ustack event loop (:mod:`ustack.aio`) a
starter that composes a :class:`~ustack.stack.Stack` (device, net layer,
TCP driver, resolver).  The loop and the streams depend on the driver and
never import the Stack; this module is where the two meet (DESIGN.md,
"Transport driver")."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

from ustack.aio.loop import StackOptions, UstackLoopMixin
from ustack.aio.runner import factory_of, run_on
from ustack.names import Resolver
from ustack.stack import Stack
from ustack.tcp.config import TcpConfig

T = TypeVar("T")


async def start_stack(options: StackOptions) -> Stack:
    """``Stack.start`` with the loop's options, resolving names with its
    ``dns``/``hosts``/``resolv_conf`` settings."""
    o = options
    stack = await Stack.start(iface=o.iface, address=o.address, gateway=o.gateway,
                              pcap=o.pcap, mac=o.mac, offload=o.offload,
                              diagnostics=o.diagnostics, tcp_config=o.tcp_config, **o.extra)
    stack.resolver = Resolver(stack.udp, stack.reaches, open_tcp=stack.open_connection,
                              dns_servers=o.dns, hosts_path=o.hosts,
                              resolv_conf=o.resolv_conf)
    return stack


def loop_factory(
    iface: str | None = None,
    address: str | None = None,
    gateway: str | None = None,
    *,
    use_uvloop: bool = True,
    pcap: str | None = None,
    mac: str | None = None,
    offload: bool = True,
    diagnostics: bool = True,
    tcp_config: TcpConfig | None = None,
    dns: Sequence[str] | None = None,
    hosts: str = "/etc/hosts",
    resolv_conf: str = "/etc/resolv.conf",
) -> Callable[[], UstackLoopMixin]:
    """A factory of event loops whose network goes through a ustack stack on
    ``iface`` with ``address`` (``A.B.C.D/PREFIXLEN``), for
    ``asyncio.Runner(loop_factory=ustack.loop_factory(...))``.  Unset
    arguments come from USTACK_IFACE / USTACK_ADDRESS / USTACK_GATEWAY.
    Each loop starts its own stack (and closes it in ``loop.close()``)."""
    options = StackOptions.from_env(
        iface, address, gateway, pcap=pcap, mac=mac, offload=offload, diagnostics=diagnostics,
        tcp_config=tcp_config, dns=list(dns) if dns is not None else None, hosts=hosts,
        resolv_conf=resolv_conf)
    return factory_of(options, start_stack, use_uvloop=use_uvloop)


def run(
    main: Coroutine[Any, Any, T],
    *,
    iface: str | None = None,
    address: str | None = None,
    gateway: str | None = None,
    debug: bool | None = None,
    use_uvloop: bool = True,
    pcap: str | None = None,
    mac: str | None = None,
    offload: bool = True,
    diagnostics: bool = True,
    tcp_config: TcpConfig | None = None,
    dns: Sequence[str] | None = None,
    hosts: str = "/etc/hosts",
    resolv_conf: str = "/etc/resolv.conf",
) -> T:
    """``asyncio.run(main)`` on a ustack loop: ``asyncio.open_connection``,
    ``start_server``, ``loop.create_connection``, ``getaddrinfo``, TLS and
    UDP go through a stack on ``iface`` with ``address``."""
    factory = loop_factory(iface, address, gateway, use_uvloop=use_uvloop, pcap=pcap, mac=mac,
                           offload=offload, diagnostics=diagnostics, tcp_config=tcp_config,
                           dns=dns, hosts=hosts, resolv_conf=resolv_conf)
    return run_on(main, factory, debug=debug)


__all__ = ["run", "loop_factory", "start_stack"]
