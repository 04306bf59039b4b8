"""Classic BPF (the ``SO_ATTACH_FILTER`` dialect) for the AF_PACKET device.

DESIGN.md trap 6: the kernel, not Python, throws away frames that are not
ours.  :func:`ethernet_filter` builds the program; :class:`Insn` and the
helpers below are a minimal assembler (opcodes from linux/filter.h).
"""

from __future__ import annotations

import ctypes
import socket
import struct
from typing import Final, NamedTuple

# instruction classes, sizes, modes, ops, sources (linux/bpf_common.h)
BPF_LD, BPF_LDX, BPF_ST, BPF_STX, BPF_ALU, BPF_JMP, BPF_RET, BPF_MISC = range(8)
BPF_W, BPF_H, BPF_B = 0x00, 0x08, 0x10
BPF_IMM, BPF_ABS, BPF_IND, BPF_MEM, BPF_LEN, BPF_MSH = 0x00, 0x20, 0x40, 0x60, 0x80, 0xA0
BPF_JA, BPF_JEQ, BPF_JGT, BPF_JGE, BPF_JSET = 0x00, 0x10, 0x20, 0x30, 0x40
BPF_K, BPF_X = 0x00, 0x08
BPF_A: Final = 0x10

#: ancillary loads: ``ld [SKF_AD_OFF + SKF_AD_PKTTYPE]`` reads skb->pkt_type
SKF_AD_OFF: Final = -0x1000
SKF_AD_PROTOCOL: Final = 0
SKF_AD_PKTTYPE: Final = 4

PACKET_HOST, PACKET_BROADCAST, PACKET_MULTICAST, PACKET_OTHERHOST, PACKET_OUTGOING = range(5)

ETH_P_IP: Final = 0x0800
ETH_P_ARP: Final = 0x0806

SO_ATTACH_FILTER: Final = 26
SO_DETACH_FILTER: Final = 27

#: bytes of a frame to keep when the filter accepts it (all of any GSO frame)
ACCEPT_ALL: Final = 0x40000


class Insn(NamedTuple):
    """One ``struct sock_filter``: opcode, jump-if-true, jump-if-false, constant."""

    code: int
    jt: int
    jf: int
    k: int


def ld_abs(size: int, offset: int) -> Insn:
    """``A = packet[offset]`` of ``size`` (BPF_W, BPF_H or BPF_B), big-endian."""
    return Insn(BPF_LD | size | BPF_ABS, 0, 0, offset & 0xFFFFFFFF)


def ld_pkttype() -> Insn:
    """``A = skb->pkt_type`` (PACKET_HOST, ..., PACKET_OUTGOING)."""
    return ld_abs(BPF_W, SKF_AD_OFF + SKF_AD_PKTTYPE)


def jeq(k: int, jt: int, jf: int) -> Insn:
    """``pc += 1 + (jt if A == k else jf)``."""
    return Insn(BPF_JMP | BPF_JEQ | BPF_K, jt, jf, k & 0xFFFFFFFF)


def ret(k: int) -> Insn:
    """Accept ``k`` bytes of the packet (0 = drop)."""
    return Insn(BPF_RET | BPF_K, 0, 0, k)


def ethernet_filter(mac: bytes, ethertypes: tuple[int, ...] = (ETH_P_IP, ETH_P_ARP)) -> list[Insn]:
    """Accept incoming frames of ``ethertypes`` to ``mac`` or broadcast; drop the rest.

    Frames we sent ourselves (``PACKET_OUTGOING``) are dropped too, so a
    broadcast we transmit never comes back to Python.
    """
    if len(mac) != 6:
        raise ValueError(f"MAC must be 6 bytes, got {len(mac)}")
    if not ethertypes:
        raise ValueError("at least one ethertype")
    mac_hi = int.from_bytes(mac[:2], "big")
    mac_lo = int.from_bytes(mac[2:], "big")
    n = len(ethertypes)
    prog: list[Insn] = [ld_pkttype()]
    # layout after the ethertype checks (indices relative to the end of each jump):
    #   L_mac:   ld [2]; jeq mac_lo ? L_hi : L_bc
    #   L_hi:    ldh [0]; jeq mac_hi ? accept : drop
    #   L_bc:    jeq 0xffffffff ? next : drop ; ldh [0]; jeq 0xffff ? accept : drop
    #   accept:  ret ACCEPT_ALL
    #   drop:    ret 0
    tail_len = 9  # instructions from L_mac up to and including drop
    drop_from_tail_start = tail_len - 1
    # after ld_pkttype: jump to drop if outgoing
    prog.append(jeq(PACKET_OUTGOING, 1 + n + drop_from_tail_start, 0))
    prog.append(ld_abs(BPF_H, 12))
    for i, ethertype in enumerate(ethertypes):
        remaining = n - 1 - i  # ethertype checks after this one
        last = remaining == 0
        prog.append(jeq(ethertype, remaining, 0 if not last else drop_from_tail_start))
    prog += [
        ld_abs(BPF_W, 2),  # L_mac
        jeq(mac_lo, 0, 2),
        ld_abs(BPF_H, 0),  # L_hi
        jeq(mac_hi, 3, 4),
        jeq(0xFFFFFFFF, 0, 3),  # L_bc (A still holds bytes 2..5)
        ld_abs(BPF_H, 0),
        jeq(0xFFFF, 0, 1),
        ret(ACCEPT_ALL),  # accept
        ret(0),  # drop
    ]
    assert len(prog) == 3 + n + tail_len
    return prog


