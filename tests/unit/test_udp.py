"""UDP (RFC 768) on two stacks wired in memory: checksums (cross-checked
with dpkt), delivery, connected-socket filtering, ICMP port unreachable both
ways, bounded receive queues; and the asyncio datagram transport."""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import AsyncIterator
from typing import Any

import dpkt
import pytest

from ustack.aio.datagram import UdpTransport
from ustack.link.memory import MemoryPair
from ustack.stack import Stack
from ustack.wire import udp as wudp
from ustack.wire.errors import ParseError

A, B = "10.77.0.1", "10.77.0.2"


def test_encode_matches_dpkt_and_checksum_verifies() -> None:
    src, dst = socket.inet_aton(A), socket.inet_aton(B)
    for payload in (b"", b"x", b"hello world", bytes(range(256)) * 5):
        raw = wudp.encode(src, dst, 5353, 53, payload)
        ip = dpkt.ip.IP(src=src, dst=dst, p=17, data=dpkt.udp.UDP(sport=5353, dport=53,
                                                                  data=payload))
        ip.data.ulen = 8 + len(payload)
        expected = bytes(dpkt.ip.IP(bytes(ip)).data)  # dpkt fills the checksum
        assert raw == expected
        assert wudp.checksum_ok(src, dst, raw)
        bad = raw[:-1] + bytes([raw[-1] ^ 1]) if payload else raw[:6] + b"\x12\x34"
        assert not wudp.checksum_ok(src, dst, bad)
        dgram = wudp.decode(raw + b"\0\0\0")  # Ethernet padding is ignored
        assert (dgram.src_port, dgram.dst_port, dgram.payload) == (5353, 53, payload)


def test_zero_checksum_means_none_and_computed_zero_is_sent_as_ffff() -> None:
    src, dst = socket.inet_aton(A), socket.inet_aton(B)
    raw = bytearray(wudp.encode(src, dst, 1, 2, b"abc"))
    raw[6:8] = b"\0\0"
    assert wudp.checksum_ok(src, dst, bytes(raw))
    # find a payload whose checksum computes to 0: it must go out as 0xFFFF
    for i in range(70000):
        data = i.to_bytes(4, "big")
        out = wudp.encode(src, dst, 1, 2, data)
        if out[6:8] == b"\xff\xff":
            assert wudp.checksum_ok(src, dst, out)
            break
    else:
        pytest.fail("no payload with a zero checksum found")


def test_decode_rejects_bad_lengths() -> None:
    with pytest.raises(ParseError):
        wudp.decode(b"\0" * 7)
    with pytest.raises(ParseError):
        wudp.decode(b"\0\1\0\2\0\x20\0\0" + b"x" * 4)  # length 32 > 12 bytes


@pytest.fixture
async def stacks() -> AsyncIterator[tuple[Stack, Stack]]:
    a_dev, b_dev = MemoryPair()
    a = await Stack.start(address=f"{A}/24", device=a_dev, diagnostics=False)
    b = await Stack.start(address=f"{B}/24", device=b_dev, diagnostics=False)
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_datagrams_both_ways_and_connected_filter(stacks: Any) -> None:
    a, b = stacks
    server = b.udp.bind(9000)
    client = a.udp.bind(0)
    client.sendto(b"ping", socket.inet_aton(B), 9000)
    await asyncio.sleep(0.05)
    data, (host, port) = server.recv()
    assert (data, host, port) == (b"ping", A, client.local_port)
    server.sendto(b"pong", socket.inet_aton(A), client.local_port)
    await asyncio.sleep(0.05)
    assert client.recv() == (b"pong", (B, 9000))
    # a socket connected to another peer does not take this datagram; it is
    # answered with port unreachable instead
    client.connect(socket.inet_aton("10.77.0.9"), 9)
    server.sendto(b"stray", socket.inet_aton(A), client.local_port)
    await asyncio.sleep(0.05)
    assert client.recv() is None
    assert a.counters()["udp_no_ports"] == 1


async def test_port_unreachable_sent_and_reported_to_connected_socket(stacks: Any) -> None:
    a, b = stacks
    errors: list[OSError] = []
    sock = a.udp.bind(0)
    sock.connect(socket.inet_aton(B), 9999)  # nothing bound on B:9999
    sock.on_error = errors.append
    sock.sendto(b"anyone?")
    await asyncio.sleep(0.05)
    assert b.counters()["udp_no_ports"] == 1
    assert b.counters()["icmp_errors_out"] == 1
    assert [e.errno for e in errors] == [errno.ECONNREFUSED]
    # an unconnected socket hears nothing (Linux without IP_RECVERR)
    quiet = a.udp.bind(0)
    quiet.on_error = errors.append
    quiet.sendto(b"x", socket.inet_aton(B), 9999)
    await asyncio.sleep(0.05)
    assert len(errors) == 1


