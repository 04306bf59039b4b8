"""Reno/NewReno window arithmetic (RFC 5681 section 3, RFC 6582 3.2).

Slow start with appropriate byte counting (RFC 3465, L = 2 SMSS per ACK),
congestion avoidance of about one SMSS per RTT, halving on loss, window
inflation during fast recovery and deflation on exit.
"""

from __future__ import annotations

from ustack.tcp.congestion.base import CongestionController


class Reno(CongestionController):
    name = "reno"

    __slots__ = ("_ca_acc",)

    def __init__(self, mss: int, initial_cwnd: int) -> None:
        super().__init__(mss, initial_cwnd)
        self._ca_acc = 0

    def on_ack(self, acked: int, flight: int, now: float) -> None:
        mss = self.mss
        if self.cwnd < self.ssthresh:
            # slow start, RFC 5681 eq. 2 with ABC limit L = 2*SMSS per ACK
            self.cwnd += acked if acked < 2 * mss else 2 * mss
            return
        # congestion avoidance: +SMSS per cwnd bytes acknowledged (RFC 5681 3.1)
        self._ca_acc += acked
        if self._ca_acc >= self.cwnd:
            self._ca_acc -= self.cwnd
            self.cwnd += mss

    def enter_recovery(self, flight: int, now: float) -> None:
        self.in_recovery = True
        mss = self.mss
        self.ssthresh = max(flight // 2, 2 * mss)  # eq. 4
        self.cwnd = self.ssthresh + 3 * mss  # step 3: inflate by the 3 dupacks

    def on_dup_ack(self, flight: int, now: float) -> None:
        self.cwnd += self.mss  # step 4

    def on_partial_ack(self, acked: int, now: float) -> None:
        # RFC 6582 3.2 step 3: deflate by the amount acked, add back one SMSS
        self.cwnd = max(self.cwnd - acked + self.mss, self.mss)

    def exit_recovery(self, now: float) -> None:
        self.in_recovery = False
        self.cwnd = self.ssthresh  # step 6 (deflate)
        self._ca_acc = 0

    def on_timeout(self, flight: int, now: float) -> None:
        self.in_recovery = False
        self.ssthresh = max(flight // 2, 2 * self.mss)
        self.cwnd = self.mss  # loss window, RFC 5681 3.1
        self._ca_acc = 0
