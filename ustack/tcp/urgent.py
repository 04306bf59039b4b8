"""Sending urgent data (RFC 9293 3.8.5, RFC 6093) the way Linux does.

``send(data, MSG_OOB)`` queues ``data`` and sets the send urgent pointer
SND.UP to the end of everything queued (Linux tcp_mark_urg: ``snd_up =
write_seq``), so the urgent pointer of a segment points one past the last
urgent byte: the BSD interpretation that RFC 6093 2 documents as what every
stack does (RFC 9293 3.8.5 says "the last byte"; Linux's tcp_stdurg=0).

While SND.UP is ahead of SND.UNA (Linux tcp_urg_mode) every segment whose
sequence number is before SND.UP carries URG and the offset SND.UP - SEG.SEQ
when it fits 16 bits, else 0xFFFF if the segment is within 64 KB of SND.NXT
(Linux __tcp_transmit_skb); that includes retransmissions and pure ACKs sent
before the urgent data goes out.  Urgent mode ends when SND.UNA passes SND.UP
(Linux tcp_clean_rtx_queue).  A GSO super-segment is cut into MSS segments
here, each with its own pointer (the device would copy one header's pointer
to every piece).  RFC 6093 6: new applications should not use urgent data.
"""

from __future__ import annotations

from typing import Final

from ustack.wire.tcp import FIN, PSH, RST, SYN, URG, TcpSegment

MASK: Final = 0xFFFFFFFF


def _before(a: int, b: int) -> bool:
    """a < b in sequence space (RFC 9293 3.4)."""
    return 0 < ((b - a) & MASK) < 0x80000000


def _mark(seg: TcpSegment, snd_up: int, snd_nxt: int) -> TcpSegment:
    seq = seg.seq
    offset = (snd_up - seq) & MASK
    if offset < 0x10000:
        ptr = offset
    elif _before(snd_nxt, (seq + 0xFFFF) & MASK):
        ptr = 0xFFFF
    else:
        return seg
    return TcpSegment(seg.src_port, seg.dst_port, seq, seg.ack, seg.flags | URG, seg.window,
                      ptr, seg.options, seg.payload)


def mark(out: list[TcpSegment], snd_up: int, snd_nxt: int, mss: int) -> list[TcpSegment]:
    """``out`` with URG and the urgent pointer on every segment before
    ``snd_up`` (super-segments before it cut in ``mss`` pieces first)."""
    marked: list[TcpSegment] = []
    for seg in out:
        if seg.flags & (SYN | RST) or not _before(seg.seq, snd_up):
            marked.append(seg)
            continue
        payload = seg.payload
        n = len(payload)
        if n <= mss:
            marked.append(_mark(seg, snd_up, snd_nxt))
            continue
        last = n - mss
        for off in range(0, n, mss):
            flags = seg.flags if off >= last else seg.flags & ~(FIN | PSH)
            piece = TcpSegment(seg.src_port, seg.dst_port, (seg.seq + off) & MASK, seg.ack,
                               flags, seg.window, 0, seg.options, payload[off:off + mss])
            marked.append(_mark(piece, snd_up, snd_nxt) if _before(piece.seq, snd_up)
                          else piece)
    return marked


def active(snd_up: int, snd_una: int) -> bool:
    """Urgent mode: an urgent pointer not yet acknowledged (snd_up >= 0)."""
    return snd_up >= 0 and _before(snd_una, snd_up)
