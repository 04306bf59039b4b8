"""The IPv4 layer driven directly: frames in, frames out, explicit clock."""

from __future__ import annotations

import errno
from typing import Any

import dpkt
import pytest

from ustack.net.arp import ArpCache
from ustack.net.icmp import IpError
from ustack.net.ipv4 import IpLayer
from ustack.wire import arp as warp
from ustack.wire import ethernet as eth
from ustack.wire import icmp, ipv4
from ustack.wire.tcp import ACK, SYN, TcpSegment

US_MAC, PEER_MAC = bytes.fromhex("020000000002"), bytes.fromhex("020000000001")
US, PEER, GW = bytes([10, 77, 0, 2]), bytes([10, 77, 0, 1]), bytes([10, 77, 0, 254])


class Harness:
    def __init__(self, gateway: bytes | None = None) -> None:
        self.now = 100.0
        self.out: list[bytes] = []
        self.deferred: list[object] = []
        self.deadlines: list[float | None] = []
        self.ip = IpLayer(address=US, prefixlen=24, mac=US_MAC, transmit=self.out.append,
                          clock=lambda: self.now, gateway=gateway,
                          defer=self.deferred.append, on_deadline=self.deadlines.append,
                          arp_cache=ArpCache(retry_interval=1.0, requests=3))

    def feed(self, frame: bytes, trusted: bool = False) -> None:
        self.ip.receive([(frame, trusted)])

    def take(self) -> list[bytes]:
        out, self.out[:] = list(self.out), []
        return out

    def learn_peer(self) -> None:
        self.feed(arp_frame(warp.request(PEER_MAC, PEER, US)))
        self.take()


def arp_frame(pkt: warp.ArpPacket, dst: bytes = eth.BROADCAST) -> bytes:
    return eth.encode_frame(dst, PEER_MAC, eth.ETHERTYPE_ARP, pkt.encode())


def ip_frame(payload: bytes, proto: int, src: bytes = PEER, dst: bytes = US, *, pad: bool = True,
             **kw: Any) -> bytes:
    packet = ipv4.Ipv4Packet(src, dst, proto, payload, **kw).encode()
    return eth.encode_frame(US_MAC, PEER_MAC, eth.ETHERTYPE_IPV4, packet, pad=pad)


def echo_frame(seq: int = 1, dst: bytes = US) -> bytes:
    return ip_frame(icmp.IcmpEcho(0x1234, seq, b"ping!").encode(), ipv4.PROTO_ICMP, dst=dst)


def tcp_payload(src: bytes = PEER, dst: bytes = US, flags: int = SYN) -> bytes:
    return TcpSegment(5555, 80, 1000, 0, flags, 65535, payload=b"hi").encode(src, dst)


def test_answers_arp_request_and_learns_sender() -> None:
    h = Harness()
    h.feed(arp_frame(warp.request(PEER_MAC, PEER, US)))
    [frame] = h.take()
    d = dpkt.ethernet.Ethernet(frame)
    assert (d.dst, d.src, d.type) == (PEER_MAC, US_MAC, eth.ETHERTYPE_ARP)
    assert (d.data.op, d.data.sha, d.data.spa, d.data.tha, d.data.tpa) == (
        2, US_MAC, US, PEER_MAC, PEER)
    assert len(frame) == 60
    assert h.ip.arp.lookup(PEER, h.now) == PEER_MAC
    assert h.ip.counters()["arp_replies"] == 1


def test_arp_for_other_hosts_is_not_answered() -> None:
    h = Harness()
    h.feed(arp_frame(warp.request(PEER_MAC, PEER, bytes([10, 77, 0, 9]))))
    assert h.take() == []
    assert h.ip.counters()["drop.arp-not-ours"] == 1
    assert h.ip.arp.lookup(PEER, h.now) is None  # not learned (RFC 826 merge only)


def test_announce_is_gratuitous_request() -> None:
    h = Harness()
    h.ip.announce()
    [frame] = h.take()
    a = warp.ArpPacket.decode(frame[14:])
    assert frame[:6] == eth.BROADCAST and a.is_gratuitous and a.sender_ip == US


def test_ping_before_arp_queues_reply_until_resolved() -> None:
    h = Harness()
    h.feed(echo_frame(7))
    [req] = h.take()
    a = warp.ArpPacket.decode(req[14:])
    assert (req[:6], a.op, a.target_ip, a.sender_ip) == (eth.BROADCAST, 1, PEER, US)
    assert h.deadlines[-1] == pytest.approx(h.now + 1.0)
    h.feed(arp_frame(warp.ArpPacket(warp.OP_REPLY, PEER_MAC, PEER, US_MAC, US), dst=US_MAC))
    [reply] = h.take()
    d = dpkt.ethernet.Ethernet(reply)
    assert d.dst == PEER_MAC and d.data.src == US and d.data.dst == PEER
    msg = icmp.IcmpMessage.decode(bytes(d.data.data))
    echo = icmp.IcmpEcho.from_message(msg)
    assert (echo.reply, echo.ident, echo.seq, echo.data) == (True, 0x1234, 7, b"ping!")
    # the next reply goes straight out (cached Ethernet header)
    h.feed(echo_frame(8))
    [reply2] = h.take()
    assert reply2[:6] == PEER_MAC


