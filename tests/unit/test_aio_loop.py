"""The ustack event loop (ustack.aio.loop), uvloop and stock asyncio, with
its stack on one end of an in-memory link and a second stack (the "remote
host") on the other end, both on the same loop: asyncio's own calls
(open_connection, start_server, getaddrinfo, sock_connect + create_connection
(sock=), start_tls both directions, create_datagram_endpoint) must land on
the loop's stack; loopback must stay the kernel's."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import ssl
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

import ustack
from ustack.aio.loop import StackOptions, UstackLoopMixin, new_loop
from ustack.link.memory import MemoryPair
from ustack.runtime import start_stack
from ustack.stack import Stack
from ustack.wire import dns

A, B = "10.77.0.1", "10.77.0.2"
SILENT = "10.77.0.99"  # in the subnet, nobody answers (ARP gives up after ~3 s)
#: what B's DNS server answers over TCP for big.test (its UDP answer is truncated)
BIG = [socket.inet_aton(f"10.77.1.{i}") for i in range(1, 41)]
#: queries B's DNS server saw in the current test, by name ("tcp": over TCP)
DNS_SEEN: dict[str, int] = {}
LOOPS = ["uvloop", "asyncio"]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    try:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-subj", "/CN=bee.test", "-addext", f"subjectAltName=IP:{B},IP:{A},DNS:bee.test",
             "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"openssl cannot make a test certificate: {exc}")
    return cert, key


def run_on_ustack(kind: str, tmp_path: Path,
                  main: Callable[[UstackLoopMixin, Stack], Awaitable[None]]) -> None:
    """Build the loop (stack A on one end of a MemoryPair), start stack B on
    the other end with an echo server on 7000 and a DNS server on 53, run
    ``main(loop, b)``."""
    hosts = tmp_path / "hosts"
    hosts.write_text(f"127.0.0.1 localhost\n{B} bee.test bee\n"
                     f"{SILENT} two.test\n{B} two.test\n")
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(f"nameserver {B}\noptions timeout:1 attempts:2\n")
    a_dev, b_dev = MemoryPair()
    options = StackOptions(iface="mem0", address=f"{A}/24", diagnostics=False,
                           hosts=str(hosts), resolv_conf=str(resolv),
                           extra={"device": a_dev})
    loop = new_loop(options, start_stack, use_uvloop=kind == "uvloop")
    try:
        async def wrapper() -> None:
            b = await Stack.start(address=f"{B}/24", device=b_dev, diagnostics=False)
            try:
                await b.start_server(_echo, port=7000)
                dns_sock = b.udp.bind(53)

                seen = DNS_SEEN
                seen.clear()

                def answer() -> None:
                    while (item := dns_sock.recv()) is not None:
                        query, (host, port) = item
                        name = dns.parse_response(_as_response(query)).question
                        seen[name] = seen.get(name, 0) + 1
                        if name == "dead.test" or (name == "slow.test" and seen[name] == 1):
                            continue  # lost: the resolver must retransmit / give up
                        if name == "big.test":  # does not fit: TC, ask over TCP
                            reply = dns.build_response(query, [], truncated=True)
                        else:
                            ttl = {"short.test": 1, "zero.test": 0}.get(name, 60)
                            if name in ("slow.test", "short.test", "zero.test"):
                                name = "dns.test"
                            found = {"dns.test": [socket.inet_aton(B)]}.get(name)
                            reply = dns.build_response(
                                query, found or [], ttl=ttl,
                                rcode=0 if found else dns.RCODE_NXDOMAIN)
                        dns_sock.sendto(reply, socket.inet_aton(host), port)

                async def tcp_dns(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
                    size = int.from_bytes(await r.readexactly(2), "big")
                    query = await r.readexactly(size)
                    seen["tcp"] = seen.get("tcp", 0) + 1
                    reply = dns.build_response(query, BIG)
                    w.write(len(reply).to_bytes(2, "big") + reply)
                    await w.drain()
                    w.close()

                await b.start_server(tcp_dns, port=53)

                def readable() -> None:
                    asyncio.get_running_loop().call_soon(answer)

                dns_sock.on_readable = readable
                await asyncio.wait_for(main(loop, b), 30)
            finally:
                await b.close()

        loop.run_until_complete(wrapper())
    finally:
        loop.close()
    assert loop.is_closed()


def _as_response(query: bytes) -> bytes:
    """parse_response wants QR set; flip it to read a query's question."""
    return query[:2] + bytes([query[2] | 0x80]) + query[3:]


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


