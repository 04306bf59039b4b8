"""An asyncio event loop whose network calls go through a ustack Stack.

:func:`loop_factory` builds loops for :class:`asyncio.Runner` (and
:func:`ustack.run`, and ``ustack exec`` through a loop policy).  The loop is
uvloop's (or, with ``use_uvloop=False``, the standard library's selector
loop) with the network entry points overridden:

* ``create_connection``, ``asyncio.open_connection``: IPv4 destinations
  the stack can route (its subnet, or anything with a gateway; see
  :mod:`ustack.reach`) connect over ustack TCP; names resolve through
  :meth:`getaddrinfo` first.  Loopback, IPv6 and Unix sockets stay the
  kernel's.
* ``sock_connect`` on a kernel ``socket.socket`` (what aiohttp's
  aiohappyeyeballs does) connects over ustack instead and remembers the
  connection under that socket (:mod:`ustack.aio.claims`);
  ``create_connection(sock=that_socket)`` then hands it to the protocol
  (the kernel socket is closed unused), and ``sock_sendall``/``sock_recv``/
  ``sock_recv_into`` on it use the ustack connection.
* ``create_server``, ``asyncio.start_server``: host None, ``""``,
  ``"0.0.0.0"`` or the stack's address listen on the stack.
* ``getaddrinfo``: /etc/hosts, then DNS over ustack's UDP
  (:mod:`ustack.names`), else the kernel's resolver (loopback nameserver).
* ``start_tls``: on ustack transports TLS runs over ``ssl.MemoryBIO`` in
  the standard library's SSLProtocol (uvloop's refuses foreign transports).
* ``create_datagram_endpoint``: ustack UDP (:mod:`ustack.aio.datagram`).

The stack starts when the factory builds the loop and closes in
``loop.close()``.  The loop never sees :class:`ustack.Stack` itself: it is
given a *starter* (``ustack.runtime.start_stack`` composes the Stack) and
uses what :class:`LoopStack` names of the result: the TCP driver, the UDP
layer, the resolver (DESIGN.md "Transport driver").
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import ssl as ssl_mod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import uvloop

from ustack import streams
from ustack.addressing import parse_interface
from ustack.aio import gcpolicy
from ustack.aio.claims import Claims, deliver, leftover
from ustack.aio.datagram import UdpTransport
from ustack.names import KernelResolverNeeded, gaierror
from ustack.net.udp import UdpLayer
from ustack.reach import is_ipv4_literal, via_stack
from ustack.tcp.config import TcpConfig

log = logging.getLogger("ustack.aio")

_ANY_HOSTS = (None, "", "0.0.0.0")
#: hosts whose route a loop remembers (cleared when full)
_ROUTE_CACHE_MAX = 1024


@dataclass(slots=True)
class StackOptions:
    """How the loop's stack is started (``Stack.start`` arguments) and
    how it resolves names."""

    iface: str
    address: str
    gateway: str | None = None
    pcap: str | None = None
    mac: str | None = None
    offload: bool = True
    diagnostics: bool = True
    tcp_config: TcpConfig | None = None
    #: nameservers (``"A.B.C.D"`` or ``"A.B.C.D:PORT"``) instead of resolv.conf's
    dns: list[str] | None = None
    hosts: str = "/etc/hosts"
    resolv_conf: str = "/etc/resolv.conf"
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(cls, iface: str | None = None, address: str | None = None,
                 gateway: str | None = None, **kwargs: Any) -> StackOptions:
        """Arguments win over USTACK_IFACE / USTACK_ADDRESS / USTACK_GATEWAY."""
        iface = iface or os.environ.get("USTACK_IFACE")
        address = address or os.environ.get("USTACK_ADDRESS")
        gateway = gateway or os.environ.get("USTACK_GATEWAY") or None
        if not iface or not address:
            missing = " and ".join(n for n, v in (("iface (USTACK_IFACE)", iface),
                                                  ("address (USTACK_ADDRESS)", address)) if not v)
            raise ValueError(f"ustack needs {missing}, e.g. iface='veth-us', "
                             "address='10.77.0.2/24'")
        parse_interface(address)  # ValueError naming a bad address, early
        return cls(iface=iface, address=address, gateway=gateway, **kwargs)


class LoopStack(streams.StreamHost, Protocol):
    """What the loop uses of its stack: the TCP driver and the resolver
    (:class:`~ustack.streams.StreamHost`), the UDP layer, and closing it."""

    @property
    def udp(self) -> UdpLayer: ...

    @property
    def closed(self) -> bool: ...

    async def close(self) -> None: ...


#: starts the loop's stack from its options (``ustack.runtime.start_stack``)
StackStarter = Callable[[StackOptions], Awaitable[LoopStack]]


def _kwargs(**values: Any) -> dict[str, Any]:
    """Keyword arguments that differ from asyncio's defaults (so a loop that
    lacks a newer keyword, e.g. ``all_errors`` before 3.12, is not given it)."""
    return {k: v for k, v in values.items() if v is not None and v is not False}


class UstackLoopMixin(asyncio.AbstractEventLoop):
    """The overrides; mixed in front of a concrete loop class."""

    _ustack_options: StackOptions
    _ustack_starter: StackStarter
    _ustack: LoopStack | None
    _ustack_starting: asyncio.Future[LoopStack] | None
    _ustack_claims: Claims
    _ustack_gc_held: bool

    def _ustack_setup(self, options: StackOptions, starter: StackStarter) -> None:
        self._ustack_options = options
        self._ustack_starter = starter
        self._ustack_interface = parse_interface(options.address)
        self._ustack = None
        self._ustack_starting = None
        self._ustack_claims = Claims()
        #: host -> ustack_routes(host), for the gateway in _ustack_route_gw
        self._ustack_route_cache: dict[str, bool] = {}
        self._ustack_route_gw: str | None = options.gateway
        streams.register_loop_stack(self, self.ustack_stack)
        gcpolicy.loop_opened()  # gen0 threshold 2000 while ustack loops run (gcpolicy)
        self._ustack_gc_held = True

    # ---------------------------------------------------------------- stack

    @property
    def ustack_options(self) -> StackOptions:
        return self._ustack_options

    async def ustack_stack(self) -> LoopStack:
        """The loop's stack, started on first use."""
        if self._ustack is not None:
            return self._ustack
        if self._ustack_starting is None:
            self._ustack_starting = self.create_future()
            try:
                stack = await self._ustack_starter(self._ustack_options)
            except BaseException as exc:
                fut, self._ustack_starting = self._ustack_starting, None
                fut.set_exception(exc)
                fut.exception()  # retrieved: the caller raises it
                raise
            self._ustack = stack
            self._ustack_starting.set_result(stack)
            return stack
        return await asyncio.shield(self._ustack_starting)

    def ustack_routes(self, host: str) -> bool:
        """True when connections to ``host`` (an address literal) use the stack
        (:func:`ustack.reach.via_stack`, remembered per host: a client
        connecting again and again to one server asks once)."""
        gateway = self._ustack_options.gateway
        cache = self._ustack_route_cache
        if gateway != self._ustack_route_gw:
            cache.clear()
            self._ustack_route_gw = gateway
        known = cache.get(host)
        if known is None:
            known = via_stack(self._ustack_interface, gateway, host)
            if type(host) is str:
                if len(cache) >= _ROUTE_CACHE_MAX:
                    cache.clear()
                cache[host] = known
        return known

    def _kernel(self) -> asyncio.AbstractEventLoop:
        """The concrete loop's own (kernel) implementation of the overrides."""
        return cast(asyncio.AbstractEventLoop, super())

    def _ours(self, host: str | None) -> bool:
        return host in _ANY_HOSTS or host == str(self._ustack_interface.ip)

    def close(self) -> None:
        stack = self._ustack
        if stack is not None and not stack.closed and not self.is_closed() \
                and not self.is_running():
            try:
                self.run_until_complete(stack.close())
            except Exception:
                log.exception("ustack: closing the loop's stack failed")
        self._ustack_claims.close()
        super().close()
        if getattr(self, "_ustack_gc_held", False):
            self._ustack_gc_held = False
            gcpolicy.loop_closed()

    # ---------------------------------------------------------- getaddrinfo

    async def getaddrinfo(
        self, host: bytes | str | None, port: bytes | str | int | None, *,
        family: int = 0, type: int = 0, proto: int = 0, flags: int = 0,
    ) -> list[Any]:
        """IPv4 lookups through the stack's resolver (hosts, then DNS over
        ustack UDP); socket.gaierror as the kernel's.  IPv6-only requests,
        ``host=None`` and names with only a loopback nameserver go to the
        kernel's getaddrinfo."""
        if isinstance(host, bytes):
            host = host.decode("idna")
        if host is None or family not in (0, socket.AF_INET):
            return await self._kernel().getaddrinfo(host, port, family=family, type=type,
                                              proto=proto, flags=flags)
        if is_ipv4_literal(host):
            addresses = [host]
        elif flags & socket.AI_NUMERICHOST:
            raise gaierror(socket.EAI_NONAME)
        else:
            stack = await self.ustack_stack()
            try:
                addresses = await stack.resolver.resolve(host)
            except KernelResolverNeeded:
                return await self._kernel().getaddrinfo(host, port, family=family, type=type,
                                                 proto=proto, flags=flags)
        portnum = _service_port(port, type, flags)
        kinds: list[tuple[socket.SocketKind, int]]
        if type == 0:
            kinds = [(socket.SOCK_STREAM, socket.IPPROTO_TCP),
                     (socket.SOCK_DGRAM, socket.IPPROTO_UDP), (socket.SOCK_RAW, 0)]
        else:
            default = {socket.SOCK_STREAM: socket.IPPROTO_TCP,
                       socket.SOCK_DGRAM: socket.IPPROTO_UDP}.get(socket.SocketKind(type), 0)
            kinds = [(socket.SocketKind(type), proto or default)]
        canon = host if flags & socket.AI_CANONNAME else ""
        out: list[tuple[socket.AddressFamily, socket.SocketKind, int, str,
                        tuple[str, int] | tuple[str, int, int, int]]] = []
        for i, addr in enumerate(addresses):
            for kind, pr in kinds:
                out.append((socket.AF_INET, kind, pr, canon if i == 0 else "", (addr, portnum)))
        return out

    # --------------------------------------------------------------- connect

    async def create_connection(  # type: ignore[override]
        self,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        host: str | None = None,
        port: int | None = None,
        *,
        ssl: ssl_mod.SSLContext | bool | None = None,
        family: int = 0,
        proto: int = 0,
        flags: int = 0,
        sock: socket.socket | None = None,
        local_addr: tuple[str, int] | None = None,
        server_hostname: str | None = None,
        ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None,
        happy_eyeballs_delay: float | None = None,
        interleave: int | None = None,
        all_errors: bool = False,
    ) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
        """asyncio's ``create_connection``; IPv4 destinations the stack routes
        (and sockets :meth:`sock_connect` connected over ustack) use ustack TCP.
        With ``happy_eyeballs_delay`` the addresses are raced as asyncio
        does (RFC 8305 staggered attempts, :func:`ustack.streams.connect_any`);
        ``interleave`` reorders by address family, a no-op for ustack's
        IPv4-only results."""
        # (no closure over the arguments for the kernel's call: it would make
        # a cell per argument on every call, ~5 % of a connect+close client)
        routed: list[str] = []
        if sock is not None:
            claim = self._ustack_claims.take(sock)
            if claim is not None:
                claimed = claim.transport
                if host is not None or port is not None:
                    claimed.abort()
                    raise ValueError("host/port and sock can not be specified at the same time")
                if ssl and server_hostname is None:
                    claimed.abort()
                    raise ValueError(
                        "You must set server_hostname when using ssl without a host")
                early = leftover(claim)  # what a sock_recv buffered and did not return
                protocol = protocol_factory()
                transport = await streams.attach(
                    claimed, protocol, ssl=ssl, server_hostname=server_hostname,
                    ssl_handshake_timeout=ssl_handshake_timeout,
                    ssl_shutdown_timeout=ssl_shutdown_timeout)
                deliver(claimed, early)
                return transport, protocol
        elif host is not None and family in (0, socket.AF_INET) and port is not None:
            if server_hostname is not None and not ssl:
                raise ValueError("server_hostname is only meaningful with ssl")
            if type(port) is int and type(host) is str and is_ipv4_literal(host):
                # what getaddrinfo answers for a literal, without the await
                if self.ustack_routes(host):
                    routed = [host]
            else:
                infos = await self.getaddrinfo(host, port, family=socket.AF_INET,
                                               type=socket.SOCK_STREAM, proto=proto,
                                               flags=flags)
                routed = [a for a in dict.fromkeys(str(info[4][0]) for info in infos)
                          if self.ustack_routes(a)]
        if not routed:  # a kernel socket, an unclaimed socket, or not the stack's route
            return await self._kernel().create_connection(
                protocol_factory, cast(str, host), cast(int, port),
                **_kwargs(ssl=ssl, family=family, proto=proto, flags=flags, sock=sock,
                          local_addr=local_addr, server_hostname=server_hostname,
                          ssl_handshake_timeout=ssl_handshake_timeout,
                          ssl_shutdown_timeout=ssl_shutdown_timeout,
                          happy_eyeballs_delay=happy_eyeballs_delay, interleave=interleave,
                          all_errors=all_errors))
        local_port = self._local_port(local_addr)
        stack = self._ustack  # (what ustack_stack() returns once started)
        if stack is None:
            stack = await self.ustack_stack()
        if ssl and server_hostname is None:
            server_hostname = host
        if len(routed) == 1 and happy_eyeballs_delay is None and not ssl:
            # one address, no TLS: what connect_any and attach do, without
            # their two coroutines per connection
            try:
                plain = await streams.connect_transport(
                    stack.tcp, streams.parse_ipv4(routed[0]), int(cast(int, port)),
                    local_port=local_port)
            except OSError as exc:
                if all_errors:
                    raise ExceptionGroup("create_connection failed", [exc]) from None
                raise
            protocol = protocol_factory()
            return streams.attach_plain(plain, protocol), protocol
        connected, errors = await streams.connect_any(
            stack.tcp, routed, int(cast(int, port)), happy_eyeballs_delay=happy_eyeballs_delay,
            local_port=local_port)
        if connected is not None:
            protocol = protocol_factory()
            tls = await streams.attach(connected, protocol, ssl=ssl,
                                       server_hostname=server_hostname,
                                       ssl_handshake_timeout=ssl_handshake_timeout,
                                       ssl_shutdown_timeout=ssl_shutdown_timeout)
            return tls, protocol
        if all_errors:
            raise ExceptionGroup("create_connection failed", errors)
        raise streams.connect_errors(errors)

    def _local_port(self, local_addr: tuple[str, int] | None) -> int | None:
        if local_addr is None:
            return None
        lhost, lport = local_addr[0], int(local_addr[1])
        if not self._ours(lhost):
            raise OSError(errno.EADDRNOTAVAIL,
                          f"error while attempting to bind on address {local_addr!r}: "
                          "cannot assign requested address")
        return lport or None

    async def sock_connect(self, sock: socket.socket, address: Any) -> None:
        """A kernel TCP socket connecting to a destination the stack routes is
        connected over ustack instead; ``create_connection(sock=sock)``
        then adopts that connection (aiohttp/aiohappyeyeballs does exactly
        this).  Other sockets (Unix, loopback, UDP) connect in the kernel."""
        if (sock.family == socket.AF_INET and sock.type == socket.SOCK_STREAM
                and isinstance(address, tuple) and len(address) == 2):
            host, port = str(address[0]), int(address[1])
            if not is_ipv4_literal(host):
                infos = await self.getaddrinfo(host, port, family=socket.AF_INET,
                                               type=socket.SOCK_STREAM)
                host = str(infos[0][4][0])
            if self.ustack_routes(host):
                try:
                    bound = sock.getsockname()
                except OSError:
                    bound = ("0.0.0.0", 0)
                local_port = self._local_port((bound[0], bound[1])) if bound[1] else None
                stack = await self.ustack_stack()
                transport = await streams.connect_transport(
                    stack.tcp, socket.inet_aton(host), port, local_port=local_port)
                self._ustack_claims.add(sock, transport)
                return
        await super().sock_connect(sock, address)

    async def sock_sendall(self, sock: socket.socket, data: Any) -> None:
        """On a socket :meth:`sock_connect` put on ustack: send over its ustack
        connection (returns once the transport is below its high-water
        mark); else the kernel's."""
        proto = await self._ustack_claims.socket_protocol(sock)
        if proto is None:
            return await super().sock_sendall(sock, data)
        await proto.sendall(data)

    async def sock_recv(self, sock: socket.socket, n: int) -> bytes:
        """On a socket :meth:`sock_connect` put on ustack: up to ``n`` bytes
        of its ustack connection, ``b""`` after the peer's FIN; else the kernel's."""
        proto = await self._ustack_claims.socket_protocol(sock)
        if proto is None:
            return await super().sock_recv(sock, n)
        return await proto.recv(n)

    async def sock_recv_into(self, sock: socket.socket, buf: Any) -> int:
        """:meth:`sock_recv` into ``buf``; the number of bytes."""
        proto = await self._ustack_claims.socket_protocol(sock)
        if proto is None:
            return await super().sock_recv_into(sock, buf)
        view = memoryview(buf).cast("B")
        data = await proto.recv(len(view))
        view[:len(data)] = data
        return len(data)

    # ---------------------------------------------------------------- serve

    async def create_server(  # type: ignore[override]
        self,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        host: str | Sequence[str] | None = None,
        port: int | None = None,
        *,
        family: int = socket.AF_UNSPEC,
        flags: int = socket.AI_PASSIVE,
        sock: socket.socket | None = None,
        backlog: int = 100,
        ssl: ssl_mod.SSLContext | None = None,
        reuse_address: bool | None = None,
        reuse_port: bool | None = None,
        keep_alive: bool | None = None,
        ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None,
        start_serving: bool = True,
    ) -> asyncio.AbstractServer:
        """asyncio's ``create_server``; host None, ``""``, ``"0.0.0.0"`` or the
        stack's address listen on ustack (the returned server's ``sockets``
        give the stack's address).  ``reuse_address``/``reuse_port`` are
        accepted: the stack has one listener per port."""
        hosts: list[str | None] = [host] if host is None or isinstance(host, str) \
            else list(host)
        if sock is None and family in (socket.AF_UNSPEC, socket.AF_INET) \
                and any(self._ours(h) for h in hosts):
            stack = await self.ustack_stack()
            return await streams.create_server(
                protocol_factory, None, int(port or 0), stack=stack, backlog=backlog, ssl=ssl,
                ssl_handshake_timeout=ssl_handshake_timeout, start_serving=start_serving)
        kernel = _kwargs(family=family, flags=flags, sock=sock, backlog=backlog, ssl=ssl,
                         reuse_address=reuse_address, reuse_port=reuse_port,
                         keep_alive=keep_alive, ssl_handshake_timeout=ssl_handshake_timeout,
                         ssl_shutdown_timeout=ssl_shutdown_timeout)
        kernel["start_serving"] = start_serving
        return await self._kernel().create_server(protocol_factory, host, port, **kernel)

    # ------------------------------------------------------------------ TLS

    async def start_tls(
        self,
        transport: asyncio.BaseTransport,
        protocol: asyncio.BaseProtocol,
        sslcontext: ssl_mod.SSLContext,
        *,
        server_side: bool = False,
        server_hostname: str | None = None,
        ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None,
    ) -> asyncio.Transport | None:
        """TLS over a ustack transport (``StreamWriter.start_tls`` too),
        client or server side, on uvloop as on asyncio; other transports
        go to the loop's own start_tls."""
        if transport.get_extra_info("stack") is not None:
            return await streams.start_tls(
                transport, protocol, sslcontext,  # type: ignore[arg-type]
                server_side=server_side, server_hostname=server_hostname,
                ssl_handshake_timeout=ssl_handshake_timeout,
                ssl_shutdown_timeout=ssl_shutdown_timeout, call_connection_made=False)
        return await self._kernel().start_tls(
            cast(asyncio.WriteTransport, transport), protocol, sslcontext, server_side=server_side,
            server_hostname=server_hostname, ssl_handshake_timeout=ssl_handshake_timeout,
            **_kwargs(ssl_shutdown_timeout=ssl_shutdown_timeout))

    # ------------------------------------------------------------------ UDP

    async def create_datagram_endpoint(  # type: ignore[override]
        self,
        protocol_factory: Callable[[], asyncio.DatagramProtocol],
        local_addr: tuple[str, int] | str | None = None,
        remote_addr: tuple[str, int] | str | None = None,
        *,
        family: int = 0,
        proto: int = 0,
        flags: int = 0,
        reuse_address: bool | None = None,
        reuse_port: bool | None = None,
        allow_broadcast: bool | None = None,
        sock: socket.socket | None = None,
    ) -> tuple[asyncio.DatagramTransport, asyncio.DatagramProtocol]:
        """UDP on the stack for a remote address it routes, or a local
        address that is the stack's (``0.0.0.0`` included); else the kernel's."""
        kernel = _kwargs(family=family, proto=proto, flags=flags, reuse_port=reuse_port,
                         allow_broadcast=allow_broadcast, sock=sock)
        if reuse_address is not None:
            kernel["reuse_address"] = reuse_address  # asyncio raises its own ValueError
        if sock is not None or family not in (0, socket.AF_INET) \
                or isinstance(local_addr, str) or isinstance(remote_addr, str):
            return await self._kernel().create_datagram_endpoint(
                protocol_factory, local_addr, remote_addr, **kernel)
        remote: tuple[str, int] | None = None
        if remote_addr is not None:
            infos = await self.getaddrinfo(remote_addr[0], remote_addr[1],
                                           family=socket.AF_INET, type=socket.SOCK_DGRAM)
            remote = (str(infos[0][4][0]), int(remote_addr[1]))
        use_stack = (remote is not None and self.ustack_routes(remote[0])) or (
            remote is None and local_addr is not None and self._ours(local_addr[0]))
        if not use_stack:
            return await self._kernel().create_datagram_endpoint(
                protocol_factory, local_addr, remote_addr, **kernel)
        if local_addr is not None and not self._ours(local_addr[0]):
            raise OSError(errno.EADDRNOTAVAIL, f"cannot bind to {local_addr!r}: not the "
                          f"stack's address ({self._ustack_interface.ip})")
        stack = await self.ustack_stack()
        udp = stack.udp.bind(int(local_addr[1]) if local_addr is not None else 0)
        try:
            if remote is not None:
                udp.connect(socket.inet_aton(remote[0]), remote[1])
        except BaseException:
            udp.close()
            raise
        protocol = protocol_factory()
        transport = UdpTransport(self, udp, protocol, stack)
        protocol.connection_made(transport)
        return transport, protocol


