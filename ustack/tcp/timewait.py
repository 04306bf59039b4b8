"""TIME-WAIT as a compact record (RFC 9293 3.10.7.4, Linux ``inet_timewait_sock``).

A connection that reached TIME-WAIT with nobody holding it only has to
answer segments for 2MSL; like Linux, which swaps the full socket for a
``tcp_timewait_sock`` (``tcp_time_wait``), the table swaps the
:class:`~ustack.tcp.connection.TcpConnection` for a :class:`TimeWait` that
keeps what ``tcp_timewait_state_process`` reads: the sequence numbers, the
window it announces, TS.Recent and the TSval offset, the 2MSL deadline and
the out-of-window ACK rate limit.  It answers every segment as the full
connection does in TIME-WAIT (``TcpConnection._receive_time_wait``; the
differential test tests/unit/test_tcp_timewait.py drives both):

* a retransmitted FIN: ACK it again and restart the 2MSL wait (3.10.7.4 "eighth");
* a RST in the window: close (Linux kills TIME-WAIT; RFC 1337 would not);
* a SYN with a higher sequence number or a newer timestamp: close and hand the
  SYN to a listener (:attr:`reopen_syn`, RFC 6191, Linux TCP_TW_SYN);
  another SYN, a segment with text or an old timestamp: the TIME-WAIT ACK;
* an out-of-window segment: a rate-limited ACK (Linux tcp_oow_rate_limited);
* 2MSL expiry: CLOSED (TcpExtTW).

What ``ss`` shows of it is what Linux's ``inet_twsk_diag_fill`` has: the
state, the addresses and the ``timewait`` timer (no tcp_info beyond the MSS
and window kept for the listing).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from ustack.tcp import events as ev
from ustack.tcp.info import TcpInfo
from ustack.tcp.listener import reply_to_unmatched
from ustack.tcp.state import TcpState
from ustack.wire.seq import seq_gt, seq_lt, seq_sub
from ustack.wire.tcp import ACK, FIN, RST, SYN, TcpOptions, TcpSegment

if TYPE_CHECKING:
    from ustack.tcp.config import TcpConfig
    from ustack.tcp.connection import TcpConnection
    from ustack.tcp.mib import TcpMib

MASK: Final = 0xFFFFFFFF
_EMPTY_OPTIONS: Final = TcpOptions()
_TIME_WAIT: Final = TcpState.TIME_WAIT
_CLOSED: Final = TcpState.CLOSED
_NO_SEGMENTS: Final[list[TcpSegment]] = []


def can_compact(conn: TcpConnection) -> bool:
    """``conn`` may become a :class:`TimeWait` now: in TIME-WAIT with nothing
    pending (no event, segment, ACK or SACK/D-SACK block due, no timer but
    2MSL, no trace hook: the record traces nothing)."""
    if conn.state is not _TIME_WAIT or conn.trace is not None:
        return False
    if conn._events or conn._out or conn.reopen_syn is not None:
        return False
    rcv = conn.rcv
    if rcv.ack_now or rcv.has_blocks() or rcv.buf:
        return False
    timers = conn.timers
    if timers.timewait is None or timers.earliest() != timers.timewait:
        return False
    rec = conn.rec
    return rec is None or rec.timer() is None


class TimeWait:
    """One TIME-WAIT connection, as little as it needs (see the module doc)."""

    __slots__ = (
        "state", "local_port", "remote_port", "snd_nxt", "rcv_nxt", "rcv_adv", "_adv_after",
        "_win", "ts_ok", "_ts_recent", "_ts_offset", "deadline", "_last_oow", "_ack_now",
        "config", "mib", "reopen_syn", "_closed", "_out", "send_mss", "_cwnd", "_wscales",
        "segs_in", "segs_out", "last_recv", "last_send",
    )

    #: what the table and diag read of a connection
    trace = None
    error: int | None = None
    eof_received = True
    #: (diag.snapshot reads ``len(conn._sndbuf)``)
    _sndbuf = b""

    def __init__(self, conn: TcpConnection) -> None:
        """The record of ``conn`` (:func:`can_compact` must hold)."""
        rcv = conn.rcv
        self.state = _TIME_WAIT
        self.local_port = conn.local_port
        self.remote_port = conn.remote_port
        self.snd_nxt = conn.snd_nxt
        self.rcv_nxt = rcv.nxt
        #: RCV.ADV now (the RST window), and after the first ACK we send:
        #: the window field is computed once (nothing changes the receive
        #: buffer any more, so Receiver.window gives the same from then on)
        self.rcv_adv = rcv.adv
        self._win = rcv.window()
        self._adv_after = rcv.adv
        rcv.adv = self.rcv_adv
        self.ts_ok = conn.ts_ok
        self._ts_recent = conn._ts_recent
        self._ts_offset = conn._ts_offset
        deadline = conn.timers.timewait
        assert deadline is not None
        self.deadline: float | None = deadline
        self._last_oow = conn._last_oow
        self._ack_now = False
        self.config: TcpConfig = conn.config
        self.mib: TcpMib = conn.mib
        self.reopen_syn: TcpSegment | None = None
        self._closed = False
        self._out: list[TcpSegment] = _NO_SEGMENTS
        mss = conn.send_mss
        self.send_mss = mss
        self._cwnd = max(conn.cc.cwnd // mss, 1) if mss else 0
        self._wscales = (conn.snd_wscale, conn.rcv_wscale, conn.wscale_ok, conn.sack_ok)
        self.segs_in = conn.segs_in
        self.segs_out = conn.segs_out
        self.last_recv = conn.last_recv
        self.last_send = conn.last_send

    # ------------------------------------------------------------ input
    def receive(self, seg: TcpSegment, now: float, arrival: float | None = None,
                first_arrival: float | None = None) -> None:
        """SEGMENT ARRIVES in TIME-WAIT (RFC 9293 3.10.7.4, Linux
        tcp_timewait_state_process), as TcpConnection._receive_time_wait."""
        self.segs_in += 1
        self.last_recv = now
        if self.state is _CLOSED:
            rst = reply_to_unmatched(seg)
            if rst is not None:
                if self._out is _NO_SEGMENTS:
                    self._out = []
                self._out.append(rst)
                self.mib["TcpOutRsts"] += 1
            return
        flags = seg.flags
        ts = seg.options.timestamp
        if flags & SYN and not flags & (RST | ACK):
            newer_ts = self.ts_ok and ts is not None and seq_gt(ts[0], self._ts_recent)
            if seq_gt(seg.seq, self.rcv_nxt) or newer_ts:
                self.reopen_syn = seg  # catalogue 42: a new incarnation
                self._close()
                return
            self._ack_now = True
            return
        if flags & RST:
            off = seq_sub(seg.seq, self.rcv_nxt)
            if off == 0 or 0 <= off < max(seq_sub(self.rcv_adv, self.rcv_nxt), 1):
                self._close()
            return
        if flags & FIN and ((seg.seq + len(seg.payload) + 1) & MASK) == self.rcv_nxt:
            self._ack_now = True  # a retransmitted FIN: ACK, restart 2MSL
            self.deadline = now + self.config.time_wait
            return
        if (self.ts_ok and ts is not None and seq_lt(ts[0], self._ts_recent)) or seg.payload \
                or flags & SYN:
            self._ack_now = True
            return
        if seg.seq != self.rcv_nxt and now - self._last_oow >= self.config.challenge_ack_interval:
            self._last_oow = now
            self._ack_now = True

    def coalescible_ack(self, seg: TcpSegment) -> bool:
        return False

    def ack_supersedes(self, older: TcpSegment, newer: TcpSegment) -> bool:
        return False

    def absorb_ack(self, older: TcpSegment) -> None:
        self.segs_in += 1

    def icmp_error(self, errno: int, quoted_seq: int, now: float, *, mtu: int = 0) -> None:
        """Nothing is in flight (SND.UNA = SND.NXT): no quote can match (RFC 5927 4.1)."""

    def abort(self, now: float) -> None:
        """ABORT in TIME-WAIT: no RST, CLOSED (RFC 9293 3.10.5)."""
        if self.state is not _CLOSED:
            self._close()

    def handle_timer(self, now: float) -> None:
        at = self.deadline
        if self.state is not _CLOSED and at is not None and now >= at:
            self.mib["TcpExtTW"] += 1
            self._close()

    def _close(self) -> None:
        self.state = _CLOSED
        self.deadline = None
        self._ack_now = False

    # ------------------------------------------------------------ output
    def segments_sent(self, now: float, left: float) -> None:
        """Nothing to restamp: TIME-WAIT sends no data (TcpConnection.segments_sent)."""

    def segments_sent_each(self, now: float, segs: list[TcpSegment], times: list[float]) -> None:
        """Nothing to restamp (TcpConnection.segments_sent_each)."""

    def segments_to_send(self, now: float) -> list[TcpSegment]:
        out = self._out
        if self._ack_now:
            self._ack_now = False
            if self.ts_ok:
                tsval = (int(now * 1000) + self._ts_offset) & MASK
                opts = TcpOptions(timestamp=(tsval, self._ts_recent))
            else:
                opts = _EMPTY_OPTIONS
            self.rcv_adv = self._adv_after
            seg = TcpSegment(self.local_port, self.remote_port, self.snd_nxt, self.rcv_nxt,
                             ACK, self._win, 0, opts)
            out = [seg] if out is _NO_SEGMENTS else [*out, seg]
        elif out is _NO_SEGMENTS:
            return []
        self._out = _NO_SEGMENTS
        self.segs_out += len(out)
        self.last_send = now
        return out

    def next_event(self) -> ev.Event | None:
        if self.state is _CLOSED and not self._closed:
            self._closed = True
            return ev.CLOSED
        return None

    def next_deadline(self) -> float | None:
        return self.deadline

    # ------------------------------------------------------------ queries
    def readable(self) -> int:
        return 0

    def info(self, now: float) -> TcpInfo:
        """What ss shows of a TIME-WAIT socket (Linux has no tcp_info for
        one: state, addresses and the timewait timer, here also the MSS,
        window scales and window)."""
        at = self.deadline
        timer = ("timewait", max(at - now, 0.0), 0) if at is not None else None
        snd_ws, rcv_ws, ws_ok, sack_ok = self._wscales
        return TcpInfo(
            state=self.state.ss_name, local_port=self.local_port,
            remote_port=self.remote_port, recv_q=0, send_q=0, snd_una=self.snd_nxt,
            snd_nxt=self.snd_nxt, rcv_nxt=self.rcv_nxt, snd_wnd=0,
            rcv_wnd=max(seq_sub(self.rcv_adv, self.rcv_nxt), 0), snd_wscale=snd_ws,
            rcv_wscale=rcv_ws, mss=self.send_mss, advmss=self.send_mss, rcvmss=self.send_mss,
            srtt=0.0, rttvar=0.0, rto=0.0, min_rtt=0.0, ato=0.0, backoff=0, cwnd=self._cwnd,
            ssthresh=0, ca_name="", bytes_sent=0, bytes_retrans=0, bytes_acked=0,
            bytes_received=0, segs_out=self.segs_out, segs_in=self.segs_in, data_segs_out=0,
            data_segs_in=0, retransmits=0, total_retrans=0, lost=0, sacked=0, dsack_dups=0,
            reordering=0, unacked=0, notsent=0, last_send=max(now - self.last_send, 0.0),
            last_recv=max(now - self.last_recv, 0.0), last_ack=0.0, timer=timer,
            ts_enabled=self.ts_ok, sack_enabled=sack_ok, wscale_enabled=ws_ok,
            shut_rd=True, shut_wr=True, nodelay=False, delivery_rate=0.0)

    def __repr__(self) -> str:
        return (f"<TimeWait {self.local_port}->{self.remote_port} {self.state.ss_name} "
                f"snd_nxt={self.snd_nxt} rcv_nxt={self.rcv_nxt}>")
