"""CUBIC (RFC 9438), Linux's default congestion control, as a controller.

The window grows as ``W(t) = C (t - K)^3 + W_max`` (segments, t in seconds
since the last reduction) with C = 0.4 and multiplicative decrease beta = 0.7,
fast convergence (4.7) and the Reno-friendly region (4.3).  Slow start, fast
recovery inflation and the timeout response are Reno's (the state machine
drives them through the same hooks).  Simplification: W(t) is evaluated at
``t`` rather than ``t + RTT`` because the hooks carry no RTT.
"""

from __future__ import annotations

from ustack.tcp.congestion.base import CongestionController

C = 0.4
BETA = 0.7
ALPHA = 3 * (1 - BETA) / (1 + BETA)  # Reno-friendly additive increase (RFC 9438 4.3)


class Cubic(CongestionController):
    name = "cubic"

    __slots__ = ("_w_max", "_w_last_max", "_k", "_epoch", "_origin", "_w_est", "_acc")

    def __init__(self, mss: int, initial_cwnd: int) -> None:
        super().__init__(mss, initial_cwnd)
        self._w_max = 0.0  # segments
        self._w_last_max = 0.0
        self._k = 0.0
        self._epoch: float | None = None
        self._origin = 0.0
        self._w_est = 0.0
        self._acc = 0.0

    def on_ack(self, acked: int, flight: int, now: float) -> None:
        mss = self.mss
        if self.cwnd < self.ssthresh:
            self.cwnd += acked if acked < 2 * mss else 2 * mss  # slow start (ABC)
            return
        cwnd_seg = self.cwnd / mss
        if self._epoch is None:
            self._epoch = now
            if cwnd_seg < self._w_max:
                self._k = ((self._w_max - cwnd_seg) / C) ** (1.0 / 3.0)
                self._origin = self._w_max
            else:
                self._k = 0.0
                self._origin = cwnd_seg
            self._w_est = cwnd_seg
        t = now - self._epoch
        target = self._origin + C * (t - self._k) ** 3
        acked_seg = acked / mss
        self._w_est += ALPHA * acked_seg / cwnd_seg
        if self._w_est > target:
            target = self._w_est  # Reno-friendly region
        if target > cwnd_seg:
            # grow by (target - cwnd) / cwnd per acknowledged segment (RFC 9438 4.4)
            self._acc += (target - cwnd_seg) / cwnd_seg * acked_seg
        else:
            self._acc += acked_seg / (100 * cwnd_seg)  # plateau: very slow growth
        if self._acc >= 1.0:
            whole = int(self._acc)
            self._acc -= whole
            self.cwnd += whole * mss

    def _reduce(self) -> None:
        cwnd_seg = self.cwnd / self.mss
        if cwnd_seg < self._w_last_max:
            # fast convergence (RFC 9438 4.7)
            self._w_last_max = cwnd_seg
            self._w_max = cwnd_seg * (1 + BETA) / 2
        else:
            self._w_last_max = cwnd_seg
            self._w_max = cwnd_seg
        self._epoch = None
        self._acc = 0.0

    def enter_recovery(self, flight: int, now: float) -> None:
        self.in_recovery = True
        self._reduce()
        mss = self.mss
        self.ssthresh = max(int(self.cwnd * BETA), 2 * mss)
        self.cwnd = self.ssthresh + 3 * mss

    def on_dup_ack(self, flight: int, now: float) -> None:
        self.cwnd += self.mss

    def on_partial_ack(self, acked: int, now: float) -> None:
        self.cwnd = max(self.cwnd - acked + self.mss, self.mss)

    def exit_recovery(self, now: float) -> None:
        self.in_recovery = False
        self.cwnd = self.ssthresh

    def on_timeout(self, flight: int, now: float) -> None:
        self.in_recovery = False
        self._reduce()
        self.ssthresh = max(int(self.cwnd * BETA), 2 * self.mss)
        self.cwnd = self.mss