def _service_port(port: bytes | str | int | None, type: int, flags: int) -> int:
    if port is None:
        return 0
    if isinstance(port, bytes):
        port = port.decode()
    if isinstance(port, int):
        return port
    if port.isdigit():
        return int(port)
    if flags & socket.AI_NUMERICSERV:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    try:
        return socket.getservbyname(port, "udp" if type == socket.SOCK_DGRAM else "tcp")
    except OSError:
        raise socket.gaierror(socket.EAI_SERVICE, "Servname not supported for ai_socktype") \
            from None


class AsyncioUstackLoop(UstackLoopMixin, asyncio.SelectorEventLoop):  # type: ignore[misc]
    """The standard library's selector loop with ustack networking."""

    def __init__(self, options: StackOptions, starter: StackStarter) -> None:
        super().__init__()
        self._ustack_setup(options, starter)


class UvloopUstackLoop(UstackLoopMixin, uvloop.Loop):  # type: ignore[misc]
    """uvloop with ustack networking."""

    def __init__(self, options: StackOptions, starter: StackStarter) -> None:
        super().__init__()
        self._ustack_setup(options, starter)


def new_loop(options: StackOptions, starter: StackStarter, *, use_uvloop: bool = True,
             start: bool = True) -> UstackLoopMixin:
    """A new ustack loop whose stack ``starter(options)`` starts; with
    ``start`` at once (so a bad interface or a second stack on the same
    address fails here)."""
    kind = UvloopUstackLoop if use_uvloop else AsyncioUstackLoop
    loop: UstackLoopMixin = kind(options, starter)
    if start:
        try:
            loop.run_until_complete(loop.ustack_stack())
        except BaseException:
            loop.close()
            raise
    return loop


__all__ = ["StackOptions", "StackStarter", "LoopStack", "UstackLoopMixin", "AsyncioUstackLoop",
           "UvloopUstackLoop", "new_loop"]