@pytest.mark.parametrize("kind", LOOPS)
def test_open_connection_by_name_and_extra_info(kind: str, tmp_path: Path) -> None:
    async def main(loop: UstackLoopMixin, b: Stack) -> None:
        assert asyncio.get_running_loop() is loop
        for host in (B, "bee.test", "dns.test"):  # literal, hosts file, DNS over ustack UDP
            reader, writer = await asyncio.open_connection(host, 7000)
            writer.write(b"x" * 100_000)
            assert await reader.readexactly(100_000) == b"x" * 100_000
            assert writer.get_extra_info("peername") == (B, 7000)
            local = writer.get_extra_info("sockname")
            assert local[0] == A
            sock = writer.get_extra_info("socket")
            assert sock.getsockname() == local and sock.getpeername() == (B, 7000)
            assert sock.family == socket.AF_INET and sock.type == socket.SOCK_STREAM
            assert writer.get_extra_info("tcp_info").state == "ESTAB"
            writer.close()
            await writer.wait_closed()
        assert b.counters()["udp_in_datagrams"] >= 1  # the DNS query reached B
        # ustack.open_connection without stack=: the loop's stack
        reader, writer = await ustack.open_connection("bee.test", 7000)
        assert writer.get_extra_info("stack") is await loop.ustack_stack()
        writer.close()

    run_on_ustack(kind, tmp_path, main)


def _record_connects(stack: Any) -> list[str]:
    """The destinations of the TCP driver's active opens, in order: the
    table's tracer (a hook, ustack.trace.attach) hears of every connection
    it opens.  (Not a patched ``table.connect``: compiled, a TcpTable's
    methods cannot be replaced.)  This stack has no listener: every
    connection is an active open."""
    calls: list[str] = []

    def hook(now: float, event: str, data: dict[str, Any]) -> None:
        if event == "open":
            calls.append(data["remote"].rsplit(":", 1)[0])

    stack.tcp.tracer = hook
    return calls


@pytest.mark.parametrize("kind", LOOPS)
def test_happy_eyeballs_races_past_a_silent_address(kind: str, tmp_path: Path) -> None:
    """``happy_eyeballs_delay``: a name with two addresses, the first silent:
    the second attempt starts after the delay (not after the first one's
    ~3 s failure), wins, and the first attempt is dropped from the table."""
    async def main(loop: UstackLoopMixin, b: Stack) -> None:
        stack: Any = await loop.ustack_stack()
        calls = _record_connects(stack)
        reader, writer = await asyncio.open_connection("two.test", 7000,
                                                       happy_eyeballs_delay=0.1, interleave=1)
        assert calls == [SILENT, B]
        assert writer.get_extra_info("peername") == (B, 7000)
        # B won while the attempt to SILENT was still waiting (one after the
        # other, B would have waited for SILENT's ARP to give up)
        assert stack.counters().get("arp_failed", 0) == 0
        payload = os.urandom(200_000)
        writer.write(payload)
        assert await reader.readexactly(len(payload)) == payload
        await asyncio.sleep(0)
        remotes = {socket.inet_ntoa(ep.remote_addr) for ep in stack.tcp.endpoints()}
        assert remotes == {B}, remotes  # the SYN-SENT attempt to SILENT is gone
        writer.close()
        await writer.wait_closed()

    run_on_ustack(kind, tmp_path, main)