def test_broadcast_ping_is_ignored() -> None:
    h = Harness()
    h.learn_peer()
    h.feed(echo_frame(dst=bytes([10, 77, 0, 255])))
    assert h.take() == []
    assert h.ip.counters()["drop.icmp-echo-broadcast"] == 1


def _good_ip() -> bytes:
    return ip_frame(tcp_payload(), ipv4.PROTO_TCP, pad=False)


def _set(frame: bytes, offset: int, value: bytes) -> bytes:
    return frame[:offset] + value + frame[offset + len(value):]


def _fix_ip_csum(frame: bytes) -> bytes:
    hdr = frame[14:24] + b"\0\0" + frame[26:34]
    return _set(frame, 24, dpkt.in_cksum(hdr).to_bytes(2, "big"))


@pytest.mark.parametrize(("frame", "reason"), [
    (b"", "eth-truncated"),
    (b"\x02" * 10, "eth-truncated"),
    (US_MAC + PEER_MAC, "eth-truncated"),
    (_set(_good_ip(), 0, b"\x02\x99\x99\x99\x99\x99"), "eth-not-ours"),
    (_set(_good_ip(), 12, b"\x86\xdd"), "eth-unknown-type"),
    (_good_ip()[:30], "ip-truncated"),
    (_fix_ip_csum(_set(_good_ip(), 14, b"\x65")), "ip-bad-version"),
    (_fix_ip_csum(_set(_good_ip(), 14, b"\x43")), "ip-bad-ihl"),
    (_fix_ip_csum(_set(_good_ip(), 14, b"\x4f")), "ip-truncated"),
    (_fix_ip_csum(_set(_good_ip(), 16, (19).to_bytes(2, "big"))), "ip-bad-length"),
    (_fix_ip_csum(_set(_good_ip(), 16, (2000).to_bytes(2, "big"))), "ip-truncated"),
    (_set(_good_ip(), 22, b"\x07"), "ip-bad-checksum"),
    (ip_frame(tcp_payload(dst=bytes([10, 77, 0, 3])), 6, dst=bytes([10, 77, 0, 3])),
     "ip-not-ours"),
    (ip_frame(tcp_payload(), 6, flags_fragment=0x2000), "ip-fragment"),
    (ip_frame(tcp_payload(), 6, flags_fragment=0x0001), "ip-fragment"),
    (ip_frame(tcp_payload(src=US), 6, src=US), "ip-bad-source"),
    (ip_frame(tcp_payload(src=bytes([224, 0, 0, 1])), 6, src=bytes([224, 0, 0, 1])),
     "ip-bad-source"),
    (_set(_good_ip(), 50, b"\xff\xff"), "tcp-bad-checksum"),
    (ip_frame(b"\x08\x00\x00", 1), "icmp-truncated"),
    (ip_frame(b"\x08\x00\x00\x00\x00\x00\x00\x01", 1), "icmp-bad-checksum"),
    (arp_frame(warp.request(PEER_MAC, PEER, US))[:30], "arp-truncated"),
    (arp_frame(warp.request(US_MAC, US, PEER)), "arp-own-address"),
])
def test_malformed_frames_are_counted_by_reason(frame: bytes, reason: str) -> None:
    h = Harness()
    got: list[bytes] = []
    h.ip.register(6, lambda s, d, p, t: got.append(bytes(p)))
    h.feed(frame)
    c = h.ip.counters()
    assert c.get("drop." + reason) == 1, c
    assert c["drops"] == 1
    assert got == []


def test_tcp_delivered_with_checksum_verified_or_trusted() -> None:
    h = Harness()
    got: list[tuple[bytes, bytes, bytes, bool]] = []
    h.ip.register(6, lambda s, d, p, t: got.append((s, d, bytes(p), t)))
    seg = tcp_payload(flags=ACK)
    h.feed(ip_frame(seg, 6))
    assert got == [(PEER, US, seg, False)]
    # a trusted frame is delivered even with a "wrong" (offloaded, partial) checksum
    bad = _set(ip_frame(seg, 6), 50, b"\x12\x34")
    h.feed(bad, trusted=True)
    assert got[-1][3] is True and len(got) == 2
    h.feed(bad, trusted=False)
    assert len(got) == 2 and h.ip.counters()["drop.tcp-bad-checksum"] == 1


