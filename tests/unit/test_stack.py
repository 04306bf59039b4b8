"""The Stack on in-memory devices: two stacks ping each other, pcap capture,
argument checking, counters, close."""

from __future__ import annotations

import asyncio
import errno
from pathlib import Path

import dpkt
import pytest

from ustack.link.memory import MemoryPair
from ustack.net.icmp import IpError
from ustack.stack import Stack, parse_interface
from ustack.wire import arp as warp
from ustack.wire import ethernet as eth
from ustack.wire import icmp, ipv4

MAC_A, MAC_B = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")


async def _pair(**kw: object) -> tuple[Stack, Stack]:
    a_dev, b_dev = MemoryPair(MAC_A, MAC_B)
    a = await Stack.start(address="10.77.0.1/24", device=a_dev, tcp=False)
    b = await Stack.start(address="10.77.0.2/24", device=b_dev, tcp=False, **kw)  # type: ignore[arg-type]
    return a, b


async def test_two_stacks_ping_each_other() -> None:
    a, b = await _pair()
    async with a, b:
        rtt = await a.ping("10.77.0.2", timeout=1.0)
        assert 0 <= rtt < 1.0
        assert await b.ping("10.77.0.1", timeout=1.0) >= 0
        ca, cb = a.counters(), b.counters()
        assert ca["icmp_echo_replies_in"] == 1 and cb["icmp_echo_replies"] == 1
        assert cb["arp_replies"] >= 1
        assert ca["frames_in"] > 0 and ca["frames_out"] > 0
        # the only frames not handled: each side's gratuitous ARP seen by the other
        assert ca["drops"] == ca.get("drop.arp-not-ours", 0) <= 1
        assert cb["drops"] == cb.get("drop.arp-not-ours", 0) <= 1
        assert a.ip.arp.lookup(bytes([10, 77, 0, 2]), a.loop.time()) == MAC_B
        assert (b.address, b.prefixlen, b.mac) == ("10.77.0.2", 24, "02:00:00:00:00:02")
    assert a.closed and b.closed


async def test_ping_unanswered_times_out_and_arp_gives_up() -> None:
    a, b = await _pair()
    async with a, b:
        with pytest.raises(TimeoutError, match="10.77.0.9"):
            await a.ping("10.77.0.9", timeout=0.2)


async def test_arp_failure_after_timeout_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    a_dev, _b_dev = MemoryPair(MAC_A, MAC_B)
    a = await Stack.start(address="10.77.0.1/24", device=a_dev, tcp=False,
                          arp_retry_interval=0.05, arp_requests=2)
    errors: list[IpError] = []
    a.ip.register(253, lambda *args: None)
    a.ip.register_error(253, errors.append)
    async with a:
        a.ip.send(bytes([10, 77, 0, 9]), 253, b"12345678")
        await asyncio.sleep(0.3)
    assert [e.origin for e in errors] == ["arp"]
    assert a.counters()["tx_drop.arp-unresolved"] == 1


