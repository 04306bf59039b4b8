"""Host names for a stack: /etc/hosts, then DNS over the stack's own UDP.

:class:`Resolver` answers IPv4 lookups the way glibc's stub resolver does
for ``getaddrinfo``: the hosts file first (the network namespace's: ``ip
netns exec NS`` bind-mounts /etc/netns/NS/hosts over /etc/hosts), then the
nameservers of /etc/resolv.conf (or the ``dns=`` list) with its ``search``
list, ``ndots``, ``timeout`` and ``attempts`` options (RFC 1035 s.7.2:
retransmit, rotate through the servers).  The queries leave through ustack's
UDP, so a namespace whose only network is the stack can resolve names.

Failures raise :class:`socket.gaierror` with glibc's codes: EAI_NONAME for a
name that does not exist (NXDOMAIN, or no A record), EAI_AGAIN when no
server answered in time, EAI_FAIL for a server failure.

Answers are kept for their TTL (the smallest of the records used; RFC 1035
s.3.2.1, a TTL of 0 is not kept) in a small positive cache; failures are not
cached.  A UDP answer with the TC bit set is asked again over TCP (RFC 1035
s.4.2.2, RFC 7766 s.5: a 2-byte length before each message) when the
resolver has a way to open TCP connections (``open_tcp``, the stack's).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ustack.net.udp import UdpLayer
from ustack.reach import is_ipv4_literal
from ustack.wire import dns
from ustack.wire.errors import ParseError

HOSTS = "/etc/hosts"
RESOLV_CONF = "/etc/resolv.conf"
#: names kept in the positive cache (least recently stored dropped first)
CACHE_SIZE = 256

#: ``open_tcp(host, port)``: a stream to a nameserver (``Stack.open_connection``)
OpenTcp = Callable[[str, int], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


@dataclass(slots=True)
class ResolverConfig:
    """What /etc/resolv.conf says (resolv.conf(5) defaults)."""

    nameservers: list[tuple[str, int]] = field(default_factory=list)
    search: list[str] = field(default_factory=list)
    ndots: int = 1
    timeout: float = 5.0
    attempts: int = 2


def parse_nameserver(text: str) -> tuple[str, int]:
    """``"10.0.0.53"`` or ``"10.0.0.53:5353"`` → (address, port)."""
    host, _, port = text.partition(":") if text.count(":") == 1 else (text, "", "")
    return host, int(port) if port else 53


def read_resolv_conf(path: str = RESOLV_CONF) -> ResolverConfig:
    cfg = ResolverConfig()
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return cfg
    for line in lines:
        words = line.split("#", 1)[0].split(";", 1)[0].split()
        if not words:
            continue
        key, args = words[0], words[1:]
        if key == "nameserver" and args:
            cfg.nameservers.append(parse_nameserver(args[0]))
        elif key in ("search", "domain"):
            cfg.search = [d.rstrip(".") for d in args]
        elif key == "options":
            for opt in args:
                name, _, value = opt.partition(":")
                try:
                    if name == "ndots":
                        cfg.ndots = min(int(value), 15)
                    elif name == "timeout":
                        cfg.timeout = float(max(1, min(int(value), 30)))
                    elif name == "attempts":
                        cfg.attempts = max(1, min(int(value), 5))
                except ValueError:
                    continue
    return cfg


def read_hosts(path: str = HOSTS) -> dict[str, list[str]]:
    """Lower-cased name → IPv4 addresses, in file order (hosts(5))."""
    table: dict[str, list[str]] = {}
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return table
    for line in lines:
        words = line.split("#", 1)[0].split()
        if len(words) < 2 or not is_ipv4_literal(words[0]):
            continue
        for name in words[1:]:
            addrs = table.setdefault(name.lower().rstrip("."), [])
            if words[0] not in addrs:
                addrs.append(words[0])
    return table


def gaierror(code: int) -> socket.gaierror:
    messages = {
        socket.EAI_NONAME: "Name or service not known",
        socket.EAI_AGAIN: "Temporary failure in name resolution",
        socket.EAI_FAIL: "Non-recoverable failure in name resolution",
    }
    return socket.gaierror(code, messages.get(code, "Name resolution failed"))


class KernelResolverNeeded(Exception):
    """No nameserver the stack can reach (e.g. 127.0.0.53): use the kernel's."""