@pytest.mark.parametrize("kind", LOOPS)
def test_happy_eyeballs_every_attempt_fails(kind: str, tmp_path: Path) -> None:
    """Both attempts fail (RST from B at once, ARP failure for SILENT later):
    one OSError naming both, or with all_errors an ExceptionGroup in attempt
    order; a name without the delay tries one address after the other."""
    async def main(loop: UstackLoopMixin, b: Stack) -> None:
        stack = await loop.ustack_stack()
        calls = _record_connects(stack)
        with pytest.raises(OSError, match="Multiple exceptions") as info:
            await loop.create_connection(asyncio.Protocol, "two.test", 7999,
                                         happy_eyeballs_delay=0.1)
        assert f"{SILENT}:7999" in str(info.value) and f"refused ({B}:7999)" in str(info.value)
        assert calls == [SILENT, B]
        with pytest.raises(ExceptionGroup) as group:
            await loop.create_connection(asyncio.Protocol, "two.test", 7999,
                                         happy_eyeballs_delay=5.0, all_errors=True)
        first, second = group.value.exceptions
        assert isinstance(first, OSError) and first.errno == errno.EHOSTUNREACH
        assert isinstance(second, ConnectionRefusedError)
        del calls[:]
        # without the delay: sequential, B only after SILENT's failure
        reader, writer = await asyncio.open_connection("two.test", 7000)
        assert calls == [SILENT, B] and writer.get_extra_info("peername") == (B, 7000)
        writer.close()
        assert not [ep for ep in stack.tcp.endpoints()
                    if socket.inet_ntoa(ep.remote_addr) == SILENT]

    run_on_ustack(kind, tmp_path, main)


@pytest.mark.parametrize("kind", LOOPS)
def test_getaddrinfo_hosts_dns_and_failures(kind: str, tmp_path: Path) -> None:
    async def main(loop: UstackLoopMixin, b: Stack) -> None:
        infos = await loop.getaddrinfo("dns.test", "http", type=socket.SOCK_STREAM)
        assert infos == [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "",
                          (B, 80))]
        infos = await loop.getaddrinfo("bee", 53)
        assert {(i[1], i[4]) for i in infos} == {
            (socket.SOCK_STREAM, (B, 53)), (socket.SOCK_DGRAM, (B, 53)),
            (socket.SOCK_RAW, (B, 53))}
        with pytest.raises(socket.gaierror) as info:
            await loop.getaddrinfo("nx.test", 80)
        assert info.value.errno == socket.EAI_NONAME
        with pytest.raises(socket.gaierror):
            await loop.getaddrinfo("dns.test", 80, flags=socket.AI_NUMERICHOST)
        with pytest.raises(socket.gaierror):
            await asyncio.open_connection("nx.test", 7000)
        assert (await loop.getaddrinfo("localhost", 1))[0][4] == ("127.0.0.1", 1)
        # a lost query is retransmitted after timeout:1; no answer at all is EAI_AGAIN
        infos = await loop.getaddrinfo("slow.test", 80, type=socket.SOCK_STREAM)
        assert infos[0][4] == (B, 80)
        with pytest.raises(socket.gaierror) as info:
            await loop.getaddrinfo("dead.test", 80)
        assert info.value.errno == socket.EAI_AGAIN

    run_on_ustack(kind, tmp_path, main)


