"""Delivery-rate sampling per ACK (Linux tcp_rate.c; draft-cheng-iccrg-
delivery-rate-estimation), in bytes and seconds.

Each transmission stamps the record with the connection's delivered count and
delivered time (:meth:`RateSampler.on_sent`, Linux ``tcp_rate_skb_sent``);
each newly delivered record offers itself as the sample's starting point and
the most recently sent one wins (:meth:`RateSampler.on_delivered`,
``tcp_rate_skb_delivered``); :meth:`RateSampler.generate` turns that into
``delivered`` bytes over ``max(send interval, ACK interval)`` (``tcp_rate_gen``).
``app_limited`` marks samples taken while the application, not the network,
limited sending (``tcp_rate_check_app_limited``), so model-based controllers
(BBR) can discard low rates from them.
"""

from __future__ import annotations

from ustack.tcp.scoreboard import Segment


class RateAccumulator:
    """The sample being built over one ACK (Linux ``struct rate_sample`` fields
    filled by ``tcp_rate_skb_delivered``)."""

    __slots__ = ("have", "prior_delivered", "prior_time", "snd_interval", "is_app_limited",
                 "is_retrans", "last_sent", "last_xid", "last_end")

    def __init__(self) -> None:
        self.have = False
        self.prior_delivered = 0
        self.prior_time = 0.0
        self.snd_interval = -1.0
        self.is_app_limited = False
        self.is_retrans = False
        self.last_sent = 0.0
        self.last_xid = 0
        self.last_end = 0


class RateSampler:
    """Connection-wide delivery counters (Linux ``tp->delivered``,
    ``delivered_mstamp``, ``first_tx_mstamp``, ``app_limited``)."""

    __slots__ = ("delivered", "delivered_time", "first_tx_time", "app_limited",
                 "rate_delivered", "rate_interval", "rate_app_limited")

    def __init__(self) -> None:
        self.delivered = 0  #: bytes delivered (ACKed or SACKed) over the connection
        self.delivered_time = 0.0  #: when ``delivered`` last grew
        self.first_tx_time = 0.0  #: send time of the newest delivered record
        #: 0 = not app-limited; else the ``delivered`` mark until which samples are
        self.app_limited = 0
        # the best recent sample (Linux rate_delivered / rate_interval_us)
        self.rate_delivered = 0
        self.rate_interval = 0.0
        self.rate_app_limited = False

    def on_sent(self, r: Segment, now: float, nothing_in_flight: bool) -> None:
        """Stamp a (re)transmitted record (``tcp_rate_skb_sent``).  When nothing
        was in flight, the interval clocks restart at this send."""
        if nothing_in_flight:
            self.first_tx_time = now
            self.delivered_time = now
        r.tx_first_tx_time = self.first_tx_time
        r.tx_delivered_time = self.delivered_time
        r.tx_delivered = self.delivered
        r.app_limited = self.app_limited != 0

    def on_delivered(self, acc: RateAccumulator, r: Segment) -> None:
        """``r`` was newly ACKed or SACKed (``tcp_rate_skb_delivered``): the most
        recently sent delivered record starts the sample."""
        if not acc.have or r.sent > self.first_tx_time or (
                r.sent == self.first_tx_time and (r.xid > acc.last_xid or (
                    r.xid == acc.last_xid and r.end > acc.last_end))):
            acc.have = True
            acc.prior_delivered = r.tx_delivered
            acc.prior_time = r.tx_delivered_time
            acc.is_app_limited = r.app_limited
            acc.is_retrans = r.retrans > 0
            acc.last_end = r.end
            acc.last_xid = r.xid
            acc.last_sent = r.sent
            self.first_tx_time = r.sent
            # the send-side interval: from the send of the record that was the
            # newest delivered when ``r`` went out, to ``r``'s send
            acc.snd_interval = r.sent - r.tx_first_tx_time

    def generate(self, acc: RateAccumulator, newly_delivered: int, now: float,
                 min_rtt: float, reneg: bool = False) -> tuple[int, float, bool]:
        """Close the sample (``tcp_rate_gen``): returns ``(delivered, interval,
        app_limited)``; ``interval < 0`` means no valid sample on this ACK."""
        if self.app_limited and self.delivered > self.app_limited:
            self.app_limited = 0
        if newly_delivered:
            self.delivered_time = now
        if not acc.have or reneg:
            return (0, -1.0, acc.is_app_limited)
        delivered = self.delivered - acc.prior_delivered
        ack_interval = now - acc.prior_time
        interval = max(acc.snd_interval, ack_interval)
        # an interval below min_rtt means the clocks are off (e.g. an ACK for a
        # retransmission of something sent long ago): no sample
        if min_rtt > 0.0 and interval < min_rtt:
            return (delivered, -1.0, acc.is_app_limited)
        if interval <= 0.0:
            return (delivered, -1.0, acc.is_app_limited)
        if not acc.is_app_limited or (
                delivered * self.rate_interval >= self.rate_delivered * interval):
            self.rate_delivered = delivered
            self.rate_interval = interval
            self.rate_app_limited = acc.is_app_limited
        return (delivered, interval, acc.is_app_limited)

    def check_app_limited(self, unsent: int, mss: int, in_flight: int, cwnd: int,
                          lost_bytes: int, retrans_bytes: int) -> bool:
        """Mark the flight app-limited when the application has less than one
        MSS queued, the window is not full and no loss is waiting for repair
        (``tcp_rate_check_app_limited``).  Returns whether it marked."""
        if unsent < mss and in_flight < cwnd and lost_bytes <= retrans_bytes:
            self.app_limited = (self.delivered + in_flight) or 1
            return True
        return False
