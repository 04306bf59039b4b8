"""One TCP connection as a sans-I/O state machine (RFC 9293 section 3.10).

Inputs carry ``now`` (seconds, any monotonic origin): :meth:`receive` a
segment, :meth:`handle_timer`, and the application calls :meth:`send`,
:meth:`recv`, :meth:`shutdown`, :meth:`close`, :meth:`abort`.  Outputs are
pulled: :meth:`segments_to_send` (call it after every input; it builds the data
segments and ACKs the input made due), :meth:`next_deadline` (call it after
``segments_to_send``) and :meth:`next_event`.

Reading order: the constructors (active/passive OPEN, 3.10.1), the user calls
(SEND, RECEIVE, CLOSE, ABORT: 3.10.2-3.10.5), segment arrival (3.10.7: SYN-SENT
in :meth:`_receive_syn_sent`, TIME-WAIT in :meth:`_receive_time_wait`, the
other states in :meth:`receive` with ACK processing in :meth:`_process_ack`
and text/FIN in :meth:`_process_data`), timeouts (3.10.8) in
:meth:`handle_timer`, and output in :meth:`segments_to_send`.

Where RFC and Linux differ the default is Linux's; each such place says so.
"""

from __future__ import annotations

import errno as E
from collections import deque
from copy import copy

from ustack.tcp import events as ev
from ustack.tcp.config import TcpConfig
from ustack.tcp.congestion import CongestionController, create
from ustack.tcp.info import TcpInfo
from ustack.tcp.listener import reply_to_unmatched
from ustack.tcp.options import (
    TIMESTAMP_OPTION_LEN,
    Negotiated,
    negotiate,
    syn_options,
    synack_options,
)
from ustack.tcp.reassembly import Reassembly
from ustack.tcp.rtt import RttEstimator
from ustack.tcp.send_buffer import SendBuffer
from ustack.tcp.state import TcpState
from ustack.tcp.timers import DELACK, KEEPALIVE, PERSIST, RETRANSMIT, TIMEWAIT
from ustack.wire.seq import seq_ge, seq_gt, seq_le, seq_lt, seq_sub
from ustack.wire.tcp import ACK, FIN, PSH, RST, SYN, TcpOptions, TcpSegment

MASK = 0xFFFFFFFF
_EMPTY_OPTIONS = TcpOptions()
#: PAWS: TS.Recent older than 24 days is invalid (RFC 7323 5.5)
_PAWS_IDLE = 24 * 24 * 3600.0
#: Linux TCP_TIMEOUT_MIN (2 jiffies): the quick SYN re-send after a bad SYN-ACK
_TIMEOUT_MIN = 0.002

_ESTABLISHED = TcpState.ESTABLISHED
_SYN_SENT = TcpState.SYN_SENT
_SYN_RECEIVED = TcpState.SYN_RECEIVED
_FIN_WAIT_1 = TcpState.FIN_WAIT_1
_FIN_WAIT_2 = TcpState.FIN_WAIT_2
_TIME_WAIT = TcpState.TIME_WAIT
_CLOSED = TcpState.CLOSED
_CLOSE_WAIT = TcpState.CLOSE_WAIT
_LAST_ACK = TcpState.LAST_ACK
_CLOSING = TcpState.CLOSING

#: states in which the send side may still transmit data or a FIN
_SENDING_STATES = frozenset({_ESTABLISHED, _CLOSE_WAIT, _FIN_WAIT_1, _CLOSING, _LAST_ACK})
#: states in which received text is accepted (RFC 9293 3.10.7.4 "seventh")
_RECEIVING_STATES = frozenset({_ESTABLISHED, _FIN_WAIT_1, _FIN_WAIT_2})