@pytest.mark.parametrize("kind", LOOPS)
def test_dns_cache_honours_ttl_and_truncated_answers_go_tcp(kind: str, tmp_path: Path) -> None:
    """A positive answer is kept for its TTL (not asked again), a TTL of 0 is
    not kept, an expired one is asked again; a truncated UDP answer (TC) is
    asked again over TCP and its 40 addresses all come back."""
    async def main(loop: UstackLoopMixin, b: Stack) -> None:
        stack: Any = await loop.ustack_stack()
        resolver = stack.resolver
        now = [1000.0]
        resolver.clock = lambda: now[0]
        for _ in range(3):
            infos = await loop.getaddrinfo("dns.test", 80, type=socket.SOCK_STREAM)
            assert infos[0][4] == (B, 80)
        assert DNS_SEEN["dns.test"] == 1
        for _ in range(2):
            await loop.getaddrinfo("zero.test", 80)
        assert DNS_SEEN["zero.test"] == 2  # TTL 0: this transaction only
        await loop.getaddrinfo("short.test", 80)
        now[0] += 0.5
        await loop.getaddrinfo("short.test", 80)
        assert DNS_SEEN["short.test"] == 1
        now[0] += 0.6  # past its 1 s TTL
        await loop.getaddrinfo("short.test", 80)
        assert DNS_SEEN["short.test"] == 2
        infos = await loop.getaddrinfo("big.test", 80, type=socket.SOCK_STREAM)
        assert [i[4][0] for i in infos] == [socket.inet_ntoa(a) for a in BIG]
        assert DNS_SEEN["big.test"] == 1 and DNS_SEEN["tcp"] == 1
        assert resolver.queries["tcp"] == 1
        await loop.getaddrinfo("big.test", 80)  # cached: neither UDP nor TCP again
        assert DNS_SEEN["big.test"] == 1 and DNS_SEEN["tcp"] == 1

    run_on_ustack(kind, tmp_path, main)


@pytest.mark.parametrize("kind", LOOPS)
def test_start_server_sockets_and_asyncio_keywords(kind: str, tmp_path: Path) -> None:
    async def main(loop: UstackLoopMixin, b: Stack) -> None:
        got: list[bytes] = []

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            got.append(await reader.read())
            writer.close()

        server = await asyncio.start_server(handle, None, 8000, reuse_address=True,
                                            reuse_port=False, backlog=10)
        assert [s.getsockname() for s in server.sockets] == [(A, 8000)]
        reader, writer = await b.open_connection(A, 8000)
        writer.write(b"to the loop's stack")
        writer.write_eof()
        assert await reader.read() == b""
        assert got == [b"to the loop's stack"]
        server.close()
        await server.wait_closed()
        # local_addr, happy_eyeballs_delay, interleave: accepted as asyncio does
        reader, writer = await asyncio.open_connection(
            B, 7000, local_addr=("0.0.0.0", 40001), happy_eyeballs_delay=0.25, interleave=1)
        assert writer.get_extra_info("sockname") == (A, 40001)
        writer.close()
        with pytest.raises(OSError) as info:
            await asyncio.open_connection(B, 7000, local_addr=("10.77.0.99", 0))
        assert info.value.errno == errno.EADDRNOTAVAIL

    run_on_ustack(kind, tmp_path, main)


@pytest.mark.parametrize("kind", LOOPS)
def test_sock_connect_on_a_kernel_socket_lands_on_ustack(kind: str, tmp_path: Path) -> None:
    """What aiohttp (aiohappyeyeballs) does: make a socket.socket, sock_connect
    it, hand it to create_connection(sock=...)."""
    async def main(loop: UstackLoopMixin, b: Stack) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        await loop.sock_connect(sock, (B, 7000))
        got: asyncio.Future[bytes] = loop.create_future()

        class Client(asyncio.Protocol):
            def data_received(self, data: bytes) -> None:
                got.set_result(data)

        transport, protocol = await loop.create_connection(Client, sock=sock)
        assert sock.fileno() == -1  # the kernel socket was closed unused
        assert transport.get_extra_info("peername") == (B, 7000)
        transport.write(b"through ustack")
        assert await got == b"through ustack"  # B's echo server answered
        assert [ep.remote_port for ep in b.tcp.endpoints()] == [
            transport.get_extra_info("sockname")[1]]
        transport.close()
        # a connected socket that is dropped without create_connection: reset
        loser = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        await loop.sock_connect(loser, (B, 7000))
        loser.close()
        del loser
        await asyncio.sleep(0.05)
        assert not loop._ustack_claims

    run_on_ustack(kind, tmp_path, main)


