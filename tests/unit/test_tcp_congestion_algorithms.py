"""Reno, CUBIC (RFC 9438) + HyStart++ (RFC 9406) and BBR (Linux tcp_bbr.c),
driven directly and through a toy bottleneck that produces Linux-style rate
samples (tcp_rate.c)."""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

import pytest

from ustack.tcp.congestion import CaState, CongestionController, RateSample, create
from ustack.tcp.congestion.bbr import Bbr, BbrMode
from ustack.tcp.congestion.cubic import BETA, C, Cubic

MSS = 1000


# ------------------------------------------------------------------ toy path
@dataclass(slots=True)
class _Pkt:
    sent: float
    delivered: int  # connection's delivered count when sent
    delivered_time: float
    first_tx: float


@dataclass
class ToyPath:
    """One flow through a FIFO bottleneck of ``rate`` bytes/s with base RTT
    ``rtt``, an unbounded queue, one ACK per segment and rate samples as
    Linux tcp_rate.c computes them.  Honours cwnd and (if set) pacing_rate."""

    cc: CongestionController
    rate: float
    rtt: float
    now: float = 0.0
    delivered: int = 0
    delivered_time: float = 0.0
    first_tx: float = 0.0
    in_flight: int = 0
    link_free: float = 0.0
    next_send: float = 0.0
    min_rtt: float = math.inf
    rtts: list[float] = field(default_factory=list)
    acks: list[tuple[float, int, _Pkt]] = field(default_factory=list)
    seq: int = 0

    def _send(self) -> None:
        cc = self.cc
        while self.in_flight + MSS <= cc.cwnd and self.next_send <= self.now:
            if self.in_flight == 0:
                self.first_tx = self.delivered_time = self.now
            pkt = _Pkt(self.now, self.delivered, self.delivered_time, self.first_tx)
            depart = max(self.now, self.link_free) + MSS / self.rate
            self.link_free = depart
            self.seq += 1
            heapq.heappush(self.acks, (depart + self.rtt, self.seq, pkt))
            self.in_flight += MSS
            if cc.pacing_rate > 0:
                self.next_send = max(self.next_send, self.now) + MSS / cc.pacing_rate

    def run(self, until: float) -> None:
        cc = self.cc
        while self.now < until:
            self._send()
            nxt = self.acks[0][0] if self.acks else math.inf
            if self.in_flight + MSS <= cc.cwnd and self.next_send > self.now:
                nxt = min(nxt, self.next_send)
            self.now = nxt
            while self.acks and self.acks[0][0] <= self.now:
                _, _, pkt = heapq.heappop(self.acks)
                self._ack(pkt)

    def _ack(self, pkt: _Pkt) -> None:
        prior_in_flight = self.in_flight
        self.in_flight -= MSS
        self.delivered += MSS
        self.delivered_time = self.now
        rtt = self.now - pkt.sent
        self.rtts.append(rtt)
        self.min_rtt = min(self.min_rtt, rtt)
        interval = max(pkt.sent - pkt.first_tx, self.now - pkt.delivered_time)
        self.first_tx = pkt.sent
        if interval < self.min_rtt:
            interval = -1.0  # tcp_rate_gen: shorter than min_rtt is not valid
        rs = RateSample(
            delivered=self.delivered - pkt.delivered, interval=interval,
            delivery_rate=(self.delivered - pkt.delivered) / interval if interval > 0 else 0.0,
            acked_sacked=MSS, prior_in_flight=prior_in_flight, in_flight=self.in_flight,
            rtt=rtt, min_rtt=self.min_rtt, prior_delivered=pkt.delivered,
            delivered_total=self.delivered, ca_state=CaState.OPEN)
        self.cc.on_ack(rs, self.now)


