"""The researcher's view: a few lines of Python per edge case, no setup code
(the ``peer`` and ``probe`` fixtures come from the ustack pytest plugin)."""

from __future__ import annotations

import pytest

from ustack.probe import ExpectationFailed, Probe
from ustack.probe.peers import Peer

pytestmark = pytest.mark.integration
both = pytest.mark.parametrize("peer", ["kernel", "ustack"], indirect=True)


@both
async def test_in_window_rst_gets_a_challenge_ack_within_600ms(peer: Peer, probe: Probe) -> None:
    await peer.listen(8080)
    probe.new_connection(remote_port=8080)
    await probe.send("S", 0, options="mss 1460,sackOK,TS val 100 ecr 0,nop,wscale 7")
    await probe.expect("S.", 0, 1, options="mss 1460,sackOK,TS val * ecr 100,wscale *",
                       within=(0, 0.2))
    await probe.send(".", 1, 1, options="nop,nop,TS val 101 ecr *")
    await probe.send("R", 5000)
    await probe.expect(".", 1, 1, within=(0, 0.6))
    assert await peer.outcome(0.2) == "pending"  # the connection survived


@both
async def test_icmp_port_unreachable_fails_the_connect(peer: Peer, probe: Probe) -> None:
    probe.new_connection(local_port=9090)
    probe.remote_port = None
    await peer.connect(9090)
    await probe.expect("S", 0, within=(0, 1.0))
    from ustack.probe.packet import PacketSpec

    probe.send_icmp(3, 3, PacketSpec(flags="S", seq=0))
    assert await peer.outcome(1.0) == "ECONNREFUSED"
    await probe.expect_nothing(1.2)


@both
async def test_a_wrong_expectation_fails_with_both_lines(peer: Peer, probe: Probe) -> None:
    probe.new_connection(remote_port=8081)  # nobody listens
    await probe.send("S", 0, options="mss 1460")
    with pytest.raises(ExpectationFailed) as info:
        await probe.expect("S.", 0, 1, within=(0, 0.5))
    text = str(info.value)
    assert "expected: > S. 0:*(*) ack 1" in text
    assert "actual:   > R. 0:0(0) ack 1 win 0" in text
