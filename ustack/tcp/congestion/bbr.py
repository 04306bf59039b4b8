"""BBR v1 as Linux's ``net/ipv4/tcp_bbr.c`` (Cardwell et al., "BBR:
Congestion-Based Congestion Control", ACM Queue 14(5), 2016).

On every ACK (``controls_cwnd``: Linux ``.cong_control``) BBR updates its
model of the path from the rate sample:

* bottleneck bandwidth = windowed max of delivery rate over 10 packet-timed
  rounds (a round ends when a segment sent after the previous round's end is
  delivered); app-limited samples count only when they raise the max;
* min_rtt = minimum RTT over 10 s; when it expires BBR spends
  max(200 ms, one round) in PROBE_RTT with cwnd = 4 segments;

and sets ``pacing_rate = pacing_gain * bw * 0.99`` and
``cwnd = cwnd_gain * bw * min_rtt`` (+ ACK-aggregation allowance and the
quantization budget, at least 4 segments).  Modes: STARTUP (gains 2/ln 2)
until the bandwidth grew less than 25 % for 3 rounds, DRAIN (pacing gain
ln 2 / 2) until in-flight <= BDP, PROBE_BW cycling pacing gain
5/4, 3/4, 1 x 6 from a random phase, PROBE_RTT.  Loss recovery: packet
conservation in the first round of recovery, then slow-start towards the
target; the cwnd from before recovery is restored on exit.

Not carried over from Linux: the long-term ("policer") bandwidth estimator
(``lt_bw``), departure-time (EDT) accounting in ``bbr_packets_in_net_at_edt``
(in-flight is used as it is), and ``is_ack_delayed`` filtering of min_rtt
updates.  PROBE_RTT marks samples app-limited inside the controller (Linux
sets ``tp->app_limited``) until the data in flight at that time is delivered.
"""

from __future__ import annotations

import math
import random
from enum import IntEnum
from typing import ClassVar, Final

from ustack._mypyc import mypyc_attr
from ustack.tcp.congestion.base import CaState, CongestionController, RateSample
from ustack.tcp.congestion.windowed import WindowedMax

# Linux's gains are BBR_UNIT (256) fixed point; ustack uses the same values
HIGH_GAIN: Final = 739 / 256  # 2/ln 2 = 2.8854 as Linux rounds it (bbr_high_gain 2.8867)
DRAIN_GAIN: Final = 88 / 256  # ~ 1/high_gain (bbr_drain_gain = 256 * 1000 / 2885)
CWND_GAIN: Final = 2.0  # Linux bbr_cwnd_gain
PACING_GAIN = (5 / 4, 3 / 4, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)  # bbr_pacing_gain[]
CYCLE_LEN: Final = len(PACING_GAIN)
CYCLE_RAND: Final = 7  # randomize the starting phase over this many phases
BW_RTTS: Final = CYCLE_LEN + 2  # bandwidth filter window, rounds
MIN_RTT_WIN: Final = 10.0  # seconds (bbr_min_rtt_win_sec)
PROBE_RTT_TIME: Final = 0.2  # seconds (bbr_probe_rtt_mode_ms)
CWND_MIN_TARGET: Final = 4  # segments (bbr_cwnd_min_target)
FULL_BW_THRESH: Final = 5 / 4  # bbr_full_bw_thresh
FULL_BW_CNT: Final = 3  # bbr_full_bw_cnt
PACING_MARGIN: Final = 0.99  # pace 1 % below the estimate (bbr_pacing_margin_percent)
MIN_TSO_RATE: Final = 1_200_000 / 8  # bytes/s (bbr_min_tso_rate)
GSO_MAX: Final = 65536 - 1 - 320  # GSO_MAX_SIZE - 1 - MAX_TCP_HEADER
PACING_SHIFT: Final = 10  # sk_pacing_shift: a GSO burst is ~1 ms of data
EXTRA_ACKED_WIN_RTTS: Final = 5
EXTRA_ACKED_MAX: Final = 0.1  # seconds of bandwidth (bbr_extra_acked_max_us)
INIT_CWND: Final = 10  # TCP_INIT_CWND
DEFAULT_RTT: Final = 0.001  # nominal RTT before any sample (bbr_init_pacing_rate_from_rtt)


class BbrMode(IntEnum):
    STARTUP = 0
    DRAIN = 1
    PROBE_BW = 2
    PROBE_RTT = 3


