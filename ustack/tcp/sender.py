"""The send side of one connection: what to send next.

:class:`Sender` owns the send buffer (bytes from SND.UNA on), the output
pointer (the next new byte, = SND.NXT), the FIN bookkeeping, Nagle/cork and
sender SWS avoidance (RFC 9293 3.7.4, 3.8.6.2.1), segmentation (MSS or GSO
super-segments of whole MSS multiples), pacing (a release time in the
timer table) and Linux's cwnd-validation state (``tcp_cwnd_validate``).

:meth:`Sender.push` is the output routine (Linux ``tcp_xmit_retransmit_queue``
+ ``tcp_write_xmit``): it reads the connection's sequence variables, the peer
window, the congestion window and the recovery room's scoreboard (what is
lost, the RFC 6675 pipe), appends segments to the connection's output list
and reports every transmission to the scoreboard (``Recovery.on_sent``),
which keeps the per-segment send times RTT and rate samples come from.
The connection (RFC 9293 dispatcher) calls it from ``segments_to_send``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from ustack.tcp.chrono import RWND_LIMITED, SNDBUF_LIMITED, Chrono
from ustack.tcp.congestion.base import CaState
from ustack.tcp.send_buffer import SendBuffer
from ustack.wire.tcp import ACK, FIN, PSH, TcpOptions, TcpSegment

if TYPE_CHECKING:
    from ustack.tcp.connection import TcpConnection
    from ustack.tcp.recovery import Recovery

MASK: Final = 0xFFFFFFFF
#: Linux sk_gso_max_size for a 64 KB GSO device: 65536 - (MAX_TCP_HEADER + 1)
_GSO_MAX: Final = 65536 - 321
_EMPTY_OPTIONS: Final = TcpOptions()
#: Sender.eor until the first MSG_EOR record end (issue 14: an idle
#: connection keeps no list of its own)
_NO_EOR: Final[list[int]] = []
#: a connection's output queue while nothing is queued (TcpConnection._out):
#: one shared empty list, never appended to; the first segment gives the
#: connection a list of its own (an idle connection keeps none: 56 B)
NO_OUT: Final[list[TcpSegment]] = []


class Sender:
    """Send buffer, output pointer, FIN state, Nagle/cork, pacing."""

    __slots__ = ("buf", "ptr", "sml", "seg_max", "force", "last_data_send", "fin_queued",
                 "fin_seq", "fin_acked", "cork", "release", "pacing_rate", "probe", "frto_new",
                 "cwnd_limited", "max_flight", "cwnd_usage_seq", "chrono", "eor",
                 "more", "more_cork", "urg_up")

    def __init__(self, iss: int, send_buffer: int, now: float) -> None:
        # (the flags first and together: the compiled class lays its fields
        # out in the order __init__ first assigns them, so nine flags in a
        # row take two words where scattered ones took four)
        #: the SWS-avoidance override timeout fired: send what the window allows
        self.force = False
        self.fin_queued = False
        self.fin_acked = False
        #: TCP_CORK: hold partial segments until uncorked (Linux)
        self.cork = False
        #: send one new segment whatever cwnd and Nagle (RFC 8985 7.3 loss probe)
        self.probe = False
        #: F-RTO step 2b (RFC 5682): new data before retransmissions
        self.frto_new = False
        #: Linux tcp_cwnd_validate state: is_cwnd_limited, max_packets_out
        #: (bytes here), cwnd_usage_seq
        self.cwnd_limited = False
        #: MSG_MORE: the last write said more follows, so the end of the data
        #: is not marked PSH (Linux tcp_push skips tcp_mark_push), and the
        #: next output round holds partial segments as a cork does (its
        #: __tcp_push_pending_frames with TCP_NAGLE_CORK); later rounds (an
        #: ACK, the persist timer) follow Nagle/TCP_NODELAY again
        self.more = False
        self.more_cork = False
        self.buf = SendBuffer(send_buffer)
        #: next new sequence number to put on the wire (SND.NXT)
        self.ptr = iss
        #: end of the last small segment sent (Minshall's Nagle)
        self.sml = iss
        #: largest payload per emitted segment (MSS, or a GSO multiple of it)
        self.seg_max = 536
        self.last_data_send = now
        self.fin_seq = 0
        self.max_flight = 0
        self.cwnd_usage_seq = iss
        #: pacing: earliest time the next segment may leave (Linux tcp_wstamp_ns)
        self.release = 0.0
        #: pacing rate in use (bytes/s, 0 = not paced), for TcpInfo
        self.pacing_rate = 0.0
        #: busy / rwnd-limited / sndbuf-limited time (Linux tcp_chrono_*)
        self.chrono = Chrono()
        #: MSG_EOR record ends not yet acknowledged (sequence numbers, in
        #: order): no segment carries bytes from both sides of one (the
        #: shared empty list until the first record end: only read, never
        #: changed, while empty)
        self.eor: list[int] = _NO_EOR
        #: SND.UP, the send urgent pointer (RFC 9293 3.8.5), -1 = none
        #: (ustack.tcp.urgent; TcpConnection.send_urgent)
        self.urg_up = -1

    def mark_eor(self, end: int) -> None:
        """The bytes queued up to ``end`` end a record (MSG_EOR; Linux
        TCP_SKB_CB(skb)->eor: tcp_skb_can_collapse_to refuses to append to
        the skb, tcp_retrans_try_collapse to merge across it)."""
        eor = self.eor
        if eor is _NO_EOR:
            eor = self.eor = []
        if not eor or eor[-1] != end:
            eor.append(end)

    def _next_eor(self, seq: int, una: int) -> int:
        """Bytes from ``seq`` to the next record end (0: none ahead); record
        ends at or below SND.UNA are dropped."""
        eor = self.eor
        while eor:
            d = (eor[0] - una) & MASK
            if d and d < 0x80000000:
                break
            eor.pop(0)  # at or below SND.UNA: acknowledged
        for end in eor:
            d = (end - seq) & MASK
            if 0 < d < 0x80000000:
                return d
        return 0

    def set_mss(self, mss: int, max_segment: int) -> None:
        self.seg_max = max(mss, max_segment // mss * mss) if max_segment else mss

    def unsent(self, una: int) -> int:
        """Bytes queued at or above the output pointer."""
        return len(self.buf) - ((self.ptr - una) & MASK)

    # ------------------------------------------------------------ output
    def push(self, c: TcpConnection, now: float) -> None:
        """Transmit what is due (Linux ``tcp_write_xmit`` after
        ``tcp_xmit_retransmit_queue``): first the segments the scoreboard
        holds lost (RFC 6675 4 NextSeg rule 1) while the pipe is below cwnd,
        then new data and FIN while the pipe and the peer window allow
        (RFC 6675 5 rule 2 / RFC 3042 limited transmit fall out of the pipe),
        with sender SWS avoidance (RFC 9293 3.8.6.2.1), Nagle (3.7.4) or cork,
        MSS or GSO segmentation and pacing."""
        rec = c._rec
        if rec is None and c._rec_cfg is None:
            return  # not synchronized
        sndbuf = self.buf
        buf_len = len(sndbuf)
        una = c.snd_una
        snd_max = c.snd_nxt
        flight = (snd_max - una) & MASK
        sent = (self.ptr - una) & MASK
        cfg = c.config
        rtt = c.rtt
        cc = c.cc
        probe = self.probe
        if (sent == buf_len and una == snd_max and c.fast_path and not self.fin_queued
                and not probe and not self.frto_new and (rec is None or not rec.sb.lost_out)):
            # Nothing queued, nothing in flight, nothing lost (every drain
            # after the last byte was acknowledged: the receive side of a
            # request/response; every drain of an idle connection, which
            # has no recovery room yet).  The general path below would send
            # nothing and only do these (tests/unit/test_tcp_fastpath.py).
            if cfg.pacing or c.cc.needs_pacing:
                self._pacing_rate(c)
            self.more_cork = False
            self.force = False
            if self.chrono.kind == RWND_LIMITED:
                self.chrono.stop(RWND_LIMITED, now, False)
            return
        if rec is None:
            rec = c._room()  # the first send after the handshake
        if rec.sb.lost_out and not self.frto_new and not probe:
            self._retransmit_lost(c, rec, now)
        if sent > buf_len:  # FIN already sent
            self._after_push(c, rec, now, buf_len, sent, 0)
            return
        fin_queued = self.fin_queued
        if una == snd_max and buf_len > sent and c.snd_wnd:
            # sending starts with nothing in flight (Linux CA_EVENT_TX_START,
            # after tcp_cwnd_restart: RFC 5681 4.1 restart window).  Not while
            # the peer's window is closed: zero-window probes carry no data
            # and keep the cwnd (Linux restarts it when the window opens,
            # tcp_ack_update_window -> tcp_slow_start_after_idle_check)
            idle = now - self.last_data_send
            if (cfg.slow_start_after_idle and idle > rtt.rto and c.bytes_sent
                    and not cc.controls_cwnd):
                cc.on_idle_restart(idle, rtt.rto, cfg.initial_cwnd)
            cc.on_tx_start(now, idle)
        wnd = c.snd_wnd
        mss = c.send_mss
        # (RFC 8985 7.3: the loss probe is one new segment whatever cwnd,
        # Nagle off; Linux tcp_write_xmit push_one = 2)
        cwnd_room = flight + mss if probe else flight + cc.cwnd - rec.in_flight()
        limit = wnd if wnd < cwnd_room else cwnd_room
        if (0 < buf_len <= mss and buf_len <= limit and not sent and una == snd_max
                and c.fast_path and not fin_queued and not probe and not self.frto_new
                and not self.cork and not self.more_cork and not self.more and not self.eor
                and not cfg.pacing and not cc.needs_pacing
                and not rec.sb.lost_out and not c.rcv.has_blocks()
                and (cfg.nodelay or self.force
                     or not 0 < ((self.sml - una) & MASK) < 0x80000000)):
            # everything queued fits one segment the window and cwnd take,
            # nothing in flight (every write of a request/response)
            self._push_one(c, rec, now, buf_len, una, mss)
            return
        rate = 0.0
        paced_limit = False
        if (cfg.pacing or cc.needs_pacing) and not probe:
            rate = self._pacing_rate(c)
            if rate > 0.0 and buf_len > sent:
                if self.release > now:
                    # held back: the pacing timer releases the next burst
                    # (one deadline in the timer table, no timer per segment)
                    c.timers.pacing = self.release
                    return
                # a burst of about 1 ms at the pacing rate, at least 2
                # segments (Linux tcp_tso_autosize, sk_pacing_shift 10)
                burst = int(rate * 0.001) // mss * mss
                if burst < 2 * mss:
                    burst = 2 * mss
                if sent + burst < limit:
                    limit = sent + burst
                    paced_limit = True
        seg_max = self.seg_max
        # exact-wire mode: the GSO packets Linux would build here are cut in
        # MSS segments as a device without TSO/GSO gets them (software GSO),
        # so the forced PSH of a packet lands on its last segment: every
        # ``group``-th full segment of this round (0 = no such packets)
        group = 0
        if seg_max > mss:
            if buf_len - sent > mss:  # (the cap is never below one MSS)
                seg_max = self._tso_cap(c, mss, seg_max)
        elif not probe and buf_len - sent > mss:
            group = self._tso_cap(c, mss, _GSO_MAX) // mss
            if group < 2:
                group = 0
        nodelay = cfg.nodelay
        cork = self.cork or self.more_cork
        self.more_cork = False
        more = self.more
        eor = self.eor
        out = c._out
        if out is NO_OUT:
            out = c._out = []
        rcv = c.rcv
        # one ACK number, window and option block for the whole batch unless a
        # SACK/D-SACK block must be carried (then _make builds each segment)
        shared = not rcv.has_blocks()
        if not shared:
            # SACK blocks ride along: shorten the payload so the segment still
            # fits the MTU (Linux tcp_current_mss) and send no super-segments
            extra = rcv.sack_option_len(c.ts_ok)
            if extra:
                mss = max(mss - extra, 1)
                seg_max = mss
        if probe:
            seg_max = mss
        ack = win = -1
        opts = _EMPTY_OPTIONS
        lport, rport = c.local_port, c.remote_port
        nbytes = nsegs = 0
        first_new = self.ptr
        force = self.force or probe
        nxt = self.ptr
        while True:
            avail = buf_len - sent
            if avail <= 0:
                break
            room = limit - sent
            if room <= 0:
                break
            n = avail if avail < room else room
            if n > seg_max:
                n = seg_max
            record_end = False
            if eor:
                # MSG_EOR: the segment stops at the record's end; a record's
                # short tail is not the last skb, so Nagle does not hold it
                # (Linux tcp_write_xmit: TCP_NAGLE_PUSH unless tcp_skb_is_last)
                # and it carries PSH (the write that ended it pushed)
                d = self._next_eor((una + sent) & MASK, una)
                if d and d <= n:
                    n = d
                    record_end = True
            if n < mss and not force and not (record_end and n < avail):
                if n < avail:
                    # window-limited runt: sender SWS avoidance (3.8.6.2.1)
                    if n < (c.max_snd_wnd >> 1) or n < 1:
                        break
                elif cork:
                    break  # TCP_CORK: partial segments wait (Linux tcp_nagle_test)
                elif (not nodelay and not fin_queued
                      and 0 < ((self.sml - una) & MASK) < 0x80000000):  # sml > una
                    # Nagle, Minshall's variant as Linux (tcp_minshall_check):
                    # a small segment waits while an earlier small segment is
                    # unacknowledged (RFC 896, RFC 1122 4.2.3.4)
                    break
            elif n > mss and not record_end:
                n -= n % mss
            seq = (una + sent) & MASK
            # a super-segment as a view of the send buffer where it lies in
            # one chunk: the device's gather send takes it uncopied
            payload = sndbuf.peek_view(sent, n) if n > mss else sndbuf.peek(sent, n)
            sent += n
            # PSH on the end of the queued data (Linux tcp_push/tcp_mark_push
            # at the end of a write) and on every super-segment: Linux
            # __tcp_transmit_skb forces PSH on any packet of more than one
            # segment (tcp_skb_pcount > 1, since 5.4: "tcp: force a PSH flag
            # on TSO packets"), never on a lone full-sized one
            flags = ACK | PSH if n > mss or record_end or (
                group and (nsegs + 1) % group == 0) else ACK
            if sent == buf_len:
                if not more:
                    flags = ACK | PSH
                if fin_queued and room > n:
                    flags = ACK | PSH | FIN
            nxt = (seq + n + (1 if flags & FIN else 0)) & MASK
            nbytes += n
            nsegs += 1
            if n < mss:
                self.sml = (seq + n) & MASK
            if shared:
                if win < 0:
                    rcv.sent_ack()
                    ack = rcv.nxt
                    win = rcv.window()
                    if c.ts_ok or c.sack_ok:
                        opts = c._options()
                out.append(TcpSegment(lport, rport, seq, ack, flags, win, 0, opts, payload))
            else:
                out.append(c._make(flags, seq, payload))
            self.ptr = nxt
            if flags & FIN:
                sent += 1
                break
            if probe:
                break
            if shared and n == mss and seg_max == mss and c.fast_path and not eor:
                # Bulk fast path (exact-wire mode, no GSO): the segment just
                # built was a full-sized one, so are the next ones while both
                # the buffer and the room hold more than a full segment.
                # None of them is subject to Nagle or sender SWS avoidance
                # (both only hold back segments < SMSS, RFC 9293 3.7.4 and
                # 3.8.6.2.1) and all share the ACK, window and options: build
                # them in one go.  The last segment of the buffer (PSH, maybe
                # FIN) is left to the loop.
                avail = buf_len - sent
                room = limit - sent
                k = (avail if avail < room else room) // mss
                if k * mss >= avail:
                    k -= 1
                if k > 0:
                    total = k * mss
                    # (a view: its slices are the segments' texts, uncopied)
                    got = sndbuf.peek_view(sent, total)
                    blob = got if type(got) is memoryview else memoryview(got)
                    base = nxt
                    if group:
                        first = nsegs + 1  # segment number of blob[0] in this round
                        out.extend([TcpSegment(lport, rport, (base + i) & MASK, ack,
                                               ACK | PSH if (first + j) % group == 0 else ACK,
                                               win, 0, opts, blob[i:i + mss])
                                    for j, i in enumerate(range(0, total, mss))])
                    else:
                        out.extend([TcpSegment(lport, rport, (base + i) & MASK, ack, ACK, win,
                                               0, opts, blob[i:i + mss])
                                    for i in range(0, total, mss)])
                    sent += total
                    nbytes += total
                    nsegs += k
                    nxt = (base + total) & MASK
                    self.ptr = nxt
        self.force = False
        self.probe = False
        if fin_queued and sent == buf_len and limit - sent > 0:
            seq = (una + sent) & MASK
            out.append(c._make(ACK | FIN, seq))
            self.ptr = nxt = (seq + 1) & MASK
            sent += 1
        if nxt != first_new:
            c.snd_nxt = nxt
            length = (nxt - first_new) & MASK
            rec.on_sent(first_new, length, now, tsval=c._ts_val(now) if c.ts_ok else None)
            c.mib["TcpExtTCPOrigDataSent"] += nsegs
            if self.frto_new:
                self.frto_new = False  # F-RTO 2b: new data went first (RFC 5682)
        elif self.frto_new:
            # F-RTO 2b without new data to send: conventional recovery
            # (Linux tcp_xmit_recovery falls through to the retransmit queue)
            self.frto_new = False
            rec.frto = False
            if rec.sb.lost_out:
                self._retransmit_lost(c, rec, now)
        # Linux tcp_write_xmit: the peer's window (tcp_snd_wnd_test), not
        # cwnd, stopped the next segment -> the rwnd-limited chronograph
        rest = buf_len - sent
        chrono = self.chrono
        if rest > 0 and wnd - sent < (mss if rest > mss else rest) and wnd < cwnd_room:
            chrono.start(RWND_LIMITED, now)
        elif chrono.kind == RWND_LIMITED:
            chrono.stop(RWND_LIMITED, now, False)
        if nsegs:
            c.bytes_sent += nbytes
            c.data_segs_out += nsegs
            if not rcv.pingpong:
                rcv.data_sent(self.last_data_send, now)
            self.last_data_send = now
            if rate > 0.0:
                # the next burst leaves once this one has at the pacing rate
                # (Linux tcp_update_skb_after_send: EDT, wstamp += len / rate)
                start = self.release if self.release > now else now
                self.release = start + nbytes / rate
                if paced_limit and buf_len > sent:
                    c.timers.pacing = self.release
        self._after_push(c, rec, now, buf_len, sent, nsegs)

    def _push_one(self, c: TcpConnection, rec: Recovery, now: float, buf_len: int,
                  una: int, mss: int) -> None:
        """The end of :meth:`push` when everything queued fits one segment
        that the window and cwnd take and nothing is in flight, lost, paced,
        corked, held by MSG_MORE, cut by a record end (MSG_EOR) or held by
        Nagle (push checked those): the same steps, in the
        same order, without the loop.  Same segments and state as the
        general path (tests/unit/test_tcp_fastpath.py)."""
        n = buf_len
        nxt = (una + n) & MASK
        if n < mss:
            self.sml = nxt
        rcv = c.rcv
        rcv.sent_ack()
        ack = rcv.nxt
        win = rcv.window()
        opts = c._options() if (c.ts_ok or c.sack_ok) else _EMPTY_OPTIONS
        c._queue_out(TcpSegment(c.local_port, c.remote_port, una, ack, ACK | PSH, win, 0, opts,
                                self.buf.peek(0, n)))
        self.ptr = nxt
        self.force = False
        self.probe = False
        c.snd_nxt = nxt
        rec.on_sent(una, n, now, tsval=c._ts_val(now) if c.ts_ok else None)
        c.mib["TcpExtTCPOrigDataSent"] += 1
        chrono = self.chrono
        if chrono.kind == RWND_LIMITED:
            chrono.stop(RWND_LIMITED, now, False)
        c.bytes_sent += n
        c.data_segs_out += 1
        if not rcv.pingpong:
            rcv.data_sent(self.last_data_send, now)
        self.last_data_send = now
        self._after_push(c, rec, now, buf_len, buf_len, 1)

    def _after_push(self, c: TcpConnection, rec: Recovery, now: float, buf_len: int,
                    sent: int, nsegs: int) -> None:
        """Timers and cwnd validation after a transmission round."""
        una = c.snd_una
        timers = c.timers
        if c.snd_nxt != una:
            rec.apply_timers(timers)
            timers.persist = None
            # Linux tcp_cwnd_validate: was the window the limit during this flight?
            # (in whole segments, as Linux counts packets: no room for one more)
            pipe = rec.in_flight()
            limited = pipe + c.send_mss > c.cc.cwnd
            if (((una - self.cwnd_usage_seq) & MASK) < 0x80000000 or limited
                    or (not self.cwnd_limited and pipe > self.max_flight)):
                self.cwnd_limited = limited
                self.max_flight = pipe
                self.cwnd_usage_seq = c.snd_nxt
            if buf_len <= sent:
                # the application has nothing more queued (Linux
                # tcp_rate_check_app_limited)
                rec.check_app_limited(0)
                if (nsegs and c._send_blocked and c.state.value in (1, 8)
                        and not self.is_cwnd_limited(c)):
                    # everything sent, not cwnd-limited, the application
                    # blocked on a full buffer, ESTABLISHED/CLOSE-WAIT:
                    # send-buffer limited (Linux tcp_cwnd_validate)
                    self.chrono.start(SNDBUF_LIMITED, now)
        elif ((buf_len > sent or (self.fin_queued and sent == buf_len))
              and timers.persist is None):
            # nothing in flight, data waiting but held back (window closed, or
            # too small for SWS avoidance): the persist timer (3.8.6.1) probes
            # or, with an open window, forces the override send (3.8.6.2.1)
            timers.persist = now + c.rtt.rto

    def is_cwnd_limited(self, c: TcpConnection) -> bool:
        """Linux ``tcp_is_cwnd_limited``: in slow start, cwnd below twice the
        largest recent flight; else the window limited the last flight."""
        cc = c.cc
        if cc.cwnd < cc.ssthresh:
            return cc.cwnd < 2 * self.max_flight
        return self.cwnd_limited

    def _retransmit_lost(self, c: TcpConnection, rec: Recovery, now: float) -> None:
        """RFC 6675 4 NextSeg rule 1 (Linux ``tcp_xmit_retransmit_queue``):
        resend the lowest lost ranges, one MSS at a time, while the pipe is
        below cwnd."""
        cc = c.cc
        mib = c.mib
        recovering = rec.state == CaState.RECOVERY
        for _ in range(1024):
            r = rec.next_to_retransmit()
            if r is None or rec.in_flight() >= cc.cwnd:
                return
            seq, length = r
            n = self.retransmit(c, seq, length)
            if n <= 0:
                return
            rec.on_sent(seq, n, now, tsval=c._ts_val(now) if c.ts_ok else None)
            c.total_retrans += 1
            mib["TcpExtTCPFastRetrans" if recovering else "TcpExtTCPSlowStartRetrans"] += 1

    def _tso_cap(self, c: TcpConnection, mss: int, seg_max: int) -> int:
        """The largest super-segment now (whole MSS): Linux tcp_tso_autosize
        (about 1 ms at the pacing rate, plus gso_max_size >> (min_rtt in us >>
        tcp_tso_rtt_log 9) on short paths, at least tcp_min_tso_segs; no cap
        before an RTT sample, when Linux's pacing rate is still unlimited) and
        tcp_cwnd_test (at most half the cwnd, "at least 2 GSO packets in
        flight")."""
        cc = c.cc
        rtt = c.rtt
        if rtt.srtt > 0.0:
            rate = cc.pacing_rate
            if rate <= 0.0:
                rate = self._default_rate(c)
            nbytes = int(rate) >> 10  # sk_pacing_shift 10
            if rtt.min_rtt > 0.0:
                r = int(rtt.min_rtt * 1e6) >> 9
                if r < 32:
                    nbytes += _GSO_MAX >> r
            segs = (nbytes if nbytes < _GSO_MAX else _GSO_MAX) // mss
            min_segs = c.config.tcp_min_tso_segs
            cap = (segs if segs > min_segs else min_segs) * mss
            if cap < seg_max:
                seg_max = cap
        half = (cc.cwnd // mss >> 1) * mss
        if half < seg_max:
            seg_max = half if half > mss else mss
        return seg_max

    def _default_rate(self, c: TcpConnection) -> float:
        """Linux's default pacing rate (tcp_update_pacing_rate), bytes/s."""
        cc = c.cc
        srtt = c.rtt.srtt
        if srtt <= 0.0:
            return 0.0
        cfg = c.config
        ratio = (cfg.tcp_pacing_ss_ratio if cc.cwnd < cc.ssthresh // 2
                 else cfg.tcp_pacing_ca_ratio)
        flight = (c.snd_nxt - c.snd_una) & MASK
        return (cc.cwnd if cc.cwnd > flight else flight) * ratio / 100.0 / srtt

    def _pacing_rate(self, c: TcpConnection) -> float:
        """The controller's pacing rate, else Linux's default
        (tcp_update_pacing_rate): cwnd/SRTT at tcp_pacing_ss_ratio % while
        cwnd < ssthresh/2 (slow start that is not about to end), else at
        tcp_pacing_ca_ratio %.  0 = no pacing (no RTT sample yet)."""
        rate = c.cc.pacing_rate
        if rate <= 0.0:
            rate = self._default_rate(c)
        self.pacing_rate = rate
        return rate

    def retransmit(self, c: TcpConnection, seq: int, length: int) -> int:
        """Resend up to ``length`` bytes at ``seq`` (at most one MSS: a lost
        range, the RTO head, a probe), with the FIN if the range reaches it.
        Returns the sequence space resent, FIN included (0: nothing there);
        the caller reports it to the scoreboard."""
        sndbuf = self.buf
        off = (seq - c.snd_una) & MASK
        if off >= 0x80000000:
            return 0
        n = min(len(sndbuf) - off, length, c.send_mss - c.rcv.sack_option_len(c.ts_ok))
        record_end = False
        if self.eor and n > 0:
            d = self._next_eor(seq, c.snd_una)  # never across a record's end
            if d and d <= n:
                n = d
                record_end = True
        if n > 0:
            flags = ACK | PSH if record_end else ACK
            if off + n == len(sndbuf):
                flags |= PSH
                if self.fin_queued and 0 < ((c.snd_nxt - self.fin_seq) & MASK) < 0x80000000:
                    flags |= FIN
            c._queue_out(c._make(flags, seq, sndbuf.peek(off, n)))
            c.bytes_retrans += n
            c.data_segs_out += 1
            if flags & FIN:
                n += 1
        elif self.fin_queued and not self.fin_acked and off == len(sndbuf):
            c._queue_out(c._make(ACK | FIN, seq))
            n = 1
        else:
            return 0
        c.mib["TcpRetransSegs"] += 1
        return n
