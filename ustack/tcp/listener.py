"""What to do with a segment that reaches no connection, or a listener
(RFC 9293 3.10.7.1 and 3.10.7.2, with Linux's choices).

The net layer owns sockets and listeners; these pure functions own the rules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, Literal

from ustack.tcp.config import TcpConfig
from ustack.tcp.options import negotiate, synack_options
from ustack.wire.tcp import ACK, FIN, RST, SYN, TcpOptions, TcpSegment

if TYPE_CHECKING:
    from ustack.tcp.connection import TcpConnection
    from ustack.tcp.mib import TcpMib
    from ustack.tcp.trace import TraceHook

_NO_OPTIONS_SEGMENT_WINDOW: Final = 0


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


# --------------------------------------------------------------- request socks

MASK: Final = 0xFFFFFFFF


class RequestSock:
    """A half-open passive connection (Linux ``struct tcp_request_sock``):
    just what the SYN offered and what our SYN-ACK said, about 200 bytes
    instead of a whole connection.  The full :class:`TcpConnection` is built
    by :func:`promote` when the handshake's ACK arrives (RFC 9293 3.10.7.4
    SYN-RECEIVED), or never."""

    __slots__ = ("local_port", "remote_addr", "remote_port", "irs", "iss", "mss", "wscale",
                 "sack", "ts_recent", "created", "retries", "deadline", "removed")

    def __init__(self, syn: TcpSegment, remote_addr: bytes, iss: int, now: float) -> None:
        opts = syn.options
        self.local_port = syn.dst_port
        self.remote_addr = remote_addr
        self.remote_port = syn.src_port
        self.irs = syn.seq
        self.iss = iss & MASK
        self.mss = opts.mss
        self.wscale = opts.wscale
        self.sack = opts.sack_permitted
        self.ts_recent = opts.timestamp[0] if opts.timestamp is not None else None
        self.created = now
        self.retries = 0
        self.deadline = 0.0
        self.removed = False

    @property
    def key(self) -> tuple[int, bytes, int]:
        return (self.local_port, self.remote_addr, self.remote_port)

    def syn(self) -> TcpSegment:
        """The SYN as the connection needs to see it (options only)."""
        ts = (self.ts_recent, 0) if self.ts_recent is not None else None
        return TcpSegment(self.remote_port, self.local_port, self.irs, 0, SYN, 0, 0,
                          TcpOptions(mss=self.mss, wscale=self.wscale,
                                     sack_permitted=self.sack, timestamp=ts))

    def in_window(self, seq: int, config: TcpConfig) -> bool:
        """SEG.SEQ inside [RCV.NXT, RCV.NXT + the SYN-ACK's window)."""
        return (seq - self.irs - 1) & MASK < syn_window(config)


def syn_window(config: TcpConfig) -> int:
    """The window of our SYN-ACK: never scaled (RFC 7323 2.2), a multiple of
    the MSS below 64 KiB, as :meth:`TcpConnection.accept` advertises."""
    mss = config.mss
    return min(config.recv_buffer, 65535 // mss * mss if mss else 65535)


def ts_val(iss: int, now: float) -> int:
    """The TSval a connection with initial sequence ``iss`` sends at ``now``
    (its per-connection offset is derived from the ISS, RFC 7323 5.4)."""
    return (int(now * 1000) + ((iss * 2654435761) & MASK)) & MASK


def synack(config: TcpConfig, syn_options: TcpOptions, local_port: int, remote_port: int,
           iss: int, irs: int, tsval: int) -> TcpSegment:
    """Our SYN-ACK to a SYN with ``syn_options``: it echoes only what the SYN
    offered (RFC 9293 3.10.7.2, RFC 7323, RFC 2018), window unscaled."""
    n = negotiate(config, syn_options)
    ts = syn_options.timestamp
    opts = synack_options(config, n, tsval, ts[0] if ts is not None else 0)
    return TcpSegment(local_port, remote_port, iss & MASK, (irs + 1) & MASK, SYN | ACK,
                      syn_window(config), 0, opts)


def request_synack(config: TcpConfig, req: RequestSock, now: float) -> TcpSegment:
    """The (re)transmitted SYN-ACK of a request sock, TSval of ``now``."""
    return synack(config, req.syn().options, req.local_port, req.remote_port, req.iss,
                  req.irs, ts_val(req.iss, now))


def cookie_syn_options(syn: TcpSegment, mss: int, timestamps: bool) -> TcpOptions:
    """The options a cookie SYN-ACK answers: the cookie's MSS; window scale and
    SACK only when timestamps carry them (Linux clears them otherwise)."""
    opts = syn.options
    if timestamps and opts.timestamp is not None:
        return TcpOptions(mss=mss, wscale=opts.wscale, sack_permitted=opts.sack_permitted,
                          timestamp=opts.timestamp)
    return TcpOptions(mss=mss)


def promote(conn_class: type[TcpConnection] | Any, config: TcpConfig, syn: TcpSegment,
            iss: int, created: float, ack: TcpSegment, now: float, *,
            mib: TcpMib | None = None, trace: TraceHook | None = None,
            shared_config: bool = False) -> TcpConnection | Any:
    """The connection for a completed handshake: what ``accept`` would have
    built at ``created`` (its SYN-ACK already sent, so discarded), then the
    ACK (RFC 9293 3.10.7.4: SYN-RECEIVED -> ESTABLISHED; data or FIN on
    the ACK are processed as usual).  ``shared_config``: see TcpConnection.
    (``| Any``: the table's unit tests pass a fake class; compiled code would
    refuse it at the call.)"""
    if shared_config:
        conn = conn_class.accept(syn, iss, created, config, mib=mib, trace=trace,
                                 shared_config=True)
    else:
        conn = conn_class.accept(syn, iss, created, config, mib=mib, trace=trace)
    conn.segments_to_send(created)
    conn.receive(ack, now)
    return conn
