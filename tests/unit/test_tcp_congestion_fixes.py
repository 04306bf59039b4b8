"""Congestion-control rules checked against their sources (helper tcpfix,
issue 9): each test names the RFC section or the Linux function it follows."""

from __future__ import annotations

import pytest

from ustack.tcp.congestion import CongestionController, RateSample, create
from ustack.tcp.congestion.base import CaState
from ustack.tcp.congestion.cubic import Cubic
from ustack.tcp.recovery import Recovery
from ustack.tcp.rtt import RttEstimator
from ustack.wire.seq import MASK

MSS = 1000
UNA = 5000


def _seg(k: int) -> int:
    return (UNA + k * MSS) & MASK


def _recovery(name: str) -> Recovery:
    rtt = RttEstimator(1.0, 0.2, 120.0, True)
    cc = create(name, MSS, 10)
    rec = Recovery(UNA, MSS, rtt, cc, sack=True)
    return rec


# ------------------------------------------------------------ bug 3: bbr after RTO
@pytest.mark.parametrize("name", ["bbr", "cubic", "reno"])
def test_rto_sets_cwnd_to_in_flight_plus_one_for_every_controller(name: str) -> None:
    """Linux tcp_enter_loss: after tcp_timeout_mark_lost, snd_cwnd =
    tcp_packets_in_flight + 1 for every congestion control, BBR included
    (.cong_control does not bypass it; bbr_set_state then only resets
    full_bw and marks a round start)."""
    rec = _recovery(name)
    cc = rec.cc
    rec.on_sent(UNA, MSS, 0.0)
    rec.on_ack(_seg(1), [], 0.1)  # SRTT = 100 ms
    for k in range(1, 21):
        rec.on_sent(_seg(k), MSS, 1.0)
    cwnd_before = cc.cwnd
    timer = rec.timer()
    assert timer is not None
    kind, when = timer
    while kind != "rto":  # a tail loss probe first (RFC 8985 7), then the RTO
        rec.on_timer(when)
        timer = rec.timer()
        assert timer is not None
        kind, when = timer
    rec.on_timer(when)
    assert rec.state is CaState.LOSS
    assert cc.cwnd == rec.in_flight() + MSS
    assert cc.cwnd < cwnd_before


# ------------------------------------------------------------ bug 5: tcp_recovery bits
def _rec(tcp_recovery: int) -> Recovery:
    from ustack.tcp.recovery import RecoveryConfig

    rtt = RttEstimator(1.0, 0.2, 120.0, True)
    rec = Recovery(UNA, MSS, rtt, None, sack=True,
                   config=RecoveryConfig(tcp_recovery=tcp_recovery))
    rec.cc.cwnd = 20 * MSS
    rec.on_sent(UNA, MSS, 0.0)
    rec.on_ack(_seg(1), [], 0.1)  # SRTT = min_rtt = 100 ms
    return rec


def _three_sacked_above_a_hole(rec: Recovery) -> int:
    for k in range(1, 6):
        rec.on_sent(_seg(k), MSS, 1.0)
    lost = 0
    for end in (4, 5, 6):  # segments 3, 4, 5 SACKed, 1-2 outstanding
        lost += rec.on_ack(_seg(1), [(_seg(3), _seg(end))], 1.1).lost
    return lost


@pytest.mark.parametrize("bits,lost_at_once", [(1, True), (3, True), (5, False), (0, True)])
def test_tcp_recovery_dupthresh_bit(bits: int, lost_at_once: bool) -> None:
    """0x1 without 0x4: with no reordering seen, DupThresh SACKed segments zero
    RACK's window and the holes are lost at once (Linux tcp_rack_reo_wnd);
    0x4 (TCP_RACK_NO_DUPTHRESH) keeps min_rtt/4; 0 is RFC 6675 IsLost."""
    rec = _rec(bits)
    lost = _three_sacked_above_a_hole(rec)
    assert (lost == 2 * MSS) is lost_at_once, lost
    if not lost_at_once:
        timer = rec.timer()
        assert timer is not None and timer[0] == "reorder"


def _dsack_round(rec: Recovery) -> None:
    rec.reord_seen = 1
    for k in range(1, 4):
        rec.on_sent(_seg(k), MSS, 1.0)
    rec.on_ack(_seg(1), [(_seg(2), _seg(4))], 1.1)
    rec.on_timer(rec.rack_deadline() or 0.0)
    rec.on_sent(_seg(1), MSS, 1.2)
    assert rec.on_ack(_seg(4), [(_seg(1), _seg(2))], 1.25).dsack
    for k in range(4, 6):
        rec.on_sent(_seg(k), MSS, 1.3)
    rec.on_ack(_seg(6), [], 1.4)  # a later round: the D-SACK takes effect