async def test_gratuitous_arp_and_pcap_capture(tmp_path: Path) -> None:
    a_dev, b_dev = MemoryPair(MAC_A, MAC_B)
    seen: list[bytes] = []
    a_dev.attach(asyncio.get_running_loop(), lambda frames: seen.extend(f for f, _ in frames))
    cap = tmp_path / "b.pcap"
    b = await Stack.start(address="10.77.0.2/24", device=b_dev, pcap=str(cap), tcp=False)
    async with b:
        await asyncio.sleep(0)
        [ann] = seen
        pkt = warp.ArpPacket.decode(ann[14:])
        assert ann[:6] == eth.BROADCAST and pkt.is_gratuitous and pkt.sender_mac == MAC_B
        # a ping from a raw peer: ARP request, echo request
        a_dev.send(eth.encode_frame(eth.BROADCAST, MAC_A, eth.ETHERTYPE_ARP,
                                    warp.request(MAC_A, bytes([10, 77, 0, 1]),
                                                 bytes([10, 77, 0, 2])).encode()))
        echo = icmp.IcmpEcho(9, 1, b"x" * 56).encode()
        a_dev.send(eth.encode_frame(MAC_B, MAC_A, eth.ETHERTYPE_IPV4, ipv4.Ipv4Packet(
            bytes([10, 77, 0, 1]), bytes([10, 77, 0, 2]), 1, echo).encode()))
        await asyncio.sleep(0.01)
    kinds = []
    with cap.open("rb") as f:
        for _ts, buf in dpkt.pcap.Reader(f):
            frame = dpkt.ethernet.Ethernet(buf)
            if isinstance(frame.data, dpkt.arp.ARP):
                kinds.append(f"arp{frame.data.op}")
            elif isinstance(frame.data, dpkt.ip.IP):
                kinds.append(f"icmp{frame.data.data.type}")
    # announcement out; request and echo in (one batch); reply and echo reply out
    assert kinds == ["arp1", "arp1", "icmp8", "arp2", "icmp0"]


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"address": "10.77.0.2"}, "PREFIXLEN"),
    ({"address": "10.77.0.300/24"}, "10.77.0.300"),
    ({"address": "10.77.0.0/24"}, "network"),
    ({"address": "10.77.0.255/24"}, "broadcast"),
    ({"address": "224.0.0.1/24"}, "unicast"),
    ({"address": "10.77.0.2/33"}, "10.77.0.2/33"),
    ({"address": "10.77.0.2/24", "gateway": "10.78.0.1"}, "not inside"),
    ({"address": "10.77.0.2/24", "gateway": "10.77.0.2"}, "own address"),
    ({"address": "10.77.0.2/24", "gateway": "bogus"}, "bogus"),
    ({"address": "10.77.0.2/24", "mac": "zz:00:00:00:00:01"}, "MAC"),
    ({"address": "10.77.0.2/24", "mac": "01:00:00:00:00:01"}, "unicast"),
])
async def test_invalid_arguments_are_value_errors(kwargs: dict[str, str], match: str) -> None:
    dev, _ = MemoryPair()
    with pytest.raises(ValueError, match=match):
        await Stack.start(device=dev, tcp=False, **kwargs)  # type: ignore[arg-type]


async def test_needs_iface_or_device() -> None:
    with pytest.raises(ValueError, match="iface"):
        await Stack.start(address="10.77.0.2/24")


def test_parse_interface() -> None:
    iface = parse_interface("10.77.0.2/24")
    assert str(iface.ip) == "10.77.0.2" and iface.network.prefixlen == 24


async def test_mac_override_and_tcp_attached() -> None:
    dev, _ = MemoryPair()
    async with await Stack.start(address="10.77.0.2/24", device=dev,
                                 mac="02:aa:bb:cc:dd:ee") as s:
        assert s.mac == "02:aa:bb:cc:dd:ee" and s.ip.mac == bytes.fromhex("02aabbccddee")
        assert s.has_tcp and s.tcp is not None
        assert "tcp_segs_in" in s.counters()


async def test_without_tcp() -> None:
    dev, _ = MemoryPair()
    async with await Stack.start(address="10.77.0.2/24", device=dev, tcp=False) as s:
        assert not s.has_tcp
        with pytest.raises(RuntimeError, match="without TCP"):
            s.tcp  # noqa: B018


async def test_close_is_idempotent_and_runs_hooks() -> None:
    dev, _ = MemoryPair()
    s = await Stack.start(address="10.77.0.2/24", device=dev, tcp=False)
    called = []
    s.add_close_hook(lambda: called.append(1))
    await s.close()
    await s.close()
    assert called == [1] and s.closed


async def test_resolve_cached_fresh_failed_and_no_route() -> None:
    a_dev, b_dev = MemoryPair(MAC_A, MAC_B)
    a = await Stack.start(address="10.77.0.1/24", device=a_dev, tcp=False,
                          arp_retry_interval=0.05, arp_requests=2)
    b = await Stack.start(address="10.77.0.2/24", device=b_dev, tcp=False)
    async with a, b:
        assert await a.resolve("10.77.0.2", timeout=1.0) == "02:00:00:00:00:02"
        assert await a.resolve("10.77.0.2") == "02:00:00:00:00:02"  # cached
        two = await asyncio.gather(a.resolve("10.77.0.2"), b.resolve("10.77.0.1"))
        assert list(two) == ["02:00:00:00:00:02", "02:00:00:00:00:01"]
        with pytest.raises(OSError) as info:
            await a.resolve("10.77.0.50", timeout=2.0)
        assert info.value.errno == errno.EHOSTUNREACH
        with pytest.raises(OSError) as info:
            await a.resolve("192.0.2.1")
        assert info.value.errno == errno.ENETUNREACH
