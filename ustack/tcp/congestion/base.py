"""The congestion controller interface, shaped like Linux ``tcp_congestion_ops``.

The connection owns loss *detection* and recovery (scoreboard, RACK, PRR) and
decides what to send; a controller owns ``cwnd`` and ``ssthresh`` (bytes) and,
if it wants pacing, ``pacing_rate`` (bytes/s).  It is fed one
:class:`RateSample` per ACK (Linux ``struct rate_sample``, tcp_rate.c) and the
congestion-avoidance state changes (Linux ``enum tcp_ca_state``).  The hook
names map onto Linux's ops:

=====================  ==========================================
``on_ack``             ``.cong_avoid`` (+ ``.pkts_acked``), or
                       ``.cong_control`` when ``controls_cwnd``
``ssthresh_on_loss``   ``.ssthresh``
``on_state``           ``.set_state``
``undo_cwnd``          ``.undo_cwnd``
``on_tx_start``        ``.cwnd_event(CA_EVENT_TX_START)``
=====================  ==========================================

New algorithms subclass :class:`CongestionController`, set ``name`` and
register with :func:`ustack.tcp.congestion.register`; see docs/congestion.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar

from ustack._mypyc import mypyc_attr


class CaState(IntEnum):
    """Congestion-avoidance state of the sender (Linux ``enum tcp_ca_state``)."""

    OPEN = 0  #: nothing suspicious
    DISORDER = 1  #: duplicate ACKs / SACKs seen, no loss inferred yet
    CWR = 2  #: window reduced for ECN or a local congestion signal
    RECOVERY = 3  #: fast recovery after a loss (RFC 6675 / RFC 6937)
    LOSS = 4  #: retransmission timeout (RFC 5681 3.1, RFC 6298 5.5)


@dataclass(slots=True, init=False)
class RateSample:
    """What one ACK tells the controller (Linux ``struct rate_sample``).

    All amounts are in bytes, times in seconds.  ``delivered`` bytes were
    delivered over ``interval`` seconds (the delivery-rate estimate of
    draft-cheng-iccrg-delivery-rate-estimation; ``interval < 0`` means no
    valid sample on this ACK).
    """

    #: bytes newly delivered (cumulatively ACKed or SACKed) over ``interval``
    delivered: int = 0
    #: length of the sampling interval; < 0: invalid (no rate on this ACK)
    interval: float = -1.0
    #: ``delivered / interval`` in bytes/s, 0 if invalid
    delivery_rate: float = 0.0
    #: bytes this ACK newly ACKed or SACKed (Linux ``acked_sacked``)
    acked_sacked: int = 0
    #: bytes in flight before this ACK was processed
    prior_in_flight: int = 0
    #: bytes in flight after it
    in_flight: int = 0
    #: bytes this ACK marked lost
    losses: int = 0
    #: RTT of the newest segment this ACK acknowledged; < 0: none
    rtt: float = -1.0
    #: the connection's windowed minimum RTT; < 0: none yet
    min_rtt: float = -1.0
    #: the sample was taken while the application had nothing to send
    is_app_limited: bool = False
    #: the sample's interval started at a retransmitted segment
    is_retrans: bool = False
    #: connection's delivered count when the sampled segment was sent
    prior_delivered: int = 0
    #: connection's delivered count after this ACK (Linux ``tp->delivered``)
    delivered_total: int = 0
    #: state of the connection when the ACK was processed
    ca_state: CaState = CaState.OPEN
    #: the window limited sending during the last RTT (Linux tcp_is_cwnd_limited)
    is_cwnd_limited: bool = True

    def __init__(self, delivered: int = 0, interval: float = -1.0, delivery_rate: float = 0.0,
                 acked_sacked: int = 0, prior_in_flight: int = 0, in_flight: int = 0,
                 losses: int = 0, rtt: float = -1.0, min_rtt: float = -1.0,
                 is_app_limited: bool = False, is_retrans: bool = False,
                 prior_delivered: int = 0, delivered_total: int = 0,
                 ca_state: CaState = CaState.OPEN, is_cwnd_limited: bool = True) -> None:
        # written out (init=False) instead of the dataclass-generated one:
        # compiled by mypyc, that one runs interpreted (one RateSample per
        # ACK: ~3 us compiled, this one ~0.6 us); same fields, defaults, order
        self.delivered = delivered
        self.interval = interval
        self.delivery_rate = delivery_rate
        self.acked_sacked = acked_sacked
        self.prior_in_flight = prior_in_flight
        self.in_flight = in_flight
        self.losses = losses
        self.rtt = rtt
        self.min_rtt = min_rtt
        self.is_app_limited = is_app_limited
        self.is_retrans = is_retrans
        self.prior_delivered = prior_delivered
        self.delivered_total = delivered_total
        self.ca_state = ca_state
        self.is_cwnd_limited = is_cwnd_limited


@mypyc_attr(allow_interpreted_subclasses=True)  # users register their own (docs/congestion.md)
class CongestionController:
    """Base class.  The defaults are a fixed window that halves on loss
    (Linux ``tcp_reno_ssthresh``/``tcp_reno_undo_cwnd``); subclasses override
    what they need.  ``slow_start`` and ``cong_avoid_ai`` are the helpers Linux
    exports to its modules (``tcp_slow_start``, ``tcp_cong_avoid_ai``).

    What the connection guarantees (docs/congestion.md): ``set_mss`` once
    the send MSS is known; ``on_ack`` once per ACK that acknowledges or SACKs
    new data, only in OPEN/DISORDER/LOSS unless ``controls_cwnd`` (then on
    every ACK in every state and the connection applies no PRR);
    ``ssthresh_on_loss`` once per loss episode, before ``on_state`` announces
    RECOVERY/CWR/LOSS; ``undo_cwnd`` when a reduction proved spurious (the
    connection restores its own copy of the prior ssthresh).
    """

    name: ClassVar[str] = "base"
    #: True: the controller sets cwnd on every ACK itself (Linux .cong_control)
    controls_cwnd: ClassVar[bool] = False
    #: True: the sender must pace at ``pacing_rate`` (BBR)
    needs_pacing: ClassVar[bool] = False

    __slots__ = ("mss", "cwnd", "ssthresh", "pacing_rate", "prior_cwnd", "ca_state",
                 "cwnd_cnt", "paced")

    def __init__(self, mss: int, initial_cwnd: int) -> None:
        #: the sender paces this connection (``needs_pacing`` or
        #: ``TcpConfig.pacing``); set by the connection (RFC 9406 4.3 L).
        #: (Assigned first: the compiled class lays its fields out in this
        #: order, and a flag first shares the word of its definedness bitmap)
        self.paced = self.needs_pacing
        self.mss = mss
        self.cwnd = initial_cwnd * mss
        self.ssthresh = 0x7FFFFFFF  # "arbitrarily high" (RFC 5681 3.1)
        self.pacing_rate = 0.0  # bytes/s; 0 = the controller asks for no pacing
        self.prior_cwnd = 0  # cwnd before the last reduction (for undo_cwnd)
        self.ca_state = CaState.OPEN
        self.cwnd_cnt = 0  # bytes acknowledged towards the next +1 MSS

    def set_mss(self, mss: int, initial_cwnd: int) -> None:
        """The send MSS became known (after the handshake)."""
        self.mss = mss
        self.cwnd = initial_cwnd * mss

    # --- the hooks --------------------------------------------------------
    def on_ack(self, rs: RateSample, now: float) -> None:
        """One ACK delivered data (Linux .cong_avoid, or .cong_control when
        ``controls_cwnd``).  Without ``controls_cwnd`` it may grow cwnd only
        if ``rs.is_cwnd_limited``.  The base class keeps a fixed window."""

    def ssthresh_on_loss(self, now: float, in_flight: int) -> int:
        """The new ssthresh on entering RECOVERY/CWR/LOSS (Linux .ssthresh;
        ``tcp_reno_ssthresh``: half the window, at least 2 segments, where
        RFC 5681 eq. 4 says half the FlightSize).  Records ``prior_cwnd``."""
        self.prior_cwnd = self.cwnd
        return max(self.cwnd >> 1, 2 * self.mss)

    def on_state(self, new: CaState, now: float) -> None:
        """The connection entered ``new`` (Linux .set_state)."""
        self.ca_state = new

    def undo_cwnd(self) -> int:
        """cwnd to restore after a spurious reduction (Linux
        ``tcp_reno_undo_cwnd``: max(cwnd, prior_cwnd))."""
        return max(self.cwnd, self.prior_cwnd)

    def on_tx_start(self, now: float, idle: float) -> None:
        """Sending starts with nothing in flight after ``idle`` seconds
        (Linux CA_EVENT_TX_START)."""

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

    def info(self) -> dict[str, float]:
        """Algorithm-specific state for ``ss -i`` (Linux .get_info; e.g. bbr's
        ``bbr:(bw:...,mrtt:...,pacing_gain:...,cwnd_gain:...)``)."""
        return {}

    # --- helpers for subclasses (Linux tcp_cong.c) ---------------------------
    def slow_start(self, acked: int) -> int:
        """Grow cwnd by ``acked`` bytes up to ssthresh; return the bytes left
        over for congestion avoidance (Linux ``tcp_slow_start``: growth by
        what was acknowledged, not RFC 3465's L = 2 SMSS)."""
        cwnd = self.cwnd + acked
        if cwnd > self.ssthresh:
            cwnd = max(self.ssthresh, self.cwnd)
        acked -= cwnd - self.cwnd
        self.cwnd = cwnd
        return acked

    def cong_avoid_ai(self, w: int, acked: int) -> None:
        """Additive increase: one MSS per ``w`` bytes acknowledged (Linux
        ``tcp_cong_avoid_ai`` in bytes; RFC 5681 3.1 with ``w = cwnd``)."""
        w = max(w, 1)
        if self.cwnd_cnt >= w:  # credit earned at a larger w: apply it gently
            self.cwnd_cnt = 0
            self.cwnd += self.mss
        self.cwnd_cnt += acked
        if self.cwnd_cnt >= w:
            delta = self.cwnd_cnt // w
            self.cwnd_cnt -= delta * w
            self.cwnd += delta * self.mss