@pytest.mark.parametrize("bits,steps", [(1, 2), (3, 1)])
def test_tcp_recovery_static_window_bit(bits: int, steps: int) -> None:
    """0x2 (TCP_RACK_STATIC_REO_WND): a D-SACK does not widen the reordering
    window (Linux tcp_rack_update_reo_wnd returns at once)."""
    rec = _rec(bits)
    _dsack_round(rec)
    assert rec.rack.reo_wnd_steps == steps


def test_tcp_config_documents_the_three_linux_bits() -> None:
    """The TcpConfig comment names each bit as Linux ip-sysctl.rst does."""
    from pathlib import Path

    from ustack.tcp.recovery import RACK_LOSS_DETECTION, RACK_NO_DUPTHRESH, RACK_STATIC_REO_WND

    # the file, not inspect.getsource: a compiled module has no source to show
    src = (Path(__file__).resolve().parents[2] / "ustack" / "tcp" / "config.py").read_text()
    block = src[:src.index("tcp_recovery: int")].rsplit("\n\n", 1)[-1]
    assert (RACK_LOSS_DETECTION, RACK_STATIC_REO_WND, RACK_NO_DUPTHRESH) == (1, 2, 4)
    assert "0x1 = RACK loss detection" in block
    assert "0x2 = static RACK" in block
    assert "0x4 = no DupThresh" in block


# ------------------------------------------------------------ bug 4: HyStart++
def _round(cc: CongestionController, delivered: int, rtt: float, acks: int) -> int:
    """One round of ``acks`` one-segment ACKs at ``rtt``."""
    start = delivered
    for _ in range(acks):
        delivered += MSS
        cc.on_ack(RateSample(acked_sacked=MSS, rtt=rtt, prior_delivered=start,
                             delivered_total=delivered), 0.0)
    return delivered


def _into_css(cc: Cubic) -> tuple[int, int]:
    d = _round(cc, 0, 0.020, 10)  # round 1: the baseline, 20 ms
    start = d
    d = _round(cc, d, 0.040, 8)  # round 2: +20 ms > 4 ms threshold: CSS
    assert cc.in_css
    return start, d


