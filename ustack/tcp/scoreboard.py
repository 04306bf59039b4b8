"""The sender's scoreboard: one record per transmitted segment (RFC 6675 2,
Linux's retransmit queue with ``TCP_SKB_CB(skb)->sacked`` marks).

Sequence numbers are kept *unwrapped* inside (plain Python ints that grow past
2**32), so ordering is ``<`` and lookups are ``bisect``; :meth:`Scoreboard.unwrap`
and :meth:`Scoreboard.wrap` convert at the boundary.

Records cover ``[una, nxt)`` without gaps, in sequence order, in a list whose
consumed head is skipped by an index (amortised O(1) removal from the front,
O(1) append, O(log n) lookup).  A record is split when an ACK, a SACK block or
a retransmission covers part of it, so a GSO super-segment is one record until
something needs to tell its parts apart (Linux ``tcp_fragment``).  A second,
doubly linked list orders the records that may still be lost by their last
transmission time (Linux ``tsorted_sent_queue``): RACK walks it from the oldest
and stops at the first record sent after the newest delivered one.

Counters follow Linux: ``packets_out``, ``sacked_out``, ``lost_out``,
``retrans_out`` in segments (a record of ``n`` bytes counts ``ceil(n/mss)``),
and the same in bytes; :meth:`Scoreboard.in_flight` is RFC 6675 ``pipe`` /
Linux ``tcp_packets_in_flight`` in bytes.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator
from typing import Final

from ustack.wire.seq import MASK, seq_sub


class Segment:
    """One transmitted segment (or GSO super-segment) and what is known of it."""

    __slots__ = ("start", "end", "pcount", "sent", "xid", "first_sent", "tsval",
                 "tx_delivered", "tx_delivered_time", "tx_first_tx_time", "app_limited",
                 "retrans", "sacked", "lost", "rtx", "ts_prev", "ts_next", "linked")

    def __init__(self, start: int, end: int, pcount: int, now: float, tsval: int | None,
                 xid: int) -> None:
        self.start = start  #: first sequence number (unwrapped)
        self.end = end  #: one past the last (unwrapped)
        self.pcount = pcount  #: segments it counts as (ceil(len / mss))
        self.sent = now  #: last transmission time, seconds (Linux skb_mstamp)
        #: transmission number of the last transmission: orders transmissions
        #: that share a timestamp (RFC 8985 RACK_sent_after breaks such ties by
        #: sequence number, which misorders a retransmission sent after new data)
        self.xid = xid
        self.first_sent = now  #: first transmission time
        self.tsval = tsval  #: TSval of the last transmission (RFC 7323), if any
        # delivery-rate state at (last) send, Linux tcp_skb_cb.tx (tcp_rate.c)
        self.tx_delivered = 0
        self.tx_delivered_time = 0.0
        self.tx_first_tx_time = 0.0
        self.app_limited = False
        self.retrans = 0  #: times retransmitted (Linux TCPCB_EVER_RETRANS when > 0)
        self.sacked = False  #: SACKed (TCPCB_SACKED_ACKED)
        self.lost = False  #: presumed lost (TCPCB_LOST)
        self.rtx = False  #: a retransmission of it is in flight (TCPCB_SACKED_RETRANS)
        self.ts_prev: Segment | None = None
        self.ts_next: Segment | None = None
        self.linked = False

    @property
    def length(self) -> int:
        return self.end - self.start

    def __repr__(self) -> str:
        flags = "".join(f for f, on in (("S", self.sacked), ("L", self.lost), ("R", self.rtx))
                        if on)
        return f"<Segment {self.start}-{self.end} x{self.retrans} {flags or '-'}>"


class Scoreboard:
    """Records of ``[una, nxt)`` with RFC 6675 / Linux counters."""

    __slots__ = ("mss", "una", "nxt", "fack", "packets_out", "sacked_out", "lost_out",
                 "retrans_out", "sacked_bytes", "lost_bytes", "retrans_bytes",
                 "lost_total", "lost_log", "xid", "_q", "_h", "_ts_head", "_ts_tail", "_sacked",
                 "rtx_hint", "mib")

    def __init__(self, una: int, mss: int) -> None:
        self.mss = max(mss, 1)
        self.una = una & MASK  #: SND.UNA, unwrapped
        self.nxt = self.una  #: SND.NXT (highest sequence sent + 1), unwrapped
        self.fack = self.una  #: highest SACKed sequence + 1 (Linux tcp_highest_sack_seq)
        self.packets_out = 0
        self.sacked_out = 0
        self.lost_out = 0
        self.retrans_out = 0
        self.sacked_bytes = 0
        self.lost_bytes = 0
        self.retrans_bytes = 0
        #: bytes ever marked lost (a lost retransmission counts again; Linux tp->lost)
        self.lost_total = 0
        #: when a list, every newly lost range (unwrapped) is appended to it
        self.lost_log: list[tuple[int, int]] | None = None
        #: transmissions so far (each send or resend of a record takes the next)
        self.xid = 0
        self._q: list[Segment] = []
        self._h = 0
        self._ts_head: Segment | None = None
        self._ts_tail: Segment | None = None
        #: merged SACKed ranges above una, [(start, end), ...] ascending
        self._sacked: list[tuple[int, int]] = []
        #: no record below this is lost-and-not-retransmitted (Linux retransmit_skb_hint)
        self.rtx_hint = self.una
        #: the connection's MIB (nstat names), for TcpExtTCPLostRetransmit; None: not counted
        self.mib: dict[str, int] | None = None

    # --- sequence conversion ------------------------------------------------
    def unwrap(self, seq: int) -> int:
        """A wire sequence number as an unwrapped one near SND.UNA."""
        return self.una + seq_sub(seq, self.una & MASK)

    @staticmethod
    def wrap(value: int) -> int:
        return value & MASK

    def pcount(self, length: int) -> int:
        mss = self.mss
        return (length + mss - 1) // mss if length > mss else 1

    # --- views ----------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._q) - self._h

    def __iter__(self) -> Iterator[Segment]:
        q = self._q
        for i in range(self._h, len(q)):
            yield q[i]

    @property
    def head(self) -> Segment | None:
        return self._q[self._h] if self._h < len(self._q) else None

    @property
    def tail(self) -> Segment | None:
        return self._q[-1] if self._h < len(self._q) else None

    @property
    def bytes_out(self) -> int:
        return self.nxt - self.una

    def in_flight(self) -> int:
        """RFC 6675 ``pipe`` in bytes: sent - (SACKed + lost) + retransmitted
        (Linux ``tcp_packets_in_flight``)."""
        return self.nxt - self.una - self.sacked_bytes - self.lost_bytes + self.retrans_bytes

    def sacked_ranges(self) -> list[tuple[int, int]]:
        """The merged SACKed ranges above SND.UNA (unwrapped)."""
        return list(self._sacked)

    def index(self, value: int) -> int:
        """Index in the record list of the record containing ``value``
        (``bisect_right`` on the records' starts, minus one).  The last and
        the first record are tried first (new SACKs extend the top, the
        retransmission hint sits at the bottom), then a binary search
        written out: compiled, it compares native ints where ``bisect`` with
        a key calls back into Python for every probe."""
        q = self._q
        hi = len(q)
        lo = self._h
        if hi - lo > 1:
            if value >= q[hi - 1].start:
                return hi - 1
            if value < q[lo + 1].start:
                return lo if value >= q[lo].start else lo - 1
            lo += 1
            hi -= 1
        while lo < hi:
            mid = (lo + hi) >> 1
            if value < q[mid].start:
                hi = mid
            else:
                lo = mid + 1
        return lo - 1

    def ts_order(self) -> Iterator[Segment]:
        """Records that may be lost, oldest last transmission first."""
        r = self._ts_head
        while r is not None:
            nxt = r.ts_next
            yield r
            r = nxt

    # --- time-sorted list (Linux tsorted_sent_queue) -------------------------
    def ts_append(self, r: Segment) -> None:
        if r.linked:
            self.ts_unlink(r)
        tail = self._ts_tail
        r.ts_prev = tail
        r.ts_next = None
        if tail is None:
            self._ts_head = r
        else:
            tail.ts_next = r
        self._ts_tail = r
        r.linked = True

    def ts_unlink(self, r: Segment) -> None:
        if not r.linked:
            return
        p, n = r.ts_prev, r.ts_next
        if p is None:
            self._ts_head = n
        else:
            p.ts_next = n
        if n is None:
            self._ts_tail = p
        else:
            n.ts_prev = p
        r.ts_prev = r.ts_next = None
        r.linked = False

    def _ts_insert_after(self, r: Segment, new: Segment) -> None:
        n = r.ts_next
        new.ts_prev = r
        new.ts_next = n
        r.ts_next = new
        if n is None:
            self._ts_tail = new
        else:
            n.ts_prev = new
        new.linked = True

    # --- sending ----------------------------------------------------------------
    def append(self, end: int, now: float, tsval: int | None) -> Segment:
        """New data ``[nxt, end)`` was sent: one record at the tail, O(1)."""
        start = self.nxt
        self.xid += 1
        r = Segment(start, end, self.pcount(end - start), now, tsval, self.xid)
        self._q.append(r)
        self.nxt = end
        self.packets_out += r.pcount
        self.ts_append(r)
        return r

    def split(self, i: int, at: int) -> int:
        """Split record ``i`` at ``at`` (strictly inside it); return the index of
        the upper part.  Both parts keep every mark (Linux ``tcp_fragment``)."""
        q = self._q
        r = q[i]
        new = Segment(at, r.end, 0, r.sent, r.tsval, r.xid)
        new.first_sent = r.first_sent
        new.tx_delivered = r.tx_delivered
        new.tx_delivered_time = r.tx_delivered_time
        new.tx_first_tx_time = r.tx_first_tx_time
        new.app_limited = r.app_limited
        new.retrans = r.retrans
        new.sacked = r.sacked
        new.lost = r.lost
        new.rtx = r.rtx
        r.end = at
        old = r.pcount
        r.pcount = self.pcount(at - r.start)
        new.pcount = self.pcount(new.end - at)
        delta = r.pcount + new.pcount - old
        if delta:
            self.packets_out += delta
            if r.sacked:
                self.sacked_out += delta
            if r.lost:
                self.lost_out += delta
            if r.rtx:
                self.retrans_out += delta
        new.ts_prev = new.ts_next = None
        new.linked = False
        if r.linked:
            self._ts_insert_after(r, new)
        q.insert(i + 1, new)
        return i + 1

    def isolate(self, start: int, end: int) -> tuple[int, int]:
        """Split so that records ``[i, j)`` cover exactly ``[start, end)``
        (clipped to ``[una, nxt)``); returns ``(i, j)``."""
        start = max(start, self.una)
        end = min(end, self.nxt)
        if start >= end:
            return (0, 0)
        i = self.index(start)
        if self._q[i].start < start:
            i = self.split(i, start)
        j = self.index(end - 1)
        if self._q[j].end > end:
            self.split(j, end)
        return (i, j + 1)

    def record(self, i: int) -> Segment:
        return self._q[i]

    def retransmitted(self, r: Segment, now: float, tsval: int | None) -> None:
        """Record ``r`` was sent again (Linux ``__tcp_retransmit_skb``)."""
        r.retrans += 1
        r.sent = now
        self.xid += 1
        r.xid = self.xid
        if tsval is not None:
            r.tsval = tsval
        if not r.rtx and not r.sacked:
            r.rtx = True
            self.retrans_out += r.pcount
            self.retrans_bytes += r.end - r.start
        if not r.sacked:
            self.ts_append(r)

    # --- marks ------------------------------------------------------------------
    def mark_lost(self, r: Segment) -> int:
        """Presume ``r`` lost (Linux ``tcp_mark_skb_lost``).  A retransmission
        in flight is presumed lost with it (LINUX_MIB_TCPLOSTRETRANSMIT), so
        the record becomes retransmittable again.  Returns its bytes if this
        changed anything (0 for SACKed or already lost, unretransmitted)."""
        if r.sacked:
            return 0
        n = r.end - r.start
        changed = False
        if r.rtx:
            if r.lost:
                # a retransmission lost again (Linux counts LINUX_MIB_TCPLOSTRETRANSMIT
                # by segments; a TLP retransmission was never marked lost)
                mib = self.mib
                if mib is not None:
                    mib["TcpExtTCPLostRetransmit"] = mib.get("TcpExtTCPLostRetransmit", 0) \
                        + r.pcount
            r.rtx = False
            self.retrans_out -= r.pcount
            self.retrans_bytes -= n
            changed = True
        if not r.lost:
            r.lost = True
            self.lost_out += r.pcount
            self.lost_bytes += n
            changed = True
        if not changed:
            return 0
        if r.start < self.rtx_hint:
            self.rtx_hint = r.start
        self._lost(r, n)
        return n

    def _lost(self, r: Segment, n: int) -> None:
        self.lost_total += n
        if self.lost_log is not None:
            self.lost_log.append((r.start, r.end))

    def unmark_lost_all(self) -> None:
        """Forget every loss mark (Linux ``tcp_undo_cwnd_reduction`` with
        unmark_loss)."""
        relink = False
        for r in self:
            if r.lost:
                r.lost = False
                if not r.sacked and not r.linked:
                    relink = True
        self.lost_out = 0
        self.lost_bytes = 0
        if relink:
            self._ts_rebuild()

    def _ts_rebuild(self) -> None:
        """Relink every unSACKed record in transmission-time order (rare: after
        an undo brought records marked lost back into RACK's view)."""
        live = sorted((r for r in self if not r.sacked), key=lambda r: (r.sent, r.xid, r.end))
        self._ts_head = self._ts_tail = None
        for r in self:
            r.linked = False
            r.ts_prev = r.ts_next = None
        for r in live:
            self.ts_append(r)

    def mark_sacked(self, r: Segment) -> None:
        """``r`` is SACKed: it leaves lost/retrans accounting and the time list."""
        n = r.end - r.start
        if r.rtx:
            r.rtx = False
            self.retrans_out -= r.pcount
            self.retrans_bytes -= n
        if r.lost:
            r.lost = False
            self.lost_out -= r.pcount
            self.lost_bytes -= n
        r.sacked = True
        self.sacked_out += r.pcount
        self.sacked_bytes += n
        self.ts_unlink(r)
        if r.end > self.fack:
            self.fack = r.end

    def clear_sacked_all(self) -> None:
        """SACK reneging: forget every SACK mark (Linux ``tcp_timeout_mark_lost``
        with is_reneg, RFC 2018 8)."""
        for r in self:
            if r.sacked:
                r.sacked = False
        self.sacked_out = 0
        self.sacked_bytes = 0
        self._sacked.clear()
        self.fack = self.una

    def add_sacked_range(self, start: int, end: int) -> list[tuple[int, int]]:
        """Merge ``[start, end)`` into the SACKed set; return its sub-ranges that
        were not SACKed before (so repeated blocks cost almost nothing)."""
        ranges = self._sacked
        if ranges:
            # already SACKed (the blocks an ACK repeats): nothing to rebuild
            k = bisect_right(ranges, (start, _INF)) - 1
            if k >= 0 and ranges[k][1] >= end:
                return []
        new: list[tuple[int, int]] = []
        out: list[tuple[int, int]] = []
        cur = start
        placed = False
        lo, hi = start, end
        for s, e in ranges:
            if e < start or placed:
                out.append((s, e))
                continue
            if s > end:
                out.append((lo, hi))
                placed = True
                out.append((s, e))
                continue
            # overlapping or adjacent
            if s > cur:
                new.append((cur, min(s, end)))
            if e > cur:
                cur = e
            lo = min(lo, s)
            hi = max(hi, e)
        if not placed:
            out.append((lo, hi))
        if cur < end:
            new.append((cur, end))
        self._sacked = out
        return [(s, e) for s, e in new if s < e]

    def sacked_covers(self, start: int, end: int) -> bool:
        """``[start, end)`` lies inside one SACKed range (what
        :meth:`add_sacked_range` answers ``[]`` for without rebuilding)."""
        ranges = self._sacked
        k = bisect_right(ranges, (start, _INF)) - 1
        return k >= 0 and ranges[k][1] >= end

    def add_sacked_top(self, start: int, end: int) -> int:
        """:meth:`add_sacked_range` for a range at the top of the SACKed set
        (``start`` at or above the highest range's start, ``end`` above its
        end; the caller checks): merged into that range or appended, in
        place.  Returns where the newly SACKed part, ``[returned, end)``,
        starts."""
        ranges = self._sacked
        n = len(ranges)
        if n:
            ls, le = ranges[n - 1]
            if start <= le:
                ranges[n - 1] = (ls, end)
                return le
        ranges.append((start, end))
        return start

    # --- cumulative ACK ---------------------------------------------------------
    def pop_acked(self, ack: int) -> Iterator[tuple[Segment, int]]:
        """Remove what ``ack`` (unwrapped, una < ack <= nxt) covers from the front.
        Yields ``(record, bytes_acked)``; the last one may be partly acked and
        stays (trimmed, Linux ``tcp_trim_head``).  Counters are updated."""
        q = self._q
        h = self._h
        while h < len(q):
            r = q[h]
            if r.start >= ack:
                break
            if r.end <= ack:
                n = r.end - r.start
                pc = r.pcount
                h += 1
                self.ts_unlink(r)
                self.packets_out -= pc
                if r.sacked:
                    self.sacked_out -= pc
                    self.sacked_bytes -= n
                if r.lost:
                    self.lost_out -= pc
                    self.lost_bytes -= n
                if r.rtx:
                    self.retrans_out -= pc
                    self.retrans_bytes -= n
                self._h = h
                yield r, n
            else:
                n = ack - r.start
                old = r.pcount
                r.start = ack
                r.pcount = self.pcount(r.end - ack)
                d = old - r.pcount
                self.packets_out -= d
                if r.sacked:
                    self.sacked_out -= d
                    self.sacked_bytes -= n
                if r.lost:
                    self.lost_out -= d
                    self.lost_bytes -= n
                if r.rtx:
                    self.retrans_out -= d
                    self.retrans_bytes -= n
                self._h = h
                yield r, n
                break
        self._h = h
        self.una = ack
        if h > 64 and h * 2 > len(q):
            del q[:h]
            self._h = 0
        if self.fack < ack:
            self.fack = ack
        if self.rtx_hint < ack:
            self.rtx_hint = ack
        ranges = self._sacked
        if ranges and ranges[0][0] < ack:
            kept = [(max(s, ack), e) for s, e in ranges if e > ack]
            self._sacked = kept

    def pop_acked_clean(self, ack: int) -> list[tuple[Segment, int]]:
        """:meth:`pop_acked` when no record is SACKed, lost or retransmitted
        (``sacked_out == lost_out == retrans_out == 0``: the recovery room's
        clean-ACK path): the same removals, trimming and counters without
        the mark tests, as a list (no generator), ``ts_unlink`` and
        ``pcount`` inlined."""
        q = self._q
        h = self._h
        nq = len(q)
        out: list[tuple[Segment, int]] = []
        packets = self.packets_out
        while h < nq:
            r = q[h]
            start = r.start
            if start >= ack:
                break
            end = r.end
            if end <= ack:
                h += 1
                if r.linked:  # ts_unlink
                    p, n = r.ts_prev, r.ts_next
                    if p is None:
                        self._ts_head = n
                    else:
                        p.ts_next = n
                    if n is None:
                        self._ts_tail = p
                    else:
                        n.ts_prev = p
                    r.ts_prev = r.ts_next = None
                    r.linked = False
                packets -= r.pcount
                out.append((r, end - start))
            else:
                old = r.pcount
                r.start = ack
                length = end - ack
                mss = self.mss
                r.pcount = (length + mss - 1) // mss if length > mss else 1
                packets -= old - r.pcount
                out.append((r, ack - start))
                break
        self.packets_out = packets
        self._h = h
        self.una = ack
        if h > 64 and h * 2 > nq:
            del q[:h]
            self._h = 0
        if self.fack < ack:
            self.fack = ack
        if self.rtx_hint < ack:
            self.rtx_hint = ack
        ranges = self._sacked
        if ranges and ranges[0][0] < ack:
            self._sacked = [(max(s, ack), e) for s, e in ranges if e > ack]
        return out

    # --- retransmission choice ---------------------------------------------------
    def next_lost(self) -> Segment | None:
        """The lowest record that is lost, not SACKed and not already
        retransmitted (RFC 6675 4 NextSeg rule 1; Linux
        ``tcp_xmit_retransmit_queue`` only retransmits LOST records)."""
        if not self.lost_out:
            return None
        q = self._q
        i = self.index(self.rtx_hint) if self.rtx_hint > self.una else self._h
        if i < self._h:
            i = self._h
        n = len(q)
        while i < n:
            r = q[i]
            if r.lost and not r.rtx and not r.sacked:
                self.rtx_hint = r.start
                return r
            i += 1
        self.rtx_hint = self.nxt
        return None

    def check(self) -> None:
        """Verify every invariant (tests only; O(n))."""
        q = list(self)
        pos = self.una
        po = so = lo = ro = sb = lb = rb = 0
        for r in q:
            assert r.start == pos, (r, pos)
            assert r.end > r.start, r
            assert r.pcount == self.pcount(r.end - r.start) or r.pcount >= 1
            pos = r.end
            po += r.pcount
            n = r.end - r.start
            if r.sacked:
                so += r.pcount
                sb += n
                assert not r.lost and not r.rtx, r
            if r.lost:
                lo += r.pcount
                lb += n
            if r.rtx:
                ro += r.pcount
                rb += n
                assert r.retrans > 0, r
        assert pos == self.nxt, (pos, self.nxt)
        assert (po, so, lo, ro) == (self.packets_out, self.sacked_out, self.lost_out,
                                    self.retrans_out), (po, so, lo, ro, self.packets_out,
                                                        self.sacked_out, self.lost_out,
                                                        self.retrans_out)
        assert (sb, lb, rb) == (self.sacked_bytes, self.lost_bytes, self.retrans_bytes)
        linked = list(self.ts_order())
        assert all(r.linked for r in linked)
        assert sum(1 for r in q if r.linked) == len(linked)
        assert all(not r.sacked for r in linked)
        for a, b in zip(linked, linked[1:], strict=False):
            assert (a.sent, a.xid, a.end) < (b.sent, b.xid, b.end), (a, b)
        assert self.in_flight() >= 0
        for s, e in self._sacked:
            assert self.una <= s < e <= self.nxt
        for i in range(1, len(self._sacked)):
            assert self._sacked[i - 1][1] < self._sacked[i][0], self._sacked
        covered = [any(s <= r.start and r.end <= e for s, e in self._sacked) for r in q]
        assert covered == [r.sacked for r in q], (self._sacked, q)


def _start(r: Segment) -> int:
    return r.start


#: above every sequence number (bisect key for "ranges starting at or before")
_INF: Final = 1 << 128
