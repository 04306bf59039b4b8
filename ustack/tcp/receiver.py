"""The receive side of one connection: the receive sequence space, in-order
buffer and reassembly, the ACK policy, the advertised window and the SACK
blocks to send (RFC 9293 3.8.6.2.2 / 3.8.6.3 / 3.10.7.4 "seventh", RFC 2018,
RFC 2883, RFC 5681 4.2).

The connection (the RFC 9293 dispatcher) decides whether a segment is
acceptable and trims it to the window; it then hands the text here:
:meth:`Receiver.accept` for in-order text, :meth:`Receiver.queue` for text
above RCV.NXT, :meth:`Receiver.take_fin` for an in-order FIN.  Whether an ACK
is due is the flag :attr:`Receiver.ack_now` (send one at the next output) or
the ``delack`` deadline in the shared :class:`~ustack.tcp.timers.Timers`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from ustack.tcp.reassembly import Reassembly
from ustack.tcp.recv_buffer import RecvBuffer
from ustack.tcp.timers import Timers

MASK: Final = 0xFFFFFFFF
#: the reassembly queue of every receiver that never got text above RCV.NXT:
#: only read, never changed (:meth:`Receiver.queue` gives a receiver its own
#: on the first out-of-order segment), so an idle connection keeps none
#: (issue 14)
_NO_OOO: Final = Reassembly()


class Receiver:
    """RCV.NXT, RCV.ADV (the right edge we advertised), the last ACK sent,
    the buffers and the ACK policy."""

    __slots__ = ("nxt", "adv", "acked", "pos", "buf", "ooo", "dsack", "quickacks", "ack_now",
                 "mss", "advmss", "wscale", "sack_ok", "size", "delack", "ooo_max", "timers",
                 "bytes_received", "quickack_mode", "pingpong", "lrcv", "syn_window")

    def __init__(self, timers: Timers, size: int, advmss: int, delack: float,
                 quickacks: int, ooo_max: int) -> None:
        # (the flags first and together: the compiled class packs them into
        # one word, in the order __init__ first assigns its fields)
        #: TCP_QUICKACK: every data segment is ACKed at once
        self.quickack_mode = False
        #: an ACK is due at the next output
        self.ack_now = False
        self.sack_ok = False
        #: interactive (ping-pong) mode: we answered data within a delayed
        #: ACK interval, so the ACK of the next data waits to ride on the
        #: answer instead of the quickack rule (Linux icsk_ack.pingpong,
        #: tcp_pingpong_thresh 1)
        self.pingpong = False
        self.timers = timers
        #: RCV.NXT
        self.nxt = 0
        #: right edge of the window we advertised (RCV.NXT + RCV.WND when sent)
        self.adv = 0
        #: RCV.NXT as of the last ACK we sent
        self.acked = 0
        #: stream position of RCV.NXT (bytes since the peer's SYN, no wrap)
        self.pos = 0
        #: in-order bytes the application has not read (the segments' texts
        #: as they came, views of their frames: no copy on the way in)
        self.buf = RecvBuffer()
        self.ooo = _NO_OOO
        #: a D-SACK block to report once (RFC 2883)
        self.dsack: tuple[int, int] | None = None
        #: ACKs still to send at once before delayed ACKs start (Linux quickack)
        self.quickacks = quickacks
        #: largest segment payload seen from the peer (Linux rcv_mss)
        self.mss = min(advmss, 536)
        self.advmss = advmss
        self.wscale = 0
        #: receive buffer bound (bytes): the window and out-of-order storage
        self.size = size
        self.delack = delack
        self.ooo_max = ooo_max
        self.bytes_received = 0
        #: when in-order text last arrived (Linux icsk_ack.lrcvtime)
        self.lrcv = -1.0
        #: the window our SYN or SYN-ACK offers: never scaled (RFC 7323
        #: 2.2), whole segments; Linux offers 64240
        self.syn_window = min(size, 65535 // advmss * advmss if advmss else 65535)

    # ------------------------------------------------------------ text
    def accept(self, payload: bytes | memoryview, now: float) -> bool:
        """In-order text (3.10.7.4 "seventh"): append it and whatever
        reassembly now completes, and decide the ACK.  True when an
        out-of-order FIN became in order (the caller processes it)."""
        plen = len(payload)
        self.lrcv = now
        self.buf.append(payload)
        self.nxt = (self.nxt + plen) & MASK
        self.pos += plen
        self.bytes_received += plen
        if plen > self.mss:
            self.mss = plen if plen < self.advmss else self.advmss
        ooo = self.ooo
        if ooo.nbytes or ooo.fin_pos is not None:
            # filling a hole: ACK immediately (RFC 5681 4.2)
            self.ack_now = True
            while True:
                more = ooo.pop_ready(self.pos)
                if more is None:
                    break
                n = len(more)
                self.buf.append(more)
                self.nxt = (self.nxt + n) & MASK
                self.pos += n
                self.bytes_received += n
            return ooo.fin_pos is not None and ooo.fin_pos == self.pos
        self._ack_or_delay((self.nxt - self.acked) & MASK, self.mss, now)
        return False

    def _ack_or_delay(self, unacked: int, mss: int, now: float) -> None:
        """The ACK decision after in-order text: ``unacked`` sequence
        numbers received and not yet acknowledged, RCV.MSS ``mss``."""
        if unacked > mss:
            # at least every second full-sized segment (RFC 9293 3.8.6.3, Linux)
            self.ack_now = True
        elif self.quickacks > 0 and not self.pingpong:
            # Linux quickack mode: the first segments of a connection are
            # ACKed at once (tcp_incr_quickack, TCP_MAX_QUICKACKS 16), not
            # in ping-pong mode (tcp_in_quickack_mode: quick && !pingpong)
            self.quickacks -= 1
            self.ack_now = True
        elif self.quickack_mode:
            self.ack_now = True
        elif self.timers.delack is None:
            self.timers.delack = now + self.delack

    def accept_run(self, segments: list[bytes | memoryview], hlen: int, now: float) -> None:
        """:meth:`accept` of the text of each of ``segments`` (TCP segments
        with ``hlen``-byte headers, in order, nothing held for reassembly),
        all at ``now``: the same buffer, sequence space, RCV.MSS and ACK
        decision, each text taken once (:meth:`RecvBuffer.append_texts`: a
        big one kept as the view of its frame it is, small ones copied,
        joined 64 KB at a time)."""
        self.lrcv = now
        nxt = self.nxt
        acked = self.acked
        mss = self.mss
        advmss = self.advmss
        total = 0
        texts: list[bytes | memoryview] = []
        append = texts.append
        for segment in segments:
            text = segment[hlen:]
            plen = len(text)
            append(text)
            total += plen
            nxt = (nxt + plen) & MASK
            if plen > mss:
                mss = plen if plen < advmss else advmss
            self._ack_or_delay((nxt - acked) & MASK, mss, now)  # accept's rule, per segment
        self.buf.append_texts(texts, total)
        self.nxt = nxt
        self.mss = mss
        self.pos += total
        self.bytes_received += total

    def queue(self, seq: int, payload: bytes | memoryview, fin: bool) -> None:
        """Text (and maybe a FIN) above RCV.NXT: keep it for reassembly (a
        copy of a view: the queue holds bytes) and answer at once with a
        duplicate ACK carrying SACK (RFC 5681 4.2)."""
        start = self.pos + ((seq - self.nxt) & MASK)
        ooo = self.ooo
        if ooo is _NO_OOO:
            ooo = self.ooo = Reassembly()
        if payload:
            ooo.add(start, payload if type(payload) is bytes else bytes(payload), self.ooo_max)
        if fin:
            ooo.fin_pos = start + len(payload)
        self.ack_now = True

    def take_fin(self) -> None:
        """The peer's FIN is in order: it occupies one sequence number."""
        if self.ooo is not _NO_OOO:
            self.ooo.clear()
        self.nxt = (self.nxt + 1) & MASK
        self.pos += 1
        self.ack_now = True

    def duplicate(self, seq: int, length: int) -> None:
        """Old duplicate text arrived: report it as a D-SACK (RFC 2883)."""
        if self.sack_ok and length:
            self.dsack = (seq, (seq + length) & MASK)

    def read(self, max_bytes: int) -> bytes:
        """RECEIVE (3.10.3): up to ``max_bytes`` in-order bytes (the caller
        then checks :meth:`maybe_window_update`)."""
        return self.buf.read(max_bytes)

    def read_into(self, sink: Callable[[memoryview], object], max_bytes: int) -> int:
        """:meth:`read` without the copy: ``sink`` gets a view of up to
        ``max_bytes`` in-order bytes (:meth:`RecvBuffer.read_into`: one big
        chunk as it is, small ones joined), which are then taken (also when
        it raises); the view is released after the call."""
        return self.buf.read_into(sink, max_bytes)

    def take(self, max_bytes: int) -> list[bytes | bytearray | memoryview]:
        """:meth:`read` without the copy: the chunks holding up to
        ``max_bytes`` in-order bytes, handed over (:meth:`RecvBuffer.take`)."""
        return self.buf.take(max_bytes)

    # ------------------------------------------------------------ ACK policy
    def sent_ack(self) -> None:
        """A segment carrying ACK = RCV.NXT left: nothing more is due."""
        self.ack_now = False
        self.timers.delack = None
        self.acked = self.nxt

    def stretch_limit(self) -> int:
        """How much text may arrive unacknowledged inside one receive batch
        before the ACK that is due goes out at once instead of at the batch's
        end: a quarter of the window we last announced, at least two full
        segments.  A driver that defers the ACKs of a batch to its end (one
        ACK for the batch, as GRO does for one super-packet, RFC 5681 4.2
        allows stretch ACKs) would otherwise hold a window-limited sender
        still for a whole batch: with a 1 MB window and batches of 600
        segments it waited for every ACK.  (The driver applies it to
        wire-sized segments only, not to coalesced GRO frames.)"""
        quarter = ((self.adv - self.acked) & MASK) >> 2
        two = self.mss << 1
        return quarter if quarter > two else two

    def stretch_due(self) -> bool:
        """An ACK is due and :meth:`stretch_limit` bytes arrived since the
        last one."""
        return self.ack_now and ((self.nxt - self.acked) & MASK) >= self.stretch_limit()

    def delack_expired(self) -> None:
        """The delayed-ACK timer ran out (RFC 1122 4.2.3.2).  With the ACK
        still due, no answer came to carry it: ping-pong mode ends (Linux
        tcp_delack_timer_handler, "delayed ACK missed")."""
        self.timers.delack = None
        if self.acked != self.nxt:
            self.ack_now = True
            self.pingpong = False

    def data_sent(self, last_data_send: float, now: float) -> None:
        """We send data at ``now`` (the previous data left at
        ``last_data_send``): an answer within a delayed-ACK interval of
        the peer's last text enters ping-pong mode (Linux
        tcp_event_data_sent -> inet_csk_inc_pingpong_cnt)."""
        lrcv = self.lrcv
        if lrcv > last_data_send and now - lrcv < self.delack:
            self.pingpong = True

    def maybe_window_update(self) -> None:
        """After the application read: a window update is due when the window
        can grow substantially (Linux tcp_cleanup_rbuf: at least doubles, and
        RFC 9293 3.8.6.2.2: by at least min(RCV.BUFF/2, MSS))."""
        cur = (self.adv - self.nxt) & MASK
        if cur >= 0x80000000:
            cur -= 1 << 32
        free = self.size - len(self.buf) - self.ooo.nbytes
        top = 0xFFFF << self.wscale  # the largest window the field can carry
        if free > top:
            free = top  # (Linux window_clamp) else an unchanged window looks new
        if free - cur >= min(self.size >> 1, self.advmss) and free >= 2 * cur:
            self.ack_now = True

    # ------------------------------------------------------------ window
    def window(self) -> int:
        """The window field to send, moving the right edge per receiver SWS
        avoidance (RFC 9293 3.8.6.2.2) and never moving it left.

        RFC 9293 3.8.6 / RFC 7323 2.4: a receiver should not shrink the
        window (retract its right edge).  As Linux ``tcp_select_window``
        (sysctl ``tcp_shrink_window`` 0): when the free space would give a
        smaller window, the current one is kept, rounded *up* to the scale
        unit (``ALIGN(cur_win, 1 << rcv_wscale)``), and the announced edge
        becomes RCV.ADV (``rcv_wnd``/``rcv_wup``), so the edge we accept text
        to is exactly the one the peer saw and the next rounding starts from
        it.  Without window scaling the window is at most 65535 bytes (the
        field), as Linux's ``min(new_win, MAX_TCP_WINDOW)``, so RCV.ADV never
        lies beyond what was announced."""
        ws = self.wscale
        nxt = self.nxt
        cur = (self.adv - nxt) & MASK
        if cur >= 0x80000000:
            cur = 0
        free = self.size - len(self.buf) - self.ooo.nbytes
        if free > cur:
            step = self.size >> 1
            if step > self.advmss:
                step = self.advmss
            if free - cur >= step:
                # with window scaling the field rounds up (so a free space
                # below 1 << wscale is not announced as zero); the edge we
                # accept data to is the one announced (Linux __tcp_select_window
                # ALIGN, rcv_wnd = the rounded window)
                if ws:
                    free = ((free + (1 << ws) - 1) >> ws) << ws
                    if free > 0xFFFF << ws:
                        free = 0xFFFF << ws
                elif free > 0xFFFF:
                    free = 0xFFFF
                cur = free
        if ws:
            field = (cur + (1 << ws) - 1) >> ws
            if field > 0xFFFF:
                field = 0xFFFF
            edge = field << ws
        else:
            field = edge = cur if cur < 0xFFFF else 0xFFFF
        if edge >= cur:
            # the announced edge (>= the previous one: cur only rounds up)
            self.adv = (nxt + edge) & MASK
        return field

    def clamp_window(self) -> None:
        """The buffer bound ``size`` fell (memory pressure, ustack.tcp.memory):
        pull the announced right edge back to what the buffer may still take,
        whole window-scale units, so data in flight beyond it is out of the
        window (answered with an ACK, sent again once the window opens)
        instead of filling memory.  Linux reaches the same edge later: it
        drops the segment it cannot charge and announces a zero window
        (tcp_data_queue, tcp_select_window with ICSK_ACK_NOMEM: rcv_wnd = 0).
        A bound that did not fall changes nothing."""
        room = self.size - len(self.buf) - self.ooo.nbytes
        if room < 0:
            room = 0
        room = (room >> self.wscale) << self.wscale
        if room < self.wnd:
            self.adv = (self.nxt + room) & MASK

    @property
    def wnd(self) -> int:
        """RCV.WND as last advertised (bytes, >= 0)."""
        cur = (self.adv - self.nxt) & MASK
        return 0 if cur >= 0x80000000 else cur

    # ------------------------------------------------------------ SACK
    def has_blocks(self) -> bool:
        """True when the next segment carries SACK or D-SACK blocks."""
        ooo = self.ooo
        return self.dsack is not None or bool(ooo.nbytes) or ooo.fin_pos is not None

    def sack_option_len(self, ts_ok: bool) -> int:
        """Bytes the SACK option adds to our next segment (nop, nop, kind,
        length and 8 per block, at most 3 blocks beside timestamps, else 4;
        RFC 2018 3)."""
        if not self.sack_ok:
            return 0
        n = len(self.ooo) + (1 if self.dsack is not None else 0)
        if not n:
            return 0
        limit = 3 if ts_ok else 4
        return 4 + 8 * (n if n < limit else limit)

    def sack_blocks(self) -> list[tuple[int, int]]:
        """The blocks for our next segment: a D-SACK first (RFC 2883), then
        the most recently changed block and the others (RFC 2018 4)."""
        if not self.sack_ok:
            self.dsack = None
            return []
        blocks: list[tuple[int, int]] = []
        if self.dsack is not None:
            blocks.append(self.dsack)
            self.dsack = None
        base_pos, base_seq = self.pos, self.nxt
        for start, end in self.ooo.blocks():
            blocks.append(((base_seq + start - base_pos) & MASK,
                           (base_seq + end - base_pos) & MASK))
        return blocks[:4]

    def clear(self) -> None:
        self.ack_now = False
        if self.ooo is not _NO_OOO:
            self.ooo.clear()
