"""The SYN channel's ring paths of AfPacketDevice against a real veth:
``read_fixed`` (a whole ring's worth of fixed-size frames as one numpy
array, the others as ReceivedFrames, in order) and ``send_fixed`` (rows sent
through a PACKET_TX_RING in one system call)."""

from __future__ import annotations

import socket
import struct
import time

import numpy as np
import pytest

from ustack.lab import Lab
from ustack.link.af_packet import AfPacketDevice

pytestmark = pytest.mark.integration


def syn_frame(dst_mac: bytes, src_mac: bytes, i: int, extra: bytes = b"") -> bytes:
    """A 74-byte Ethernet + IPv4 + TCP SYN (40-byte TCP header), or longer."""
    tcp = struct.pack("!HHIIBBHHH", 1000 + i, 80, i, 0, 0xA0, 0x02, 64240, 0, 0) + bytes(20)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(extra), i, 0x4000, 64, 6,
                     0, socket.inet_aton("198.18.0.1"), socket.inet_aton("10.77.0.2"))
    return dst_mac + src_mac + b"\x08\x00" + ip + tcp + extra


def test_read_fixed_and_send_fixed_over_a_veth(lab: Lab) -> None:
    with lab.enter_stack_ns():
        dev = AfPacketDevice.open(lab.stack_if, tcp_syn="only", ring_frames=256, ring_slot=256,
                                  tx_ring_frames=256)
    with lab.enter_peer_ns():
        peer = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
    peer.bind((lab.peer_if, 0))
    peer.settimeout(2.0)
    try:
        us, them = dev.mac, lab.mac("peer")
        sent = [syn_frame(us, them, i, b"x" * (300 if i == 5 else 0)) for i in range(40)]
        for f in sent:
            peer.send(f)
        rows: list[bytes] = []
        others: list[bytes] = []
        deadline = time.monotonic() + 5
        while len(rows) + len(others) < 40 and time.monotonic() < deadline:
            r, trusted, o = dev.read_fixed(74, 16)  # several calls: the budget is 16
            assert r.shape[1:] == (74,) and len(trusted) == len(r) and len(r) <= 16
            rows.extend(bytes(x) for x in r)
            others.extend(bytes(f) for f, _ in o)
            time.sleep(0.01)
        assert rows == [f for f in sent if len(f) == 74]  # in order, byte for byte
        assert others == [sent[5]]  # longer than a slot: read from the socket copy
        assert dev.counters()["rx_frames"] == 40
        # 100 frames out through the TX ring (one send per call)
        out = np.frombuffer(b"".join(syn_frame(them, us, i) for i in range(100)),
                            dtype=np.uint8).reshape(100, 74)
        dev.send_fixed(out[:60])
        dev.send_fixed(out[60:])
        got = []
        with pytest.raises(TimeoutError):
            while True:
                got.append(peer.recv(2048))
        assert [g[:74] for g in got if g[12:14] == b"\x08\x00" and len(g) >= 74] == [
            bytes(r) for r in out]
        c = dev.counters()
        assert c["tx_ring_frames"] == 100 and c["tx_frames"] == 100 and c["tx_ring_busy"] == 0
    finally:
        peer.close()
        dev.close()  # the numpy views of the rings go first (no BufferError)


def test_read_fixed_goes_on_across_the_rings_end(lab: Lab) -> None:
    """read_fixed reads the ready slots as one span up to the ring's end and
    goes on from its start in the same call: frames in order, none lost or
    read twice, the other shapes kept in ring order among themselves."""
    with lab.enter_stack_ns():
        dev = AfPacketDevice.open(lab.stack_if, tcp_syn="only", ring_frames=256, ring_slot=256)
    with lab.enter_peer_ns():
        peer = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
    peer.bind((lab.peer_if, 0))
    try:
        assert dev._ring_slots == 256
        us, them = dev.mac, lab.mac("peer")
        rows: list[bytes] = []
        others: list[bytes] = []
        sent: list[bytes] = []
        for rnd in range(6):  # 100 a round: rounds 2 and 5 cross the end
            batch = [syn_frame(us, them, 100 * rnd + i, b"y" * (8 if i in (13, 14) else 0))
                     for i in range(100)]
            for f in batch:
                peer.send(f)
            sent += batch
            deadline = time.monotonic() + 5
            want = len(sent)
            calls = 0
            while len(rows) + len(others) < want and time.monotonic() < deadline:
                time.sleep(0.05)  # all 100 in the ring before reading: one call takes them
                r, _, o = dev.read_fixed(74, 256)
                calls += 1
                rows.extend(bytes(x) for x in r)
                others.extend(bytes(f) for f, _ in o)
            assert calls == 1, rnd
        assert rows == [f for f in sent if len(f) == 74]
        assert others == [f for f in sent if len(f) != 74]
        assert dev.counters()["rx_frames"] == 600
        r, _, o = dev.read_fixed(74, 256)
        assert len(r) == 0 and o == []
    finally:
        peer.close()
        dev.close()