@mypyc_attr(allow_interpreted_subclasses=True)  # users may derive from the built-in ones
class Bbr(CongestionController):
    name = "bbr"
    controls_cwnd = True
    needs_pacing = True
    #: source of the random starting phase of the PROBE_BW gain cycle
    rng: ClassVar[random.Random] = random.Random(0xBB5)

    __slots__ = ("mode", "bw", "min_rtt", "_min_rtt_stamp", "_probe_rtt_done",
                 "_probe_rtt_round_done", "rtt_cnt", "_next_rtt_delivered", "round_start",
                 "cycle_idx", "_cycle_stamp", "pacing_gain", "cwnd_gain", "full_bw",
                 "full_bw_cnt", "full_bw_reached", "_prev_ca_state", "_conservation",
                 "_idle_restart", "_has_seen_rtt", "_ack_epoch_stamp", "_ack_epoch_acked",
                 "_extra_acked", "_extra_win_rtts", "_extra_win_idx", "_app_limited_until",
                 "_tso_rate", "_tso_goal")

    def __init__(self, mss: int, initial_cwnd: int) -> None:
        super().__init__(mss, initial_cwnd)
        self.mode = BbrMode.STARTUP
        self.bw = WindowedMax(BW_RTTS)  # bytes/s
        self.min_rtt = math.inf
        self._min_rtt_stamp: float | None = None
        self._probe_rtt_done: float | None = None
        self._probe_rtt_round_done = False
        self.rtt_cnt = 0
        self._next_rtt_delivered = 0
        self.round_start = False
        self.cycle_idx = 0
        self._cycle_stamp = 0.0
        self.pacing_gain = HIGH_GAIN
        self.cwnd_gain = HIGH_GAIN
        self.full_bw = 0.0
        self.full_bw_cnt = 0
        self.full_bw_reached = False
        self._prev_ca_state = CaState.OPEN
        self._conservation = False
        self._idle_restart = False
        self._has_seen_rtt = False
        self._ack_epoch_stamp: float | None = None
        self._ack_epoch_acked = 0
        self._extra_acked = [0, 0]
        self._extra_win_rtts = 0
        self._extra_win_idx = 0
        self._app_limited_until = 0
        self._tso_rate = -1.0
        self._tso_goal = 2
        self._init_pacing(DEFAULT_RTT)

    def set_mss(self, mss: int, initial_cwnd: int) -> None:
        super().set_mss(mss, initial_cwnd)
        self._init_pacing(self.min_rtt if self._has_seen_rtt else DEFAULT_RTT)

    # --- model -------------------------------------------------------------
    @property
    def max_bw(self) -> float:
        """Bottleneck bandwidth estimate, bytes/s."""
        return self.bw.best

    def _init_pacing(self, rtt: float) -> None:
        """pacing = high_gain * cwnd / RTT (Linux bbr_init_pacing_rate_from_rtt)."""
        self.pacing_rate = self.cwnd / max(rtt, 1e-6) * HIGH_GAIN * PACING_MARGIN

    def _bdp(self, bw: float, gain: float) -> int:
        """ceil(bw * min_rtt * gain) in segments; IW before any RTT sample."""
        if self.min_rtt == math.inf:
            return INIT_CWND
        return math.ceil(bw * self.min_rtt * gain / self.mss)

    def _tso_segs_goal(self) -> int:
        """Segments per GSO burst at the pacing rate (bbr_tso_segs_goal)."""
        rate = self.pacing_rate
        if rate != self._tso_rate:
            burst = min(int(rate) >> PACING_SHIFT, GSO_MAX)
            self._tso_rate = rate
            goal = max(burst // self.mss, 1 if rate < MIN_TSO_RATE else 2)
            self._tso_goal = goal if goal < 0x7F else 0x7F  # Linux: min(segs, 0x7F)
        return self._tso_goal

    def _quantization_budget(self, cwnd: int) -> int:
        """Segments for full-sized bursts at both ends (bbr_quantization_budget)."""
        cwnd += 3 * self._tso_segs_goal()
        cwnd = (cwnd + 1) & ~1  # even, against delayed ACKs
        if self.mode is BbrMode.PROBE_BW and self.cycle_idx == 0:
            cwnd += 2
        return cwnd

    def _inflight(self, bw: float, gain: float) -> int:
        """Target in-flight bytes for ``gain`` (bbr_inflight)."""
        return self._quantization_budget(self._bdp(bw, gain)) * self.mss

    def _update_bw(self, rs: RateSample) -> None:
        self.round_start = False
        if rs.interval <= 0 or rs.delivered <= 0:
            return  # not a valid observation
        if rs.prior_delivered >= self._next_rtt_delivered:  # a round ended
            self._next_rtt_delivered = rs.delivered_total
            self.rtt_cnt += 1
            self.round_start = True
            self._conservation = False
        bw = rs.delivered / rs.interval
        app_limited = rs.is_app_limited or rs.prior_delivered < self._app_limited_until
        if not app_limited or bw >= self.bw.best:
            self.bw.update(self.rtt_cnt, bw)

    def _update_ack_aggregation(self, rs: RateSample, now: float) -> None:
        """Windowed max of data ACKed beyond bw * elapsed (extra_acked)."""
        acked = rs.acked_sacked
        if acked <= 0 or rs.interval <= 0 or rs.delivered <= 0:
            return
        if self.round_start:
            self._extra_win_rtts = min(31, self._extra_win_rtts + 1)
            if self._extra_win_rtts >= EXTRA_ACKED_WIN_RTTS:
                self._extra_win_rtts = 0
                self._extra_win_idx ^= 1
                self._extra_acked[self._extra_win_idx] = 0
        if self._ack_epoch_stamp is None:
            self._ack_epoch_stamp = now
        expected = self.bw.best * (now - self._ack_epoch_stamp)
        if self._ack_epoch_acked <= expected or self._ack_epoch_acked + acked >= (
                (1 << 20) * self.mss):
            self._ack_epoch_acked = 0
            self._ack_epoch_stamp = now
            expected = 0.0
        self._ack_epoch_acked += acked
        extra = min(int(self._ack_epoch_acked - expected), self.cwnd)
        if extra > self._extra_acked[self._extra_win_idx]:
            self._extra_acked[self._extra_win_idx] = extra

    def _advance_cycle_phase(self, now: float) -> None:
        self.cycle_idx = (self.cycle_idx + 1) % CYCLE_LEN
        self._cycle_stamp = now

    def _update_cycle_phase(self, rs: RateSample, now: float) -> None:
        if self.mode is not BbrMode.PROBE_BW:
            return
        full_length = now - self._cycle_stamp > self.min_rtt
        gain = self.pacing_gain
        if gain == 1.0:
            nxt = full_length
        else:
            inflight = rs.prior_in_flight
            bw = self.bw.best
            if gain > 1.0:  # probe until in-flight reaches gain * BDP (or a loss)
                inflight += self._tso_segs_goal() * self.mss
                nxt = full_length and (rs.losses > 0 or inflight >= self._inflight(bw, gain))
            else:  # drain until in-flight falls to the BDP
                nxt = full_length or inflight <= self._inflight(bw, 1.0)
        if nxt:
            self._advance_cycle_phase(now)

    def _reset_probe_bw(self, now: float) -> None:
        self.mode = BbrMode.PROBE_BW
        self.cycle_idx = CYCLE_LEN - 1 - self.rng.randrange(CYCLE_RAND)
        self._advance_cycle_phase(now)

    def _reset_mode(self, now: float) -> None:
        if self.full_bw_reached:
            self._reset_probe_bw(now)
        else:
            self.mode = BbrMode.STARTUP

    def _check_full_bw_reached(self, rs: RateSample) -> None:
        """STARTUP filled the pipe: 3 rounds without 25 % bandwidth growth."""
        if self.full_bw_reached or not self.round_start or rs.is_app_limited:
            return
        if self.bw.best >= self.full_bw * FULL_BW_THRESH:
            self.full_bw = self.bw.best
            self.full_bw_cnt = 0
            return
        self.full_bw_cnt += 1
        self.full_bw_reached = self.full_bw_cnt >= FULL_BW_CNT

    def _check_drain(self, rs: RateSample, now: float) -> None:
        if self.mode is BbrMode.STARTUP and self.full_bw_reached:
            self.mode = BbrMode.DRAIN
            self.ssthresh = self._inflight(self.bw.best, 1.0)
        if self.mode is BbrMode.DRAIN and rs.in_flight <= self._inflight(self.bw.best, 1.0):
            self._reset_probe_bw(now)  # the queue is drained

    def _save_cwnd(self) -> None:
        """Remember a good cwnd to restore after recovery or PROBE_RTT."""
        if self._prev_ca_state < CaState.RECOVERY and self.mode is not BbrMode.PROBE_RTT:
            self.prior_cwnd = self.cwnd
        else:
            self.prior_cwnd = max(self.prior_cwnd, self.cwnd)

    def _check_probe_rtt_done(self, now: float) -> None:
        if self._probe_rtt_done is None or now <= self._probe_rtt_done:
            return
        self._min_rtt_stamp = now  # wait another window before the next PROBE_RTT
        self.cwnd = max(self.cwnd, self.prior_cwnd)
        self._reset_mode(now)

    def _update_min_rtt(self, rs: RateSample, now: float) -> None:
        if self._min_rtt_stamp is None:
            self._min_rtt_stamp = now
        expired = now > self._min_rtt_stamp + MIN_RTT_WIN
        # an equal sample refreshes the stamp too (Linux rtt_us <= min_rtt_us)
        if rs.rtt >= 0 and (rs.rtt <= self.min_rtt or expired):
            self.min_rtt = rs.rtt
            self._min_rtt_stamp = now
        if expired and not self._idle_restart and self.mode is not BbrMode.PROBE_RTT:
            self.mode = BbrMode.PROBE_RTT  # dip: drain the queue, refresh min_rtt
            self._save_cwnd()
            self._probe_rtt_done = None
        if self.mode is BbrMode.PROBE_RTT:
            # samples of what is sent now are app-limited (Linux tp->app_limited)
            self._app_limited_until = rs.delivered_total + max(rs.in_flight, 1)
            if self._probe_rtt_done is None and rs.in_flight <= CWND_MIN_TARGET * self.mss:
                self._probe_rtt_done = now + PROBE_RTT_TIME
                self._probe_rtt_round_done = False
                self._next_rtt_delivered = rs.delivered_total
            elif self._probe_rtt_done is not None:
                if self.round_start:
                    self._probe_rtt_round_done = True
                if self._probe_rtt_round_done:
                    self._check_probe_rtt_done(now)
        if rs.delivered > 0:
            self._idle_restart = False

    def _update_gains(self) -> None:
        mode = self.mode
        if mode is BbrMode.STARTUP:
            self.pacing_gain = self.cwnd_gain = HIGH_GAIN
        elif mode is BbrMode.DRAIN:
            self.pacing_gain, self.cwnd_gain = DRAIN_GAIN, HIGH_GAIN
        elif mode is BbrMode.PROBE_BW:
            self.pacing_gain, self.cwnd_gain = PACING_GAIN[self.cycle_idx], CWND_GAIN
        else:
            self.pacing_gain = self.cwnd_gain = 1.0

    def _recover_or_restore(self, rs: RateSample, acked: int) -> tuple[int, bool]:
        """Packet conservation in the first round of recovery; restore the
        pre-recovery cwnd when recovery ends (bbr_set_cwnd_to_recover_or_restore)."""
        cwnd = self.cwnd
        if rs.losses > 0:
            cwnd = max(cwnd - rs.losses, self.mss)
        state = self.ca_state
        prev = self._prev_ca_state
        if state is CaState.RECOVERY and prev is not CaState.RECOVERY:
            self._conservation = True
            self._next_rtt_delivered = rs.delivered_total  # the round starts now
            cwnd = rs.in_flight + acked
        elif prev >= CaState.RECOVERY and state < CaState.RECOVERY:
            cwnd = max(cwnd, self.prior_cwnd)
            self._conservation = False
        self._prev_ca_state = state
        if self._conservation:
            return max(cwnd, rs.in_flight + acked), True
        return cwnd, False

    def _target_cwnd(self, bw: float, gain: float) -> int:
        """cwnd target in bytes: gain * BDP + ACK-aggregation allowance +
        quantization budget (bbr_set_cwnd).  Computed on every ACK as Linux
        does: a cache keyed on its ten inputs hit on 1-2 % of the ACKs of
        bench/loss_core.py (extra_acked and the pacing rate move per ACK)
        and building the key cost as much as the computation."""
        mss = self.mss
        if self.min_rtt == math.inf:
            target = INIT_CWND * mss
        else:
            target = math.ceil(bw * self.min_rtt * gain / mss) * mss
        if self.full_bw_reached:
            target += min(max(self._extra_acked), int(bw * EXTRA_ACKED_MAX))
        return self._quantization_budget(-(-target // mss)) * mss

    def _set_cwnd(self, rs: RateSample, bw: float, gain: float) -> None:
        acked = rs.acked_sacked
        cwnd = self.cwnd
        if acked > 0:
            if (rs.losses > 0 or self._conservation
                    or self.ca_state is not self._prev_ca_state):
                cwnd, conserving = self._recover_or_restore(rs, acked)
            else:
                conserving = False
            if not conserving:
                target = self._target_cwnd(bw, gain)
                if self.full_bw_reached:  # only cut cwnd once the pipe was filled
                    cwnd = min(cwnd + acked, target)
                elif cwnd < target or rs.delivered_total < INIT_CWND * self.mss:
                    cwnd += acked
                if cwnd < CWND_MIN_TARGET * self.mss:
                    cwnd = CWND_MIN_TARGET * self.mss
        if self.mode is BbrMode.PROBE_RTT:
            cwnd = min(cwnd, CWND_MIN_TARGET * self.mss)
        self.cwnd = cwnd

    # --- hooks -------------------------------------------------------------
    def on_ack(self, rs: RateSample, now: float) -> None:
        """bbr_main: update the model, then pacing rate and cwnd."""
        self._update_bw(rs)
        if rs.acked_sacked > 0 and rs.interval > 0:
            self._update_ack_aggregation(rs, now)
        if self.mode is BbrMode.PROBE_BW:
            self._update_cycle_phase(rs, now)
        if self.round_start and not self.full_bw_reached:
            self._check_full_bw_reached(rs)
        if self.mode <= BbrMode.DRAIN:
            self._check_drain(rs, now)
        stamp = self._min_rtt_stamp
        if (stamp is None or now > stamp + MIN_RTT_WIN or self.mode is BbrMode.PROBE_RTT
                or self._idle_restart):
            self._update_min_rtt(rs, now)
        elif 0 <= rs.rtt <= self.min_rtt:  # the common case of _update_min_rtt
            self.min_rtt = rs.rtt
            self._min_rtt_stamp = now
        self._update_gains()
        bw = self.bw.best
        # bbr_set_pacing_rate
        if not self._has_seen_rtt and rs.rtt > 0:
            self._has_seen_rtt = True
            self._init_pacing(rs.rtt)
        rate = bw * self.pacing_gain * PACING_MARGIN
        if self.full_bw_reached or rate > self.pacing_rate:
            self.pacing_rate = rate
        self._set_cwnd(rs, bw, self.cwnd_gain)

    def info(self) -> dict[str, float]:
        """Linux bbr_get_info: bw in bytes/s, min RTT in seconds, the gains."""
        return {"bw": self.bw.best, "mrtt": self.min_rtt if self.min_rtt != math.inf else 0.0,
                "pacing_gain": self.pacing_gain, "cwnd_gain": self.cwnd_gain}

    def ssthresh_on_loss(self, now: float, in_flight: int) -> int:
        """BBR keeps ssthresh; it only saves cwnd for the end of recovery."""
        self._save_cwnd()
        return self.ssthresh

    def on_state(self, new: CaState, now: float) -> None:
        """Linux bbr_set_state.  On an RTO the connection has already set
        cwnd = in-flight + 1 MSS (tcp_enter_loss, for every controller); BBR
        then forgets full_bw and treats the RTO as the end of a round, and
        its next ACKs grow cwnd from there (bbr_set_cwnd: + acked, at least
        4 segments), restoring prior_cwnd when the state leaves LOSS
        (bbr_set_cwnd_to_recover_or_restore)."""
        super().on_state(new, now)
        if new is CaState.LOSS:
            self._prev_ca_state = CaState.LOSS
            self.full_bw = 0.0
            self.round_start = True  # treat an RTO like the end of a round

    def undo_cwnd(self) -> int:
        """A spurious slow-down: restart full-pipe detection (bbr_undo_cwnd)."""
        self.full_bw = 0.0
        self.full_bw_cnt = 0
        return self.cwnd

    def on_tx_start(self, now: float, idle: float) -> None:
        """Restart from idle (nothing in flight, so app-limited): pace at the
        estimated bandwidth (bbr_cwnd_event_tx_start)."""
        self._idle_restart = True
        self._ack_epoch_stamp = now
        self._ack_epoch_acked = 0
        if self.mode is BbrMode.PROBE_BW:
            rate = self.bw.best * PACING_MARGIN
            if rate > 0:
                self.pacing_rate = rate
        elif self.mode is BbrMode.PROBE_RTT:
            self._check_probe_rtt_done(now)
