"""Round-trip time estimation and the retransmission timeout (RFC 6298).

Samples are floats in seconds taken from the caller's clock (microsecond
resolution or better with ``time.monotonic``), so SRTT, RTTVAR, min_rtt and
the RTO are right below 1 ms.  Like Linux ``tcp_ack_update_rtt`` an ACK
gives two samples: the RTT of the oldest acknowledged segment feeds
SRTT/RTTVAR (RFC 6298 2), the newest one feeds min_rtt, a windowed minimum
over ``min_rtt_window`` seconds (Linux ``tcp_min_rtt_wlen`` 300 s, kept with
Kathleen Nichols' three-sample running minimum as Linux ``lib/win_minmax.c``).

Linux differs from RFC 6298 in the lower bound: the RFC clamps the RTO to at
least 1 s, Linux computes ``SRTT + max(4*RTTVAR, 200 ms)``.  Both are
available (``TcpConfig.rto_linux``); Linux's is the default.
"""

from __future__ import annotations

from typing import Final

#: a 0 ms timestamp echo or a 0 s clock delta: Linux keeps rtt >= 1 us
_MIN_SAMPLE: Final = 1e-6


class _MinWindow:
    """Running minimum over a sliding time window (Linux ``minmax``): the
    best, second best and third best samples of the last window.

    The three (time, value) pairs are plain slots, not two lists (one per
    connection: two 3-lists were ~160 B of an idle connection's footprint).
    The base of :class:`WindowedMin` and of :class:`RttEstimator`, which
    keeps its min_rtt filter in its own fields (as Linux embeds ``struct
    minmax`` in ``tcp_sock``) instead of a second object per connection."""

    __slots__ = ("window", "_t0", "_t1", "_t2", "_v0", "_v1", "_v2")

    def __init__(self, window: float) -> None:
        self.window = window
        self._t0 = self._t1 = self._t2 = 0.0
        self._v0 = self._v1 = self._v2 = 0.0  # 0 = empty

    def _reset_min(self, now: float, v: float) -> float:
        self._t0 = self._t1 = self._t2 = now
        self._v0 = self._v1 = self._v2 = v
        return v

    def _update_min(self, now: float, v: float) -> float:
        """Feed sample ``v`` taken at ``now``; return the windowed minimum."""
        v0 = self._v0
        if v0 == 0.0 or v <= v0 or now - self._t2 > self.window:
            return self._reset_min(now, v)  # new minimum, or nothing left in the window
        if v <= self._v1:
            self._t1 = self._t2 = now
            self._v1 = self._v2 = v
        elif v <= self._v2:
            self._t2 = now
            self._v2 = v
        # expire the best samples as they leave the window (win_minmax.c subwin)
        t0 = self._t0
        dt = now - t0
        win = self.window
        if dt > win:
            self._t0, self._t1 = self._t1, self._t2
            self._v0, self._v1 = self._v1, self._v2
            self._t2, self._v2 = now, v
            if now - self._t0 > win:
                self._t0, self._t1 = self._t1, self._t2
                self._v0, self._v1 = self._v1, self._v2
                self._t2, self._v2 = now, v
        elif self._t1 == t0 and dt > win / 4:
            self._t1 = self._t2 = now
            self._v1 = self._v2 = v
        elif self._t2 == self._t1 and dt > win / 2:
            self._t2 = now
            self._v2 = v
        return self._v0


class WindowedMin(_MinWindow):
    """:class:`_MinWindow` on its own."""

    __slots__ = ()

    @property
    def value(self) -> float:
        return self._v0

    def reset(self, now: float, v: float) -> float:
        return self._reset_min(now, v)

    def update(self, now: float, v: float) -> float:
        """Feed sample ``v`` taken at ``now``; return the windowed minimum."""
        return self._update_min(now, v)


