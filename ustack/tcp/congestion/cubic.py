"""CUBIC (RFC 9438) with HyStart++ (RFC 9406) slow start.

Congestion avoidance follows RFC 9438 section 4: the window follows
``W_cubic(t) = C (t - K)^3 + W_max`` (segments, t in seconds since the epoch
began, C = 0.4, beta = 0.7).  Each ACK moves cwnd towards
``target = W_cubic(t + RTT)`` clamped to [cwnd, 1.5 cwnd] by
``(target - cwnd) / cwnd`` per acknowledged segment (4.2, 4.4, 4.5); the
Reno-friendly estimate ``W_est`` takes over while it is larger (4.3); fast
convergence lowers W_max when a loss comes below the previous one (4.7); a
timeout forgets W_max so the next epoch starts with K = 0 (4.8, Linux
``bictcp_reset`` on TCP_CA_Loss); a spurious reduction is undone with the
saved state (4.9).  RTT is a smoothed RTT of the rate samples (the RFC's
SRTT; Linux uses its minimum ``delay_min``).

Slow start grows by the bytes acknowledged (Linux ``tcp_slow_start``) and
HyStart++ (RFC 9406) ends the *initial* slow start when a round's minimum RTT
rises by ``clamp(lastRoundMinRTT / 8, 4 ms, 16 ms)``: the sender enters
Conservative Slow Start and, unless the RTT falls back below the baseline
(then slow start resumes), congestion avoidance (ssthresh = cwnd) after 5 CSS
rounds, the partial round of the entry counting as one (RFC 9406 4.2).  In
CSS each ACK grows cwnd by ``min(N, L * SMSS) / CSS_GROWTH_DIVISOR`` with
N the bytes it newly acknowledged and L = 8 segments when the sender does not
pace, unbounded when it does (4.3; ``paced`` is set by the connection).  In
HyStart++'s standard slow start the RFC's ``min(N, L * SMSS)`` cap is a knob,
``hystart_ss_limit`` (segments), off by default: issue 9 asks for Linux's
growth by the whole stretch ACK there, and the rec-stretch conformance
scenario checks it against the kernel (10 segments ACKed at once: 20 sent).
Rounds are counted by delivered bytes (a round ends when a segment sent after
the previous round's end is delivered), as Linux BBR counts them; RFC 9406
counts them by SND.NXT at the round's start, the same boundary.

Differences from Linux's ``tcp_cubic.c``: Linux runs the older HyStart
(Ha and Rhee 2008): ACK-train length plus delay increase over the global
``delay_min``, compared only once cwnd >= 16 segments, and it exits straight
to congestion avoidance (ssthresh = cwnd) without CSS; it re-arms after every
RTO (``bictcp_reset`` + ``hystart_reset`` on TCP_CA_Loss), so it also runs in
later slow starts, where HyStart++ only runs in the initial one (RFC 9406 4.3
SHOULD).  Its delay test (``hystart_update``) compares the round's minimum RTT,
once 8 samples are in, with the connection's all-time ``delay_min`` +
clamp(delay_min/8, 4 ms, 16 ms) (HyStart++ compares with the previous
round's minimum), and its ACK-train test (ACKs spaced <= 2 ms spanning
about delay_min/2 when not paced) has no counterpart in HyStart++.
Neither caps the growth per ACK (Linux ``tcp_slow_start`` takes the whole
stretch ACK).  Linux also caps the growth
at 1 segment per 20 ACKed while W_max is unknown (``cnt = 20``) and evaluates
W at ``t + delay_min``.
"""

from __future__ import annotations

import math
from typing import ClassVar, Final

from ustack._mypyc import mypyc_attr
from ustack.tcp.congestion.base import CaState, CongestionController, RateSample

C: Final = 0.4  # RFC 9438 4.1 (Linux bic_scale 41/1024 * 10)
BETA: Final = 0.7  # RFC 9438 4.6 (Linux beta 717/1024)
ALPHA: Final = 3 * (1 - BETA) / (1 + BETA)  # Reno-friendly additive increase (RFC 9438 4.3)

# HyStart++ constants (RFC 9406 4.3)
L_UNPACED: Final = 8  # segments per ACK when not paced ("L = infinity if paced")
MIN_RTT_THRESH: Final = 0.004
MAX_RTT_THRESH: Final = 0.016
MIN_RTT_DIVISOR: Final = 8
N_RTT_SAMPLE: Final = 8
CSS_GROWTH_DIVISOR: Final = 4
CSS_ROUNDS: Final = 5

_INF: Final = math.inf


class _HyStart:
    """HyStart++'s round state (RFC 9406 4.2) while it runs: created at the
    first ACK of the initial slow start, dropped when HyStart++ is done (an
    idle connection that never sent keeps none: issue 14)."""

    __slots__ = ("css", "css_acc", "css_rounds", "css_baseline", "round_end", "last_min",
                 "cur_min", "samples")

    def __init__(self) -> None:
        #: in Conservative Slow Start
        self.css = False
        self.css_acc = 0
        self.css_rounds = 0
        self.css_baseline = _INF
        self.round_end = 0
        self.last_min = _INF
        self.cur_min = _INF
        self.samples = 0


