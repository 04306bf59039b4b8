"""The congestion controller interface (ustack/tcp/congestion/base.py)."""

from __future__ import annotations

import pytest

from ustack.tcp.congestion import (
    CaState,
    CongestionController,
    RateSample,
    available,
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


def test_connection_drives_a_controller_through_the_new_hooks_only() -> None:
    """(Replaces the test of the removed RFC 5681 adapters.)  A lossy
    in-memory transfer: the controller sees rate samples with RTT and
    delivery counts, and the loss states the connection's recovery enters."""
    import random

    from ustack.tcp import TcpConfig, TcpState
    from ustack.tcp.testing import BulkApp, MemoryPair, WireProfile

    register(_Counting)
    assert "hk-counting" in available()
    cfg = TcpConfig(congestion="hk-counting")
    pair = MemoryPair(cfg, cfg, seed=4, profile=WireProfile(loss=0.04))
    pair.handshake()
    app = BulkApp(lambda: pair.client.conn, bytes(300_000), random.Random(1))
    srv = BulkApp(lambda: pair.server.conn, b"", random.Random(2))

    def both(now: float) -> float | None:
        wakes = [w for w in (app(now), srv(now)) if w is not None]
        return min(wakes) if wakes else None

    pair.run(lambda: srv.eof and pair.a.state is not TcpState.ESTABLISHED, app=both,
             max_time=pair.now + 300)
    assert len(srv.received) == 300_000
    cc = pair.a.cc
    assert isinstance(cc, _Counting) and cc.samples
    assert all(s.acked_sacked > 0 for s in cc.samples)
    assert any(s.rtt > 0 for s in cc.samples) and all(s.min_rtt > 0 for s in cc.samples)
    totals = [s.delivered_total for s in cc.samples]
    assert totals == sorted(totals)
    # controls_cwnd is False: no samples during PRR (Linux tcp_cong_control)
    assert all(s.ca_state in (CaState.OPEN, CaState.DISORDER, CaState.LOSS)
               for s in cc.samples)
    assert CaState.RECOVERY in cc.states and cc.states[-1] is CaState.OPEN
    assert not hasattr(cc, "enter_recovery") and not hasattr(cc, "on_dup_ack")