# ------------------------------------------------------------------ reno
def test_reno_halves_on_loss_and_undo_restores() -> None:
    cc = create("reno", MSS, 10)
    cc.cwnd = 20 * MSS
    cc.ssthresh = cc.ssthresh_on_loss(1.0, 20 * MSS)
    assert cc.ssthresh == 10 * MSS  # tcp_reno_ssthresh: cwnd / 2
    cc.on_state(CaState.RECOVERY, 1.0)
    cc.cwnd = cc.ssthresh  # what PRR leaves at the end of recovery
    assert cc.undo_cwnd() == 20 * MSS
    cc.cwnd = 3 * MSS
    assert cc.ssthresh_on_loss(2.0, 3 * MSS) == 2 * MSS  # at least 2 segments


def test_reno_grows_only_when_cwnd_limited_and_by_bytes_acked() -> None:
    cc = create("reno", MSS, 10)
    cc.on_ack(RateSample(acked_sacked=8 * MSS, is_cwnd_limited=False), 0.0)
    assert cc.cwnd == 10 * MSS
    cc.on_ack(RateSample(acked_sacked=8 * MSS), 0.0)  # one stretch ACK
    assert cc.cwnd == 18 * MSS
    cc.ssthresh = 20 * MSS
    cc.on_ack(RateSample(acked_sacked=4 * MSS), 0.0)  # 2 to ssthresh, 2 to CA
    assert cc.cwnd == 20 * MSS and cc.cwnd_cnt == 2 * MSS


# ------------------------------------------------------------------ cubic
class RfcCubic(Cubic):
    """CUBIC in RFC 9438's continuous time (``hz = 0``), not Linux's jiffies."""

    name = "hk-cubic-rfc"
    hz = 0


def _cubic_after_loss(w_max_seg: int, rfc: bool = True) -> Cubic:
    cc: CongestionController = RfcCubic(MSS, 10) if rfc else create("cubic", MSS, 10)
    assert isinstance(cc, Cubic)
    cc.cwnd = w_max_seg * MSS
    cc.ssthresh = cc.ssthresh_on_loss(0.0, cc.cwnd)
    cc.on_state(CaState.RECOVERY, 0.0)
    cc.cwnd = cc.ssthresh
    cc.on_state(CaState.OPEN, 0.0)
    return cc


def test_cubic_curve_matches_rfc9438_formula() -> None:
    cc = _cubic_after_loss(100)
    assert cc.ssthresh == 70 * MSS  # beta = 0.7
    cc.on_ack(RateSample(acked_sacked=MSS, rtt=0.1), 0.0)  # the epoch starts
    k = (100 * (1 - BETA) / C) ** (1 / 3)
    assert cc.k == pytest.approx(k)
    for t in (0.0, 1.0, k, k + 2.0):
        assert cc.w_cubic(t) == pytest.approx(C * (t - k) ** 3 + 100)
    assert cc.w_cubic(0.0) == pytest.approx(70, abs=0.02)


def test_cubic_window_follows_w_cubic_over_time() -> None:
    """An ACK clock of cwnd segments per RTT: cwnd tracks W_cubic(t) through
    the concave and convex regions (RFC 9438 4.4, 4.5)."""
    rtt = 0.1
    cc = _cubic_after_loss(1000)
    k = (1000 * (1 - BETA) / C) ** (1 / 3)
    now = 0.0
    checks = {2.0: 0.0, 5.0: 0.0, round(k, 1): 0.0, 11.0: 0.0}
    while now < 11.0:
        per_rtt = cc.cwnd // (2 * MSS)  # ACK every other segment
        for _ in range(per_rtt):
            cc.on_ack(RateSample(acked_sacked=2 * MSS, rtt=rtt, min_rtt=rtt), now)
            now += rtt / per_rtt
        for t in checks:
            if checks[t] == 0.0 and now >= t:
                checks[t] = cc.cwnd / MSS
    for t, seen in checks.items():
        want = C * (t - k) ** 3 + 1000
        assert abs(seen - want) <= max(3.0, 0.01 * want), (t, seen, want)