class RttEstimator(_MinWindow):
    """SRTT/RTTVAR/RTO per RFC 6298 section 2, with exponential backoff (5.5);
    the windowed min_rtt filter is its base (:class:`_MinWindow`)."""

    __slots__ = ("srtt", "rttvar", "base_rto", "min_rtt", "latest", "backoff",
                 "_min", "_max", "_linux_rto")

    def __init__(self, initial: float, rto_min: float, rto_max: float, linux: bool,
                 min_rtt_window: float = 300.0) -> None:
        super().__init__(min_rtt_window)
        self.srtt = 0.0
        self.rttvar = 0.0
        self.base_rto = initial
        self.min_rtt = 0.0  # 0 = no sample yet
        self.latest = 0.0
        self.backoff = 0
        self._min = rto_min
        self._max = rto_max
        self._linux_rto = linux

    @property
    def has_sample(self) -> bool:
        return self.min_rtt > 0.0 or self.latest > 0.0 or self.srtt > 0.0

    def update(self, seq_rtt: float, ca_rtt: float, now: float) -> None:
        """One ACK's samples: ``seq_rtt`` (oldest acknowledged segment) for
        SRTT/RTTVAR/RTO, ``ca_rtt`` (newest) for the windowed min_rtt.

        (Per ACK: :meth:`_estimate` is inlined here; the same arithmetic.)"""
        if ca_rtt >= 0.0:
            self.min_rtt = self._update_min(now, ca_rtt if ca_rtt > _MIN_SAMPLE
                                            else _MIN_SAMPLE)
        r = seq_rtt
        if r < 0.0:
            return
        if r < _MIN_SAMPLE:
            r = _MIN_SAMPLE
        self.latest = r
        srtt = self.srtt
        rttvar = self.rttvar
        if srtt == 0.0 and rttvar == 0.0:
            srtt = r
            rttvar = r / 2
        else:
            rttvar = 0.75 * rttvar + 0.25 * (srtt - r if srtt > r else r - srtt)
            srtt = 0.875 * srtt + 0.125 * r
        self.srtt = srtt
        self.rttvar = rttvar
        if self._linux_rto:
            var4 = 4 * rttvar
            rto = srtt + (var4 if var4 > self._min else self._min)
        else:
            rto = max(self._min, srtt + max(0.001, 4 * rttvar))
        self.base_rto = rto if rto < self._max else self._max

    def sample(self, r: float) -> None:
        """Feed one RTT measurement in seconds (RFC 6298 2.2/2.3; alpha 1/8,
        beta 1/4); min_rtt is then the all-time minimum."""
        if r < 0.0:
            return
        if self.min_rtt == 0.0 or r < self.min_rtt:
            self.min_rtt = r if r > _MIN_SAMPLE else _MIN_SAMPLE
        self._estimate(r)

    def _estimate(self, r: float) -> None:
        if r < 0.0:
            return
        # a 0 ms timestamp echo on a sub-millisecond path: Linux keeps srtt >= 1 us
        # (tcp_rtt_estimator), so ss never shows rtt:0 for a measured path
        if r < _MIN_SAMPLE:
            r = _MIN_SAMPLE
        self.latest = r
        srtt = self.srtt
        rttvar = self.rttvar
        if srtt == 0.0 and rttvar == 0.0:
            srtt = r
            rttvar = r / 2
        else:
            rttvar = 0.75 * rttvar + 0.25 * (srtt - r if srtt > r else r - srtt)
            srtt = 0.875 * srtt + 0.125 * r
        self.srtt = srtt
        self.rttvar = rttvar
        if self._linux_rto:
            var4 = 4 * rttvar
            rto = srtt + (var4 if var4 > self._min else self._min)
        else:
            rto = max(self._min, srtt + max(0.001, 4 * rttvar))
        self.base_rto = rto if rto < self._max else self._max

    def set_base(self, rto: float) -> None:
        """Force the base RTO (RFC 6298 5.7: 3 s after a retransmitted SYN)."""
        self.base_rto = min(max(rto, self._min), self._max)

    @property
    def rto(self) -> float:
        """The current timeout: the base RTO doubled per backoff, capped (RFC 6298 5.5)."""
        rto = self.base_rto * (1 << self.backoff) if self.backoff < 32 else self._max
        return rto if rto < self._max else self._max