@pytest.mark.parametrize("kind", LOOPS)
def test_sock_calls_on_a_socket_sock_connect_put_on_ustack(kind: str, tmp_path: Path) -> None:
    """aiohappyeyeballs-style code that keeps using the socket: sock_sendall,
    sock_recv, sock_recv_into go over the ustack connection (byte-exact, more
    than the buffer limit, so reading pauses and resumes); a reset is
    ConnectionResetError, the peer's FIN b""; a closed kernel socket raises
    EBADF and its connection is closed with a FIN (not reset)."""
    async def main(loop: UstackLoopMixin, b: Stack) -> None:
        stack: Any = await loop.ustack_stack()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        await loop.sock_connect(sock, (B, 7000))
        payload = os.urandom(1_000_000)
        sender = asyncio.ensure_future(loop.sock_sendall(sock, payload))
        got = bytearray()
        buf = bytearray(70_000)
        while len(got) < len(payload):
            if len(got) % 2:
                n = await loop.sock_recv_into(sock, buf)
                got += buf[:n]
            else:
                got += await loop.sock_recv(sock, 50_000)
        await sender
        assert bytes(got) == payload
        # create_connection(sock=) still adopts it, with what was buffered
        await loop.sock_sendall(sock, b"early")
        for _ in range(100):
            claim = loop._ustack_claims.get(sock)
            assert claim is not None and claim.protocol is not None
            if claim.protocol.buffer:
                break
            await asyncio.sleep(0.01)
        seen: list[bytes] = []

        class Client(asyncio.Protocol):
            def data_received(self, data: bytes) -> None:
                seen.append(data)

        transport, _ = await loop.create_connection(Client, sock=sock)
        assert seen == [b"early"]
        transport.close()

        # the kernel socket closed: EBADF, and the connection gets a FIN
        s2 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        await loop.sock_connect(s2, (B, 7000))
        await loop.sock_sendall(s2, b"x")
        assert await loop.sock_recv(s2, 10) == b"x"
        (ep,) = [e for e in stack.tcp.endpoints() if e.conn.state.name == "ESTABLISHED"]
        s2.close()
        with pytest.raises(OSError) as info:
            await loop.sock_recv(s2, 10)
        assert info.value.errno == errno.EBADF
        await asyncio.sleep(0.05)
        assert ep.conn.state.name in ("FIN_WAIT_1", "FIN_WAIT_2", "TIME_WAIT")  # not reset

        # the peer's FIN: b""; a reset: ConnectionResetError
        closing = await b.start_server(_close_at_once, port=7001)
        s3 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        await loop.sock_connect(s3, (B, 7001))
        assert await loop.sock_recv(s3, 10) == b""
        closing.close()
        resetting = await b.start_server(_reset_at_once, port=7002)
        s4 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        await loop.sock_connect(s4, (B, 7002))
        with pytest.raises(ConnectionResetError):
            await loop.sock_recv(s4, 10)
        with pytest.raises(ConnectionResetError):
            await loop.sock_sendall(s4, b"late")
        resetting.close()
        s3.close()
        s4.close()

    run_on_ustack(kind, tmp_path, main)


async def _close_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


async def _reset_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.transport.abort()


