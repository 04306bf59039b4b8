"""Reno (RFC 5681 section 3; Linux ``tcp_reno_cong_avoid``/``tcp_reno_ssthresh``).

Slow start grows cwnd by the bytes each ACK newly acknowledges (Linux
``tcp_slow_start``; RFC 3465 would cap a stretch ACK at L = 2 SMSS), up to
ssthresh, and what is left over goes to congestion avoidance: one SMSS per
cwnd of acknowledged bytes (RFC 5681 3.1, Linux ``tcp_cong_avoid_ai``).  A
loss halves the window (Linux takes half of cwnd where RFC 5681 eq. 4 takes
half of FlightSize; they agree whenever the sender is cwnd-limited).  Fast
recovery itself (PRR, RFC 6937) and the loss window after an RTO belong to
the connection.
"""

from __future__ import annotations

from ustack._mypyc import mypyc_attr
from ustack.tcp.congestion.base import CongestionController, RateSample


@mypyc_attr(allow_interpreted_subclasses=True)  # users may derive from the built-in ones
class Reno(CongestionController):
    name = "reno"

    __slots__ = ()

    def on_ack(self, rs: RateSample, now: float) -> None:
        """Linux ``tcp_reno_cong_avoid``: grow only when cwnd limited."""
        if not rs.is_cwnd_limited:
            return
        acked = rs.acked_sacked
        if self.cwnd < self.ssthresh:
            acked = self.slow_start(acked)
            if acked <= 0:
                return
        self.cong_avoid_ai(self.cwnd, acked)

    # ssthresh_on_loss and undo_cwnd: the base class's (tcp_reno_ssthresh,
    # tcp_reno_undo_cwnd)