def test_options_are_skipped_and_padding_trimmed() -> None:
    h = Harness()
    got: list[bytes] = []
    h.ip.register(6, lambda s, d, p, t: got.append(bytes(p)))
    seg = tcp_payload(flags=ACK)
    h.feed(ip_frame(seg, 6, options=b"\x01\x01\x01\x00") + b"\x00" * 10)
    assert got == [seg]


def test_unknown_protocol_gets_protocol_unreachable() -> None:
    h = Harness()
    h.learn_peer()
    original = ipv4.Ipv4Packet(PEER, US, 99, b"12345678abc").encode()
    h.feed(eth.encode_frame(US_MAC, PEER_MAC, eth.ETHERTYPE_IPV4, original))
    [frame] = h.take()
    packet = ipv4.Ipv4Packet.decode(frame[14:])
    assert packet.protocol == 1 and packet.dst == PEER
    err = icmp.IcmpError.from_message(icmp.IcmpMessage.decode(packet.payload))
    assert (err.type, err.code, err.quoted.protocol) == (3, 2, 99)
    assert h.ip.counters()["drop.ip-unknown-protocol"] == 1


def test_icmp_port_unreachable_reaches_protocol_error_handler() -> None:
    h = Harness()
    errors: list[IpError] = []
    h.ip.register_error(6, errors.append)
    syn = TcpSegment(40000, 81, 777, 0, SYN).encode(US, PEER)
    ours = ipv4.Ipv4Packet(US, PEER, 6, syn).encode()
    h.feed(ip_frame(icmp.build_error(3, 3, ours), 1))
    [e] = errors
    assert (e.errno, e.fatal, e.origin, e.protocol) == (errno.ECONNREFUSED, True, "icmp", 6)
    assert (e.local_port, e.remote_addr, e.remote_port, e.seq) == (40000, PEER, 81, 777)
    assert e.reporter == PEER and (e.icmp_type, e.icmp_code) == (3, 3)
    # an error quoting someone else's packet is dropped
    theirs = ipv4.Ipv4Packet(PEER, US, 6, b"\x00" * 20).encode()
    h.feed(ip_frame(icmp.build_error(3, 3, theirs), 1))
    assert len(errors) == 1 and h.ip.counters()["drop.icmp-error-not-ours"] == 1


def test_arp_failure_reports_every_queued_packet() -> None:
    h = Harness()
    errors: list[IpError] = []
    h.ip.register_error(6, errors.append)
    for port in (1, 2):
        h.ip.send(PEER, 6, TcpSegment(port, 80, 5, 0, SYN).encode(US, PEER))
    assert len(h.take()) == 1  # one request for both packets
    for t in (101.0, 102.0):
        h.now = t
        h.ip.handle_timer(t)
        [retry] = h.take()
        assert warp.ArpPacket.decode(retry[14:]).target_ip == PEER
    h.now = 103.0
    h.ip.handle_timer(103.0)
    assert h.take() == []
    assert [(e.errno, e.origin, e.local_port) for e in errors] == [
        (errno.EHOSTUNREACH, "arp", 1), (errno.EHOSTUNREACH, "arp", 2)]
    assert h.ip.counters()["tx_drop.arp-unresolved"] == 2
    assert h.deadlines[-1] is None


def test_no_route_is_reported_later_not_raised() -> None:
    h = Harness()
    errors: list[IpError] = []
    h.ip.register_error(6, errors.append)
    h.ip.send(bytes([8, 8, 8, 8]), 6, b"\x00" * 20)
    assert h.take() == [] and errors == []
    for fn in h.deferred:
        fn()  # type: ignore[operator]
    assert [(e.errno, e.origin) for e in errors] == [(errno.ENETUNREACH, "route")]


def test_gateway_route_resolves_gateway() -> None:
    h = Harness(gateway=GW)
    h.ip.send(bytes([8, 8, 8, 8]), 6, b"\x00" * 20)
    [req] = h.take()
    assert warp.ArpPacket.decode(req[14:]).target_ip == GW


def test_send_many_fast_path_and_too_big() -> None:
    h = Harness()
    h.learn_peer()
    h.ip.send(PEER, 6, b"x" * 20)
    h.take()
    h.ip.send_many(PEER, 6, [b"a" * 20, b"b" * 1481, memoryview(b"c" * 1480)])
    frames = h.take()
    assert [len(f) for f in frames] == [14 + 20 + 20, 14 + 20 + 1480]
    idents = {ipv4.Ipv4Packet.decode(f[14:]).ident for f in frames}
    assert len(idents) == 2
    assert h.ip.counters()["tx_drop.too-big"] == 1


def test_handler_exception_is_counted_not_raised() -> None:
    h = Harness()

    def boom(*_: object) -> None:
        raise RuntimeError("bug")

    h.ip.register(6, boom)
    h.feed(ip_frame(tcp_payload(), 6))
    assert h.ip.counters()["drop.internal-error"] == 1