class Resolver:
    """IPv4 name lookups for one stack: its UDP layer carries the queries,
    ``reachable(address)`` says which nameservers the stack can route to
    (:func:`ustack.reach.via_stack`); the others are the kernel's."""

    def __init__(self, udp: UdpLayer, reachable: Callable[[str], bool], *,
                 open_tcp: OpenTcp | None = None,
                 dns_servers: list[str] | None = None,
                 hosts_path: str = HOSTS, resolv_conf: str = RESOLV_CONF,
                 cache_size: int = CACHE_SIZE) -> None:
        self.udp = udp
        self.reachable = reachable
        #: how a truncated (TC) answer is asked again over TCP; None: it is used as is
        self.open_tcp = open_tcp
        self.hosts_path = hosts_path
        self.resolv_conf = resolv_conf
        self.dns_servers = dns_servers
        self._hosts: tuple[float, dict[str, list[str]]] = (-1.0, {})
        #: the clock of TTLs (default: the running loop's)
        self.clock: Callable[[], float] | None = None
        self.cache_size = cache_size
        #: lower-cased queried name -> (expiry, addresses)
        self._cache: OrderedDict[str, tuple[float, list[bytes]]] = OrderedDict()
        #: queries sent (UDP and TCP), for tests and counters
        self.queries = {"udp": 0, "tcp": 0}

    def _now(self) -> float:
        return self.clock() if self.clock is not None else asyncio.get_running_loop().time()

    def _cached(self, name: str) -> list[bytes] | None:
        hit = self._cache.get(name)
        if hit is None:
            return None
        if hit[0] <= self._now():
            del self._cache[name]
            return None
        return list(hit[1])

    def _remember(self, name: str, answer: dns.Answer) -> None:
        if answer.ttl <= 0 or not answer.addresses or self.cache_size <= 0:
            return  # TTL 0: for this transaction only (RFC 1035 s.3.2.1)
        self._cache.pop(name, None)
        self._cache[name] = (self._now() + answer.ttl, list(answer.addresses))
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def config(self) -> ResolverConfig:
        cfg = read_resolv_conf(self.resolv_conf)
        if self.dns_servers is not None:
            cfg.nameservers = [parse_nameserver(s) for s in self.dns_servers]
        return cfg

    def hosts(self) -> dict[str, list[str]]:
        """The hosts file, re-read when it changes."""
        try:
            mtime = os.stat(self.hosts_path).st_mtime
        except OSError:
            return {}
        if mtime != self._hosts[0]:
            self._hosts = (mtime, read_hosts(self.hosts_path))
        return self._hosts[1]

    async def resolve(self, host: str) -> list[str]:
        """IPv4 addresses for ``host`` (a literal comes back as itself).

        Raises socket.gaierror, or KernelResolverNeeded when every
        nameserver is one the stack cannot reach (loopback)."""
        if is_ipv4_literal(host):
            return [host]
        name = host.rstrip(".").lower()
        if not name:
            raise gaierror(socket.EAI_NONAME)
        found = self.hosts().get(name)
        if found:
            return list(found)
        if name == "localhost" or name.endswith(".localhost"):
            return ["127.0.0.1"]  # RFC 6761 s.6.3
        cfg = self.config()
        servers = [s for s in cfg.nameservers if self.reachable(s[0])]
        if not servers:
            raise KernelResolverNeeded(host)
        candidates = _candidates(name, host.endswith("."), cfg)
        last: socket.gaierror = gaierror(socket.EAI_NONAME)
        for candidate in candidates:
            try:
                addresses = await self._query_all(candidate, servers, cfg)
            except socket.gaierror as exc:
                last = exc
                if exc.errno != socket.EAI_NONAME:
                    raise
                continue
            return [socket.inet_ntoa(a) for a in addresses]
        raise last

    async def _query_all(self, name: str, servers: list[tuple[str, int]],
                         cfg: ResolverConfig) -> list[bytes]:
        """Each attempt asks every server in turn (resolv.conf(5)); a name
        still in the cache is not asked."""
        key = name.lower()
        cached = self._cached(key)
        if cached is not None:
            return cached
        failure = socket.EAI_AGAIN
        for _attempt in range(cfg.attempts):
            for server in servers:
                try:
                    answer = await self._query(name, server, cfg.timeout)
                except (TimeoutError, OSError):
                    continue
                if answer.rcode == dns.RCODE_NXDOMAIN:
                    raise gaierror(socket.EAI_NONAME)
                if answer.rcode == dns.RCODE_OK:
                    if answer.addresses:
                        self._remember(key, answer)
                        return answer.addresses
                    raise gaierror(socket.EAI_NONAME)  # the name exists, no A record
                failure = socket.EAI_FAIL if answer.rcode == dns.RCODE_SERVFAIL else failure
        raise gaierror(failure)

    async def _query(self, name: str, server: tuple[str, int], timeout: float) -> dns.Answer:
        """One query over UDP; a truncated answer asked again over TCP (if
        that fails, the truncated answer is what there is)."""
        answer = await self._query_udp(name, server, timeout)
        if answer.truncated and self.open_tcp is not None:
            try:
                return await self._query_tcp(name, server, timeout)
            except (TimeoutError, OSError, ParseError, asyncio.IncompleteReadError):
                pass
        return answer

    async def _query_tcp(self, name: str, server: tuple[str, int], timeout: float) -> dns.Answer:
        """RFC 7766 s.8: each message preceded by its length (2 bytes)."""
        assert self.open_tcp is not None
        ident = int.from_bytes(os.urandom(2), "big")
        query = dns.build_query(ident, name)
        self.queries["tcp"] += 1
        async with asyncio.timeout(timeout):
            reader, writer = await self.open_tcp(server[0], server[1])
            try:
                writer.write(len(query).to_bytes(2, "big") + query)
                size = int.from_bytes(await reader.readexactly(2), "big")
                answer = dns.parse_response(await reader.readexactly(size))
            finally:
                writer.close()
        if answer.ident != ident or answer.question.lower() != name.lower():
            raise ParseError("dns-mismatch", "TCP answer to another question")
        return answer

    async def _query_udp(self, name: str, server: tuple[str, int],
                         timeout: float) -> dns.Answer:
        loop = asyncio.get_running_loop()
        sock = self.udp.bind(0)
        ident = int.from_bytes(os.urandom(2), "big")
        done: asyncio.Future[dns.Answer] = loop.create_future()

        def readable() -> None:
            while True:
                item = sock.recv()
                if item is None:
                    return
                try:
                    answer = dns.parse_response(item[0])
                except ParseError:
                    continue
                if answer.ident == ident and answer.question.lower() == name.lower() \
                        and not done.done():
                    done.set_result(answer)

        def error(exc: OSError) -> None:
            if not done.done():
                done.set_exception(exc)

        def on_readable() -> None:
            loop.call_soon(readable)

        sock.on_readable = on_readable
        sock.on_error = error
        try:
            sock.connect(ipaddress.IPv4Address(server[0]).packed, server[1])
            self.queries["udp"] += 1
            sock.sendto(dns.build_query(ident, name))
            async with asyncio.timeout(timeout):
                return await done
        finally:
            sock.close()


def _candidates(name: str, absolute: bool, cfg: ResolverConfig) -> list[str]:
    """The names to try, in resolv.conf(5) order (search list and ndots)."""
    if absolute or not cfg.search:
        return [name]
    with_search = [f"{name}.{d}" for d in cfg.search]
    if name.count(".") >= cfg.ndots:
        return [name, *with_search]
    return [*with_search, name]


__all__ = ["Resolver", "ResolverConfig", "KernelResolverNeeded", "read_hosts",
           "read_resolv_conf", "gaierror", "parse_nameserver"]
