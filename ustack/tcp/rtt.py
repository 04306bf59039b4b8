"""Round-trip time estimation and the retransmission timeout (RFC 6298).

Linux differs from RFC 6298 in the lower bound: the RFC clamps the RTO to at
least 1 s, Linux computes ``SRTT + max(4*RTTVAR, 200 ms)``.  Both are
available (``TcpConfig.rto_linux``); Linux's is the default.
"""

from __future__ import annotations


class RttEstimator:
    """SRTT/RTTVAR/RTO per RFC 6298 section 2, with exponential backoff (5.5)."""

    __slots__ = ("srtt", "rttvar", "base_rto", "min_rtt", "latest", "backoff",
                 "_min", "_max", "_linux")

    def __init__(self, initial: float, rto_min: float, rto_max: float, linux: bool) -> None:
        self.srtt = 0.0
        self.rttvar = 0.0
        self.base_rto = initial
        self.min_rtt = 0.0  # 0 = no sample yet
        self.latest = 0.0
        self.backoff = 0
        self._min = rto_min
        self._max = rto_max
        self._linux = linux

    @property
    def has_sample(self) -> bool:
        return self.min_rtt > 0.0 or self.latest > 0.0 or self.srtt > 0.0

    def sample(self, r: float) -> None:
        """Feed one RTT measurement in seconds (RFC 6298 2.2/2.3; alpha 1/8, beta 1/4)."""
        if r < 0.0:
            return
        # a 0 ms timestamp echo on a sub-millisecond path: Linux keeps srtt >= 1 us
        # (tcp_rtt_estimator), so ss never shows rtt:0 for a measured path
        if r < 1e-6:
            r = 1e-6
        self.latest = r
        # (with ``latest`` just set, has_sample is true: the first sample is
        # the one that finds SRTT and RTTVAR both still zero)
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
        if self.min_rtt == 0.0 or r < self.min_rtt:
            self.min_rtt = r
        if self._linux:
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