def test_register_icmp_is_refused() -> None:
    with pytest.raises(ValueError):
        Harness().ip.register(1, lambda *a: None)


# ------------------------------------------- input rules as Linux (issue 13)

BCAST = bytes([10, 77, 0, 255])


def _tcp_handler(h: Harness) -> list[bytes]:
    got: list[bytes] = []
    h.ip.register(6, lambda s, d, p, t: got.append(bytes(p)))
    return got


@pytest.mark.parametrize(("dst", "dst_mac"), [
    (BCAST, eth.BROADCAST),  # the subnet broadcast
    (bytes([255] * 4), eth.BROADCAST),  # the limited broadcast
    (US, eth.BROADCAST),  # our address in a broadcast frame (pkt_type != PACKET_HOST)
    (BCAST, US_MAC),
])
def test_tcp_to_broadcast_is_dropped_and_counted(dst: bytes, dst_mac: bytes) -> None:
    h = Harness()
    got = _tcp_handler(h)
    packet = ipv4.Ipv4Packet(PEER, dst, 6, tcp_payload(dst=dst)).encode()
    h.feed(eth.encode_frame(dst_mac, PEER_MAC, eth.ETHERTYPE_IPV4, packet))
    assert got == [] and h.take() == []
    c = h.ip.counters()
    assert c["drop.tcp-not-unicast"] == 1 and c["drops"] == 1


def test_tcp_to_multicast_or_other_host_is_dropped() -> None:
    h = Harness()
    got = _tcp_handler(h)
    for dst in (bytes([224, 0, 0, 1]), bytes([10, 77, 0, 9])):
        h.feed(ip_frame(tcp_payload(dst=dst), 6, dst=dst))
    assert got == [] and h.ip.counters()["drop.ip-not-ours"] == 2


@pytest.mark.parametrize(("options", "reason"), [
    (b"\x07\x02\x04\x00", "ip-bad-options"),  # record route with length 2 (no pointer)
    (b"\x07\x07\x03\x00\x00\x00\x00\x00", "ip-bad-options"),  # pointer 3 < 4
    (b"\x44\x08\x04\x00\x00\x00\x00\x00", "ip-bad-options"),  # timestamp pointer 4 < 5
    (b"\x94\x01\x00\x00", "ip-bad-options"),  # length 1
    (b"\x94\x09\x00\x00", "ip-bad-options"),  # runs past the header
    (b"\x01\x01\x01\x94", "ip-bad-options"),  # a type with no length octet
    (b"\x83\x07\x04\x0a\x4d\x00\x09\x00", "ip-source-route"),  # LSRR: Linux drops
])
def test_malformed_ip_options_are_dropped_not_answered(options: bytes, reason: str) -> None:
    h = Harness()
    h.learn_peer()
    got = _tcp_handler(h)
    h.feed(ip_frame(tcp_payload(), 6, options=options))
    h.feed(ip_frame(tcp_payload(), 99, options=options))  # no protocol-unreachable either
    assert got == [] and h.take() == []
    assert h.ip.counters()["drop." + reason] == 2


def test_valid_ip_options_pass() -> None:
    h = Harness()
    got = _tcp_handler(h)
    for options in (b"\x94\x04\x00\x00", b"\x01\x00\x00\x00",
                    b"\x07\x07\x04\x00\x00\x00\x00\x00", b"\x44\x0c\x05\x00" + b"\x00" * 8):
        h.feed(ip_frame(tcp_payload(), 6, options=options))
    assert len(got) == 4 and h.ip.counters()["frames_accepted"] == 4


def test_handler_drop_reason_is_counted_once() -> None:
    h = Harness()
    h.ip.register(6, lambda s, d, p, t: "tcp-test-reason")
    h.feed(_good_ip())
    c = h.ip.counters()
    assert c["drop.tcp-test-reason"] == 1 and c["drops"] == 1 and c["frames_accepted"] == 0


def test_arp_failure_is_remembered_for_a_while() -> None:
    h = Harness()
    assert h.ip.reachable(PEER, h.now)
    h.ip.send(PEER, 6, tcp_payload(src=US, dst=PEER))
    for _ in range(4):
        h.now += 1.0
        h.ip.handle_timer(h.now)
    assert not h.ip.reachable(PEER, h.now)  # NUD_FAILED
    assert h.ip.reachable(bytes([10, 77, 0, 7]), h.now)
    h.now += 10.0
    assert h.ip.reachable(PEER, h.now)  # forgotten after the ARP timeout
    assert not h.ip.reachable(bytes([192, 0, 2, 1]), h.now)  # no route (no gateway)
    h.learn_peer()
    assert h.ip.reachable(PEER, h.now)
