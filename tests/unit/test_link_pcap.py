"""PcapDevice: every frame in and out lands in a pcap dpkt can read back."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import dpkt

from ustack.link.base import ReceivedFrame
from ustack.link.memory import MemoryPair
from ustack.link.pcap import PcapDevice


def read_pcap(path: Path) -> list[tuple[float, bytes]]:
    with open(path, "rb") as f:
        reader = dpkt.pcap.Reader(f)
        assert reader.datalink() == dpkt.pcap.DLT_EN10MB
        return [(ts, bytes(buf)) for ts, buf in reader]


async def test_records_both_directions_in_order(tmp_path: Path) -> None:
    pair = MemoryPair()
    path = tmp_path / "c.pcap"
    dev = PcapDevice(pair.a, path)
    assert (dev.name, dev.mac, dev.mtu) == (pair.a.name, pair.a.mac, pair.a.mtu)
    got: list[ReceivedFrame] = []
    dev.attach(asyncio.get_running_loop(), got.extend)
    pair.b.attach(asyncio.get_running_loop(), lambda frames: pair.b.send_many(
        [f[6:12] + f[:6] + f[12:14] + b"R" + f[15:] for f, _ in frames]))
    t0 = time.time()
    out1 = pair.b.mac + pair.a.mac + b"\x08\x00" + b"A" * 46
    out2 = pair.b.mac + pair.a.mac + b"\x08\x06" + b"B" * 28
    dev.send(out1)
    dev.send_many([out2])
    for _ in range(3):
        await asyncio.sleep(0)
    assert len(got) == 2  # the echoes reached the receiver through the wrapper
    dev.close()
    t1 = time.time()
    records = read_pcap(path)
    frames = [buf for _, buf in records]
    assert frames[:2] == [out1, out2]
    assert frames[2:] == [f for f, _ in got]
    assert frames[2][14:15] == b"R"
    assert all(t0 - 1e-6 <= ts <= t1 + 1e-6 for ts, _ in records)
    assert [ts for ts, _ in records] == sorted(ts for ts, _ in records)
    assert dev.counters()["pcap_frames"] == 4
    # decodes as Ethernet
    eth = dpkt.ethernet.Ethernet(frames[0])
    assert eth.type == 0x0800 and eth.src == pair.a.mac


def test_close_is_idempotent_and_flushes(tmp_path: Path) -> None:
    pair = MemoryPair()
    path = tmp_path / "x.pcap"
    dev = PcapDevice(pair.a, path)
    dev.send(b"\x00" * 60)
    dev.close()
    dev.close()
    assert read_pcap(path) == [(read_pcap(path)[0][0], b"\x00" * 60)]
    dev.send(b"\x01" * 60)  # after close: not recorded, no exception
    assert len(read_pcap(path)) == 1


def test_large_frame_not_truncated(tmp_path: Path) -> None:
    pair = MemoryPair(mtu=9000)
    path = tmp_path / "big.pcap"
    dev = PcapDevice(pair.a, path)
    big = b"\x02" * 9014
    dev.send(big)
    dev.close()
    assert read_pcap(path)[0][1] == big


def _tcp_frame(checksum: bytes) -> bytes:
    import struct

    payload = b"hello, partial checksum"
    tcp = struct.pack("!HHIIBBH", 80, 40000, 1, 2, 5 << 4, 0x18, 512) + checksum + b"\0\0"
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(payload), 7, 0x4000, 64,
                     6, 0, bytes([10, 77, 0, 1]), bytes([10, 77, 0, 2]))
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip + tcp + payload


async def test_fill_checksums_for_trusted_frames(tmp_path: Path) -> None:
    from ustack.wire.checksum import partial_sum, pseudo_header_sum

    pair = MemoryPair(trusted=True)
    path = tmp_path / "f.pcap"
    dev = PcapDevice(pair.a, path, fill_checksums=True)
    got: list[ReceivedFrame] = []
    dev.attach(asyncio.get_running_loop(), got.extend)
    partial = _tcp_frame(b"\x12\x34")  # what a CSUMNOTREADY frame carries
    pair.b.send(partial)
    await asyncio.sleep(0)
    dev.close()
    assert got == [(partial, True)]  # the stack sees the frame untouched
    written = read_pcap(path)[0][1]
    assert written != partial and len(written) == len(partial)
    seg = written[34:]
    total = pseudo_header_sum(written[26:30], written[30:34], 6, len(seg)) + partial_sum(seg)
    assert total % 0xFFFF == 0  # valid checksum in the capture
    # dpkt agrees: re-encoding with a checksum it computes gives the same TCP sum
    eth = dpkt.ethernet.Ethernet(written)
    eth.data.data.sum = 0
    assert bytes(eth)[50:52] == written[50:52]


async def test_untrusted_frames_are_written_as_received(tmp_path: Path) -> None:
    pair = MemoryPair(trusted=False)
    path = tmp_path / "u.pcap"
    dev = PcapDevice(pair.a, path, fill_checksums=True)
    dev.attach(asyncio.get_running_loop(), lambda frames: None)
    bad = _tcp_frame(b"\x12\x34")
    pair.b.send(bad)
    await asyncio.sleep(0)
    dev.close()
    assert read_pcap(path)[0][1] == bad  # a bad checksum stays visible
