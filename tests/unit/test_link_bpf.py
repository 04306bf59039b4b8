"""The classic BPF program of the AF_PACKET device, run by a tiny interpreter."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ustack.link import bpf

MAC = bytes.fromhex("02aabbccddee")
OTHER = bytes.fromhex("02aabbccddef")
BCAST = b"\xff" * 6
PEER = bytes.fromhex("0211223344ff")


def run(prog: list[bpf.Insn], pkt: bytes, pkttype: int = bpf.PACKET_HOST) -> int:
    """Interpret the subset of classic BPF we emit (plus a little more).

    Returns the accepted length (0 = drop); an out-of-bounds load drops, as in
    the kernel.
    """
    a = 0
    pc = 0
    steps = 0
    while True:
        steps += 1
        assert steps < 10_000 and 0 <= pc < len(prog), "ran off the program"
        code, jt, jf, k = prog[pc]
        cls = code & 0x07
        if cls == bpf.BPF_LD:
            mode, size = code & 0xE0, code & 0x18
            assert mode == bpf.BPF_ABS, f"unsupported mode {mode:#x}"
            off = k - (1 << 32) if k & 0x80000000 else k
            if off == bpf.SKF_AD_OFF + bpf.SKF_AD_PKTTYPE:
                a = pkttype
            else:
                width = {bpf.BPF_W: 4, bpf.BPF_H: 2, bpf.BPF_B: 1}[size]
                assert off >= 0, f"unsupported ancillary load {off}"
                if off + width > len(pkt):
                    return 0
                a = int.from_bytes(pkt[off : off + width], "big")
        elif cls == bpf.BPF_JMP:
            op = code & 0xF0
            assert code & 0x08 == bpf.BPF_K
            if op == bpf.BPF_JA:
                pc += k
            else:
                cond = {bpf.BPF_JEQ: a == k, bpf.BPF_JGT: a > k, bpf.BPF_JGE: a >= k,
                        bpf.BPF_JSET: bool(a & k)}[op]
                pc += jt if cond else jf
        elif cls == bpf.BPF_RET:
            return k if code & 0x18 == bpf.BPF_K else a
        else:
            raise AssertionError(f"unsupported class {cls}")
        pc += 1


def frame(dst: bytes, ethertype: int, payload: bytes = b"\x00" * 46) -> bytes:
    return dst + PEER + struct.pack("!H", ethertype) + payload


PROG = bpf.ethernet_filter(MAC)


@pytest.mark.parametrize("ethertype", [0x0800, 0x0806])
@pytest.mark.parametrize("dst", [MAC, BCAST])
def test_accepts_ipv4_and_arp_to_us_or_broadcast(dst: bytes, ethertype: int) -> None:
    assert run(PROG, frame(dst, ethertype)) == bpf.ACCEPT_ALL
    assert run(PROG, frame(dst, ethertype), bpf.PACKET_BROADCAST) == bpf.ACCEPT_ALL


@pytest.mark.parametrize("ethertype", [0x86DD, 0x8100, 0x88CC, 0x0000, 0x0801, 0x0807])
def test_drops_other_ethertypes(ethertype: int) -> None:
    assert run(PROG, frame(MAC, ethertype)) == 0
    assert run(PROG, frame(BCAST, ethertype)) == 0


@pytest.mark.parametrize(
    "dst",
    [OTHER, bytes.fromhex("03aabbccddee"), bytes.fromhex("02aabbccdd00"),
     bytes.fromhex("ffffffffff00"), bytes.fromhex("00ffffffffff"), bytes.fromhex("ffffccddeeff"),
     MAC[:2] + b"\xff" * 4, b"\xff\xff" + MAC[2:], bytes.fromhex("01005e000001")],
)
def test_drops_foreign_and_half_matching_macs(dst: bytes) -> None:
    assert run(PROG, frame(dst, 0x0800)) == 0


def test_drops_our_own_outgoing_frames() -> None:
    assert run(PROG, frame(BCAST, 0x0806), bpf.PACKET_OUTGOING) == 0
    assert run(PROG, frame(MAC, 0x0800), bpf.PACKET_OUTGOING) == 0


def test_short_frame_is_dropped() -> None:
    assert run(PROG, MAC + PEER) == 0
    assert run(PROG, b"") == 0


@given(dst=st.binary(min_size=6, max_size=6), ethertype=st.integers(0, 0xFFFF),
       pkttype=st.integers(0, 4), rest=st.binary(max_size=64))
def test_matches_reference_predicate(dst: bytes, ethertype: int, pkttype: int,
                                     rest: bytes) -> None:
    pkt = dst + PEER + struct.pack("!H", ethertype) + rest
    expected = (pkttype != bpf.PACKET_OUTGOING and ethertype in (0x0800, 0x0806)
                and dst in (MAC, BCAST))
    assert run(PROG, pkt, pkttype) == (bpf.ACCEPT_ALL if expected else 0)


@pytest.mark.parametrize("types", [(0x0800,), (0x0800, 0x0806, 0x86DD)])
def test_other_ethertype_lists(types: tuple[int, ...]) -> None:
    prog = bpf.ethernet_filter(MAC, types)
    for ethertype in (0x0800, 0x0806, 0x86DD, 0x1234):
        assert (run(prog, frame(MAC, ethertype)) != 0) == (ethertype in types)


def test_pack_layout() -> None:
    raw = bpf.pack([bpf.ret(0x40000), bpf.jeq(0x0806, 1, 2)])
    assert raw == struct.pack("=HBBI", 0x06, 0, 0, 0x40000) + struct.pack(
        "=HBBI", 0x15, 1, 2, 0x0806)
    assert len(bpf.pack(PROG)) == 8 * len(PROG)


def test_bad_mac() -> None:
    with pytest.raises(ValueError):
        bpf.ethernet_filter(b"\x00" * 5)
