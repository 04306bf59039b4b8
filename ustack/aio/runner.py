"""Entry points: :func:`run`, :func:`loop_factory`, and the loop policy that
``ustack exec`` installs so an unmodified program's ``asyncio.run`` lands
on ustack."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

from ustack.aio.loop import StackOptions, UstackLoopMixin, new_loop
from ustack.tcp.config import TcpConfig

T = TypeVar("T")


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

    def factory() -> UstackLoopMixin:
        return new_loop(options, use_uvloop=use_uvloop)

    return factory


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
    with asyncio.Runner(debug=debug, loop_factory=factory) as runner:
        return runner.run(main)


class UstackEventLoopPolicy(asyncio.DefaultEventLoopPolicy):
    """A policy whose new loops are ustack loops (what ``ustack exec``
    installs: ``asyncio.run``, ``asyncio.new_event_loop`` and
    ``asyncio.get_event_loop`` in the main thread all use it)."""

    def __init__(self, factory: Callable[[], UstackLoopMixin]) -> None:
        super().__init__()
        self._factory = factory

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        return self._factory()


def install(factory: Callable[[], UstackLoopMixin]) -> None:
    """Make every new event loop of this process a ustack loop (also
    ``uvloop.new_event_loop``, which ``uvloop.run`` uses)."""
    asyncio.set_event_loop_policy(UstackEventLoopPolicy(factory))
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency
        return
    uvloop.new_event_loop = factory  # type: ignore[assignment]


__all__ = ["run", "loop_factory", "UstackEventLoopPolicy", "install"]
