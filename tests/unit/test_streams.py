"""asyncio streams over two ustack TCP tables wired together in memory.

No namespaces: each side is a :class:`TcpTable` with the real TCP core whose
"IP layer" hands the encoded segment to the other table on the next loop
iteration.  This checks the transport's semantics (back-pressure, half-close,
abort, errors, TLS) with the real state machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("ustack.tcp.connection")

from ustack import streams  # noqa: E402
from ustack.driver.tcp_table import TcpTable  # noqa: E402
from ustack.wire.tcp import URG, TcpSegment  # noqa: E402

A_IP, B_IP = "10.9.0.1", "10.9.0.2"


class MemoryIp:
    """Delivers to the peer table on the next loop iteration; can black-hole;
    with ``record`` keeps every segment it sent, decoded."""

    def __init__(self, src: str) -> None:
        self.src = socket.inet_aton(src)
        self.peer: TcpTable | None = None
        self.drop: Callable[[bytes], bool] | None = None
        self.sent = 0
        self.record = False
        self.segments: list[TcpSegment] = []

    def send(self, dst: bytes, protocol: int, payload: bytes) -> None:
        self.sent += 1
        if self.record:
            self.segments.append(TcpSegment.decode(payload))
        if self.peer is None or (self.drop is not None and self.drop(payload)):
            return
        asyncio.get_running_loop().call_soon(self.peer.ip_input, self.src, dst, payload)


class MemoryStack:
    def __init__(self, address: str) -> None:
        self.address = address  # as Stack.address: no prefix
        self.ip = MemoryIp(address)
        self.tcp: TcpTable = None  # type: ignore[assignment]


@pytest.fixture
async def pair() -> AsyncIterator[tuple[MemoryStack, MemoryStack]]:
    a, b = MemoryStack(A_IP), MemoryStack(B_IP)
    a.tcp = TcpTable(a)
    b.tcp = TcpTable(b)
    a.ip.peer, b.ip.peer = b.tcp, a.tcp
    yield a, b
    a.tcp.close()
    b.tcp.close()


async def test_echo_roundtrip_and_extra_info(pair: Any) -> None:
    a, b = pair
    got: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read()
        got.append(data)
        writer.write(hashlib.sha256(data).digest())
        await writer.drain()
        writer.close()

    server = await streams.start_server(handle, port=7000, stack=b)
    payload = os.urandom(3_000_000)
    reader, writer = await streams.open_connection(B_IP, 7000, stack=a)
    assert writer.get_extra_info("peername") == (B_IP, 7000)
    assert writer.get_extra_info("sockname")[0] == A_IP
    info = writer.get_extra_info("tcp_info")
    assert info.state == "ESTAB"
    writer.write(payload)
    await writer.drain()
    writer.write_eof()
    digest = await asyncio.wait_for(reader.read(), 10)
    assert digest == hashlib.sha256(payload).digest()
    assert got == [payload]
    writer.close()
    await writer.wait_closed()
    server.close()
    await server.wait_closed()
    assert not server.is_serving()


async def test_slow_reader_closes_window_and_blocks_writer(pair: Any) -> None:
    a, b = pair
    conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    arrived = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conns.append((reader, writer))
        arrived.set()

    await streams.start_server(handle, port=7001, stack=b, limit=1 << 16)
    reader, writer = await streams.open_connection(B_IP, 7001, stack=a)
    await arrived.wait()
    block = os.urandom(1 << 20)
    sent = 0
    # nobody reads on b: drain must eventually block
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(1.0):
            while True:
                writer.write(block)
                sent += len(block)
                await writer.drain()
    assert sent < 16 << 20, "back-pressure never engaged"
    assert writer.transport.get_write_buffer_size() > 0
    server_reader, server_writer = conns[0]
    sinfo = server_writer.get_extra_info("tcp_info")
    assert sinfo.rcv_wnd < 1460, "the slow reader's window should be (nearly) closed"
    assert sinfo.recv_q > 0
    # reading drains everything in order
    writer.write_eof()
    received = 0
    h = hashlib.sha256()
    while True:
        data = await asyncio.wait_for(server_reader.read(1 << 16), 10)
        if not data:
            break
        received += len(data)
        h.update(data)
    assert received == sent
    expected = hashlib.sha256()
    for _ in range(sent // len(block)):
        expected.update(block)
    assert h.digest() == expected.digest()
    server_writer.close()
    writer.close()


async def test_half_close_both_directions(pair: Any) -> None:
    a, b = pair

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read()  # until our FIN
        writer.write(b"got " + data)  # the server can still send after it
        await writer.drain()
        writer.write_eof()
        await asyncio.sleep(0.05)
        writer.close()

    await streams.start_server(handle, port=7002, stack=b)
    reader, writer = await streams.open_connection(B_IP, 7002, stack=a)
    writer.write(b"hello")
    writer.write_eof()
    assert await asyncio.wait_for(reader.read(), 5) == b"got hello"
    assert reader.at_eof()
    writer.close()
    await writer.wait_closed()


async def test_refused_without_listener(pair: Any) -> None:
    a, _ = pair
    with pytest.raises(ConnectionRefusedError):
        await streams.open_connection(B_IP, 7999, stack=a, timeout=5)


async def test_timeout_when_peer_silent(pair: Any) -> None:
    a, _ = pair
    a.ip.drop = lambda payload: True
    with pytest.raises(TimeoutError):
        await streams.open_connection(B_IP, 7003, stack=a, timeout=0.3)
    await asyncio.sleep(0)
    assert len(a.tcp) == 0 or all(
        ep.conn.state.ss_name != "SYN-SENT" for ep in a.tcp.endpoints()
    )


async def test_abort_gives_peer_connection_reset(pair: Any) -> None:
    a, b = pair
    result: asyncio.Future[BaseException | bytes] = asyncio.get_running_loop().create_future()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            result.set_result(await reader.read())
        except ConnectionResetError as exc:
            result.set_result(exc)

    await streams.start_server(handle, port=7004, stack=b)
    _, writer = await streams.open_connection(B_IP, 7004, stack=a)
    writer.write(b"x" * 1000)
    await writer.drain()
    await asyncio.sleep(0.05)
    writer.transport.abort()
    outcome = await asyncio.wait_for(result, 5)
    assert isinstance(outcome, ConnectionResetError)


async def test_reset_makes_write_and_drain_fail(pair: Any) -> None:
    a, b = pair
    server_writers: list[asyncio.StreamWriter] = []
    ready = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server_writers.append(writer)
        ready.set()

    await streams.start_server(handle, port=7005, stack=b)
    reader, writer = await streams.open_connection(B_IP, 7005, stack=a)
    await ready.wait()
    server_writers[0].transport.abort()
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(reader.read(10), 5)
    with pytest.raises(ConnectionResetError):
        writer.write(b"more")
        await writer.drain()


async def test_protocol_api_create_connection_and_server(pair: Any) -> None:
    a, b = pair
    loop = asyncio.get_running_loop()
    done: asyncio.Future[bytes] = loop.create_future()

    class Echo(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            self.transport.write(data.upper())  # type: ignore[attr-defined]

    class Client(asyncio.Protocol):
        buf = b""

        def data_received(self, data: bytes) -> None:
            self.buf += data
            if len(self.buf) >= 5:
                done.set_result(self.buf)

    server = await streams.create_server(Echo, port=7006, stack=b)
    transport, protocol = await streams.create_connection(Client, B_IP, 7006, stack=a)
    transport.write(b"hello")
    assert await asyncio.wait_for(done, 5) == b"HELLO"
    assert isinstance(protocol, Client)
    transport.close()
    server.close()


async def test_backlog_and_start_serving(pair: Any) -> None:
    a, b = pair
    accepted: list[Any] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await streams.start_server(handle, port=7007, stack=b, backlog=2,
                                        start_serving=False)
    assert not server.is_serving()
    tasks = [asyncio.ensure_future(streams.open_connection(B_IP, 7007, stack=a, timeout=0.5))
             for _ in range(4)]
    results = await asyncio.gather(*tasks, return_exceptions=True)
    ok = [r for r in results if not isinstance(r, BaseException)]
    # as Linux: the SYN queue takes two request socks, SYN cookies answer the
    # other two, so every client sees its SYN-ACK; the accept queue holds
    # backlog + 1 (sk_acceptq_is_full), the fourth completing ACK is dropped
    assert len(ok) == 4, results
    assert accepted == []
    assert b.tcp.mib["TcpExtSyncookiesSent"] == 2
    assert b.tcp.mib["TcpExtListenOverflows"] == 1
    await server.start_serving()
    await asyncio.sleep(0.05)
    assert len(accepted) == 3
    server.close()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    try:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-subj", "/CN=ustack.test", "-addext", "subjectAltName=IP:10.9.0.2",
             "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"openssl cannot make a test certificate: {exc}")
    return cert, key


async def test_tls_both_ends(pair: Any, certificate: tuple[Path, Path]) -> None:
    a, b = pair
    cert, key = certificate
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = await reader.readline()
        writer.write(b"secure " + line)
        await writer.drain()
        writer.close()

    await streams.start_server(handle, port=7443, stack=b, ssl=server_ctx)
    reader, writer = await streams.open_connection(B_IP, 7443, stack=a, ssl=client_ctx,
                                                   timeout=5)
    assert writer.get_extra_info("ssl_object") is not None
    writer.write(b"hello\n")
    assert await asyncio.wait_for(reader.readline(), 5) == b"secure hello\n"
    writer.close()


async def test_module_level_without_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import ustack

    monkeypatch.delenv("USTACK_IFACE", raising=False)
    monkeypatch.delenv("USTACK_ADDRESS", raising=False)
    with pytest.raises(streams.NoDefaultStackError, match="USTACK_IFACE"):
        await ustack.open_connection("10.0.0.1", 80)
    with pytest.raises(streams.NoDefaultStackError):
        await ustack.start_server(lambda r, w: None, port=80)


class _NoNames:
    async def resolve(self, host: str) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


async def test_unknown_name_is_gaierror(pair: Any) -> None:
    """A name goes through the stack's resolver; its failure reaches the
    caller as socket.gaierror (was: ValueError "IPv4 addresses only")."""
    a, _ = pair
    a.resolver = _NoNames()
    with pytest.raises(socket.gaierror):
        await streams.open_connection("example.com", 80, stack=a)


def test_errno_mapping() -> None:
    assert isinstance(streams._os_error(errno.ECONNREFUSED), ConnectionRefusedError)
    assert isinstance(streams._os_error(errno.ETIMEDOUT), TimeoutError)
    assert isinstance(streams._os_error(errno.ECONNRESET), ConnectionResetError)
    exc = streams._os_error(errno.EHOSTUNREACH)
    assert type(exc) is OSError and exc.errno == errno.EHOSTUNREACH


async def test_graceful_close_with_paused_reader_delivers_everything(pair: Any) -> None:
    """LAST-ACK completes (Closed) while the reader is paused with data still
    in the TCP buffer: every byte, then EOF, must still reach the reader."""
    a, b = pair
    payload = os.urandom(500_000)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(payload)
        writer.write_eof()
        await reader.read()
        writer.close()

    await streams.start_server(handle, port=7008, stack=b)
    reader, writer = await streams.open_connection(B_IP, 7008, stack=a, limit=1024)

    async def state_becomes(*states: str) -> None:  # a condition, not a guessed sleep
        async with asyncio.timeout(10):
            while writer.get_extra_info("tcp_info").state not in states:
                await asyncio.sleep(0.01)

    await state_becomes("CLOSE-WAIT")  # the data and the FIN arrived; our reader paused
    writer.write_eof()  # CLOSE-WAIT -> LAST-ACK -> CLOSED
    await state_becomes("UNCONN", "CLOSE")
    data = await asyncio.wait_for(reader.read(), 5)
    assert data == payload


async def test_server_shape_async_with_and_serve_forever(pair: Any) -> None:
    a, b = pair

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hi")
        writer.close()

    async with await streams.start_server(handle, port=7009, stack=b,
                                          start_serving=False) as server:
        assert server.get_loop() is asyncio.get_running_loop()
        assert server.addresses == [(B_IP, 7009)]
        task = asyncio.ensure_future(server.serve_forever())
        await asyncio.sleep(0)
        assert server.is_serving()
        reader, _ = await streams.open_connection(B_IP, 7009, stack=a, timeout=5)
        assert await asyncio.wait_for(reader.read(), 5) == b"hi"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not server.is_serving()
    # closed: a new SYN is refused
    with pytest.raises(ConnectionRefusedError):
        await streams.open_connection(B_IP, 7009, stack=a, timeout=5)


async def test_syn_retries_exhausted_is_timeout_error() -> None:
    from ustack.tcp.config import TcpConfig

    a = MemoryStack(A_IP)
    a.tcp = TcpTable(a, config=TcpConfig(syn_retries=2, syn_linear_timeouts=0,
                                         rto_initial=0.05))
    a.ip.drop = lambda payload: True
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    try:
        with pytest.raises(TimeoutError) as info:
            await streams.open_connection(B_IP, 80, stack=a)  # type: ignore[arg-type]
        assert info.value.errno == errno.ETIMEDOUT
        assert loop.time() - t0 < 2.0
        assert a.ip.sent == 3  # the SYN and two retransmissions
    finally:
        a.tcp.close()


async def test_data_and_fin_before_accept_are_delivered(pair: Any) -> None:
    a, b = pair
    got: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got.set_result(await reader.read())  # needs the EOF that came before accept
        writer.close()

    server = await streams.start_server(handle, port=7010, stack=b, start_serving=False)
    reader, writer = await streams.open_connection(B_IP, 7010, stack=a, timeout=5)
    writer.write(b"early bytes")
    writer.write_eof()
    await asyncio.sleep(0.1)  # data and FIN wait in the accept queue
    await server.start_serving()
    assert await asyncio.wait_for(got, 5) == b"early bytes"
    server.close()


async def test_tls_close_while_reader_paused_ends_promptly(
        pair: Any, certificate: tuple[Path, Path]) -> None:
    """close() while the TLS reader is paused with data pending sends
    close_notify at once (not after the 30 s TLS shutdown timeout), and the
    standard library's fatal-error path (data after close_notify) can abort
    our transport (TcpTransport._force_close)."""
    a, b = pair
    cert, key = certificate
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))
    server_saw: asyncio.Future[object] = asyncio.get_running_loop().create_future()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"z" * 2_000_000)
        try:
            await writer.drain()
            server_saw.set_result(await reader.read())
        except (ConnectionError, ssl.SSLError) as exc:
            server_saw.set_result(exc)

    await streams.start_server(handle, port=7444, stack=b, ssl=server_ctx)
    reader, writer = await streams.open_connection(B_IP, 7444, stack=a, ssl=client_ctx,
                                                   timeout=5, limit=1024)
    assert await asyncio.wait_for(reader.readexactly(10), 5) == b"z" * 10
    transport = writer.transport
    async with asyncio.timeout(10):  # the reader pauses: 2 MB do not fit its buffer
        while transport.is_reading():  # type: ignore[attr-defined]
            await asyncio.sleep(0.01)
    writer.close()
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        await asyncio.wait_for(writer.wait_closed(), 5)
    outcome = await asyncio.wait_for(server_saw, 5)
    assert isinstance(outcome, (bytes, ConnectionError, ssl.SSLError)), outcome


async def test_force_close_aborts_with_the_error(pair: Any) -> None:
    a, b = pair
    result: asyncio.Future[BaseException | bytes] = asyncio.get_running_loop().create_future()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            result.set_result(await reader.read())
        except ConnectionResetError as exc:
            result.set_result(exc)

    lost: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

    class Proto(asyncio.Protocol):
        def connection_lost(self, exc: BaseException | None) -> None:
            lost.set_result(exc)

    await streams.start_server(handle, port=7445, stack=b)
    transport, _ = await streams.create_connection(Proto, B_IP, 7445, stack=a)
    error = TimeoutError("SSL shutdown timed out")
    transport._force_close(error)  # type: ignore[attr-defined]
    assert transport.is_closing()
    assert await asyncio.wait_for(lost, 5) is error
    assert isinstance(await asyncio.wait_for(result, 5), ConnectionResetError)


async def test_readexactly_larger_than_the_buffer_after_the_data_came(pair: Any) -> None:
    """The whole reply waits (reader paused above 2*limit, the rest in the TCP
    receive buffer) before ``readexactly(everything)``: StreamReader resumes
    the transport and only then makes the future it awaits, so resume_reading
    must deliver on a later loop iteration (data fed from inside it found no
    waiter and the read hung; seen in the happy-eyeballs test)."""
    a, b = pair
    payload = os.urandom(300_000)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(payload)
        await writer.drain()
        await reader.read()
        writer.close()

    server = await streams.start_server(handle, port=7010, stack=b)
    reader, writer = await streams.open_connection(B_IP, 7010, stack=a, limit=16_384)
    for _ in range(200):  # until B has nothing left to send: all of it is here
        await asyncio.sleep(0.005)
        sides = list(b.tcp.endpoints())
        if sides and all(ep.conn.info(0.0).send_q == 0 for ep in sides):
            break
    transport: Any = writer.transport
    assert transport.is_reading() is False  # paused: the reader is full
    assert await asyncio.wait_for(reader.readexactly(len(payload)), 5) == payload
    writer.close()
    server.close()


async def test_write_urgent_sends_urg_and_the_bytes_arrive(pair: Any) -> None:
    """TcpTransport.write_urgent (send(MSG_OOB), conformance 46): the segment
    carries URG with the pointer one past the urgent byte, the bytes arrive
    in order (ustack's receiver keeps the urgent byte inline)."""
    a, b = pair
    a.ip.record = True
    got: asyncio.Queue[bytes] = asyncio.Queue()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await got.put(await reader.readexactly(15))
        writer.close()

    server = await streams.start_server(handle, port=7601, stack=b)
    reader, writer = await streams.open_connection(B_IP, 7601, stack=a)
    transport: Any = writer.transport
    writer.write(b"0123456789")
    transport.write_urgent(b"abcd!")
    data = await asyncio.wait_for(got.get(), 5)
    assert data == b"0123456789abcd!"
    urgent = [s for s in a.ip.segments if s.flags & URG]
    assert urgent and all(s.seq + s.urgent == urgent[0].seq + urgent[0].urgent
                          for s in urgent)
    first = [s for s in a.ip.segments if s.payload][0]
    assert urgent[0].seq + urgent[0].urgent == first.seq + 15  # one past the "!"
    writer.close()
    server.close()
    await server.wait_closed()


async def test_write_urgent_refuses_behind_buffered_writes(pair: Any) -> None:
    """write_urgent refuses while earlier writes are still buffered in the
    transport (their bytes would follow the urgent one)."""
    a, b = pair
    server = await streams.start_server(lambda r, w: None, port=7602, stack=b)
    _, writer = await streams.open_connection(B_IP, 7602, stack=a)
    transport: Any = writer.transport
    transport._queue(b"held")  # as if the send buffer had been full
    with pytest.raises(BlockingIOError):
        transport.write_urgent(b"!")
    writer.close()
    server.close()
    await server.wait_closed()
