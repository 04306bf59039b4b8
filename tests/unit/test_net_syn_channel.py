"""The BPF split of a stack's traffic into a SYN channel and the rest
(ustack.link.bpf.split_tcp_syn), run by a small classic-BPF interpreter."""

from __future__ import annotations

import pytest

from ustack.link import bpf
from ustack.wire import arp as warp
from ustack.wire import ethernet as eth
from ustack.wire import ipv4
from ustack.wire.tcp import ACK, FIN, PSH, RST, SYN, TcpOptions, TcpSegment

MAC = bytes.fromhex("02aabbccddee")
PEER_MAC = bytes.fromhex("0211223344ff")
US, PEER = bytes([10, 77, 0, 2]), bytes([10, 77, 0, 1])


def run(prog: list[bpf.Insn], pkt: bytes, pkttype: int = bpf.PACKET_HOST) -> int:
    """Classic BPF: the loads, jumps, ALU and rets the split filter uses."""
    a = x = 0
    pc = 0
    for _ in range(10_000):
        code, jt, jf, k = prog[pc]
        cls = code & 0x07
        if cls in (bpf.BPF_LD, bpf.BPF_LDX):
            mode, size = code & 0xE0, code & 0x18
            width = {bpf.BPF_W: 4, bpf.BPF_H: 2, bpf.BPF_B: 1}[size]
            off = k - (1 << 32) if k & 0x80000000 else k
            if mode == bpf.BPF_MSH:
                if off >= len(pkt):
                    return 0
                x = 4 * (pkt[off] & 0x0F)
            elif off == bpf.SKF_AD_OFF + bpf.SKF_AD_PKTTYPE:
                a = pkttype
            else:
                if mode == bpf.BPF_IND:
                    off += x
                if off < 0 or off + width > len(pkt):
                    return 0
                a = int.from_bytes(pkt[off:off + width], "big")
        elif cls == bpf.BPF_ALU:
            assert code & 0xF0 == bpf.BPF_AND
            a &= k
        elif cls == bpf.BPF_JMP:
            op = code & 0xF0
            cond = {bpf.BPF_JEQ: a == k, bpf.BPF_JGT: a > k, bpf.BPF_JGE: a >= k,
                    bpf.BPF_JSET: bool(a & k)}[op]
            pc += jt if cond else jf
        elif cls == bpf.BPF_RET:
            return k
        pc += 1
    raise AssertionError("ran too long")


def tcp(flags: int, *, options: bytes = b"", frag: int = ipv4.FLAG_DF,
        dst_mac: bytes = MAC) -> bytes:
    seg = TcpSegment(40000, 80, 1, 0, flags, 64240, 0, TcpOptions(mss=1460))
    packet = ipv4.Ipv4Packet(PEER, US, 6, seg.encode(PEER, US), options=options,
                             flags_fragment=frag).encode()
    return eth.encode_frame(dst_mac, PEER_MAC, eth.ETHERTYPE_IPV4, packet)


SYN_ONLY = bpf.split_tcp_syn(MAC, syn_only=True)
OTHERS = bpf.split_tcp_syn(MAC, syn_only=False)


@pytest.mark.parametrize("frame", [
    tcp(SYN), tcp(SYN | PSH), tcp(SYN, options=b"\x94\x04\x00\x00"),
    tcp(SYN, dst_mac=eth.BROADCAST),
])
def test_pure_syns_go_to_the_syn_channel(frame: bytes) -> None:
    assert run(SYN_ONLY, frame) == bpf.ACCEPT_ALL
    assert run(OTHERS, frame) == 0


@pytest.mark.parametrize("frame", [
    tcp(SYN | ACK), tcp(ACK), tcp(RST), tcp(SYN | RST), tcp(SYN | FIN), tcp(FIN | ACK),
    tcp(ACK | PSH), tcp(SYN, frag=0x0010),  # a later fragment: no TCP header to read
    eth.encode_frame(eth.BROADCAST, PEER_MAC, eth.ETHERTYPE_ARP,
                     warp.request(PEER_MAC, PEER, US).encode()),
    eth.encode_frame(MAC, PEER_MAC, eth.ETHERTYPE_IPV4,
                     ipv4.Ipv4Packet(PEER, US, 17, b"\x00" * 12).encode()),
])
def test_everything_else_goes_to_the_main_device(frame: bytes) -> None:
    assert run(OTHERS, frame) == bpf.ACCEPT_ALL
    assert run(SYN_ONLY, frame) == 0


@pytest.mark.parametrize("frame", [
    tcp(SYN, dst_mac=bytes.fromhex("02aabbccddef")),
    tcp(ACK, dst_mac=bytes.fromhex("0200000000ff")),
])
def test_frames_for_other_macs_reach_neither(frame: bytes) -> None:
    assert run(SYN_ONLY, frame) == 0 and run(OTHERS, frame) == 0


def test_outgoing_frames_reach_neither() -> None:
    for prog in (SYN_ONLY, OTHERS):
        for frame in (tcp(SYN), tcp(ACK)):
            assert run(prog, frame, bpf.PACKET_OUTGOING) == 0


def test_truncated_frames_are_dropped_by_the_syn_check() -> None:
    frame = tcp(SYN)
    assert run(SYN_ONLY, frame[:40]) == 0  # the flags byte is past the end