@pytest.mark.parametrize("kind", LOOPS)
def test_start_tls_both_directions(kind: str, tmp_path: Path,
                                   certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))

    async def main(loop: UstackLoopMixin, b: Stack) -> None:
        # client side: StreamWriter.start_tls -> loop.start_tls on a ustack transport
        tls_server = await b.start_server(_echo, port=7443, ssl=server_ctx)
        reader, writer = await asyncio.open_connection(B, 7443)
        await writer.start_tls(client_ctx, server_hostname="bee.test")
        assert writer.get_extra_info("ssl_object") is not None
        assert writer.get_extra_info("sslcontext") is client_ctx
        assert writer.get_extra_info("peercert")["subject"][0][0][1] == "bee.test"
        assert writer.get_extra_info("peername") == (B, 7443)
        writer.write(b"secret" * 1000)
        assert await reader.readexactly(6000) == b"secret" * 1000
        writer.close()
        tls_server.close()
        # ssl= on create_connection, server_hostname defaulting to the host
        tls_server = await b.start_server(_echo, port=7444, ssl=server_ctx)
        reader, writer = await asyncio.open_connection("bee.test", 7444, ssl=client_ctx)
        writer.write(b"hello")
        assert await reader.readexactly(5) == b"hello"
        writer.close()
        tls_server.close()

        # server side: loop.start_tls(server_side=True) on an accepted transport
        done: asyncio.Future[bytes] = loop.create_future()

        async def upgrade(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            assert await r.readexactly(8) == b"STARTTLS"
            await w.start_tls(server_ctx)
            done.set_result(await r.readexactly(4))
            w.close()

        server = await asyncio.start_server(upgrade, A, 8443)
        r2, w2 = await b.open_connection(A, 8443)
        w2.write(b"STARTTLS")
        await w2.drain()
        await w2.start_tls(client_ctx, server_hostname=A)  # B's transport: ustack too
        w2.write(b"ping")
        assert await done == b"ping"
        w2.close()
        server.close()

    run_on_ustack(kind, tmp_path, main)


@pytest.mark.parametrize("kind", LOOPS)
def test_datagram_endpoint_and_loopback_stays_kernel(kind: str, tmp_path: Path) -> None:
    async def main(loop: UstackLoopMixin, b: Stack) -> None:
        got: asyncio.Future[bytes] = loop.create_future()

        class Client(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: Any) -> None:
                got.set_result(data)

        transport, _ = await loop.create_datagram_endpoint(Client, remote_addr=(B, 53))
        transport.sendto(dns.build_query(7, "dns.test"))
        answer = dns.parse_response(await got)
        assert answer.addresses == [socket.inet_aton(B)]
        assert transport.get_extra_info("sockname")[0] == A
        transport.close()
        # loopback: a kernel server and a kernel connection on the same loop
        kernel = await asyncio.start_server(_echo, "127.0.0.1", 0)
        port = kernel.sockets[0].getsockname()[1]
        assert kernel.sockets[0].fileno() >= 0  # a kernel listener
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert writer.get_extra_info("socket").fileno() >= 0  # a real kernel socket
        writer.write(b"kernel")
        assert await reader.readexactly(6) == b"kernel"
        writer.close()
        kernel.close()

    run_on_ustack(kind, tmp_path, main)


@pytest.mark.parametrize("kind", LOOPS)
def test_transport_options_reach_tcp_info(kind: str, tmp_path: Path) -> None:
    async def main(loop: UstackLoopMixin, b: Stack) -> None:
        _reader, writer = await asyncio.open_connection(B, 7000)
        transport: Any = writer.transport
        sock = writer.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        assert writer.get_extra_info("tcp_info").nodelay is True
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 30)
        transport.set_keepalive(True, interval=5.0, count=4)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 30
        assert (transport.tcp_option("keepalive_interval"),
                transport.tcp_option("keepalive_count")) == (5.0, 4)
        assert writer.get_extra_info("tcp_info").timer[0] == "keepalive"
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16).rstrip(b"\0") \
            == transport.tcp_option("congestion").encode()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, 5000)  # ms
        assert transport.tcp_option("user_timeout") == 5.0
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 5000
        with pytest.raises(OSError) as info:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 0x10)
        assert info.value.errno == errno.ENOPROTOOPT
        # the rest, each through setsockopt and read back (tcp_info where it shows)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, b"cubic")
        assert writer.get_extra_info("tcp_info").ca_name == "cubic"  # ss -i shows it
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 16)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 17)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT, 4096)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1000)
        assert [sock.getsockopt(level, opt) for level, opt in (
            (socket.IPPROTO_TCP, socket.TCP_CORK), (socket.IPPROTO_TCP, socket.TCP_QUICKACK),
            (socket.SOL_SOCKET, socket.SO_SNDBUF), (socket.SOL_SOCKET, socket.SO_RCVBUF),
            (socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT),
            (socket.IPPROTO_TCP, socket.TCP_MAXSEG))] == [1, 1, 1 << 16, 1 << 17, 4096, 1000]
        assert writer.get_extra_info("tcp_info").mss == 1000  # the send MSS after the handshake
        transport.set_cork(False)
        writer.write(b"x")
        assert await _reader.readexactly(1) == b"x"  # uncorked: it leaves
        writer.close()

    run_on_ustack(kind, tmp_path, main)