async def test_receive_queue_is_bounded(stacks: Any) -> None:
    a, b = stacks
    server = b.udp.bind(7, rcvbuf=3000)
    client = a.udp.bind(0)
    for i in range(10):
        client.sendto(bytes([i]) * 1000, socket.inet_aton(B), 7)
    await asyncio.sleep(0.05)
    got = []
    while (item := server.recv()) is not None:
        got.append(item[0][0])
    assert got == [0, 1, 2]
    assert server.drops == 7
    assert b.counters()["udp_rcvbuf_errors"] == 7


async def test_bad_checksum_is_dropped(stacks: Any) -> None:
    a, b = stacks
    server = b.udp.bind(53)
    sent: list[bytes] = []

    class CorruptingIp:
        """A's IP layer as UDP sees it, flipping the last byte of UDP."""

        def __init__(self, ip: Any) -> None:
            self.ip = ip
            self.address: bytes = ip.address

        def send(self, dst: bytes, protocol: int, payload: Any) -> None:
            data = bytearray(payload)
            if protocol == 17:
                data[-1] ^= 0xFF
            sent.append(bytes(data))
            self.ip.send(dst, protocol, bytes(data))

        def send_icmp_error(self, dst: bytes, typ: int, code: int, original: bytes) -> None:
            self.ip.send_icmp_error(dst, typ, code, original)

    a.udp.ip = CorruptingIp(a.ip)  # (the IP layer the UDP layer was given)
    a.udp.bind(0).sendto(b"query", socket.inet_aton(B), 53)
    await asyncio.sleep(0.05)
    assert server.recv() is None
    assert b.counters()["udp_in_csum_errors"] == 1


async def test_bind_conflicts_and_close_frees_the_port(stacks: Any) -> None:
    a, _ = stacks
    sock = a.udp.bind(5000)
    with pytest.raises(OSError) as info:
        a.udp.bind(5000)
    assert info.value.errno == errno.EADDRINUSE
    sock.close()
    a.udp.bind(5000).close()


class _Proto(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.got: list[tuple[bytes, Any]] = []
        self.errors: list[Exception] = []
        self.lost = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.got.append((data, addr))

    def error_received(self, exc: Exception) -> None:
        self.errors.append(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set_result(exc)


async def test_datagram_transport(stacks: Any) -> None:
    a, b = stacks
    loop = asyncio.get_running_loop()
    sp = _Proto()
    server = UdpTransport(loop, b.udp.bind(6000), sp, b)
    cp = _Proto()
    csock = a.udp.bind(0)
    csock.connect(socket.inet_aton(B), 6000)
    client = UdpTransport(loop, csock, cp, a)
    assert client.get_extra_info("peername") == (B, 6000)
    assert server.get_extra_info("peername") is None
    client.sendto(b"one")
    client.sendto(b"two", (B, 6000))
    with pytest.raises(ValueError):
        client.sendto(b"x", (B, 6001))
    await asyncio.sleep(0.05)
    assert [d for d, _ in sp.got] == [b"one", b"two"]
    server.pause_reading()
    server.sendto(b"back", sp.got[0][1])
    client.sendto(b"held")
    await asyncio.sleep(0.05)
    assert cp.got == [(b"back", (B, 6000))]
    assert len(sp.got) == 2  # paused: queued, not delivered
    server.resume_reading()
    await _settle()
    assert sp.got[-1][0] == b"held"
    server.close()
    assert await sp.lost is None
    client.sendto(b"to a closed port")
    await asyncio.sleep(0.05)
    assert [type(e) for e in cp.errors] == [ConnectionRefusedError]
    client.close()


async def test_diag_endpoint_serves_udp_sockets(stacks: Any) -> None:
    """``{"netid": "udp"}`` asks a stack's endpoint for its UDP sockets
    (``ustack ss -u``); anything but tcp/udp is an error reply."""
    import marshal

    from ustack.diag.endpoint import DiagnosticsServer
    from ustack.diag.snapshot import iter_snapshot, iter_udp_snapshot

    a, _ = stacks
    bound = a.udp.bind(5353)
    connected = a.udp.bind(0)
    connected.connect(socket.inet_aton(B), 53)
    server = DiagnosticsServer(lambda d: iter_snapshot(a, d), "/nonexistent/x.sock",
                               udp_snapshot_fn=lambda d: iter_udp_snapshot(a, d))
    _v, names, rows = marshal.loads(server.respond(b'{"netid": "udp", "detail": false}'))
    got = sorted((r[0], r[1], r[2], r[3], r[4]) for r in rows)
    assert got == sorted([("UNCONN", A, 5353, "0.0.0.0", 0),
                          ("ESTAB", A, connected.local_port, B, 53)])
    _v, names, rows = marshal.loads(server.respond(b'{"detail": false}'))
    assert rows == []  # the TCP table: no connections
    _v, kind, message = marshal.loads(server.respond(b'{"netid": "sctp"}'))
    assert kind == "error" and "netid" in message
    bound.close()
