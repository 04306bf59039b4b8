"""RACK-TLP loss detection (RFC 8985) on the scoreboard, as Linux tcp_recovery.c.

RACK ("recent ACKnowledgment") infers loss from time instead of counting
duplicate ACKs: once a segment sent *later* than a given one is delivered,
the earlier one is lost if it is still unacknowledged ``RACK.rtt + reo_wnd``
after it was sent.  TLP (the tail loss probe) sends one segment two RTTs
after the last send so that a lost tail produces the ACK RACK needs, instead
of waiting for the RTO.
"""

from __future__ import annotations

from typing import Final

from ustack.tcp.scoreboard import Scoreboard, Segment

#: Linux TCP_RACK_RECOVERY_THRESH: recoveries a widened window persists for.
RECOVERY_THRESH: Final = 16
#: Linux TCP_TIMEOUT_MIN_US: slack added to the reorder timer and the TLP timeout.
TIMEOUT_MIN: Final = 0.002


def sent_after(t1: float, x1: int, end1: int, t2: float, x2: int, end2: int) -> bool:
    """RFC 8985 6.2 ``RACK_sent_after``: sent later; ties broken by the
    transmission number, then (parts of one transmission) by sequence."""
    return t1 > t2 or (t1 == t2 and (x1 > x2 or (x1 == x2 and end1 > end2)))


class Rack:
    """RFC 8985 6.1 per-connection state (Linux ``tp->rack``)."""

    __slots__ = ("xmit_ts", "xmit_id", "end_seq", "rtt", "advanced", "reo_wnd_steps",
                 "reo_wnd_persist", "dsack_seen", "last_delivered")

    def __init__(self) -> None:
        self.xmit_ts = 0.0  #: RACK.xmit_ts: send time of the newest delivered segment
        self.xmit_id = 0  #: transmission number of that segment (tie-break)
        self.end_seq = 0  #: RACK.end_seq (unwrapped)
        self.rtt = 0.0  #: RACK.rtt: RTT of that delivery
        self.advanced = False  #: RACK state moved forward since the last detection
        self.reo_wnd_steps = 1  #: RACK.reo_wnd_mult (RFC 8985 6.2 step 4)
        self.reo_wnd_persist = 0  #: recoveries left before the multiplier resets
        self.dsack_seen = False  #: a D-SACK arrived since the last window update
        self.last_delivered = 0  #: delivered count when the multiplier last grew

    def advance(self, r: Segment, now: float, min_rtt: float) -> None:
        """RFC 8985 6.2 step 2 (Linux ``tcp_rack_advance``): ``r`` was newly
        delivered.  A retransmitted segment whose RTT is below min_rtt was
        probably delivered by its original transmission: ignore it (step 2's
        ambiguity rule, without timestamps)."""
        rtt = now - r.sent
        # (1 ns of slack: Linux compares whole microseconds, floats differ in
        # the last bit for equal delays)
        if r.retrans and min_rtt > 0.0 and rtt < min_rtt - 1e-9:
            return
        self.advanced = True
        self.rtt = rtt
        if sent_after(r.sent, r.xid, r.end, self.xmit_ts, self.xmit_id, self.end_seq):
            self.xmit_ts = r.sent
            self.xmit_id = r.xid
            self.end_seq = r.end

    def reo_wnd(self, *, reord_seen: bool, in_recovery: bool, sacked_out: int,
                reordering: int, min_rtt: float, srtt: float, dupthresh: bool,
                static: bool) -> float:
        """RFC 8985 6.2 step 4 (Linux ``tcp_rack_reo_wnd``): zero while no
        reordering was seen and either recovery is under way or DupThresh
        segments are SACKed (RFC 8985 keeps the RFC 6675 trigger); otherwise
        ``min_rtt/4 * steps``, at most SRTT."""
        if not reord_seen and (in_recovery or (dupthresh and sacked_out >= reordering)):
            return 0.0
        steps = 1 if static else self.reo_wnd_steps
        wnd = (min_rtt / 4) * steps
        return wnd if wnd < srtt or srtt <= 0.0 else srtt

    def update_reo_wnd(self, prior_delivered: int | None, delivered: int,
                       static: bool) -> None:
        """RFC 8985 6.2 step 4 (Linux ``tcp_rack_update_reo_wnd``): grow the
        multiplier by one per round trip with a D-SACK; keep it for 16
        recoveries, then reset to 1."""
        if static or prior_delivered is None:
            return
        if prior_delivered < self.last_delivered:
            self.dsack_seen = False  # the D-SACK belongs to an old round
        if self.dsack_seen:
            self.reo_wnd_steps = min(0xFF, self.reo_wnd_steps + 1)
            self.dsack_seen = False
            self.last_delivered = delivered
            self.reo_wnd_persist = RECOVERY_THRESH
        elif not self.reo_wnd_persist:
            self.reo_wnd_steps = 1

    def detect_loss(self, sb: Scoreboard, now: float, reo_wnd: float) -> tuple[int, float]:
        """RFC 8985 6.2 step 5 (Linux ``tcp_rack_detect_loss``): mark lost
        every segment sent before RACK.xmit_ts that is ``RACK.rtt + reo_wnd``
        old.  Returns ``(bytes newly lost, reorder timeout)``; the timeout is
        the longest wait of a segment still within the window (0: none)."""
        lost = 0
        timeout = 0.0
        xmit_ts, xmit_id, end_seq, rtt = self.xmit_ts, self.xmit_id, self.end_seq, self.rtt
        for r in sb.ts_order():
            if r.lost and not r.rtx:
                continue  # waiting for its retransmission (marked by an RTO)
            if not sent_after(xmit_ts, xmit_id, end_seq, r.sent, r.xid, r.end):
                break
            remaining = rtt + reo_wnd - (now - r.sent)
            if remaining <= 0.0:
                lost += sb.mark_lost(r)
                sb.ts_unlink(r)
            elif remaining > timeout:
                timeout = remaining
        return lost, timeout

    def skb_timeout(self, r: Segment, now: float, reo_wnd: float) -> float:
        """Time left before ``r`` counts as lost (Linux ``tcp_rack_skb_timeout``)."""
        return self.rtt + reo_wnd - (now - r.sent)


def probe_timeout(srtt: float, packets_out: int, rto_min: float, initial: float) -> float:
    """RFC 8985 7.2 PTO, as Linux ``tcp_schedule_loss_probe``: 2*SRTT, plus
    ``rto_min`` (Linux's stand-in for the RFC's WCDelAckT) when one segment is
    in flight, else plus 2 ms; 1 s (TCP_TIMEOUT_INIT) without an RTT sample."""
    if srtt <= 0.0:
        return initial
    return 2 * srtt + (rto_min if packets_out == 1 else TIMEOUT_MIN)
