"""What to do with a segment that reaches no connection, or a listener
(RFC 9293 3.10.7.1 and 3.10.7.2, with Linux's choices).

The net layer owns sockets and listeners; these pure functions own the rules.
"""

from __future__ import annotations

from typing import Literal

from ustack.wire.tcp import ACK, FIN, RST, SYN, TcpSegment

_NO_OPTIONS_SEGMENT_WINDOW = 0


def reply_to_unmatched(seg: TcpSegment) -> TcpSegment | None:
    """The reset for a segment with no connection (RFC 9293 3.10.7.1, CLOSED).

    * RST: nothing (never answer a reset).
    * ACK set: ``<SEQ=SEG.ACK><CTL=RST>``.
    * otherwise: ``<SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>`` where SYN, FIN
      and every payload byte count in SEG.LEN.

    Ports are swapped; window 0, no options (as Linux's ``tcp_v4_send_reset``).
    """
    flags = seg.flags
    if flags & RST:
        return None
    if flags & ACK:
        return TcpSegment(seg.dst_port, seg.src_port, seg.ack, 0, RST, 0)
    seg_len = len(seg.payload) + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)
    return TcpSegment(seg.dst_port, seg.src_port, 0, (seg.seq + seg_len) & 0xFFFFFFFF,
                      RST | ACK, 0)


def listener_action(seg: TcpSegment) -> Literal["syn"] | TcpSegment | None:
    """A listener's reaction (RFC 9293 3.10.7.2 LISTEN, as Linux
    ``tcp_rcv_state_process`` case TCP_LISTEN):

    * RST (alone or with anything): drop -> ``None``.
    * ACK (with or without SYN): ``<SEQ=SEG.ACK><CTL=RST>``.
    * SYN with FIN: drop (Linux; the RFC would process the SYN).
    * SYN: ``"syn"``, call :meth:`TcpConnection.accept`.
    * anything else (bare FIN, no flags): drop.
    """
    flags = seg.flags
    if flags & RST:
        return None
    if flags & ACK:
        return TcpSegment(seg.dst_port, seg.src_port, seg.ack, 0, RST, 0)
    if flags & SYN:
        if flags & FIN:
            return None
        return "syn"
    return None
