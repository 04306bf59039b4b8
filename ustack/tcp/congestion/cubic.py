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

Linux arithmetic (``hz``, on by default).  Linux's ``bictcp_update``
evaluates the curve in jiffies and integer segments, and that decides cwnd
on short paths: it evaluates at ``t + delay_min`` with delay_min rounded up
to one jiffy, at most once per jiffy (an ACK in the jiffy of the last
evaluation only updates the Reno-friendly estimate; an unchanged cwnd is
not re-evaluated for HZ/32 jiffies), and turns the target into ``cnt``
(segments ACKed per +1 segment, ``tcp_cong_avoid_ai``) as ``cwnd / (target
- cwnd)`` with the target's cubic term truncated to whole segments.  At an
epoch's first evaluation the truncated term is one segment short of
W_max - cwnd, so the target is cwnd + 1 and cnt = cwnd: the epoch grows one
segment per RTT until the next jiffy, where the continuous curve of RFC
9438 is still flat.  On a path whose RTT is a small fraction of a jiffy
(4 ms at HZ=250) and whose losses come every few ms, every epoch is that
first jiffy: Linux's cubic is AIMD(1, 0.7) there, with about 1.4 times the
window of the RFC arithmetic's AIMD(0.53, 0.7) (bench/loss.py at 1-2 %
random loss over a veth: the kernel's mean cwnd 19 and 12-13 segments
against 14-15 and 9-10 with the RFC arithmetic; reno 13 and 9 on both).
With ``hz`` set (Linux CONFIG_HZ; 250 as on this project's hosts) the
congestion avoidance is Linux's: ``cnt`` from the truncated target, at
least 2, at most 20 while W_max is unknown (5 % per RTT), lowered by the
Reno-friendly estimate (one segment per ``cwnd * 15 / 8`` ACKed, Linux
``beta_scale``), W_max and ssthresh in whole segments.  K is the exact
integer cube root in 1/1024 s where Linux approximates it (``cubic_root``);
delay_min is the connection's min_rtt.  ``hz = 0`` is RFC 9438 in
continuous time (the RFC tests in test_tcp_congestion_algorithms.py).

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


def _icbrt(a: int) -> int:
    """The integer cube root of ``a >= 0`` (the largest x with x**3 <= a)."""
    x = int(round(a ** (1.0 / 3.0)))
    while x * x * x > a:
        x -= 1
    while (x + 1) * (x + 1) * (x + 1) <= a:
        x += 1
    return x


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
    #: Linux arithmetic with this jiffy rate (Linux CONFIG_HZ; see the module
    #: docstring); 0 = RFC 9438 in continuous time
    hz: ClassVar[int] = 250

    __slots__ = ("w_max", "k", "_epoch", "_origin", "_cwnd_epoch", "_cwnd_prior",
                 "_w_est", "_acc", "_srtt", "_undo", "_hs", "_cnt", "_tick")

    def __init__(self, mss: int, initial_cwnd: int) -> None:
        super().__init__(mss, initial_cwnd)
        self.w_max = 0.0  # segments; 0 = unknown
        self.k = 0.0  # seconds
        self._epoch: float | None = None  # start of the current CA epoch
        self._origin = 0.0  # the W_max the current epoch's curve uses
        #: cwnd (segments) at the curve's last evaluation (Linux last_cwnd;
        #: the epoch's first under the RFC arithmetic)
        self._cwnd_epoch = 0.0
        self._cwnd_prior = 0.0  # cwnd (segments) when ssthresh was last set
        self._w_est = 0.0
        self._acc = 0.0  # fractional cwnd growth in bytes
        self._srtt = -1.0
        self._undo: tuple[float, float, float | None, float, float, float, float] | None = None
        #: HyStart++ (RFC 9406): None until its first ACK, then its round
        #: state, _HS_DONE once it is done (or when ``hystart`` is off)
        self._hs: _HyStart | None = None if self.hystart else _HS_DONE
        #: Linux arithmetic: segments ACKed per +1 segment (ca->cnt) and the
        #: jiffy of the curve's last evaluation (ca->last_time)
        self._cnt = 0
        self._tick = 0

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
        if self.hz:
            self._avoid_linux(acked, rs, now)
        else:
            self._avoid(acked, rs, now)

    def _avoid_linux(self, acked: int, rs: RateSample, now: float) -> None:
        """Linux ``bictcp_update`` + ``tcp_cong_avoid_ai`` (module docstring,
        "Linux arithmetic"): whole segments, the jiffy clock, ``cnt``."""
        mss = self.mss
        hz = self.hz
        cwnd = self.cwnd // mss
        tick = int(now * hz)
        self._acc += acked  # ca->ack_cnt (bytes)
        epoch = self._epoch
        if int(self._cwnd_epoch) != cwnd or tick - self._tick > hz // 32:
            if epoch is None or tick != self._tick:
                self._cwnd_epoch = float(cwnd)
                self._tick = tick
                if epoch is None:
                    epoch = self._epoch = now
                    self._acc = float(acked)
                    self._w_est = float(cwnd)
                    w_max = int(self.w_max)
                    if w_max <= cwnd:
                        self.k = 0.0
                        self._origin = float(cwnd)
                    else:
                        # K^3 = (W_max - cwnd) / C, K in 1/1024 s
                        self.k = _icbrt(((w_max - cwnd) << 40) // 410) / 1024
                        self._origin = float(w_max)
                # t + delay_min, delay_min rounded up to a jiffy, in 1/1024 s
                t = tick - int(epoch * hz)
                if rs.min_rtt > 0:
                    t += math.ceil(rs.min_rtt * hz)
                t = (t << 10) // hz
                k = int(self.k * 1024)
                offs = k - t if t < k else t - k
                delta = (410 * offs * offs * offs) >> 40
                target = int(self._origin) + (-delta if t < k else delta)
                cnt = cwnd // (target - cwnd) if target > cwnd else 100 * cwnd
                if self.w_max <= 0 and cnt > 20:
                    cnt = 20  # W_max unknown: 5 % per RTT
                self._cnt = cnt
            # Reno-friendly estimate: +1 per cwnd * beta_scale / 8 ACKed
            step = (cwnd * 15 >> 3) * mss
            if step > 0 and self._acc > step:
                n = int(self._acc // step)
                self._acc -= n * step
                self._w_est += n
            est = int(self._w_est)
            if est > cwnd and self._cnt > cwnd // (est - cwnd):
                self._cnt = cwnd // (est - cwnd)
            if self._cnt < 2:
                self._cnt = 2  # at most 1.5 cwnd per RTT
        self.cong_avoid_ai(self._cnt * mss, acked)

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
        self._epoch = None
        self._acc = 0.0
        self._hs = _HS_DONE  # HyStart++ only in the initial slow start (RFC 9406 4.3)
        if self.hz:  # whole segments (beta 717/1024)
            seg = self.cwnd // mss
            if self.fast_convergence and seg < self.w_max:
                self.w_max = float(seg * 1741 // 2048)
            else:
                self.w_max = float(seg)
            self._cwnd_prior = float(seg)
            return max(seg * 717 // 1024, 2) * mss
        cwnd_seg = self.cwnd / mss
        if self.fast_convergence and cwnd_seg < self.w_max:
            self.w_max = cwnd_seg * (1 + BETA) / 2
        else:
            self.w_max = cwnd_seg
        self._cwnd_prior = cwnd_seg
        return max(int(self.cwnd * BETA) // mss * mss, 2 * mss)

    def on_state(self, new: CaState, now: float) -> None:
        """RTO: forget W_max (RFC 9438 4.8; Linux ``cubictcp_state``)."""
        super().on_state(new, now)
        if new is CaState.LOSS:
            self.w_max = 0.0
            self.k = 0.0
            self._epoch = None
            self._acc = 0.0
            self._cnt = 0
            self._cwnd_epoch = 0.0

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