def test_cubic_reno_friendly_region_on_a_short_rtt() -> None:
    """RFC 9438 4.3: at 1 ms RTT the cubic curve is nearly flat for seconds,
    so cwnd follows W_est: alpha_cubic = 3(1-beta)/(1+beta) segments per RTT
    up to cwnd_prior, then 1 per RTT."""
    rtt = 0.001
    cc = _cubic_after_loss(20)
    now = 0.0
    for _ in range(50):
        per_rtt = cc.cwnd // MSS
        for _ in range(per_rtt):
            cc.on_ack(RateSample(acked_sacked=MSS, rtt=rtt, min_rtt=rtt), now)
            now += rtt / per_rtt
    alpha = 3 * (1 - BETA) / (1 + BETA)
    rtts_to_prior = (20 - 14) / alpha
    want = 20 + (50 - rtts_to_prior)
    assert abs(cc.cwnd / MSS - want) <= 3, (cc.cwnd / MSS, want)
    assert cc.w_cubic(now) < 15  # the curve alone would still be at ~W_epoch


def _ack_clock(cc: Cubic, now: float, rtt: float, rtts: int) -> float:
    """``rtts`` round trips of a cwnd-limited ACK clock, one ACK per segment."""
    for _ in range(rtts):
        per_rtt = cc.cwnd // MSS
        for _ in range(per_rtt):
            cc.on_ack(RateSample(acked_sacked=MSS, rtt=rtt, min_rtt=rtt), now)
            now += rtt / per_rtt
    return now


def test_cubic_linux_arithmetic_grows_one_segment_per_rtt_in_the_epochs_first_jiffy() -> None:
    """Linux bictcp_update at a 0.2 ms RTT (HZ=250: a jiffy is 4 ms): the
    epoch's first evaluation truncates the curve's drop to one segment less
    than W_max - cwnd, so cnt = cwnd (one segment per RTT) until the jiffy
    ends; RFC 9438's continuous curve is flat there and W_est grows by
    alpha_cubic = 0.53 per RTT."""
    linux = _cubic_after_loss(20, rfc=False)
    rfc = _cubic_after_loss(20)
    assert linux.hz == 250 and linux.ssthresh == rfc.ssthresh == 14 * MSS
    _ack_clock(linux, 0.0, 0.0002, 10)  # 2 ms: inside the first jiffy
    _ack_clock(rfc, 0.0, 0.0002, 10)
    assert linux.cwnd // MSS >= 14 + 9, linux.cwnd // MSS
    assert rfc.cwnd // MSS <= 14 + 6, rfc.cwnd // MSS


def test_cubic_linux_arithmetic_waits_for_the_reno_estimate_after_the_first_jiffy() -> None:
    """In the next jiffy the target (still ~cwnd at the epoch start) is below
    cwnd: cnt = 100 cwnd, and only the Reno-friendly estimate (+1 per
    cwnd * 15/8 ACKed from the epoch's cwnd) can lower it, so cwnd holds
    until that estimate passes it."""
    cc = _cubic_after_loss(20, rfc=False)
    _ack_clock(cc, 0.0, 0.0002, 15)  # 3 ms
    top = cc.cwnd // MSS
    _ack_clock(cc, 0.0041, 0.0002, 5)  # the next jiffy
    assert top - 1 <= cc.cwnd // MSS <= top + 1, (top, cc.cwnd // MSS)


def test_cubic_linux_arithmetic_reduction_in_whole_segments() -> None:
    cc = _cubic_after_loss(100, rfc=False)
    assert cc.ssthresh == 100 * 717 // 1024 * MSS and cc.w_max == 100
    cc.cwnd = 81 * MSS  # below W_max: fast convergence, Linux's integer formula
    assert cc.ssthresh_on_loss(1.0, cc.cwnd) == 81 * 717 // 1024 * MSS
    assert cc.w_max == 81 * 1741 // 2048


def test_cubic_idle_time_does_not_count_as_growth_time() -> None:
    cc = _cubic_after_loss(100)
    cc.on_ack(RateSample(acked_sacked=MSS, rtt=0.1), 1.0)  # epoch starts at 1.0
    cc.on_tx_start(31.0, 30.0)  # 30 s idle, nothing in flight (Linux TX_START)
    before = cc.cwnd
    for i in range(10):
        cc.on_ack(RateSample(acked_sacked=MSS, rtt=0.1), 31.0 + i * 0.01)
    assert cc.cwnd - before <= MSS  # still at the start of the curve, not 30 s in