class TcpConnection:
    """A TCP control block plus its state machine.  Build with :meth:`connect`
    or :meth:`accept`."""

    __slots__ = (
        "config", "state", "local_port", "remote_port",
        # send sequence space (RFC 9293 3.3.1)
        "iss", "snd_una", "snd_nxt", "_snd_ptr", "snd_wnd", "snd_wl1", "snd_wl2", "max_snd_wnd",
        # receive sequence space
        "irs", "rcv_nxt", "rcv_adv", "_rcv_acked", "_rcv_pos",
        # negotiated options
        "snd_wscale", "rcv_wscale", "wscale_ok", "sack_ok", "ts_ok", "send_mss", "advmss",
        "rcv_mss", "_seg_max", "_syn_window",
        # buffers
        "_sndbuf", "_rcvbuf", "_ooo", "_sacked",
        # close bookkeeping
        "_fin_queued", "_fin_seq", "_fin_acked", "_app_closed", "eof_received", "_rst_on_data",
        # loss recovery, RTT, congestion
        "rtt", "cc", "_rtt_seq", "_rtt_time", "_dupacks", "_recover", "_retransmits",
        "_syn_retransmitted", "_passive",
        # timers
        "_rto_at", "_persist_at", "_persist_backoff", "_delack_at", "_ka_at", "_ka_probes",
        "_close_at", "_force_send", "_snd_sml", "_quickacks", "_rtx_high", "_last_data_send",
        # timestamps
        "_ts_recent", "_ts_recent_stamp", "_ts_offset", "_ts_cache",
        # output and events
        "_out", "_ack_pending", "_dsack", "_events", "_data_event_sent", "_send_blocked",
        "_last_oow", "_closed_emitted", "error", "reopen_syn", "soft_error",
        # counters (tcp_info)
        "bytes_sent", "bytes_retrans", "bytes_acked", "bytes_received", "segs_out", "segs_in",
        "data_segs_out", "data_segs_in", "total_retrans", "dsack_dups", "last_send",
        "last_recv", "last_ack", "_created", "_now",
    )

    # ------------------------------------------------------------------ OPEN
    def __init__(self, local_port: int, remote_port: int, iss: int, now: float,
                 config: TcpConfig | None = None) -> None:
        """Internal: use :meth:`connect` or :meth:`accept`."""
        # a private copy: per-connection options (set_nodelay, set_keepalive)
        # must not leak into other connections sharing the same config
        cfg = copy(config) if config is not None else TcpConfig()
        self.config = cfg
        self.state = _CLOSED
        self.local_port = local_port
        self.remote_port = remote_port
        iss &= MASK
        self.iss = iss
        self.snd_una = iss
        self._snd_ptr = iss
        self.snd_nxt = iss
        self.snd_wnd = 0
        self.snd_wl1 = 0
        self.snd_wl2 = 0
        self.max_snd_wnd = 0
        self.irs = 0
        self.rcv_nxt = 0
        self.rcv_adv = 0
        self._rcv_acked = 0
        self._rcv_pos = 0
        self.snd_wscale = 0
        self.rcv_wscale = 0
        self.wscale_ok = False
        self.sack_ok = False
        self.ts_ok = False
        self.advmss = cfg.mss
        self.send_mss = 536
        self.rcv_mss = min(cfg.mss, 536)
        self._seg_max = 536
        # SYN windows are never scaled (RFC 7323 2.2); Linux offers 64240
        self._syn_window = min(cfg.recv_buffer, 65535 // cfg.mss * cfg.mss if cfg.mss else 65535)
        self._sndbuf = SendBuffer(cfg.send_buffer)
        self._rcvbuf = bytearray()
        self._ooo = Reassembly()
        self._sacked: list[tuple[int, int]] = []
        self._fin_queued = False
        self._fin_seq = 0
        self._fin_acked = False
        self._app_closed = False
        self.eof_received = False
        self._rst_on_data = False
        self.rtt = RttEstimator(cfg.rto_initial, cfg.rto_min, cfg.rto_max, cfg.rto_linux)
        self.cc: CongestionController = create(cfg.congestion, 536, cfg.initial_cwnd)
        self._rtt_seq: int | None = None
        self._rtt_time = 0.0
        self._dupacks = 0
        self._recover = iss
        self._retransmits = 0
        self._syn_retransmitted = False
        self._passive = False
        self._rto_at: float | None = None
        self._persist_at: float | None = None
        self._persist_backoff = 0
        self._delack_at: float | None = None
        self._ka_at: float | None = None
        self._ka_probes = 0
        self._close_at: float | None = None
        self._force_send = False
        #: end of the last small segment sent (Minshall's Nagle)
        self._snd_sml = iss
        #: highest sequence retransmitted in the current loss episode
        self._rtx_high = iss
        self._last_data_send = now
        #: ACKs still to send at once before delayed ACKs start (Linux quickack)
        self._quickacks = cfg.quickack_segments
        self._ts_recent = 0
        self._ts_recent_stamp = 0.0
        # a per-connection TSval offset (Linux randomises it per connection)
        self._ts_offset = (iss * 2654435761) & MASK
        self._ts_cache: tuple[int, int, TcpOptions] = (-1, -1, _EMPTY_OPTIONS)
        self._out: list[TcpSegment] = []
        self._ack_pending = False
        self._dsack: tuple[int, int] | None = None
        self._events: deque[ev.Event] = deque()
        self._data_event_sent = False
        self._send_blocked = False
        self._last_oow = -1e18
        self._closed_emitted = False
        #: errno of the failure that closed the connection, if any
        self.error: int | None = None
        #: set when a SYN legitimately ended TIME-WAIT (RFC 6191 / Linux
        #: tcp_timewait_state_process): the table should hand it to a listener
        self.reopen_syn: TcpSegment | None = None
        #: last ICMP soft error (RFC 1122 4.2.3.9), reported but not fatal
        self.soft_error: int | None = None
        self.bytes_sent = 0
        self.bytes_retrans = 0
        self.bytes_acked = 0
        self.bytes_received = 0
        self.segs_out = 0
        self.segs_in = 0
        self.data_segs_out = 0
        self.data_segs_in = 0
        self.total_retrans = 0
        self.dsack_dups = 0
        self.last_send = now
        self.last_recv = now
        self.last_ack = now
        self._created = now
        self._now = now

    @classmethod
    def connect(cls, local_port: int, remote_port: int, iss: int, now: float,
                config: TcpConfig | None = None) -> TcpConnection:
        """Active OPEN (RFC 9293 3.10.1): queue a SYN, enter SYN-SENT."""
        c = cls(local_port, remote_port, iss, now, config)
        c.state = _SYN_SENT
        c._snd_ptr = c.snd_nxt = (c.iss + 1) & MASK
        c._out.append(c._syn_segment(now))
        c._rto_at = now + c.rtt.rto
        return c

    @classmethod
    def accept(cls, syn: TcpSegment, iss: int, now: float,
               config: TcpConfig | None = None) -> TcpConnection:
        """Passive OPEN from a listener that got ``syn`` (RFC 9293 3.10.7.2):
        queue a SYN-ACK echoing only the options the SYN offered, enter
        SYN-RECEIVED.  Data on the SYN is discarded (no Fast Open, as Linux)."""
        c = cls(syn.dst_port, syn.src_port, iss, now, config)
        c._passive = True
        c.state = _SYN_RECEIVED
        c.segs_in = 1
        c._take_syn(syn, now)
        c._snd_ptr = c.snd_nxt = (c.iss + 1) & MASK
        c.rcv_adv = (c.rcv_nxt + c._syn_window) & MASK
        c._out.append(c._synack_segment(now))
        c._rto_at = now + c.rtt.rto
        return c

    def _take_syn(self, syn: TcpSegment, now: float) -> None:
        """Record the peer's SYN: IRS, RCV.NXT and the negotiated options."""
        self.irs = syn.seq
        self.rcv_nxt = self._rcv_acked = (syn.seq + 1) & MASK
        n: Negotiated = negotiate(self.config, syn.options)
        self.wscale_ok = n.wscale_ok
        self.snd_wscale = n.snd_wscale
        self.rcv_wscale = n.rcv_wscale
        self.sack_ok = n.sack_ok
        self.ts_ok = n.ts_ok
        mss = n.send_mss - (TIMESTAMP_OPTION_LEN if n.ts_ok else 0)
        self.send_mss = mss
        self.rcv_mss = min(self.advmss, n.send_mss)
        cfg = self.config
        self._seg_max = max(mss, cfg.max_segment // mss * mss) if cfg.max_segment else mss
        self.cc.set_mss(mss, cfg.initial_cwnd)
        if n.ts_ok and syn.options.timestamp is not None:
            self._ts_recent = syn.options.timestamp[0]
            self._ts_recent_stamp = now

    # ---------------------------------------------------------- user calls
    def send(self, data: bytes | bytearray | memoryview, now: float) -> int:
        """SEND (RFC 9293 3.10.2): queue bytes, return how many fit in the send
        buffer.  Raises BrokenPipeError after shutdown/close, or the error that
        closed the connection."""
        self._now = now
        st = self.state
        if self._fin_queued or self._app_closed:
            raise BrokenPipeError(E.EPIPE, "TCP send side already shut down")
        if st is _CLOSED or st is _TIME_WAIT or st is _FIN_WAIT_2:
            if self.error is not None:
                raise ev.ConnectionFailed(self.error).exception()
            raise BrokenPipeError(E.EPIPE, "TCP connection is closed")
        n = self._sndbuf.write(data)
        if n < len(data):
            self._send_blocked = True
        return n

    def recv(self, max_bytes: int, now: float) -> bytes:
        """RECEIVE (RFC 9293 3.10.3): take up to ``max_bytes`` in-order bytes.
        Returns b"" when nothing is buffered (see :attr:`eof_received`).
        Reading may reopen the window; a window update is then due."""
        self._now = now
        buf = self._rcvbuf
        self._data_event_sent = False
        n = len(buf)
        if n == 0 or max_bytes <= 0:
            return b""
        if max_bytes >= n:
            data = bytes(buf)
            buf.clear()
        else:
            data = bytes(buf[:max_bytes])
            del buf[:max_bytes]
        self._maybe_window_update()
        return data

    def shutdown(self, now: float) -> None:
        """Half-close (shutdown(SHUT_WR)): a FIN follows the queued data
        (RFC 9293 3.10.4).  In SYN-SENT/SYN-RECEIVED the FIN waits for
        ESTABLISHED (Linux sends it once the handshake completes)."""
        self._now = now
        if self._fin_queued:
            return
        st = self.state
        if st is _CLOSED or st not in (_ESTABLISHED, _CLOSE_WAIT, _SYN_SENT, _SYN_RECEIVED):
            return
        self._fin_queued = True
        self._fin_seq = (self.snd_una + len(self._sndbuf)) & MASK
        if st is _ESTABLISHED:
            self.state = _FIN_WAIT_1
        elif st is _CLOSE_WAIT:
            self.state = _LAST_ACK

    def close(self, now: float) -> None:
        """Full close (close(2)): like :meth:`shutdown`, and the connection is
        orphaned.  With unread received data a RST is sent instead of a FIN
        (RFC 2525 2.17, Linux tcp_close); in SYN-SENT nothing is sent."""
        self._now = now
        if self._app_closed:
            return
        self._app_closed = True
        st = self.state
        if st is _CLOSED:
            return
        if st is _SYN_SENT:
            self._become_closed()
            return
        if self._rcvbuf and st.synchronized and st is not _TIME_WAIT:
            self._out.append(self._make(RST | ACK, self.snd_nxt))
            self._become_closed()
            return
        self._rst_on_data = True
        self.shutdown(now)
        if self.state is _FIN_WAIT_2 and self._close_at is None:
            self._close_at = now + self.config.fin_wait2

    def abort(self, now: float) -> None:
        """ABORT (RFC 9293 3.10.5): RST if synchronized, then CLOSED."""
        self._now = now
        st = self.state
        if st is _CLOSED:
            return
        if st.synchronized and st is not _TIME_WAIT:
            self._out.append(self._make(RST | ACK, self.snd_nxt))
        self._app_closed = True
        self._become_closed()

    def icmp_error(self, errno: int, quoted_seq: int, now: float, *, mtu: int = 0) -> None:
        """An ICMP error quoting one of our segments (RFC 9293 3.10.7.1 note,
        RFC 5927, RFC 1122 4.2.3.9).  Only a quote in [SND.UNA, SND.NXT) counts
        (RFC 5927 4.1).

        * EMSGSIZE ("fragmentation needed", with the next-hop ``mtu``): Path
          MTU Discovery (RFC 1191 3, RFC 8201), see :meth:`path_mtu_reduced`.
        * others: in SYN-SENT the connect fails at once (Linux); elsewhere a
          soft error (recorded in :attr:`soft_error`, not fatal).
        """
        if self.state is _CLOSED:
            return
        if not (seq_le(self.snd_una, quoted_seq) and seq_lt(quoted_seq, self.snd_nxt)):
            return
        if errno == E.EMSGSIZE:
            if mtu:
                self.path_mtu_reduced(mtu, now)
            return
        if self.state is _SYN_SENT:
            self._fail(errno)
        else:
            self.soft_error = errno

    def path_mtu_reduced(self, mtu: int, now: float) -> None:
        """The path MTU dropped to ``mtu`` (RFC 1191 3, RFC 8201): lower the
        send MSS to MTU - 40 (minus the timestamp option) and retransmit what
        is in flight at once with the new size, without a congestion response
        (Linux tcp_v4_mtu_reduced / tcp_simple_retransmit).  MTUs below 552
        are treated as 552 (Linux ip_rt_min_pmtu)."""
        mtu = max(mtu, 552)
        mss = mtu - 40 - (TIMESTAMP_OPTION_LEN if self.ts_ok else 0)
        if mss >= self.send_mss:
            return
        self.send_mss = mss
        cfg = self.config
        self._seg_max = max(mss, cfg.max_segment // mss * mss) if cfg.max_segment else mss
        self.cc.mss = mss
        if self.state.synchronized and self.snd_nxt != self.snd_una:
            self._snd_ptr = self.snd_una  # resend everything outstanding, re-cut
            self._rtx_high = self.snd_una
            self._rtt_seq = None  # Karn
            self._rto_at = now + self.rtt.rto

    def set_nodelay(self, enabled: bool) -> None:
        """TCP_NODELAY: True turns Nagle off (takes effect at the next output)."""
        self.config.nodelay = enabled

    def set_keepalive(self, enabled: bool, now: float, *, idle: float | None = None,
                      interval: float | None = None, count: int | None = None) -> None:
        """SO_KEEPALIVE (+ TCP_KEEPIDLE/KEEPINTVL/KEEPCNT): arm or disarm probing."""
        cfg = self.config
        if idle is not None:
            cfg.keepalive_idle = idle
        if interval is not None:
            cfg.keepalive_interval = interval
        if count is not None:
            cfg.keepalive_count = count
        cfg.keepalive = enabled
        self._ka_probes = 0
        if enabled and self.state in (_ESTABLISHED, _CLOSE_WAIT, _FIN_WAIT_2):
            self._ka_at = max(self.last_recv, now - cfg.keepalive_idle) + cfg.keepalive_idle
        elif not enabled:
            self._ka_at = None

    # --------------------------------------------------------------- queries
    def send_space(self) -> int:
        """Bytes :meth:`send` would accept now."""
        if self._fin_queued or self._app_closed or self.state is _CLOSED:
            return 0
        return self._sndbuf.space

    def readable(self) -> int:
        """In-order bytes waiting for :meth:`recv`."""
        return len(self._rcvbuf)

    @property
    def shut_wr(self) -> bool:
        return self._fin_queued

    @property
    def shut_rd(self) -> bool:
        return self._app_closed

    @property
    def send_queue(self) -> int:
        return len(self._sndbuf)

    @property
    def flight_size(self) -> int:
        return seq_sub(self.snd_nxt, self.snd_una)

    def next_event(self) -> ev.Event | None:
        events = self._events
        return events.popleft() if events else None

    def next_deadline(self) -> float | None:
        """The earliest armed timer (call after :meth:`segments_to_send`)."""
        best = self._rto_at
        for d in (self._persist_at, self._delack_at, self._ka_at, self._close_at):
            if d is not None and (best is None or d < best):
                best = d
        return best

    # -------------------------------------------------------- segment arrival
    def receive(self, seg: TcpSegment, now: float) -> None:
        """SEGMENT ARRIVES (RFC 9293 3.10.7).  Never raises for any segment."""
        self._now = now
        self.segs_in += 1
        self.last_recv = now
        st = self.state
        flags = seg.flags
        payload = seg.payload
        plen = len(payload)
        if plen:
            self.data_segs_in += 1
        if self._ka_at is not None:
            self._ka_at = now + self.config.keepalive_idle
            self._ka_probes = 0

        # ---- fast path: ESTABLISHED, in order, plain ACK (+ data) ----------
        if (st is _ESTABLISHED and (flags & (SYN | FIN | RST | ACK)) == ACK
                and seg.seq == self.rcv_nxt):
            ts = seg.options.timestamp
            if self.ts_ok and ts is not None:
                if seq_lt(ts[0], self._ts_recent) and now - self._ts_recent_stamp < _PAWS_IDLE:
                    self._paws_reject(plen, now)
                    return
                if seq_le(seg.seq, self._rcv_acked):
                    self._ts_recent = ts[0]
                    self._ts_recent_stamp = now
            if plen > seq_sub(self.rcv_adv, self.rcv_nxt):
                self._receive_general(seg, now)  # beyond the window: trim
                return
            if not self._process_ack(seg, now):
                return
            if plen:
                self._accept_in_order(payload, now)
            return

        if st is _CLOSED or st is TcpState.LISTEN:
            rst = reply_to_unmatched(seg)
            if rst is not None:
                self._emit(rst, now)
            return
        if st is _SYN_SENT:
            self._receive_syn_sent(seg, now)
            return
        if st is _TIME_WAIT:
            self._receive_time_wait(seg, now)
            return
        self._receive_general(seg, now)

    def _receive_general(self, seg: TcpSegment, now: float) -> None:
        """3.10.7.4 "Other states": SYN-RECEIVED through LAST-ACK."""
        st = self.state
        flags = seg.flags
        seq = seg.seq
        payload = seg.payload

        if st is _SYN_RECEIVED:
            # a retransmitted SYN: answer with the SYN-ACK again (Linux tcp_check_req)
            if (flags & (SYN | ACK | RST | FIN)) == SYN and seq == self.irs:
                self._emit(self._synack_segment(now), now)
                return
            # an ACK that does not acknowledge our SYN: reset it, stay (Linux)
            if flags & ACK and not flags & RST and seg.ack != self.snd_nxt and not flags & SYN:
                self._emit(TcpSegment(self.local_port, self.remote_port, seg.ack, 0, RST, 0),
                           now)
                return
            # simultaneous open: the peer's SYN-ACK acknowledges our SYN-ACK's SYN
            if (flags & (SYN | ACK | RST)) == (SYN | ACK) \
                    and ((seq + 1) & MASK) == self.rcv_nxt and seg.ack == self.snd_nxt:
                flags &= ~SYN
                seq = self.rcv_nxt
                payload = b""
                self._ack_pending = True  # Linux ACKs the crossing SYN-ACK

        ts = seg.options.timestamp
        # ---- PAWS (RFC 7323 5.3), never for RSTs ----
        if (self.ts_ok and ts is not None and not flags & RST
                and seq_lt(ts[0], self._ts_recent)
                and now - self._ts_recent_stamp < _PAWS_IDLE):
            self._paws_reject(len(payload), now)
            return

        # ---- first: sequence number check (3.10.7.4) ----
        plen = len(payload)
        seg_len = plen + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)
        rcv_nxt = self.rcv_nxt
        wnd = seq_sub(self.rcv_adv, rcv_nxt)
        if wnd < 0:
            wnd = 0
        off = seq_sub(seq, rcv_nxt)  # where the segment starts relative to RCV.NXT
        if seg_len == 0:
            ok = off == 0 if wnd == 0 else 0 <= off < wnd
        elif wnd == 0:
            ok = False
        else:
            ok = (0 <= off < wnd) or (0 <= off + seg_len - 1 < wnd)
        if not ok:
            if flags & RST:
                return  # RFC 5961 3.2: out-of-window RST, silently dropped
            if flags & SYN and st is not _SYN_RECEIVED:
                self._challenge_ack(now)  # RFC 5961 4.2
                return
            if plen and off < 0 and self.sack_ok:
                # old duplicate data: D-SACK it (RFC 2883)
                self._dsack = (seq, (seq + plen) & MASK)
                self.dsack_dups += 1
            if seg_len:
                self._ack_pending = True  # data/FIN: dup ACK at once, never rate-limited
            else:
                self._oow_ack(now)
            return

        # ---- second: RST (RFC 5961 3.2; Linux accepts any in-window RST in SYN-RECEIVED) ----
        if flags & RST:
            if st is _SYN_RECEIVED:
                if self._passive:
                    self._become_closed()
                else:
                    self._fail(E.ECONNREFUSED)
            elif off == 0:
                self._fail(E.ECONNRESET, quiet=st in (_CLOSING, _LAST_ACK))
            else:
                self._challenge_ack(now)
            return

        # ---- fourth: SYN in a synchronized state (RFC 5961 4.2) ----
        if flags & SYN:
            if st is _SYN_RECEIVED and self._passive:
                # Linux tcp_check_req: an in-window SYN that is not a
                # retransmission resets the embryonic connection
                rst = reply_to_unmatched(seg)
                if rst is not None:
                    self._emit(rst, now)
                self._become_closed()
                return
            self._challenge_ack(now)
            return

        # ---- fifth: ACK field ----
        if not flags & ACK:
            return  # RFC 9293: drop segments without ACK (catalogue 33)

        if ts is not None and self.ts_ok and seq_le(seq, self._rcv_acked):
            self._ts_recent = ts[0]
            self._ts_recent_stamp = now

        if st is _SYN_RECEIVED:
            ack = seg.ack
            if not (seq_gt(ack, self.snd_una) and seq_le(ack, self.snd_nxt)):
                self._emit(TcpSegment(self.local_port, self.remote_port, ack, 0, RST, 0), now)
                return
            self._establish(seg, now)
            st = self.state
        if not self._process_ack(seg, now):
            return
        st = self.state
        if st is _CLOSED or st is _TIME_WAIT:
            if st is _TIME_WAIT and flags & FIN:
                self._ack_pending = True
            return

        # ---- trim to the window (3.10.7.4 "first", trimming) ----
        if off < 0:
            skip = -off
            if skip > plen:
                skip = plen
            if self.sack_ok and skip:
                self._dsack = (seq, (seq + skip) & MASK)
                self.dsack_dups += 1
            payload = payload[skip:]
            seq = (seq + skip) & MASK
            plen -= skip
            self._ack_pending = True
        fin = bool(flags & FIN)
        room = seq_sub(self.rcv_adv, seq)
        if plen > room:
            payload = payload[:max(room, 0)]
            plen = len(payload)
            fin = False

        # ---- seventh/eighth: text and FIN ----
        if plen or fin:
            self._process_data(seq, payload, fin, seg, now)

    def _process_data(self, seq: int, payload: bytes, fin: bool, seg: TcpSegment,
                      now: float) -> None:
        st = self.state
        plen = len(payload)
        if plen and st not in _RECEIVING_STATES:
            return  # after the peer's FIN: ignore (RFC 9293 3.10.7.4, Linux)
        if plen and self._rst_on_data:
            # RFC 1122 4.2.2.13 / Linux: new data after close() -> RST, abort
            if seg.flags & ACK:
                rst = TcpSegment(self.local_port, self.remote_port, seg.ack, 0, RST, 0)
            else:
                rst = TcpSegment(self.local_port, self.remote_port, 0,
                                 (seg.seq + seg.seg_len) & MASK, RST | ACK, 0)
            self._emit(rst, now)
            self._fail(E.ECONNRESET, quiet=True)
            return
        if seq == self.rcv_nxt:
            if plen:
                self._accept_in_order(payload, now)
            if fin or self._ooo.fin_pos == self._rcv_pos:
                self._receive_fin(now)
            return
        # out of order: queue, answer at once with a dup ACK + SACK (RFC 5681 4.2)
        start = self._rcv_pos + seq_sub(seq, self.rcv_nxt)
        if plen:
            self._ooo.add(start, payload, self.config.ooo_max_blocks)
        if fin:
            self._ooo.fin_pos = start + plen
        self._ack_pending = True

    def _accept_in_order(self, payload: bytes, now: float) -> None:
        """In-order text: append, pull what reassembly now completes, schedule the ACK."""
        plen = len(payload)
        self._rcvbuf += payload
        self.rcv_nxt = (self.rcv_nxt + plen) & MASK
        self._rcv_pos += plen
        self.bytes_received += plen
        if plen > self.rcv_mss:
            self.rcv_mss = plen if plen < self.advmss else self.advmss
        ooo = self._ooo
        if ooo.nbytes or ooo.fin_pos is not None:
            # filling a hole: ACK immediately (RFC 5681 4.2)
            self._ack_pending = True
            while True:
                more = ooo.pop_ready(self._rcv_pos)
                if more is None:
                    break
                n = len(more)
                self._rcvbuf += more
                self.rcv_nxt = (self.rcv_nxt + n) & MASK
                self._rcv_pos += n
                self.bytes_received += n
            if ooo.fin_pos is not None and ooo.fin_pos == self._rcv_pos:
                self._receive_fin(now)
        elif seq_sub(self.rcv_nxt, self._rcv_acked) > self.rcv_mss:
            # at least every second full-sized segment (RFC 9293 3.8.6.3, Linux)
            self._ack_pending = True
        elif self._quickacks > 0:
            # Linux quickack mode: the first segments of a connection are
            # ACKed at once (tcp_incr_quickack, TCP_MAX_QUICKACKS 16)
            self._quickacks -= 1
            self._ack_pending = True
        elif self._delack_at is None:
            self._delack_at = now + self.config.delack
        if not self._data_event_sent:
            self._data_event_sent = True
            self._events.append(ev.DATA_AVAILABLE)

    def _receive_fin(self, now: float) -> None:
        """Eighth step: the peer's FIN is in order (3.10.7.4)."""
        if self.eof_received:
            return
        self.eof_received = True
        self._ooo.clear()
        self.rcv_nxt = (self.rcv_nxt + 1) & MASK
        self._rcv_pos += 1
        self._ack_pending = True
        self._events.append(ev.EOF_RECEIVED)
        st = self.state
        if st is _ESTABLISHED:
            self.state = _CLOSE_WAIT
        elif st is _FIN_WAIT_1:
            # our FIN not yet acknowledged (else _process_ack moved us on)
            self.state = _CLOSING
        elif st is _FIN_WAIT_2:
            self._enter_time_wait(now)

    def _process_ack(self, seg: TcpSegment, now: float) -> bool:
        """Fifth step, ESTABLISHED and later (3.10.7.4).  False = stop processing."""
        ack = seg.ack
        una = self.snd_una
        if ack == una:
            # (windows on SYN segments are never scaled, RFC 7323 2.2)
            wnd = seg.window if seg.flags & SYN else seg.window << self.snd_wscale
            if (self.snd_nxt != una and not seg.payload and not seg.flags & (SYN | FIN)
                    and wnd == self.snd_wnd):
                self._on_dup_ack(seg, now)
            elif self._persist_at is not None and wnd:
                self._persist_at = None
                self._persist_backoff = 0
            self._update_window(seg, wnd)
            return True
        acked = (ack - una) & MASK
        flight = (self.snd_nxt - una) & MASK
        if acked > flight:
            if acked < 0x80000000:
                # RFC 9293: ACK of something not yet sent -> ACK, drop (catalogue 29)
                self._oow_ack(now)
                return False
            if ((una - ack) & MASK) > self.max_snd_wnd:
                self._challenge_ack(now)  # RFC 5961 5.2 (catalogue 30)
                return False
            return True  # old duplicate ACK: ignore it, still process the text
        # ---- new data acknowledged: SND.UNA < SEG.ACK =< SND.NXT ----
        data_acked = acked
        if self._fin_queued and not self._fin_acked and seq_gt(ack, self._fin_seq):
            self._fin_acked = True
            data_acked -= 1
        if data_acked:
            self._sndbuf.acknowledge(data_acked)
            self.bytes_acked += data_acked
        self.snd_una = ack
        if ((self._snd_ptr - una) & MASK) < acked:  # go-back-N pointer overtaken
            self._snd_ptr = ack
        self.last_ack = now
        rtt = self.rtt
        # RTT: timestamps when on (RFC 7323 4.1), else one timed segment (Karn)
        ts = seg.options.timestamp
        if self.ts_ok and ts is not None and ts[1]:
            r = ((int(now * 1000) + self._ts_offset - ts[1]) & MASK)
            if r < 0x7FFFFFFF:
                rtt.sample(r / 1000.0)
        elif self._rtt_seq is not None and seq_ge(ack, self._rtt_seq):
            rtt.sample(now - self._rtt_time)
            self._rtt_seq = None
        rtt.backoff = 0
        self._retransmits = 0
        if self._sacked:
            self._prune_sacked()
        if seg.options.sack_blocks and self.sack_ok:
            self._record_sack(seg.options.sack_blocks)
        cc = self.cc
        if cc.in_recovery:
            if seq_ge(ack, self._recover):
                cc.exit_recovery(now)
            else:
                # partial ACK: NewReno (RFC 6582 3.2 step 3) retransmits the new
                # head; with SACK information the next un-SACKed hole instead
                cc.on_partial_ack(acked, now)
                hole = self._next_hole()
                if hole is not None:
                    self._retransmit(hole[0], hole[1], now)
                elif not seq_lt(ack, self._rtx_high):
                    self._retransmit(ack, self.send_mss, now)
        else:
            cc.on_ack(acked, flight, now)
        self._dupacks = 0
        self._rto_at = now + rtt.rto if self.snd_nxt != ack else None
        if self._persist_at is not None:
            self._persist_at = None
            self._persist_backoff = 0
        self._update_window(seg, seg.window << self.snd_wscale)
        if self._send_blocked and self._sndbuf.space:
            self._send_blocked = False
            self._events.append(ev.SEND_SPACE_AVAILABLE)
        if self._fin_acked:
            st = self.state
            if st is _FIN_WAIT_1:
                self.state = _FIN_WAIT_2
                if self._app_closed:
                    self._close_at = now + self.config.fin_wait2
            elif st is _CLOSING:
                self._enter_time_wait(now)
                return False
            elif st is _LAST_ACK:
                self._become_closed()
                return False
        return True

    def _update_window(self, seg: TcpSegment, wnd: int) -> None:
        """SND.WND update rule (RFC 9293 3.10.7.4, SND.WL1/SND.WL2)."""
        wl1 = self.snd_wl1
        seq = seg.seq
        # SND.WL1 < SEG.SEQ or (SND.WL1 = SEG.SEQ and SND.WL2 =< SEG.ACK), mod 2**32
        if (((wl1 - seq) & MASK) >= 0x80000000
                or (wl1 == seq and ((seg.ack - self.snd_wl2) & MASK) < 0x80000000)):
            self.snd_wnd = wnd
            self.snd_wl1 = seg.seq
            self.snd_wl2 = seg.ack
            if wnd > self.max_snd_wnd:
                self.max_snd_wnd = wnd

    def _on_dup_ack(self, seg: TcpSegment, now: float) -> None:
        """RFC 5681 3.2 / RFC 6675 5: duplicate ACKs drive fast retransmit and
        fast recovery."""
        newly = 0
        if seg.options.sack_blocks and self.sack_ok:
            newly = self._record_sack(seg.options.sack_blocks)
        self._dupacks += 1
        cc = self.cc
        mss = self.send_mss
        if cc.in_recovery:
            # SACK loss recovery (RFC 6675 NextSeg rule 1, simplified): every
            # segment the ACK reports as having left the network clocks out
            # one un-SACKed hole (packet conservation, so a stretch ACK that
            # SACKs several segments repairs several holes); without holes,
            # Reno inflation lets new data go (RFC 5681 3.2 step 4)
            budget = newly // mss if newly >= mss else 1
            while budget > 0:
                hole = self._next_hole()
                if hole is None:
                    break
                self._retransmit(hole[0], hole[1], now)
                budget -= 1
            while budget > 0:
                cc.on_dup_ack(self.flight_size, now)
                budget -= 1
            return
        thresh = self.config.dupack_threshold
        # RFC 6675 5 / IsLost(): enter recovery on DupThresh duplicate ACKs,
        # or as soon as more than (DupThresh - 1) * SMSS bytes are SACKed
        # (stretch or lost ACKs deliver fewer duplicates than segments)
        if self._dupacks >= thresh or (
                self._sacked and self._sacked_bytes() > (thresh - 1) * mss):
            # RFC 6582 3.2 step 2: only if the ACK covers more than the last recovery point
            if seq_lt(self.snd_una, self._recover):
                return  # still inside the window of an earlier loss episode
            self._recover = self.snd_nxt
            cc.enter_recovery(self.flight_size, now)
            self._rtx_high = self.snd_una
            self._retransmit(self.snd_una, mss, now)
            self._rto_at = now + self.rtt.rto

    def _presumed_lost_segments(self) -> int:
        """Segments in the holes below the highest SACKed byte (RFC 6675
        IsLost, approximately), or the head after a timeout."""
        mss = self.send_mss or 1
        if self._sacked:
            top = self._sacked[-1][1]
            holes = seq_sub(top, self.snd_una) - self._sacked_bytes()
            return (holes + mss - 1) // mss if holes > 0 else 0
        return 1 if self._retransmits and self.snd_nxt != self.snd_una else 0

    def _sacked_bytes(self) -> int:
        return sum(seq_sub(right, left) for left, right in self._sacked)

    def _next_hole(self) -> tuple[int, int] | None:
        """The first range above SND.UNA and the retransmission high-water
        mark that the peer has not SACKed and that lies below a SACKed block
        (so it is presumed lost), at most one MSS: (seq, length)."""
        sacked = self._sacked
        if not sacked or not self.sack_ok:
            return None
        start = self.snd_una
        if seq_gt(self._rtx_high, start):
            start = self._rtx_high
        for left, right in sacked:
            if seq_lt(start, left):
                n = seq_sub(left, start)
                return start, n if n < self.send_mss else self.send_mss
            if seq_lt(start, right):
                start = right
        return None

    def _record_sack(self, blocks: list[tuple[int, int]]) -> int:
        """Merge SACK blocks (RFC 2018) into the scoreboard of ranges above
        SND.UNA; return how many bytes were newly SACKed."""
        una, top = self.snd_una, self.snd_nxt
        sacked = self._sacked
        before = self._sacked_bytes() if sacked else 0
        added = False
        for left, right in blocks:
            if not (seq_lt(una, right) and seq_le(right, top) and seq_lt(left, right)):
                continue  # D-SACK or bogus
            if seq_lt(left, una):
                left = una
            sacked.append((left, right))
            added = True
        if not added:
            return 0
        if len(sacked) > 1:
            sacked.sort(key=lambda b: seq_sub(b[0], una))
            merged: list[tuple[int, int]] = []
            for left, right in sacked:
                if merged and seq_le(left, merged[-1][1]):
                    if seq_gt(right, merged[-1][1]):
                        merged[-1] = (merged[-1][0], right)
                else:
                    merged.append((left, right))
            self._sacked = merged[:64]
        return max(self._sacked_bytes() - before, 0)

    def _prune_sacked(self) -> None:
        una = self.snd_una
        self._sacked = [(left if seq_gt(left, una) else una, right)
                        for left, right in self._sacked if seq_gt(right, una)]

    def _establish(self, seg: TcpSegment, now: float) -> None:
        """SYN-RECEIVED -> ESTABLISHED on the ACK of our SYN (3.10.7.4)."""
        self.snd_una = seg.ack
        if seq_lt(self._snd_ptr, seg.ack):
            self._snd_ptr = seg.ack
        # a (simultaneous-open) SYN-ACK carries an unscaled window (RFC 7323 2.2)
        self.snd_wnd = seg.window if seg.flags & SYN else seg.window << self.snd_wscale
        self.max_snd_wnd = self.snd_wnd
        self.snd_wl1 = seg.seq
        self.snd_wl2 = seg.ack
        self._handshake_rtt(seg, now)
        self.state = _ESTABLISHED
        self._rto_at = None
        self._events.append(ev.CONNECTED)
        if self.config.keepalive:
            self._ka_at = now + self.config.keepalive_idle
        if self._fin_queued:
            self.state = _FIN_WAIT_1

    def _handshake_rtt(self, seg: TcpSegment, now: float) -> None:
        """RTT from the handshake: Karn unless timestamps; RFC 6298 5.7 fallback."""
        ts = seg.options.timestamp
        rtt = self.rtt
        rtt.backoff = 0
        if self.ts_ok and ts is not None and ts[1]:
            r = (int(now * 1000) + self._ts_offset - ts[1]) & MASK
            if r < 0x7FFFFFFF:
                rtt.sample(r / 1000.0)
        elif not self._syn_retransmitted:
            rtt.sample(now - self._created)
        if not rtt.has_sample and self._syn_retransmitted:
            rtt.set_base(self.config.rto_fallback)
        self._retransmits = 0

    def _receive_syn_sent(self, seg: TcpSegment, now: float) -> None:
        """3.10.7.3 SYN-SENT."""
        flags = seg.flags
        if flags & ACK:
            ack = seg.ack
            if seq_le(ack, self.iss) or seq_gt(ack, self.snd_nxt):
                if not flags & RST:  # catalogue 11/12: >R seq=SEG.ACK, stay
                    self._emit(TcpSegment(self.local_port, self.remote_port, ack, 0, RST, 0),
                               now)
                # Linux (tcp_rcv_synsent_state_process): "previous FIN/ACK or
                # RST/ACK might be ignored", so before any retransmission the
                # SYN timer is cut to TCP_TIMEOUT_MIN and the SYN goes out again
                if self._retransmits == 0:
                    self._rto_at = now + _TIMEOUT_MIN
                return  # catalogue 15: never answer a RST
        if flags & RST:
            if flags & ACK:
                self._fail(E.ECONNREFUSED)  # catalogue 13
            return  # catalogue 14: RST without ACK is ignored
        if not flags & SYN:
            return  # catalogue 12: acceptable bare ACK -> drop
        self._take_syn(seg, now)
        if flags & ACK:
            self.snd_una = seg.ack
            self.snd_wnd = seg.window  # SYN windows are never scaled
            self.max_snd_wnd = self.snd_wnd
            self.snd_wl1 = seg.seq
            self.snd_wl2 = seg.ack
            self.rcv_adv = (self.rcv_nxt + self._syn_window) & MASK
            self._handshake_rtt(seg, now)
            self.state = _ESTABLISHED
            self._rto_at = None
            self._events.append(ev.CONNECTED)
            if self.config.keepalive:
                self._ka_at = now + self.config.keepalive_idle
            if self._fin_queued:
                self.state = _FIN_WAIT_1
            self._ack_pending = True
            # catalogue 17: text (and FIN) on a SYN-ACK.  RFC 9293 3.10.7.3 says
            # continue at the sixth step and queue it; Linux frees the segment
            # after the handshake (tcp_rcv_state_process, no Fast Open) and
            # ACKs only the SYN, so the peer retransmits the data.  Linux by
            # default; TcpConfig.accept_synack_data=True gives the RFC's.
            if self.config.accept_synack_data:
                payload = seg.payload
                room = seq_sub(self.rcv_adv, self.rcv_nxt)
                fin = bool(flags & FIN)
                if len(payload) > room:
                    payload = payload[:room]
                    fin = False
                if payload:
                    self._accept_in_order(payload, now)
                if fin:
                    self._receive_fin(now)
                self._ack_pending = True
        else:
            # simultaneous open (catalogue 16): SYN-RECEIVED, send SYN-ACK with our ISS
            self.state = _SYN_RECEIVED
            self.rcv_adv = (self.rcv_nxt + self._syn_window) & MASK
            self._emit(self._synack_segment(now), now)

    def _receive_time_wait(self, seg: TcpSegment, now: float) -> None:
        """TIME-WAIT (3.10.7.4 and Linux tcp_timewait_state_process)."""
        flags = seg.flags
        ts = seg.options.timestamp
        if flags & SYN and not flags & (RST | ACK):
            newer_ts = (self.ts_ok and ts is not None and seq_gt(ts[0], self._ts_recent))
            if seq_gt(seg.seq, self.rcv_nxt) or newer_ts:
                # catalogue 42: a new incarnation may reuse the 4-tuple
                self.reopen_syn = seg
                self._become_closed()
                return
            self._ack_pending = True  # the TIME-WAIT ACK
            return
        if flags & RST:
            off = seq_sub(seg.seq, self.rcv_nxt)
            if off == 0 or 0 <= off < max(seq_sub(self.rcv_adv, self.rcv_nxt), 1):
                self._become_closed()  # Linux kills TIME-WAIT (RFC 1337 would ignore)
            return
        if flags & FIN and ((seg.seq + len(seg.payload) + 1) & MASK) == self.rcv_nxt:
            # retransmitted FIN: ACK again, restart the 2MSL wait (3.10.7.4 "eighth")
            self._ack_pending = True
            self._close_at = now + self.config.time_wait
            return
        if (self.ts_ok and ts is not None and seq_lt(ts[0], self._ts_recent)) or seg.payload \
                or flags & SYN:
            self._ack_pending = True
            return
        if seg.seq != self.rcv_nxt:
            self._oow_ack(now)

    def _paws_reject(self, plen: int, now: float) -> None:
        """RFC 7323 5.3: drop, answer with a (rate-limited when no data) dup ACK."""
        if plen:
            self._ack_pending = True
        else:
            self._oow_ack(now)

    def _oow_ack(self, now: float) -> None:
        """ACK an unacceptable segment, at most one per challenge_ack_interval
        (Linux tcp_oow_rate_limited; data segments are never limited)."""
        if now - self._last_oow >= self.config.challenge_ack_interval:
            self._last_oow = now
            self._ack_pending = True

    def _challenge_ack(self, now: float) -> None:
        """RFC 5961 challenge ACK <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>, rate-limited."""
        if now - self._last_oow >= self.config.challenge_ack_interval:
            self._last_oow = now
            self._emit(self._make(ACK, self.snd_nxt), now)

    # ----------------------------------------------------------------- timers
    def handle_timer(self, now: float) -> None:
        """Run every timer due at ``now`` (RFC 9293 3.10.8)."""
        self._now = now
        st = self.state
        if st is _CLOSED:
            return
        at = self._close_at
        if at is not None and now >= at:
            self._close_at = None
            if st is _TIME_WAIT or st is _FIN_WAIT_2:
                self._become_closed()  # TIME-WAIT over / orphaned FIN-WAIT-2 timeout
                return
        at = self._rto_at
        if at is not None and now >= at:
            self._on_retransmit_timeout(now)
            if self.state is _CLOSED:
                return
        at = self._persist_at
        if at is not None and now >= at:
            self._on_persist_timeout(now)
        at = self._delack_at
        if at is not None and now >= at:
            self._delack_at = None
            if self._rcv_acked != self.rcv_nxt:
                self._ack_pending = True
        at = self._ka_at
        if at is not None and now >= at:
            self._on_keepalive_timeout(now)

    def _on_retransmit_timeout(self, now: float) -> None:
        """RFC 6298 5.4-5.7; SYN timeline as Linux >= 6.5 (catalogue 10)."""
        cfg = self.config
        st = self.state
        rtt = self.rtt
        self._rto_at = None
        if st is _SYN_SENT:
            if self._retransmits >= cfg.syn_retries + cfg.syn_linear_timeouts:
                self._fail(E.ETIMEDOUT)
                return
            self._retransmits += 1
            self.total_retrans += 1
            self._syn_retransmitted = True
            if self._retransmits > cfg.syn_linear_timeouts:
                rtt.backoff += 1
            self._emit(self._syn_segment(now), now)
            self._rto_at = now + rtt.rto
            return
        if st is _SYN_RECEIVED:
            if self._retransmits >= cfg.synack_retries:
                if self._passive:
                    self._become_closed()  # Linux silently drops the request
                else:
                    self._fail(E.ETIMEDOUT)
                return
            self._retransmits += 1
            self.total_retrans += 1
            self._syn_retransmitted = True
            rtt.backoff += 1
            self._emit(self._synack_segment(now), now)
            self._rto_at = now + rtt.rto
            return
        if self.snd_nxt == self.snd_una:
            return
        if self.snd_wnd == 0 and now - self.last_recv < cfg.rto_max:
            # the peer shrank its window to zero under in-flight data: our
            # retransmissions are window probes and must not time the
            # connection out while the peer answers (Linux tcp_retransmit_timer)
            rtt.backoff += 1
            self._retransmit(self.snd_una, self.send_mss, now)
            self._rto_at = now + rtt.rto
            return
        # an orphan (closed by the application) gives up sooner: Linux
        # tcp_orphan_retries (0 means 8)
        limit = cfg.orphan_retries if self._app_closed else cfg.retries2
        if self._retransmits >= limit:
            self._fail(E.ETIMEDOUT)
            return
        self._retransmits += 1
        self.total_retrans += 1
        rtt.backoff += 1
        self.cc.on_timeout(self.flight_size, now)
        self._dupacks = 0
        self._recover = self.snd_nxt
        self._rtt_seq = None  # Karn
        self._rtx_high = self.snd_una
        # go back N: output resends from SND.UNA, skipping what the peer SACKed
        # (kept across the timeout as Linux does, tcp_enter_loss)
        self._snd_ptr = self.snd_una
        self._rto_at = now + rtt.rto

    def _on_persist_timeout(self, now: float) -> None:
        """Zero-window probe <SEQ=SND.UNA-1><ACK> (Linux tcp_xmit_probe_skb), backing off."""
        self._persist_at = None
        if self.state not in _SENDING_STATES or self.snd_nxt != self.snd_una:
            self._persist_backoff = 0
            return
        if self.snd_wnd:
            # SWS override timeout (RFC 9293 3.8.6.2.1): send what the window allows
            self._force_send = True
            return
        if self._app_closed and self._persist_backoff >= self.config.orphan_retries:
            # an orphan facing a window that never opens (Linux tcp_probe_timer):
            # without this a closed connection could probe forever
            self._fail(E.ETIMEDOUT)
            return
        self._emit(self._make(ACK, (self.snd_una - 1) & MASK), now)
        self._persist_backoff += 1
        rto = self.rtt.base_rto * (1 << min(self._persist_backoff, 20))
        self._persist_at = now + min(rto, self.config.rto_max)

    def _on_keepalive_timeout(self, now: float) -> None:
        """RFC 1122 4.2.3.6 keepalive, Linux tcp_keepalive_timer timing."""
        cfg = self.config
        if self.state not in (_ESTABLISHED, _CLOSE_WAIT, _FIN_WAIT_2) \
                or self.snd_nxt != self.snd_una or self._unsent():
            self._ka_at = now + cfg.keepalive_idle
            return
        if self._ka_probes >= cfg.keepalive_count:
            self._emit(self._make(RST | ACK, self.snd_nxt), now)
            self._fail(E.ETIMEDOUT)
            return
        self._emit(self._make(ACK, (self.snd_una - 1) & MASK), now)
        self._ka_probes += 1
        self._ka_at = now + cfg.keepalive_interval

    # ----------------------------------------------------------------- output
    def segments_to_send(self, now: float) -> list[TcpSegment]:
        """Drain everything due: control segments queued by inputs, then data
        within min(SND.WND, cwnd) (Nagle, SWS avoidance), then a pending ACK."""
        self._now = now
        if self.state in _SENDING_STATES:
            self._push(now)
        if self._ack_pending:
            self._out.append(self._make(ACK, self.snd_nxt))
        out = self._out
        if not out:
            return []
        self._out = []
        self.segs_out += len(out)
        self.last_send = now
        return out

    def _unsent(self) -> int:
        return len(self._sndbuf) - seq_sub(self._snd_ptr, self.snd_una)

    def _push(self, now: float) -> None:
        """Send data and FIN (RFC 9293 3.8.6.2.1 sender SWS, 3.7.4 Nagle)."""
        sndbuf = self._sndbuf
        buf_len = len(sndbuf)
        una = self.snd_una
        sent = seq_sub(self._snd_ptr, una)
        fin_queued = self._fin_queued
        if sent > buf_len:  # FIN already sent
            return
        if (una == self.snd_nxt and buf_len > sent and self.config.slow_start_after_idle
                and now - self._last_data_send > self.rtt.rto and self.bytes_sent):
            self.cc.on_idle_restart(now - self._last_data_send, self.rtt.rto,
                                    self.config.initial_cwnd)
        wnd = self.snd_wnd
        cwnd = self.cc.cwnd
        limit = wnd if wnd < cwnd else cwnd
        mss = self.send_mss
        seg_max = self._seg_max
        nodelay = self.config.nodelay
        out = self._out
        snd_max = self.snd_nxt
        sacked = self._sacked
        ooo = self._ooo
        # one ACK number, window and option block for the whole batch unless a
        # SACK/D-SACK block must be carried (then _make builds each segment)
        shared = self._dsack is None and not ooo.nbytes and ooo.fin_pos is None
        if not shared:
            # SACK blocks ride along: shorten the payload so the segment still
            # fits the MTU (Linux tcp_current_mss) and send no super-segments
            extra = self._sack_option_len()
            if extra:
                mss = max(mss - extra, 1)
                seg_max = mss
        ack = win = -1
        opts = _EMPTY_OPTIONS
        lport, rport = self.local_port, self.remote_port
        nbytes = nsegs = 0
        time_rtt = not self.ts_ok  # without timestamps: one timed segment (Karn)
        force = self._force_send
        while True:
            cap = seg_max
            if sacked and seq_lt((una + sent) & MASK, snd_max):
                # retransmitting after a timeout: skip SACKed ranges (RFC 6675)
                seq = (una + sent) & MASK
                for left, right in sacked:
                    if seq_le(left, seq) and seq_lt(seq, right):
                        skip = seq_sub(right, seq)
                        sent += skip
                        seq = right
                        # SACKed bytes left the network: they do not count
                        # against cwnd (RFC 6675 "pipe"), only the peer window
                        cwnd += skip
                        limit = wnd if wnd < cwnd else cwnd
                    elif seq_lt(seq, left):
                        gap = seq_sub(left, seq)
                        if gap < cap:
                            cap = gap
                        break
            avail = buf_len - sent
            if avail <= 0:
                break
            room = limit - sent
            if room <= 0:
                break
            n = avail if avail < room else room
            if n > cap:
                n = cap
            if n < mss and not force and seq_sub(snd_max, una) <= sent:
                # (both rules apply to new data only, never to retransmissions)
                if n < avail:
                    # window-limited runt: sender SWS avoidance (3.8.6.2.1)
                    if n < (self.max_snd_wnd >> 1) or n < 1:
                        break
                elif not nodelay and not fin_queued and seq_gt(self._snd_sml, una):
                    # Nagle, Minshall's variant as Linux (tcp_minshall_check):
                    # a small *new* segment waits while an earlier small
                    # segment is unacknowledged (RFC 896, RFC 1122 4.2.3.4)
                    break
            elif n > mss:
                n -= n % mss
            seq = (una + sent) & MASK
            payload = sndbuf.peek(sent, n)
            sent += n
            flags = ACK
            if sent == buf_len:
                flags = ACK | PSH
                if fin_queued and room > n:
                    flags = ACK | PSH | FIN
            nxt = (seq + n + (1 if flags & FIN else 0)) & MASK
            if ((seq - snd_max) & MASK) >= 0x80000000:  # seq < SND.NXT: a resend
                self.bytes_retrans += n
            elif time_rtt and self._rtt_seq is None:
                self._rtt_seq = nxt
                self._rtt_time = now
            nbytes += n
            nsegs += 1
            if n < mss:
                self._snd_sml = (seq + n) & MASK
            if shared:
                if win < 0:
                    self._ack_pending = False
                    self._delack_at = None
                    ack = self._rcv_acked = self.rcv_nxt
                    win = self._window()
                    if self.ts_ok or self.sack_ok:
                        opts = self._options()
                out.append(TcpSegment(lport, rport, seq, ack, flags, win, 0, opts, payload))
            else:
                out.append(self._make(flags, seq, payload))
            self._snd_ptr = nxt
            if ((snd_max - nxt) & MASK) >= 0x80000000:  # nxt > snd_max
                snd_max = nxt
            if flags & FIN:
                sent += 1
                break
            if (shared and n == mss and seg_max == mss and nxt == snd_max
                    and not (time_rtt and self._rtt_seq is None)):
                # Bulk fast path (exact-wire mode, no GSO): the segment just
                # built was a full-sized one of new data, so are the next ones
                # while both the buffer and min(SND.WND, cwnd) hold more than
                # a full segment.  None of them is subject to Nagle or sender
                # SWS avoidance (both only hold back segments < SMSS, RFC 9293
                # 3.7.4 and 3.8.6.2.1), none is a resend, none needs timing,
                # and all share the ACK, window and options: build them in one
                # go.  The last segment of the buffer (PSH, maybe FIN) is left
                # to the loop above.
                avail = buf_len - sent
                room = limit - sent
                k = (avail if avail < room else room) // mss
                if k * mss >= avail:
                    k -= 1
                if k > 0:
                    total = k * mss
                    blob = sndbuf.peek(sent, total)
                    base = nxt
                    out.extend([TcpSegment(lport, rport, (base + i) & MASK, ack, ACK, win, 0,
                                           opts, blob[i:i + mss])
                                for i in range(0, total, mss)])
                    sent += total
                    nbytes += total
                    nsegs += k
                    snd_max = nxt = (base + total) & MASK
                    self._snd_ptr = nxt
        self.snd_nxt = snd_max
        if nsegs:
            self.bytes_sent += nbytes
            self.data_segs_out += nsegs
            self._last_data_send = now
        self._force_send = False
        if fin_queued and sent == buf_len and limit - sent > 0:
            seq = (una + sent) & MASK
            out.append(self._make(ACK | FIN, seq))
            self._snd_ptr = nxt = (seq + 1) & MASK
            if seq_gt(nxt, snd_max):
                self.snd_nxt = nxt
            sent += 1
        if self.snd_nxt != una:
            if self._rto_at is None:
                self._rto_at = now + self.rtt.rto
            self._persist_at = None
        elif ((buf_len > sent or (fin_queued and sent == buf_len))
              and self._persist_at is None):
            # nothing in flight, data waiting but held back (window closed, or
            # too small for SWS avoidance): the persist timer (3.8.6.1) probes
            # or, with an open window, forces the override send (3.8.6.2.1)
            self._persist_at = now + self.rtt.rto

    def _retransmit(self, seq: int, length: int, now: float) -> None:
        """Retransmit up to ``length`` bytes at ``seq`` (fast retransmit,
        partial ACK, SACK hole), with the FIN if the range reaches it."""
        sndbuf = self._sndbuf
        off = seq_sub(seq, self.snd_una)
        if off < 0:
            return
        n = min(len(sndbuf) - off, length, self.send_mss - self._sack_option_len())
        self._rtt_seq = None  # Karn
        if n > 0:
            flags = ACK
            if off + n == len(sndbuf):
                flags |= PSH
                if self._fin_queued and seq_gt(self.snd_nxt, self._fin_seq):
                    flags |= FIN
            self._out.append(self._make(flags, seq, sndbuf.peek(off, n)))
            self.bytes_retrans += n
            self.data_segs_out += 1
        elif self._fin_queued and not self._fin_acked and off == len(sndbuf):
            self._out.append(self._make(ACK | FIN, seq))
            n = 1
        else:
            return
        end = (seq + n) & MASK
        if seq_gt(end, self._rtx_high):
            self._rtx_high = end
        self.total_retrans += 1

    def _maybe_window_update(self) -> None:
        """After the application read: send a window update when the window
        can grow substantially (Linux tcp_cleanup_rbuf: at least doubles,
        and RFC 9293 3.8.6.2.2: by at least min(RCV.BUFF/2, MSS))."""
        if not self.state.synchronized:
            return
        cur = seq_sub(self.rcv_adv, self.rcv_nxt)
        free = self.config.recv_buffer - len(self._rcvbuf) - self._ooo.nbytes
        if free - cur >= min(self.config.recv_buffer >> 1, self.advmss) and free >= 2 * cur:
            self._ack_pending = True

    def _window(self) -> int:
        """The window field to send, moving the right edge per receiver SWS
        avoidance (RFC 9293 3.8.6.2.2) and never shrinking it (3.8.6)."""
        ws = self.rcv_wscale
        rcv_nxt = self.rcv_nxt
        cur = seq_sub(self.rcv_adv, rcv_nxt)
        if cur < 0:
            cur = 0
        free = self.config.recv_buffer - len(self._rcvbuf) - self._ooo.nbytes
        if free > cur:
            step = self.config.recv_buffer >> 1
            if step > self.advmss:
                step = self.advmss
            if free - cur >= step:
                cur = free
                self.rcv_adv = (rcv_nxt + free) & MASK
        field = (cur + (1 << ws) - 1) >> ws if ws else cur
        if field > 0xFFFF:
            field = 0xFFFF
        return field

    def _options(self) -> TcpOptions:
        ooo = self._ooo
        if not self.ts_ok:
            if self._dsack is None and not ooo.nbytes and ooo.fin_pos is None:
                return _EMPTY_OPTIONS
            return TcpOptions(sack_blocks=self._sack_blocks())
        tsval = (int(self._now * 1000) + self._ts_offset) & MASK
        recent = self._ts_recent
        if self._dsack is None and not ooo.nbytes and ooo.fin_pos is None:
            cache = self._ts_cache
            if cache[0] == tsval and cache[1] == recent:
                return cache[2]
            opts = TcpOptions(timestamp=(tsval, recent))
            self._ts_cache = (tsval, recent, opts)
            return opts
        return TcpOptions(timestamp=(tsval, recent), sack_blocks=self._sack_blocks())

    def _sack_option_len(self) -> int:
        """Bytes the SACK option will add to our next segment (nop, nop,
        kind, length and 8 per block; RFC 2018 3)."""
        if not self.sack_ok:
            return 0
        n = len(self._ooo) + (1 if self._dsack is not None else 0)
        if not n:
            return 0
        limit = 3 if self.ts_ok else 4
        return 4 + 8 * (n if n < limit else limit)

    def _sack_blocks(self) -> list[tuple[int, int]]:
        if not self.sack_ok:
            self._dsack = None
            return []
        blocks: list[tuple[int, int]] = []
        if self._dsack is not None:
            blocks.append(self._dsack)  # D-SACK first (RFC 2883)
            self._dsack = None
        base_pos, base_seq = self._rcv_pos, self.rcv_nxt
        for start, end in self._ooo.blocks():
            blocks.append(((base_seq + start - base_pos) & MASK,
                           (base_seq + end - base_pos) & MASK))
        return blocks[:4]

    def _make(self, flags: int, seq: int, payload: bytes = b"") -> TcpSegment:
        """Build a segment with the current ACK, window and options."""
        if flags & ACK:
            self._ack_pending = False
            self._delack_at = None
            self._rcv_acked = self.rcv_nxt
            ack = self.rcv_nxt
        else:
            ack = 0
        win = self._window()
        opts = self._options() if (self.ts_ok or self.sack_ok) else _EMPTY_OPTIONS
        return TcpSegment(self.local_port, self.remote_port, seq, ack, flags, win, 0, opts,
                          payload)

    def _emit(self, seg: TcpSegment, now: float) -> None:
        self._out.append(seg)

    def _ts_val(self, now: float) -> int:
        return (int(now * 1000) + self._ts_offset) & MASK

    def _syn_segment(self, now: float) -> TcpSegment:
        return TcpSegment(self.local_port, self.remote_port, self.iss, 0, SYN, self._syn_window,
                          0, syn_options(self.config, self._ts_val(now)))

    def _synack_segment(self, now: float) -> TcpSegment:
        n = Negotiated(self.send_mss, self.wscale_ok, self.snd_wscale, self.rcv_wscale,
                       self.sack_ok, self.ts_ok)
        opts = synack_options(self.config, n, self._ts_val(now), self._ts_recent)
        self._rcv_acked = self.rcv_nxt
        return TcpSegment(self.local_port, self.remote_port, self.iss, self.rcv_nxt, SYN | ACK,
                          self._syn_window, 0, opts)

    # -------------------------------------------------------------- closing
    def _enter_time_wait(self, now: float) -> None:
        self.state = _TIME_WAIT
        self._rto_at = None
        self._persist_at = None
        self._ka_at = None
        self._delack_at = None
        self._close_at = now + self.config.time_wait

    def _fail(self, errno: int, quiet: bool = False) -> None:
        """Abort with an error (reported unless the app already closed)."""
        self.error = errno
        if not quiet and not self._app_closed:
            self._events.append(ev.ConnectionFailed(errno))
        self._become_closed()

    def _become_closed(self) -> None:
        self.state = _CLOSED
        self._rto_at = None
        self._persist_at = None
        self._delack_at = None
        self._ka_at = None
        self._close_at = None
        self._ack_pending = False
        self._ooo.clear()
        if not self._closed_emitted:
            self._closed_emitted = True
            self._events.append(ev.CLOSED)

    # ------------------------------------------------------------ introspection
    def info(self, now: float) -> TcpInfo:
        """A :class:`TcpInfo` snapshot for ss."""
        timer: tuple[str, float, int] | None = None
        rtt = self.rtt
        candidates = [
            (self._rto_at, RETRANSMIT, self._retransmits),
            (self._persist_at, PERSIST, self._persist_backoff),
            (self._ka_at, KEEPALIVE, self._ka_probes),
            (self._close_at, TIMEWAIT, 0),
            (self._delack_at, DELACK, 0),
        ]
        for at, name, count in candidates:
            if at is not None:
                timer = (name, max(at - now, 0.0), count)
                break
        mss = self.send_mss
        unacked_bytes = seq_sub(self.snd_nxt, self.snd_una)
        notsent = max(self._unsent(), 0)
        sacked = sum(seq_sub(r, left) for left, r in self._sacked)
        return TcpInfo(
            state=self.state.ss_name,
            local_port=self.local_port,
            remote_port=self.remote_port,
            recv_q=len(self._rcvbuf),
            send_q=len(self._sndbuf),
            snd_una=self.snd_una,
            snd_nxt=self.snd_nxt,
            rcv_nxt=self.rcv_nxt,
            snd_wnd=self.snd_wnd,
            rcv_wnd=max(seq_sub(self.rcv_adv, self.rcv_nxt), 0),
            snd_wscale=self.snd_wscale,
            rcv_wscale=self.rcv_wscale,
            mss=mss,
            advmss=self.advmss,
            rcvmss=self.rcv_mss,
            srtt=rtt.srtt,
            rttvar=rtt.rttvar,
            rto=rtt.rto,
            min_rtt=rtt.min_rtt,
            ato=self.config.delack,
            backoff=rtt.backoff,
            cwnd=max(self.cc.cwnd // mss, 1) if mss else 0,
            ssthresh=min(self.cc.ssthresh // mss, 0x7FFFFFFF) if mss else 0,
            ca_name=self.cc.name,
            bytes_sent=self.bytes_sent,
            bytes_retrans=self.bytes_retrans,
            bytes_acked=self.bytes_acked,
            bytes_received=self.bytes_received,
            segs_out=self.segs_out,
            segs_in=self.segs_in,
            data_segs_out=self.data_segs_out,
            data_segs_in=self.data_segs_in,
            retransmits=self._retransmits,
            total_retrans=self.total_retrans,
            lost=self._presumed_lost_segments(),
            sacked=sacked,
            dsack_dups=self.dsack_dups,
            reordering=self.config.dupack_threshold,
            unacked=(unacked_bytes + mss - 1) // mss if mss else 0,
            notsent=notsent,
            last_send=max(now - self.last_send, 0.0),
            last_recv=max(now - self.last_recv, 0.0),
            last_ack=max(now - self.last_ack, 0.0),
            timer=timer,
            ts_enabled=self.ts_ok,
            sack_enabled=self.sack_ok,
            wscale_enabled=self.wscale_ok,
            shut_rd=self._app_closed,
            shut_wr=self._fin_queued,
            nodelay=self.config.nodelay,
            delivery_rate=(mss / rtt.srtt) * (self.cc.cwnd // mss) if rtt.srtt > 0 and mss
            else 0.0,
        )

    def __repr__(self) -> str:
        return (f"<TcpConnection {self.local_port}->{self.remote_port} {self.state.ss_name} "
                f"una={self.snd_una} nxt={self.snd_nxt} rcv_nxt={self.rcv_nxt}>")