#: ``Cubic._hs`` once HyStart++ is done (or off): never changed (its ``css``
#: stays False)
_HS_DONE: Final = _HyStart()


@mypyc_attr(allow_interpreted_subclasses=True)  # users may derive from the built-in ones
class Cubic(CongestionController):
    name = "cubic"
    #: RFC 9438 4.7 fast convergence (Linux module parameter fast_convergence=1)
    fast_convergence: ClassVar[bool] = True
    #: RFC 9406 HyStart++ in the initial slow start (Linux: hystart=1, HyStart)
    hystart: ClassVar[bool] = True
    #: RFC 9406 4.2/4.3 L for HyStart++'s standard slow start, in segments
    #: (the RFC recommends 8 without pacing); None = no cap, as Linux
    #: tcp_slow_start (the default, issue 9).  Never applied when paced.
    hystart_ss_limit: ClassVar[int | None] = None

    __slots__ = ("w_max", "k", "_epoch", "_origin", "_cwnd_epoch", "_cwnd_prior",
                 "_w_est", "_acc", "_srtt", "_undo", "_hs")

    def __init__(self, mss: int, initial_cwnd: int) -> None:
        super().__init__(mss, initial_cwnd)
        self.w_max = 0.0  # segments; 0 = unknown
        self.k = 0.0  # seconds
        self._epoch: float | None = None  # start of the current CA epoch
        self._origin = 0.0  # the W_max the current epoch's curve uses
        self._cwnd_epoch = 0.0
        self._cwnd_prior = 0.0  # cwnd (segments) when ssthresh was last set
        self._w_est = 0.0
        self._acc = 0.0  # fractional cwnd growth in bytes
        self._srtt = -1.0
        self._undo: tuple[float, float, float | None, float, float, float, float] | None = None
        #: HyStart++ (RFC 9406): None until its first ACK, then its round
        #: state, _HS_DONE once it is done (or when ``hystart`` is off)
        self._hs: _HyStart | None = None if self.hystart else _HS_DONE

    # --- the curve -------------------------------------------------------
    def w_cubic(self, t: float) -> float:
        """RFC 9438 eq. 1: the window (segments) ``t`` seconds into the epoch."""
        return C * (t - self.k) ** 3 + self._origin

    @property
    def in_css(self) -> bool:
        """In HyStart++ Conservative Slow Start (RFC 9406 4.2)."""
        hs = self._hs
        return hs is not None and hs.css

    # --- hooks -------------------------------------------------------------
    def on_ack(self, rs: RateSample, now: float) -> None:
        """RFC 9438 4.2-4.5 in congestion avoidance, RFC 9406 in slow start."""
        if rs.rtt > 0:
            self._srtt = rs.rtt if self._srtt < 0 else self._srtt + (rs.rtt - self._srtt) / 8
        hs = self._hs
        if hs is not _HS_DONE and self.cwnd < self.ssthresh:
            if hs is None:
                hs = self._hs = _HyStart()
            self._hystart(hs, rs)
            hs = self._hs
        if not rs.is_cwnd_limited:
            return  # RFC 9438 4.2 / Linux tcp_is_cwnd_limited: no growth
        acked = rs.acked_sacked
        if self.cwnd < self.ssthresh:
            if hs is not None and hs.css:
                # RFC 9406 4.2: cwnd += min(N, L * SMSS) / CSS_GROWTH_DIVISOR
                if not self.paced and acked > L_UNPACED * self.mss:
                    acked = L_UNPACED * self.mss
                hs.css_acc += acked
                grow = hs.css_acc // CSS_GROWTH_DIVISOR
                hs.css_acc -= grow * CSS_GROWTH_DIVISOR
                self.cwnd += grow
                return
            limit = self.hystart_ss_limit
            if (limit is not None and hs is not _HS_DONE and not self.paced
                    and acked > limit * self.mss):
                acked = limit * self.mss  # RFC 9406 4.2: min(N, L * SMSS)
            acked = self.slow_start(acked)
            if acked <= 0:
                return
        self._avoid(acked, rs, now)

    def _avoid(self, acked: int, rs: RateSample, now: float) -> None:
        mss = self.mss
        cwnd_seg = self.cwnd / mss
        if self._epoch is None:
            # a new epoch (RFC 9438 4.2; K = 0 when W_max is unknown, i.e.
            # after HyStart++ or an RTO, or when cwnd is already above it)
            self._epoch = now
            self._cwnd_epoch = cwnd_seg
            self._w_est = cwnd_seg
            if self.w_max > cwnd_seg:
                self.k = ((self.w_max - cwnd_seg) / C) ** (1.0 / 3.0)
                self._origin = self.w_max
            else:
                self.k = 0.0
                self._origin = cwnd_seg
                if self.w_max <= 0:
                    # after an RTO (4.8) or a loss-free HyStart++ exit (4.10):
                    # W_max = cwnd_epoch.  cwnd_prior stays the cwnd of the last
                    # reduction (4.6; an RTO sets it too), so W_est grows with
                    # alpha_cubic until it reaches it (4.3); only without any
                    # reduction yet (4.10) is it cwnd
                    self.w_max = cwnd_seg
                    if self._cwnd_prior <= 0:
                        self._cwnd_prior = cwnd_seg
        t = now - self._epoch
        rtt = self._srtt if self._srtt > 0 else (rs.min_rtt if rs.min_rtt > 0 else 0.0)
        acked_seg = acked / mss
        # Reno-friendly region (4.3): alpha becomes 1 once W_est reaches cwnd_prior
        alpha = 1.0 if self._w_est >= self._cwnd_prior else ALPHA
        self._w_est += alpha * acked_seg / cwnd_seg
        if self.w_cubic(t) < self._w_est:
            want = int(self._w_est) * mss
            if want > self.cwnd:
                self.cwnd = want
                self._acc = 0.0
            return
        # concave (4.4) and convex (4.5) regions: towards W_cubic(t + RTT)
        target = self.w_cubic(t + rtt)
        if target > 1.5 * cwnd_seg:
            target = 1.5 * cwnd_seg
        if target <= cwnd_seg:
            return
        self._acc += (target - cwnd_seg) / cwnd_seg * acked
        if self._acc >= mss:
            whole = int(self._acc // mss)
            self._acc -= whole * mss
            self.cwnd += whole * mss

    def ssthresh_on_loss(self, now: float, in_flight: int) -> int:
        """RFC 9438 4.6 multiplicative decrease with 4.7 fast convergence
        (Linux ``cubictcp_recalc_ssthresh``)."""
        mss = self.mss
        self.prior_cwnd = self.cwnd
        self._undo = (self.w_max, self.k, self._epoch, self._origin, self._w_est,
                      self._cwnd_prior, self._cwnd_epoch)
        cwnd_seg = self.cwnd / mss
        if self.fast_convergence and cwnd_seg < self.w_max:
            self.w_max = cwnd_seg * (1 + BETA) / 2
        else:
            self.w_max = cwnd_seg
        self._cwnd_prior = cwnd_seg
        self._epoch = None
        self._acc = 0.0
        self._hs = _HS_DONE  # HyStart++ only in the initial slow start (RFC 9406 4.3)
        return max(int(self.cwnd * BETA) // mss * mss, 2 * mss)

    def on_state(self, new: CaState, now: float) -> None:
        """RTO: forget W_max (RFC 9438 4.8; Linux ``cubictcp_state``)."""
        super().on_state(new, now)
        if new is CaState.LOSS:
            self.w_max = 0.0
            self.k = 0.0
            self._epoch = None
            self._acc = 0.0

    def undo_cwnd(self) -> int:
        """RFC 9438 4.9: restore the curve saved before the spurious reduction."""
        if self._undo is not None:
            (self.w_max, self.k, self._epoch, self._origin, self._w_est,
             self._cwnd_prior, self._cwnd_epoch) = self._undo
            self._undo = None
        return max(self.cwnd, self.prior_cwnd)

    def on_tx_start(self, now: float, idle: float) -> None:
        """Shift the epoch by the idle time so an application-limited pause
        does not count as growth time (Linux ``cubictcp_cwnd_event``)."""
        if self._epoch is not None and idle > 0:
            self._epoch = min(self._epoch + idle, now)

    # --- HyStart++ (RFC 9406 4.2) ----------------------------------------------
    def _hystart(self, hs: _HyStart, rs: RateSample) -> None:
        if rs.prior_delivered >= hs.round_end:  # a new round starts
            hs.round_end = rs.delivered_total
            hs.last_min = hs.cur_min
            hs.cur_min = _INF
            hs.samples = 0
            if hs.css:
                hs.css_rounds += 1
                if hs.css_rounds >= CSS_ROUNDS:  # enter congestion avoidance
                    self.ssthresh = self.cwnd
                    self._hs = _HS_DONE
                    return
        if rs.rtt <= 0:
            return
        if rs.rtt < hs.cur_min:
            hs.cur_min = rs.rtt
        hs.samples += 1
        if hs.samples < N_RTT_SAMPLE or hs.last_min == _INF:
            return
        if not hs.css:
            thresh = max(MIN_RTT_THRESH, min(hs.last_min / MIN_RTT_DIVISOR, MAX_RTT_THRESH))
            if hs.cur_min >= hs.last_min + thresh:
                hs.css = True  # the delay rose: conservative slow start
                hs.css_baseline = hs.cur_min
                hs.css_rounds = 0
                hs.css_acc = 0
        elif hs.cur_min < hs.css_baseline:
            hs.css = False  # spurious: resume slow start
            hs.css_baseline = _INF
