"""AfPacketDevice against the Linux kernel in a lab, under asyncio and uvloop."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import struct
import subprocess
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvloop

from ustack.lab import Lab
from ustack.link.af_packet import AfPacketDevice
from ustack.link.base import ReceivedFrame

pytestmark = pytest.mark.integration

LOOPS = ["asyncio", "uvloop"]
#: receive modes: mmap ring (default), recvmsg + PACKET_AUXDATA, each also with
#: virtio_net_hdr (offloads)
MODES: dict[str, dict[str, bool]] = {
    "ring": {},
    "socket": {"rx_ring": False},
    "vnet-ring": {"vnet_hdr": True},
    "vnet-socket": {"vnet_hdr": True, "rx_ring": False},
}


@pytest.fixture(params=list(MODES))
def mode(request: pytest.FixtureRequest) -> dict[str, bool]:
    return dict(MODES[request.param])


def run_on(kind: str, coro_fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
    if kind == "uvloop":
        uvloop.run(asyncio.wait_for(coro_fn(), 20))
    else:
        asyncio.run(asyncio.wait_for(coro_fn(), 20))


def arp_request(src_mac: bytes, src_ip: str, target_ip: str) -> bytes:
    return b"\xff" * 6 + src_mac + b"\x08\x06" + struct.pack(
        "!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, src_mac, socket.inet_aton(src_ip),
        b"\x00" * 6, socket.inet_aton(target_ip))


class Collector:
    """A receiver that records batches and wakes a waiter per frame."""

    def __init__(self) -> None:
        self.frames: list[ReceivedFrame] = []
        self.batches = 0
        self.queue: asyncio.Queue[ReceivedFrame] = asyncio.Queue()

    def __call__(self, frames: Any) -> None:
        self.batches += 1
        for f in frames:
            self.frames.append(f)
            self.queue.put_nowait(f)

    async def until(self, pred: Callable[[bytes], bool], timeout: float = 5.0) -> ReceivedFrame:
        async def wait() -> ReceivedFrame:
            while True:
                f = await self.queue.get()
                if pred(f[0]):
                    return f
        return await asyncio.wait_for(wait(), timeout)


def open_stack_device(lab: Lab, **kw: Any) -> AfPacketDevice:
    with lab.enter_stack_ns():
        return AfPacketDevice.open(lab.stack_if, **kw)


def peer_raw_socket(lab: Lab) -> socket.socket:
    with lab.enter_peer_ns():
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    s.bind((lab.peer_if, 0))
    return s


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_arp_request_gets_kernel_reply(lab: Lab, loop_kind: str, mode: dict[str, bool]) -> None:
    dev = open_stack_device(lab, **mode)
    assert dev.rx_mode == ("ring" if mode.get("rx_ring", True) else
                           "vnet" if mode.get("vnet_hdr") else "socket")
    assert dev.mac == lab.mac("stack") and dev.mtu == 1500 and dev.name == lab.stack_if
    peer_mac = lab.mac("peer")

    async def main() -> None:
        got = Collector()
        dev.attach(asyncio.get_running_loop(), got)
        dev.send(arp_request(dev.mac, "10.77.0.2", "10.77.0.1"))
        frame, trusted = await got.until(lambda f: f[12:14] == b"\x08\x06")
        assert frame[:6] == dev.mac and frame[6:12] == peer_mac
        assert frame[20:22] == b"\x00\x02"  # ARP reply
        assert frame[22:28] == peer_mac and frame[28:32] == socket.inet_aton("10.77.0.1")
        assert trusted is False  # no L4 checksum for the kernel to vouch for
        await asyncio.sleep(0.05)
        # our own broadcast request never came back to us
        assert [f for f, _ in got.frames if f[6:12] == dev.mac] == []
        c = dev.counters()
        assert c["tx_frames"] == 1 and c["tx_bytes"] == 42 and c["rx_frames"] >= 1

    try:
        run_on(loop_kind, main)
    finally:
        dev.close()
    dev.close()  # idempotent


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_filter_passes_only_our_arp_and_ipv4(
    lab: Lab, loop_kind: str, mode: dict[str, bool]
) -> None:
    dev = open_stack_device(lab, **mode)
    peer = peer_raw_socket(lab)
    src = lab.mac("peer")
    foreign = bytes.fromhex("02deadbeef01")
    payload = b"\x00" * 46

    def frame(dst: bytes, ethertype: int, tag: int) -> bytes:
        return dst + src + struct.pack("!H", ethertype) + bytes([tag]) + payload

    wanted = [frame(dev.mac, 0x0800, 1), frame(b"\xff" * 6, 0x0806, 2),
              frame(dev.mac, 0x0806, 3), frame(b"\xff" * 6, 0x0800, 4)]
    unwanted = [frame(foreign, 0x0800, 10), frame(foreign, 0x0806, 11),
                frame(dev.mac, 0x86DD, 12), frame(b"\xff" * 6, 0x88CC, 13),
                frame(bytes.fromhex("01005e000001"), 0x0800, 14)]
    sentinel = frame(dev.mac, 0x0800, 99)

    async def main() -> None:
        got = Collector()
        dev.attach(asyncio.get_running_loop(), got)
        for f in unwanted + wanted:
            peer.send(f)
        peer.send(sentinel)
        await got.until(lambda f: f[14] == 99)
        received = [f for f, _ in got.frames]
        assert received == wanted + [sentinel]
        # injected by a raw socket: nobody vouched for a checksum
        assert not any(t for _, t in got.frames)

    try:
        run_on(loop_kind, main)
    finally:
        dev.close()
        peer.close()


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_burst_is_delivered_in_batches(lab: Lab, loop_kind: str, mode: dict[str, bool]) -> None:
    dev = open_stack_device(lab, **mode)
    peer = peer_raw_socket(lab)
    src = lab.mac("peer")
    n = 500

    async def main() -> None:
        got = Collector()
        # frames queue in the socket before the loop looks: one wakeup reads them all
        for i in range(n):
            peer.send(dev.mac + src + b"\x08\x00" + struct.pack("!I", i) + b"\x00" * 1400)
        dev.attach(asyncio.get_running_loop(), got)
        await got.until(lambda f: f[14:18] == struct.pack("!I", n - 1))
        assert [struct.unpack("!I", f[14:18])[0] for f, _ in got.frames] == list(range(n))
        assert got.batches == 1
        assert dev.counters()["rx_kernel_drops"] == 0
        # with a small per-wakeup budget the rest is picked up on later wakeups
        dev.rx_budget = 64
        got.frames.clear()
        got.batches = 0
        for i in range(n, 2 * n):
            peer.send(dev.mac + src + b"\x08\x00" + struct.pack("!I", i) + b"\x00" * 1400)
        await got.until(lambda f: f[14:18] == struct.pack("!I", 2 * n - 1))
        assert [struct.unpack("!I", f[14:18])[0] for f, _ in got.frames] == list(range(n, 2 * n))
        assert got.batches >= n // 64

    try:
        run_on(loop_kind, main)
    finally:
        dev.close()
        peer.close()


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_kernel_tcp_syn_is_trusted(lab: Lab, loop_kind: str, mode: dict[str, bool]) -> None:
    """DESIGN.md trap 2: the peer kernel leaves the TCP checksum to offload."""
    dev = open_stack_device(lab, **mode)
    subprocess.run(["ip", "-n", lab.peer_ns, "neigh", "replace", lab.stack_ip, "lladdr",
                    dev.mac.hex(":"), "dev", lab.peer_if], check=True)

    async def main() -> None:
        got = Collector()
        dev.attach(asyncio.get_running_loop(), got)
        with lab.enter_peer_ns():
            client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        client.setblocking(False)
        try:
            with pytest.raises(BlockingIOError):
                client.connect((lab.stack_ip, 5001))
            frame, trusted = await got.until(
                lambda f: f[12:14] == b"\x08\x00" and f[23] == 6)
            assert frame[14 + 20 + 13] & 0x02  # SYN
            assert trusted is True
        finally:
            client.close()

    try:
        run_on(loop_kind, main)
    finally:
        dev.close()


def test_mac_override_filters_on_that_mac(lab: Lab) -> None:
    mine = bytes.fromhex("02000000aa01")
    dev = open_stack_device(lab, mac="02:00:00:00:aa:01")
    peer = peer_raw_socket(lab)
    src = lab.mac("peer")
    assert dev.mac == mine

    async def main() -> None:
        got = Collector()
        dev.attach(asyncio.get_running_loop(), got)
        peer.send(lab.mac("stack") + src + b"\x08\x00" + b"\x01" * 46)  # interface MAC
        peer.send(mine + src + b"\x08\x00" + b"\x02" * 46)
        await got.until(lambda f: f[14] == 2)
        assert [f[:6] for f, _ in got.frames] == [mine]

    try:
        run_on("asyncio", main)
    finally:
        dev.close()
        peer.close()


def test_send_queue_drains_and_counts_overflow(lab: Lab) -> None:
    """Frames queued while the socket is 'full' go out in order via add_writer."""
    dev = open_stack_device(lab, max_send_queue=3)
    peer = peer_raw_socket(lab)
    with lab.enter_peer_ns():
        peer_dev = AfPacketDevice.open(lab.peer_if)

    async def main() -> None:
        got = Collector()
        peer_dev.attach(asyncio.get_running_loop(), got)
        dev.attach(asyncio.get_running_loop(), lambda frames: None)
        frames = [peer_dev.mac + dev.mac + b"\x08\x00" + bytes([i]) * 46 for i in range(5)]
        # simulate a full socket: the first frame is queued, later ones follow it
        dev._enqueue(frames[0])
        dev._arm_writer()
        dev.send_many(frames[1:])
        assert dev.counters()["tx_drops_queue_full"] == 2
        await got.until(lambda f: f[14] == 2)
        assert [f[14] for f, _ in got.frames] == [0, 1, 2]
        c = dev.counters()
        assert c["tx_queue_len"] == 0 and c["tx_frames"] == 3

    try:
        run_on("uvloop", main)
    finally:
        dev.close()
        peer_dev.close()
        peer.close()


def test_unknown_interface_is_named() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for AF_PACKET")
    with pytest.raises(OSError) as info:
        AfPacketDevice.open("hl-nonexistent0")
    assert info.value.errno == errno.ENODEV
    assert "hl-nonexistent0" in str(info.value)


def test_without_cap_net_raw_is_a_clear_permission_error() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to drop privileges")
    code = (
        "import os\n"
        "from ustack.link.af_packet import AfPacketDevice\n"
        "os.setuid(65534)\n"
        "try:\n"
        "    AfPacketDevice.open('lo')\n"
        "except PermissionError as exc:\n"
        "    print(exc)\n"
        "    raise SystemExit(3)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 3, proc.stderr
    assert "CAP_NET_RAW" in proc.stdout and "root" in proc.stdout


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_link_down_does_not_spin_and_recovers(
    lab: Lab, loop_kind: str, mode: dict[str, bool]
) -> None:
    """ENETDOWN is reported once (rx_errors), not as an endless stream of
    wakeups; after the link comes back, frames flow again."""
    dev = open_stack_device(lab, **mode)

    async def main() -> None:
        got = Collector()
        dev.attach(asyncio.get_running_loop(), got)
        await asyncio.sleep(0.02)
        subprocess.run(["ip", "-n", lab.stack_ns, "link", "set", lab.stack_if, "down"],
                       check=True)
        await asyncio.sleep(0.3)
        c = dev.counters()
        assert c["rx_wakeups"] <= 3 and c["rx_errors"] == 1
        subprocess.run(["ip", "-n", lab.stack_ns, "link", "set", lab.stack_if, "up"],
                       check=True)
        for _ in range(50):  # the carrier comes back within a few ms
            dev.send(arp_request(dev.mac, "10.77.0.2", "10.77.0.1"))
            try:
                await got.until(lambda f: f[12:14] == b"\x08\x06", timeout=0.2)
                break
            except TimeoutError:
                continue
        else:
            pytest.fail("no ARP reply after the link came back")

    try:
        run_on(loop_kind, main)
    finally:
        dev.close()