BPF_AND: Final = 0x50
#: TCP flags that make a segment a pure SYN when only SYN of them is set
_SYN_MASK: Final = 0x17  # FIN | SYN | RST | ACK
_SYN: Final = 0x02


def split_tcp_syn(mac: bytes, *, syn_only: bool) -> list[Insn]:
    """:func:`ethernet_filter` for one of two sockets that split a stack's
    traffic: ``syn_only`` accepts only pure TCP SYNs (no ACK, RST or FIN;
    unfragmented IPv4), the other socket everything else.  A SYN flood then
    fills only the SYN socket's queue: established traffic and handshake
    ACKs keep their own (issue 13, SYN flood)."""
    tail = ethernet_filter(mac)
    # prefix: "is this an unfragmented IPv4 TCP segment with only SYN set?"
    #   0 ldh [12]; 1 jeq IPv4; 2 ldb [23]; 3 jeq TCP; 4 ldh [20]; 5 jset 0x1fff
    #   6 ldxb 4*([14]&0xf); 7 ldb [x+27]; 8 and 0x17; 9 jeq SYN
    # then the ethernet filter (its jumps stay inside it), then "drop"
    n_prefix = 10
    drop = n_prefix + len(tail)  # index of the final ret 0

    def to(target: int, at: int) -> int:  # a relative jump from instruction ``at``
        return target - at - 1

    other, syn = (drop, n_prefix) if syn_only else (n_prefix, drop)
    prog = [
        ld_abs(BPF_H, 12),
        jeq(ETH_P_IP, 0, to(other, 1)),
        ld_abs(BPF_B, 23),
        jeq(socket.IPPROTO_TCP, 0, to(other, 3)),
        ld_abs(BPF_H, 20),
        Insn(BPF_JMP | BPF_JSET | BPF_K, to(other, 5), 0, 0x1FFF),
        Insn(BPF_LDX | BPF_B | BPF_MSH, 0, 0, 14),
        Insn(BPF_LD | BPF_B | BPF_IND, 0, 0, 14 + 13),
        Insn(BPF_ALU | BPF_AND | BPF_K, 0, 0, _SYN_MASK),
        jeq(_SYN, to(syn, 9), to(other, 9)),
    ]
    assert len(prog) == n_prefix
    return prog + tail + [ret(0)]


def pack(prog: list[Insn]) -> bytes:
    """The program as an array of ``struct sock_filter``."""
    return b"".join(struct.pack("=HBBI", *insn) for insn in prog)


def attach(sock: socket.socket, prog: list[Insn]) -> None:
    """``setsockopt(SO_ATTACH_FILTER)``: the kernel copies the program."""
    code = bytearray(pack(prog))
    # the sock_fprog's pointer is the address of the bytearray's own buffer
    # (a ctypes view of it).  Not ctypes.create_string_buffer: compiled by
    # mypyc, that buffer's memory was already reused when the kernel read it
    # (EINVAL on every open); a bytearray's storage lives as long as it does
    view = (ctypes.c_char * len(code)).from_buffer(code)
    fprog = struct.pack("@HP", len(prog), ctypes.addressof(view))
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
    finally:
        del view  # (releases the bytearray's export; ``code`` outlives the call)
        code.clear()