@pytest.mark.parametrize("paced,grow", [(False, 8 * MSS // 4), (True, 20 * MSS // 4)])
def test_css_growth_is_min_n_l_smss_over_the_divisor(paced: bool, grow: int) -> None:
    """RFC 9406 4.2: in CSS, cwnd += min(N, L * SMSS) / CSS_GROWTH_DIVISOR
    with L = 8 unpaced, infinity paced (4.3)."""
    cc = Cubic(MSS, 10)
    cc.paced = paced
    start, d = _into_css(cc)
    before = cc.cwnd
    d += 20 * MSS  # one stretch ACK of 20 segments, same round, same RTT
    cc.on_ack(RateSample(acked_sacked=20 * MSS, rtt=0.040, prior_delivered=start,
                         delivered_total=d), 0.0)
    assert cc.in_css
    assert cc.cwnd - before == grow


def test_standard_slow_start_takes_the_whole_stretch_ack_by_default() -> None:
    """Issue 9 / Linux tcp_slow_start (checked on the wire by rec-stretch)."""
    cc = Cubic(MSS, 10)
    cc.on_ack(RateSample(acked_sacked=20 * MSS, rtt=0.02, prior_delivered=0,
                         delivered_total=20 * MSS), 0.0)
    assert cc.cwnd == 30 * MSS


def test_hystart_ss_limit_knob_caps_standard_slow_start_per_ack() -> None:
    """RFC 9406 4.2 cwnd += min(N, L * SMSS), when asked for (not paced)."""

    class CubicL8(Cubic):
        name = "cubic-l8"
        hystart_ss_limit = 8

    cc = CubicL8(MSS, 10)
    cc.on_ack(RateSample(acked_sacked=20 * MSS, rtt=0.02, prior_delivered=0,
                         delivered_total=20 * MSS), 0.0)
    assert cc.cwnd == 18 * MSS
    paced = CubicL8(MSS, 10)
    paced.paced = True
    paced.on_ack(RateSample(acked_sacked=20 * MSS, rtt=0.02, prior_delivered=0,
                            delivered_total=20 * MSS), 0.0)
    assert paced.cwnd == 30 * MSS


def test_connection_tells_the_controller_whether_it_paces() -> None:
    from ustack.tcp import TcpConfig, TcpConnection

    def conn(cfg: TcpConfig) -> TcpConnection:
        return TcpConnection(40000, 80, 1000, 0.0, cfg)

    assert not conn(TcpConfig()).cc.paced
    assert conn(TcpConfig(pacing=True)).cc.paced
    assert conn(TcpConfig(congestion="bbr")).cc.paced
    c = conn(TcpConfig(pacing=True))
    c.set_congestion("reno")
    assert c.cc.paced


# ------------------------------------------------------------ 6: CUBIC after an RTO
class _RfcCubic(Cubic):
    """CUBIC in RFC 9438's continuous time (``hz = 0``), not Linux's jiffies."""

    name = "hk-cubic-rfc"
    hz = 0


def test_cubic_after_rto_reno_friendly_alpha_until_cwnd_prior() -> None:
    """RFC 9438 4.8: after a timeout K = 0 and W_max = W_est = cwnd_epoch;
    4.6 set cwnd_prior to the cwnd of the reduction, and 4.3 keeps
    alpha_cubic = 3(1 - beta)/(1 + beta) (0.53) until W_est reaches it.  One
    window of ACKs at t = 0 (W_cubic flat) then moves W_est by alpha < 1
    segment: cwnd stays; with alpha = 1 it would gain one segment."""
    cc = _RfcCubic(MSS, 10)
    cc.cwnd = 100 * MSS
    cc.ssthresh = cc.ssthresh_on_loss(0.0, 100 * MSS)  # 70 segments
    cc.on_state(CaState.LOSS, 0.0)
    cc.cwnd = 70 * MSS  # back at ssthresh after the post-RTO slow start
    cc.on_state(CaState.OPEN, 1.0)
    for _ in range(70):
        cc.on_ack(RateSample(acked_sacked=MSS, rtt=0.001, min_rtt=0.001), 1.0)
    assert cc.cwnd == 70 * MSS


def test_cubic_loss_free_hystart_exit_sets_cwnd_prior_to_cwnd() -> None:
    """RFC 9438 4.10: no reduction yet, so cwnd_prior = cwnd and alpha = 1
    at once: one window of ACKs at t = 0 gains one segment."""
    cc = _RfcCubic(MSS, 10)
    cc.cwnd = cc.ssthresh = 70 * MSS
    for _ in range(70):
        cc.on_ack(RateSample(acked_sacked=MSS, rtt=0.001, min_rtt=0.001), 1.0)
    assert cc.cwnd == 71 * MSS


def test_cubic_linux_arithmetic_without_w_max_grows_5_percent_per_rtt() -> None:
    """Linux bictcp_update: while W_max is unknown (after an RTO, or before
    the first loss) cnt is at most 20, one segment per 20 ACKed."""
    cc = Cubic(MSS, 10)
    assert cc.hz
    cc.cwnd = 100 * MSS
    cc.ssthresh = cc.ssthresh_on_loss(0.0, 100 * MSS)  # 70 segments
    cc.on_state(CaState.LOSS, 0.0)
    cc.cwnd = 70 * MSS
    cc.on_state(CaState.OPEN, 1.0)
    for _ in range(70):
        cc.on_ack(RateSample(acked_sacked=MSS, rtt=0.001, min_rtt=0.001), 1.0)
    assert cc.cwnd == (70 + 70 // 20) * MSS


# ------------------------------------------------------------ 6: BBR min_rtt filter
def test_bbr_a_sample_equal_to_min_rtt_refreshes_the_filter() -> None:
    """Linux bbr_update_min_rtt: ``rs->rtt_us <= bbr->min_rtt_us`` takes the
    sample and its time, so a path whose RTT stays at its minimum (e.g. 1 ms
    timestamp-echo samples) never enters PROBE_RTT; with ``<`` the 10 s
    filter expired although every sample matched it."""
    from ustack.tcp.congestion.bbr import Bbr, BbrMode

    cc = Bbr(MSS, 10)
    delivered = 0
    now = 0.0
    while now < 25.0:
        delivered += MSS
        cc.on_ack(RateSample(delivered=10 * MSS, interval=0.01, acked_sacked=MSS,
                             prior_in_flight=21 * MSS, in_flight=20 * MSS, rtt=0.001,
                             prior_delivered=delivered - 10 * MSS,
                             delivered_total=delivered), now)
        assert cc.mode is not BbrMode.PROBE_RTT, f"PROBE_RTT at {now:.2f} s"
        now += 0.01


def test_bbr_gains_and_tso_goal_are_linux_values() -> None:
    """tcp_bbr.c: bbr_high_gain = BBR_UNIT * 2885 / 1000 + 1 (739/256),
    bbr_drain_gain = BBR_UNIT * 1000 / 2885 (88/256), bbr_cwnd_gain 2, the
    PROBE_BW cycle 5/4, 3/4, 1 x 6; bbr_tso_segs_goal at most 0x7F."""
    from ustack.tcp.congestion import bbr

    assert bbr.HIGH_GAIN == (256 * 2885 // 1000 + 1) / 256
    assert bbr.DRAIN_GAIN == (256 * 1000 // 2885) / 256
    assert bbr.CWND_GAIN == 2.0
    assert bbr.PACING_GAIN == (1.25, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
    cc = bbr.Bbr(100, 10)  # a small MSS: 1 ms of a fast rate is > 127 segments
    cc.pacing_rate = 1e9
    assert cc._tso_segs_goal() == 0x7F