def test_cubic_fast_convergence_lowers_w_max() -> None:
    cc = _cubic_after_loss(100)
    assert cc.w_max == pytest.approx(100)
    cc.cwnd = 80 * MSS  # the next loss comes below the previous maximum
    cc.ssthresh_on_loss(5.0, cc.cwnd)
    assert cc.w_max == pytest.approx(80 * (1 + BETA) / 2)

    class NoFc(Cubic):
        name = "hk-cubic-nofc"
        fast_convergence = False

    slow = NoFc(MSS, 10)
    slow.cwnd = 100 * MSS
    slow.ssthresh_on_loss(0.0, slow.cwnd)
    slow.cwnd = 80 * MSS
    slow.ssthresh_on_loss(5.0, slow.cwnd)
    assert slow.w_max == pytest.approx(80)


def test_cubic_timeout_forgets_w_max_and_undo_restores_it() -> None:
    cc2 = _cubic_after_loss(100)
    cc2.cwnd = 70 * MSS
    cc2.ssthresh_on_loss(1.0, cc2.cwnd)  # a second (spurious) reduction
    assert cc2.w_max == pytest.approx(70 * (1 + BETA) / 2)
    assert cc2.undo_cwnd() == 70 * MSS
    assert cc2.w_max == pytest.approx(100)  # RFC 9438 4.9: state restored
    cc2.on_state(CaState.LOSS, 2.0)
    assert cc2.w_max == 0  # RFC 9438 4.8: next epoch starts with K = 0


def test_hystart_plus_plus_leaves_slow_start_on_rtt_rise_without_loss() -> None:
    """RFC 9406: slow start into a 100-segment BDP with an unbounded queue
    must end (ssthresh set, through CSS) once queueing delay builds, well
    before cwnd runs away."""
    cc = create("cubic", MSS, 10)
    assert isinstance(cc, Cubic)
    path = ToyPath(cc, rate=2_500_000, rtt=0.040)  # BDP = 100 segments
    css_at = 0
    while path.now < 3.0 and cc.ssthresh >= 0x7FFFFFFF:
        path.run(path.now + 0.002)
        if cc.in_css and not css_at:
            css_at = cc.cwnd
    # the round whose minimum RTT rose enters CSS: within slow start's
    # one-round lag after cwnd passed the BDP (100 segments)
    assert 100 * MSS < css_at <= 400 * MSS
    assert cc.ssthresh < 0x7FFFFFFF, "HyStart++ never ended slow start"
    # CSS_ROUNDS = 5 rounds growing by a quarter: at most 1.25^5 of the entry
    assert css_at < cc.ssthresh <= css_at * 1.25 ** 5 * 1.1
    assert cc.cwnd == cc.ssthresh