def test_bad_address_fails_before_any_loop_exists() -> None:
    with pytest.raises(ValueError, match="PREFIXLEN"):
        StackOptions.from_env("mem0", "10.77.0.1")  # no /PLEN
    with pytest.raises(ValueError, match="USTACK_ADDRESS"):
        StackOptions.from_env("mem0", None)


def test_streamwriter_start_tls_on_plain_uvloop(tmp_path: Path,
                                                certificate: tuple[Path, Path]) -> None:
    """Without the ustack loop: ``stack.open_connection`` on uvloop, then
    ``writer.start_tls`` (uvloop's own start_tls refuses our transport)."""
    import uvloop

    cert, key = certificate
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))

    async def main() -> None:
        a_dev, b_dev = MemoryPair()
        a = await Stack.start(address=f"{A}/24", device=a_dev, diagnostics=False)
        b = await Stack.start(address=f"{B}/24", device=b_dev, diagnostics=False)
        try:
            await b.start_server(_echo, port=7443, ssl=server_ctx)
            reader, writer = await a.open_connection(B, 7443)
            await writer.start_tls(client_ctx, server_hostname="bee.test")
            assert writer.get_extra_info("ssl_object") is not None
            writer.write(b"over uvloop")
            assert await reader.readexactly(11) == b"over uvloop"
            writer.close()
        finally:
            await a.close()
            await b.close()

    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(asyncio.wait_for(main(), 30))
    finally:
        loop.close()


def test_server_side_start_tls_on_plain_uvloop(certificate: tuple[Path, Path]) -> None:
    """Without the ustack loop: a ``stack.start_server`` handler upgrades with
    ``writer.start_tls(ctx)`` (STARTTLS); ``loop.start_tls`` called directly
    on uvloop cannot be intercepted and its TypeError says what works."""
    import uvloop

    cert, key = certificate
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))
    payload = os.urandom(300_000)

    async def main() -> None:
        a_dev, b_dev = MemoryPair()
        a = await Stack.start(address=f"{A}/24", device=a_dev, diagnostics=False)
        b = await Stack.start(address=f"{B}/24", device=b_dev, diagnostics=False)
        errors: list[BaseException] = []

        async def upgrade(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                assert await r.readexactly(9) == b"STARTTLS\n"
                w.write(b"GO\n")
                await w.start_tls(server_ctx)
                assert w.get_extra_info("ssl_object").server_side
                data = await r.readexactly(len(payload))
                w.write(data[::-1])
                await w.drain()
                w.close()
            except BaseException as exc:  # reported by the client side's assert
                errors.append(exc)
                raise

        raw: list[Any] = []

        async def direct(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                await asyncio.get_running_loop().start_tls(
                    w.transport, w.transport.get_protocol(), server_ctx, server_side=True)
            except TypeError as exc:
                raw.append(exc)
            w.close()

        try:
            await b.start_server(upgrade, port=7443)
            reader, writer = await a.open_connection(B, 7443)
            writer.write(b"STARTTLS\n")
            assert await reader.readline() == b"GO\n"
            await writer.start_tls(client_ctx, server_hostname="bee.test")
            writer.write(payload)
            assert await reader.readexactly(len(payload)) == payload[::-1]
            writer.close()
            assert not errors, errors
            await b.start_server(direct, port=7444)
            _r, w2 = await a.open_connection(B, 7444)
            for _ in range(100):
                if raw:
                    break
                await asyncio.sleep(0.01)
            (exc,) = raw
            assert "ustack loop" in str(exc) and "writer.start_tls" in str(exc), exc
            w2.close()
        finally:
            await a.close()
            await b.close()

    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(asyncio.wait_for(main(), 30))
    finally:
        loop.close()
