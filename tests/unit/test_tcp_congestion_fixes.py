"""Congestion-control rules checked against their sources (helper tcpfix,
issue 9): each test names the RFC section or the Linux function it follows."""

from __future__ import annotations

import pytest

from ustack.tcp.congestion import create
from ustack.tcp.congestion.base import CaState
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
