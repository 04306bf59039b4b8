"""DESIGN.md trap 3: a 60 KB TCP super-segment through PACKET_VNET_HDR.

We do a TCP handshake with the peer kernel by hand, then hand the device one
60,000-byte segment with ``send_gso``; the kernel listener must receive every
byte, and acknowledge all of it.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import subprocess
from collections.abc import Callable, Sequence
from typing import Any

import pytest
import uvloop

from ustack.lab import Lab
from ustack.link.af_packet import VNET_HDR, AfPacketDevice, gso_tcp_vnet_header
from ustack.link.base import ReceivedFrame
from ustack.wire.checksum import fold, internet_checksum, partial_sum, pseudo_header_sum

pytestmark = pytest.mark.integration

STACK, PEER = socket.inet_aton("10.77.0.2"), socket.inet_aton("10.77.0.1")


def ipv4(payload: bytes, ident: int) -> bytes:
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, 0x4000, 64, 6, 0,
                      STACK, PEER)
    return hdr[:10] + internet_checksum(hdr).to_bytes(2, "big") + hdr[12:] + payload


def tcp(seq: int, ack: int, flags: int, payload: bytes = b"", opts: bytes = b"") -> bytes:
    hdr = struct.pack("!HHIIBBHHH", 40000, 5001, seq, ack, (20 + len(opts)) // 4 << 4, flags,
                      65535, 0, 0) + opts
    seg = hdr + payload
    csum = fold(pseudo_header_sum(STACK, PEER, 6, len(seg)) + partial_sum(seg))
    return seg[:16] + csum.to_bytes(2, "big") + seg[18:]


def _put_all(queue: asyncio.Queue[ReceivedFrame], frames: Sequence[ReceivedFrame]) -> None:
    for frame in frames:
        queue.put_nowait(frame)


def test_vnet_header_layout() -> None:
    frame = b"\x00" * 12 + b"\x08\x00" + ipv4(tcp(1, 2, 0x10, b"x" * 5000), 1)
    flags, gso_type, hdr_len, gso_size, csum_start, csum_offset = VNET_HDR.unpack(
        gso_tcp_vnet_header(frame, 1448))
    assert (flags, gso_type, hdr_len, gso_size, csum_start, csum_offset) == (
        1, 1, 54, 1448, 34, 16)
    small = b"\x00" * 12 + b"\x08\x00" + ipv4(tcp(1, 2, 0x10, b"x" * 100), 1)
    assert VNET_HDR.unpack(gso_tcp_vnet_header(small, 1448))[1:4:2] == (0, 0)
    with pytest.raises(ValueError):
        gso_tcp_vnet_header(b"\x00" * 12 + b"\x08\x06" + b"\x00" * 60, 1448)


@pytest.mark.parametrize("rx_ring", [True, False], ids=["ring", "socket"])
@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_send_gso_super_segment_reaches_kernel_tcp(lab: Lab, loop_kind: str,
                                                   rx_ring: bool) -> None:
    with lab.enter_stack_ns():
        dev = AfPacketDevice.open(lab.stack_if, vnet_hdr=True, rx_ring=rx_ring)
    assert dev.supports_gso and dev.rx_mode == ("ring" if rx_ring else "vnet")
    # the stack does not answer ARP in this test: tell the peer our MAC
    subprocess.run(["ip", "-n", lab.peer_ns, "neigh", "replace", lab.stack_ip, "lladdr",
                    dev.mac.hex(":"), "dev", lab.peer_if], check=True)
    with lab.enter_peer_ns():
        listener = socket.socket()
    listener.bind((lab.peer_address, 5001))
    listener.listen()
    listener.settimeout(5)
    eth = lab.mac("peer") + dev.mac + b"\x08\x00"
    payload = bytes(i % 251 for i in range(60000))

    async def main() -> None:
        queue: asyncio.Queue[ReceivedFrame] = asyncio.Queue()
        dev.attach(asyncio.get_running_loop(), lambda fs: _put_all(queue, fs))

        async def next_tcp() -> tuple[bytes, bool]:
            while True:
                frame, trusted = await asyncio.wait_for(queue.get(), 5)
                if frame[12:14] == b"\x08\x00" and frame[23] == 6:
                    return frame, trusted

        iss = 1000
        dev.send(eth + ipv4(tcp(iss, 0, 0x02, opts=b"\x02\x04\x05\xb4"), 1))
        synack, trusted = await next_tcp()
        assert synack[47] == 0x12 and trusted  # SYN-ACK, partial checksum from the kernel
        rcv_nxt = struct.unpack("!I", synack[38:42])[0] + 1
        dev.send(eth + ipv4(tcp(iss + 1, rcv_nxt, 0x10), 2))
        conn, _ = await asyncio.get_running_loop().run_in_executor(None, listener.accept)
        try:
            conn.settimeout(5)
            dev.send_gso(eth + ipv4(tcp(iss + 1, rcv_nxt, 0x18, payload), 3), 1448)
            got = b""
            while len(got) < len(payload):
                chunk = await asyncio.get_running_loop().run_in_executor(None, conn.recv, 1 << 16)
                assert chunk, "peer closed"
                got += chunk
            assert got == payload
            # the kernel acknowledges every byte
            acked = 0
            while acked < len(payload):
                frame, _ = await next_tcp()
                acked = struct.unpack("!I", frame[42:46])[0] - (iss + 1)
            assert acked == len(payload)
        finally:
            conn.close()
        c = dev.counters()
        assert c["tx_gso_frames"] == 1 and c["tx_errors"] == 0

    try:
        if loop_kind == "uvloop":
            uvloop.run(main())
        else:
            asyncio.run(main())
    finally:
        dev.close()
        listener.close()


def test_send_gso_needs_vnet_mode(lab: Lab) -> None:
    with lab.enter_stack_ns():
        dev = AfPacketDevice.open(lab.stack_if)
    try:
        assert not dev.supports_gso
        with pytest.raises(RuntimeError, match="vnet_hdr"):
            dev.send_gso(b"\x00" * 100, 1448)
    finally:
        dev.close()


def receive_from_kernel(lab: Lab, dev: AfPacketDevice, data: bytes) -> list[ReceivedFrame]:
    """Handshake by hand with a kernel listener, let it send ``data``, ACK
    everything in order; return every TCP data frame we received."""
    subprocess.run(["ip", "-n", lab.peer_ns, "neigh", "replace", lab.stack_ip, "lladdr",
                    dev.mac.hex(":"), "dev", lab.peer_if], check=True)
    with lab.enter_peer_ns():
        listener = socket.socket()
    listener.bind((lab.peer_address, 5001))
    listener.listen()
    listener.settimeout(5)
    eth = lab.mac("peer") + dev.mac + b"\x08\x00"
    frames: list[ReceivedFrame] = []

    async def main() -> None:
        queue: asyncio.Queue[ReceivedFrame] = asyncio.Queue()
        dev.attach(asyncio.get_running_loop(), lambda fs: _put_all(queue, fs))
        dev.send(eth + ipv4(tcp(1000, 0, 0x02, opts=b"\x02\x04\x05\xb4"), 1))
        while True:
            frame, _ = await asyncio.wait_for(queue.get(), 5)
            if frame[12:14] == b"\x08\x00" and frame[23] == 6:
                break
        irs = struct.unpack("!I", frame[38:42])[0]
        dev.send(eth + ipv4(tcp(1001, irs + 1, 0x10), 2))
        conn, _ = await asyncio.get_running_loop().run_in_executor(None, listener.accept)
        try:
            sending = asyncio.get_running_loop().run_in_executor(None, conn.sendall, data)
            received = bytearray()
            while len(received) < len(data):
                frame, trusted = await asyncio.wait_for(queue.get(), 5)
                if frame[12:14] != b"\x08\x00" or frame[23] != 6:
                    continue
                frames.append((frame, trusted))
                total = struct.unpack("!H", frame[16:18])[0]
                assert len(frame) >= 14 + total  # never cut short
                l4 = 14 + (frame[14] & 0x0F) * 4
                payload = frame[l4 + (frame[l4 + 12] >> 4) * 4 : 14 + total]
                seq = struct.unpack("!I", frame[l4 + 4 : l4 + 8])[0] - (irs + 1)
                if seq == len(received):  # in order (no loss on veth)
                    received += payload
                dev.send(eth + ipv4(tcp(1001, irs + 1 + len(received), 0x10), 3))
            await sending
            assert bytes(received) == data
        finally:
            conn.close()

    try:
        asyncio.run(main())
    finally:
        listener.close()
    return frames


def _tcp_payload_len(frame: bytes) -> int:
    total: int = struct.unpack("!H", frame[16:18])[0]
    l4 = 14 + (frame[14] & 0x0F) * 4
    return 14 + total - l4 - (frame[l4 + 12] >> 4) * 4


def _tcp_checksum_ok(frame: bytes) -> bool:
    total = struct.unpack("!H", frame[16:18])[0]
    l4 = 14 + (frame[14] & 0x0F) * 4
    seg = frame[l4 : 14 + total]
    s = pseudo_header_sum(frame[26:30], frame[30:34], 6, len(seg)) + partial_sum(seg)
    return s % 0xFFFF == 0


@pytest.mark.parametrize(
    "mode", [{}, {"rx_ring": False}, {"vnet_hdr": True}, {"vnet_hdr": True, "rx_ring": False}],
    ids=["ring", "socket", "vnet-ring", "vnet-socket"])
def test_kernel_tso_super_frames_arrive_whole(lab: Lab, mode: dict[str, Any]) -> None:
    """The peer kernel's TCP hands veth multi-segment (TSO) frames that cross
    unsegmented: each must reach us whole, in every receive mode (the ring
    slot is only 2 KiB: those frames come through TP_STATUS_COPY)."""
    with lab.enter_stack_ns():
        dev = AfPacketDevice.open(lab.stack_if, **mode)
    try:
        frames = receive_from_kernel(lab, dev, bytes(i % 253 for i in range(200_000)))
        assert max(_tcp_payload_len(f) for f, _ in frames) > 1448  # TSO super-frames came
        assert all(trusted for _, trusted in frames)  # partial checksums
        assert dev.counters()["rx_truncated"] == 0
    finally:
        dev.close()


@pytest.mark.parametrize("mode", [{}, {"rx_ring": False}], ids=["ring", "socket"])
def test_exact_wire_lab_has_mss_segments_and_full_checksums(
    lab_factory: Callable[..., Lab], mode: dict[str, Any]
) -> None:
    """``Lab(offloads=False)``: the kernel segments and checksums itself, so
    every frame is at most MSS, untrusted, and its checksum verifies."""
    lab = lab_factory(offloads=False)
    with lab.enter_stack_ns():
        dev = AfPacketDevice.open(lab.stack_if, **mode)
    try:
        frames = receive_from_kernel(lab, dev, bytes(i % 253 for i in range(100_000)))
        assert max(_tcp_payload_len(f) for f, _ in frames) <= 1460
        assert not any(trusted for _, trusted in frames)
        assert all(_tcp_checksum_ok(f) for f, _ in frames)
    finally:
        dev.close()
