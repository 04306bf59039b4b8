"""The congestion controller interface (RFC 5681 vocabulary).

The state machine owns loss *detection* (duplicate ACKs, RTO) and decides what
to retransmit; a controller only owns ``cwnd`` and ``ssthresh`` (in bytes) and
reacts to these calls.  New algorithms subclass :class:`CongestionController`,
set ``name`` and register with :func:`ustack.tcp.congestion.register`.
"""

from __future__ import annotations

from typing import ClassVar


class CongestionController:
    """Base class; the default hooks implement nothing but bookkeeping."""

    name: ClassVar[str] = "base"

    __slots__ = ("mss", "cwnd", "ssthresh", "in_recovery")

    def __init__(self, mss: int, initial_cwnd: int) -> None:
        self.mss = mss
        self.cwnd = initial_cwnd * mss
        self.ssthresh = 0x7FFFFFFF  # "arbitrarily high" (RFC 5681 3.1)
        self.in_recovery = False

    def set_mss(self, mss: int, initial_cwnd: int) -> None:
        """The send MSS became known (after the handshake)."""
        self.mss = mss
        self.cwnd = initial_cwnd * mss

    # --- hooks the state machine calls ---------------------------------------
    def on_ack(self, acked: int, flight: int, now: float) -> None:
        """``acked`` new bytes were acknowledged outside recovery; ``flight``
        is the bytes outstanding before this ACK."""

    def on_dup_ack(self, flight: int, now: float) -> None:
        """A duplicate ACK arrived during fast recovery."""

    def enter_recovery(self, flight: int, now: float) -> None:
        """Fast retransmit was triggered (RFC 5681 3.2 step 2)."""
        self.in_recovery = True

    def on_partial_ack(self, acked: int, now: float) -> None:
        """An ACK advanced SND.UNA during recovery but below the recovery point."""

    def exit_recovery(self, now: float) -> None:
        """The recovery point was acknowledged (full ACK)."""
        self.in_recovery = False

    def on_timeout(self, flight: int, now: float) -> None:
        """The retransmission timer expired (RFC 5681 3.1, eq. 4)."""
        self.in_recovery = False

    def on_idle_restart(self, idle: float, rto: float, initial_cwnd: int) -> None:
        """Sending restarts after ``idle`` seconds without sending (more than
        one RTO): RFC 5681 4.1 restart window, Linux tcp_cwnd_restart
        (tcp_slow_start_after_idle=1): halve cwnd per RTO idle, down to
        min(IW, cwnd), keeping ssthresh at 3/4 of the old cwnd."""
        restart = min(initial_cwnd * self.mss, self.cwnd)
        self.ssthresh = max(self.ssthresh, self.cwnd * 3 // 4)
        cwnd = self.cwnd
        periods = int(idle / rto) if rto > 0 else 1
        while periods > 0 and cwnd > restart:
            cwnd >>= 1
            periods -= 1
        self.cwnd = max(cwnd, restart)
