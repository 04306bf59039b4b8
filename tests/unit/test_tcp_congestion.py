"""The congestion controller interface (ustack/tcp/congestion/base.py)."""

from __future__ import annotations

import pytest

from ustack.tcp.congestion import (
    CaState,
    CongestionController,
    RateSample,
    available,
    create,
    register,
)


def test_ca_state_values_are_linux_enum_tcp_ca_state() -> None:
    assert [s.value for s in (CaState.OPEN, CaState.DISORDER, CaState.CWR,
                              CaState.RECOVERY, CaState.LOSS)] == [0, 1, 2, 3, 4]


def test_rate_sample_defaults_mean_invalid() -> None:
    rs = RateSample()
    assert rs.interval < 0 and rs.rtt < 0 and rs.min_rtt < 0
    assert rs.ca_state is CaState.OPEN and rs.is_cwnd_limited
    with pytest.raises(AttributeError):
        rs.bogus = 1  # type: ignore[attr-defined]  # slots


def test_slow_start_helper_caps_at_ssthresh_and_returns_rest() -> None:
    cc = CongestionController(1000, 10)
    cc.ssthresh = 12_500
    assert cc.slow_start(5000) == 2500
    assert cc.cwnd == 12_500
    cc.cwnd, cc.ssthresh = 10_000, 1 << 30
    assert cc.slow_start(7000) == 0 and cc.cwnd == 17_000  # by what was acked


def test_cong_avoid_ai_one_mss_per_window() -> None:
    cc = CongestionController(1000, 10)
    for _ in range(9):
        cc.cong_avoid_ai(cc.cwnd, 1000)
    assert cc.cwnd == 10_000
    cc.cong_avoid_ai(cc.cwnd, 1000)
    assert cc.cwnd == 11_000 and cc.cwnd_cnt == 0
    cc.cong_avoid_ai(1000, 3500)  # a stretch ACK worth several increments
    assert cc.cwnd == 14_000 and cc.cwnd_cnt == 500


class _Counting(CongestionController):
    name = "hk-counting"

    def __init__(self, mss: int, initial_cwnd: int) -> None:
        super().__init__(mss, initial_cwnd)
        self.samples: list[RateSample] = []
        self.states: list[CaState] = []

    def on_ack(self, rs: RateSample, now: float) -> None:
        self.samples.append(rs)

    def on_state(self, new: CaState, now: float) -> None:
        super().on_state(new, now)
        self.states.append(new)


def test_new_style_controller_takes_old_hooks_through_adapters() -> None:
    register(_Counting)
    old = create("hk-counting", 1000, 10)
    old.on_ack(3000, 9000, 1.0)  # the old three-argument call
    cc = old
    assert isinstance(cc, _Counting) and "hk-counting" in available()
    cc.on_ack(RateSample(acked_sacked=1000), 1.5)  # the new one
    # the old call keeps the old connection's slow start (L = 2 SMSS per ACK)
    assert [s.acked_sacked for s in cc.samples] == [2000, 1000]
    assert cc.samples[0].prior_in_flight == 9000 and cc.samples[0].delivered_total == 3000
    cc.enter_recovery(10_000, 2.0)
    assert cc.in_recovery and cc.ssthresh == 5000 and cc.prior_cwnd == 10_000
    assert cc.cwnd == 8000  # RFC 5681 3.2 step 3 inflation
    cc.exit_recovery(2.5)
    assert cc.cwnd == 5000 and not cc.in_recovery
    cc.on_timeout(5000, 3.0)
    assert cc.cwnd == 1000 and cc.ssthresh == 2500
    assert cc.states == [CaState.RECOVERY, CaState.OPEN, CaState.LOSS]
    assert cc.ca_state is CaState.LOSS
    assert cc.undo_cwnd() == 5000  # max(cwnd, prior_cwnd)
