"""The send side of one connection: what to send next.

:class:`Sender` owns the send buffer (bytes from SND.UNA on), the output
pointer (the next byte to put on the wire, below SND.NXT after a timeout:
go-back-N), the FIN bookkeeping, Nagle/cork and sender SWS avoidance
(RFC 9293 3.7.4, 3.8.6.2.1), segmentation (MSS or GSO super-segments of
whole MSS multiples) and the send-time records RTT samples come from.

:meth:`Sender.push` is the output routine (Linux ``tcp_write_xmit``): it
reads the connection's sequence variables, the peer window, the congestion
window and the SACK scoreboard, and appends segments to the connection's
output list.  The connection (RFC 9293 dispatcher) calls it from
``segments_to_send``.

Send times (RFC 6298 3, Karn): every push that sends new data appends one
record ``(end sequence, time)`` (segments sent in one push share the time,
so one record per push); an ACK pops the records it covers and yields the
RTT of the oldest (``seq_rtt``, for SRTT) and the newest (``ca_rtt``, for
min_rtt and congestion control) acknowledged segment, as Linux's
``tcp_clean_rtx_queue``.  Bytes ever retransmitted below ``karn_high`` give
no sample (Karn's algorithm); the connection then falls back to the
timestamp echo (RFC 7323 4).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from ustack.tcp.send_buffer import SendBuffer
from ustack.wire.tcp import ACK, FIN, PSH, TcpOptions, TcpSegment

if TYPE_CHECKING:
    from ustack.tcp.connection import TcpConnection

MASK = 0xFFFFFFFF
_EMPTY_OPTIONS = TcpOptions()


class Sender:
    """Send buffer, output pointer, FIN state, Nagle/cork and send times."""

    __slots__ = ("buf", "ptr", "sml", "seg_max", "force", "last_data_send", "fin_queued",
                 "fin_seq", "fin_acked", "cork", "_tx_end", "_tx_time", "karn_high")

    def __init__(self, iss: int, send_buffer: int, now: float) -> None:
        self.buf = SendBuffer(send_buffer)
        #: next sequence number to put on the wire (< SND.NXT after an RTO)
        self.ptr = iss
        #: end of the last small segment sent (Minshall's Nagle)
        self.sml = iss
        #: largest payload per emitted segment (MSS, or a GSO multiple of it)
        self.seg_max = 536
        #: the SWS-avoidance override timeout fired: send what the window allows
        self.force = False
        self.last_data_send = now
        self.fin_queued = False
        self.fin_seq = 0
        self.fin_acked = False
        #: TCP_CORK: hold partial segments until uncorked (Linux)
        self.cork = False
        self._tx_end: deque[int] = deque()
        self._tx_time: deque[float] = deque()
        #: end of the highest range ever retransmitted (Karn)
        self.karn_high = iss

    def set_mss(self, mss: int, max_segment: int) -> None:
        self.seg_max = max(mss, max_segment // mss * mss) if max_segment else mss

    def unsent(self, una: int) -> int:
        """Bytes queued at or above the output pointer."""
        return len(self.buf) - ((self.ptr - una) & MASK)

    # ------------------------------------------------------------ send times
    def record(self, end: int, now: float) -> None:
        """New data up to ``end`` left at ``now``."""
        times = self._tx_time
        if times and times[-1] == now:
            self._tx_end[-1] = end
        else:
            self._tx_end.append(end)
            times.append(now)

    def retransmitted(self, end: int) -> None:
        """Bytes below ``end`` were (or will be) sent again: no RTT from them."""
        if 0 < ((end - self.karn_high) & MASK) < 0x80000000:  # end > karn_high
            self.karn_high = end

    def acked(self, prior_una: int, ack: int) -> tuple[float, float] | None:
        """SND.UNA moved from ``prior_una`` to ``ack``: (send time of the
        oldest, send time of the newest acknowledged byte), or None when
        none can be timed (nothing recorded, or Karn)."""
        ends = self._tx_end
        if not ends:
            return None
        times = self._tx_time
        first = -1.0
        last = -1.0
        boundary = prior_una
        while ends and ((ack - ends[0]) & MASK) < 0x80000000:  # end <= ack
            boundary = ends.popleft()
            last = times.popleft()
            if first < 0.0:
                first = last
        if ends and boundary != ack:  # partly acknowledged record
            last = times[0]
            if first < 0.0:
                first = last
        if first < 0.0:
            return None
        if 0 < ((self.karn_high - prior_una) & MASK) < 0x80000000:  # karn_high > prior_una
            return None
        return first, last

    def forget_times(self) -> None:
        self._tx_end.clear()
        self._tx_time.clear()

    # ------------------------------------------------------------ output
    def push(self, c: TcpConnection, now: float) -> None:
        """Send data and FIN within min(SND.WND, cwnd) (RFC 9293 3.8.6.2.1
        sender SWS avoidance, 3.7.4 Nagle; RFC 5681 cwnd; RFC 6675 skips
        SACKed ranges when resending after a timeout)."""
        sndbuf = self.buf
        buf_len = len(sndbuf)
        una = c.snd_una
        sent = (self.ptr - una) & MASK
        fin_queued = self.fin_queued
        if sent > buf_len:  # FIN already sent
            return
        cfg = c.config
        rtt = c.rtt
        if (una == c.snd_nxt and buf_len > sent and cfg.slow_start_after_idle
                and now - self.last_data_send > rtt.rto and c.bytes_sent):
            c.cc.on_idle_restart(now - self.last_data_send, rtt.rto, cfg.initial_cwnd)
        wnd = c.snd_wnd
        cwnd = c.cc.cwnd
        limit = wnd if wnd < cwnd else cwnd
        mss = c.send_mss
        seg_max = self.seg_max
        nodelay = cfg.nodelay
        cork = self.cork
        out = c._out
        snd_max = c.snd_nxt
        sacked = c._sacked
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
        ack = win = -1
        opts = _EMPTY_OPTIONS
        lport, rport = c.local_port, c.remote_port
        nbytes = nsegs = 0
        new_end = -1
        force = self.force
        nxt = self.ptr
        while True:
            cap = seg_max
            if sacked and (((una + sent) - snd_max) & MASK) >= 0x80000000:
                # retransmitting after a timeout: skip SACKed ranges (RFC 6675)
                seq = (una + sent) & MASK
                for left, right in sacked:
                    if (((seq - left) & MASK) < 0x80000000
                            and ((seq - right) & MASK) >= 0x80000000):  # left <= seq < right
                        skip = (right - seq) & MASK
                        sent += skip
                        seq = right
                        # SACKed bytes left the network: they do not count
                        # against cwnd (RFC 6675 "pipe"), only the peer window
                        cwnd += skip
                        limit = wnd if wnd < cwnd else cwnd
                    elif ((seq - left) & MASK) >= 0x80000000:  # seq < left
                        gap = (left - seq) & MASK
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
            if n < mss and not force and ((snd_max - una) & MASK) <= sent:
                # (both rules apply to new data only, never to retransmissions)
                if n < avail:
                    # window-limited runt: sender SWS avoidance (3.8.6.2.1)
                    if n < (c.max_snd_wnd >> 1) or n < 1:
                        break
                elif cork:
                    break  # TCP_CORK: partial segments wait (Linux tcp_nagle_test)
                elif (not nodelay and not fin_queued
                      and 0 < ((self.sml - una) & MASK) < 0x80000000):  # sml > una
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
                c.bytes_retrans += n
                c.mib["TcpRetransSegs"] += 1
                self.retransmitted(nxt)
            else:
                new_end = nxt
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
            if ((snd_max - nxt) & MASK) >= 0x80000000:  # nxt > snd_max
                snd_max = nxt
            if flags & FIN:
                sent += 1
                break
            if shared and n == mss and seg_max == mss and nxt == snd_max and c.fast_path:
                # Bulk fast path (exact-wire mode, no GSO): the segment just
                # built was a full-sized one of new data, so are the next ones
                # while both the buffer and min(SND.WND, cwnd) hold more than
                # a full segment.  None of them is subject to Nagle or sender
                # SWS avoidance (both only hold back segments < SMSS, RFC 9293
                # 3.7.4 and 3.8.6.2.1), none is a resend, and all share the
                # ACK, window and options: build them in one go.  The last
                # segment of the buffer (PSH, maybe FIN) is left to the loop.
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
                    snd_max = nxt = new_end = (base + total) & MASK
                    self.ptr = nxt
        c.snd_nxt = snd_max
        if nsegs:
            c.bytes_sent += nbytes
            c.data_segs_out += nsegs
            self.last_data_send = now
        self.force = False
        if fin_queued and sent == buf_len and limit - sent > 0:
            seq = (una + sent) & MASK
            out.append(c._make(ACK | FIN, seq))
            self.ptr = nxt = (seq + 1) & MASK
            if 0 < ((nxt - c.snd_nxt) & MASK) < 0x80000000:  # nxt > SND.NXT
                c.snd_nxt = nxt
                new_end = nxt
            else:
                self.retransmitted(nxt)
            sent += 1
        if new_end >= 0:
            self.record(new_end, now)
        timers = c.timers
        if c.snd_nxt != una:
            if timers.rto is None:
                timers.rto = now + rtt.rto
            timers.persist = None
        elif ((buf_len > sent or (fin_queued and sent == buf_len))
              and timers.persist is None):
            # nothing in flight, data waiting but held back (window closed, or
            # too small for SWS avoidance): the persist timer (3.8.6.1) probes
            # or, with an open window, forces the override send (3.8.6.2.1)
            timers.persist = now + rtt.rto

    def retransmit(self, c: TcpConnection, seq: int, length: int) -> int:
        """Resend up to ``length`` bytes at ``seq`` (fast retransmit, partial
        ACK, SACK hole, probe), with the FIN if the range reaches it.
        Returns the sequence space resent (0: nothing to resend there)."""
        sndbuf = self.buf
        off = (seq - c.snd_una) & MASK
        if off >= 0x80000000:
            return 0
        n = min(len(sndbuf) - off, length, c.send_mss - c.rcv.sack_option_len(c.ts_ok))
        if n > 0:
            flags = ACK
            if off + n == len(sndbuf):
                flags |= PSH
                if self.fin_queued and 0 < ((c.snd_nxt - self.fin_seq) & MASK) < 0x80000000:
                    flags |= FIN
            c._out.append(c._make(flags, seq, sndbuf.peek(off, n)))
            c.bytes_retrans += n
            c.data_segs_out += 1
        elif self.fin_queued and not self.fin_acked and off == len(sndbuf):
            c._out.append(c._make(ACK | FIN, seq))
            n = 1
        else:
            return 0
        self.retransmitted((seq + n) & MASK)
        return n