def test_hystart_plus_plus_stays_in_slow_start_at_constant_rtt() -> None:
    cc = create("cubic", MSS, 10)
    assert isinstance(cc, Cubic)
    delivered = 0
    for _ in range(12):  # rounds of cwnd segments at a constant RTT
        start = delivered
        for _ in range(cc.cwnd // MSS):
            delivered += MSS
            cc.on_ack(RateSample(acked_sacked=MSS, rtt=0.02, prior_delivered=start,
                                 delivered_total=delivered), 0.0)
    assert not cc.in_css and cc.ssthresh >= 0x7FFFFFFF
    assert cc.cwnd == 10 * MSS * 2 ** 12  # doubling per round


# ------------------------------------------------------------------ bbr
def test_bbr_finds_the_bottleneck_bandwidth_in_a_toy_path() -> None:
    rate = 2_500_000.0  # 20 Mbit/s, 2500 segments/s
    cc = create("bbr", MSS, 10)
    assert isinstance(cc, Bbr) and cc.controls_cwnd and cc.needs_pacing
    path = ToyPath(cc, rate=rate, rtt=0.020)
    path.run(0.5)
    assert cc.full_bw_reached  # STARTUP ended
    path.run(4.0)
    assert cc.mode is BbrMode.PROBE_BW
    assert cc.max_bw == pytest.approx(rate, rel=0.05)
    assert cc.min_rtt == pytest.approx(0.020 + MSS / rate, rel=0.05)
    assert 0.6 * rate <= cc.pacing_rate <= 1.3 * rate
    info = cc.info()
    assert info["bw"] == cc.max_bw and info["mrtt"] == cc.min_rtt and info["cwnd_gain"] == 2
    # goodput over the last second is the link rate, the queue stays bounded
    before = path.delivered
    path.run(5.0)
    assert path.delivered - before >= 0.9 * rate
    assert max(path.rtts[-500:]) < 3 * 0.020


def test_bbr_enters_probe_rtt_after_10s_without_a_new_min_and_leaves() -> None:
    cc = create("bbr", MSS, 10)
    assert isinstance(cc, Bbr)
    delivered = 0
    now = 0.0

    def ack(rtt: float, in_flight: int) -> None:
        nonlocal delivered
        delivered += MSS
        cc.on_ack(RateSample(delivered=10 * MSS, interval=0.01, acked_sacked=MSS,
                             prior_in_flight=in_flight + MSS, in_flight=in_flight,
                             rtt=rtt, prior_delivered=delivered - 10 * MSS,
                             delivered_total=delivered), now)

    ack(0.010, 20 * MSS)
    assert cc.min_rtt == 0.010
    while now < 9.9:
        now += 0.01
        ack(0.015, 20 * MSS)
        assert cc.mode is not BbrMode.PROBE_RTT
    while now < 10.05:
        now += 0.01
        ack(0.015, 20 * MSS)
    assert cc.mode is BbrMode.PROBE_RTT
    assert cc.cwnd <= 4 * MSS
    assert cc.min_rtt == 0.015  # the expired filter took the current sample
    # in-flight at 4 segments for 200 ms and a round: back out of PROBE_RTT
    while now < 10.4:
        now += 0.01
        ack(0.015, 3 * MSS)
    assert cc.mode is not BbrMode.PROBE_RTT
    assert cc.cwnd > 4 * MSS  # the saved cwnd is restored


def test_bbr_packet_conservation_in_first_round_of_recovery() -> None:
    cc = create("bbr", MSS, 10)
    cc.cwnd = 50 * MSS
    cc.ssthresh_on_loss(1.0, 50 * MSS)
    assert cc.prior_cwnd == 50 * MSS
    cc.on_state(CaState.RECOVERY, 1.0)
    cc.on_ack(RateSample(acked_sacked=MSS, in_flight=30 * MSS, losses=2 * MSS,
                         delivered_total=100 * MSS), 1.0)
    assert cc.cwnd == 31 * MSS  # in flight + acked
    cc.on_state(CaState.OPEN, 1.1)
    cc.on_ack(RateSample(acked_sacked=MSS, in_flight=30 * MSS,
                         delivered_total=101 * MSS), 1.1)
    assert cc.cwnd >= 50 * MSS  # restored on leaving recovery


# ------------------------------------------------------- through a connection
@pytest.mark.parametrize("ca", ["reno", "cubic", "bbr"])
def test_lossy_bulk_transfer_is_byte_exact(ca: str) -> None:
    import random

    from ustack.tcp.config import TcpConfig
    from ustack.tcp.testing import BulkApp, MemoryPair, WireProfile

    cfg = TcpConfig(congestion=ca)
    pair = MemoryPair(cfg, cfg, seed=7, profile=WireProfile(delay=0.002, loss=0.02))
    data = random.Random(8).randbytes(400_000)
    app_a = BulkApp(lambda: pair.client.conn, data, random.Random(4))
    app_b = BulkApp(lambda: pair.server.conn, b"", random.Random(5))

    def app(now: float) -> float | None:
        wakes = [w for w in (app_a(now), app_b(now)) if w is not None]
        return min(wakes) if wakes else None

    pair.run(lambda: app_b.eof, app=app, max_time=1000)
    assert bytes(app_b.received) == data
    assert pair.a.cc.name == ca
    assert pair.a.cc.cwnd >= 2 * pair.a.send_mss
