"""Sender/receiver rules of the rebuilt TCP core checked on the wire against
the kernel and against ustack (helper tcpfix, issue 9): the probe plays the
other end and reads the peer's segments."""

from __future__ import annotations

import asyncio

import pytest

from ustack.probe import Probe
from ustack.probe.peers import Peer

pytestmark = pytest.mark.integration
both = pytest.mark.parametrize("peer", ["kernel", "ustack"], indirect=True)

MASK = 0xFFFFFFFF


@both
async def test_window_right_edge_never_moves_left(peer: Peer, probe: Probe) -> None:
    """RFC 9293 3.8.6 / RFC 7323 2.4, Linux tcp_select_window: with window
    scaling (shift 7 on both sides here) and 1000-byte segments the
    application never reads, each ACK's right edge (SEG.ACK + SEG.WND << shift)
    is at or beyond the one before: the window closes only as text arrives."""
    await peer.listen(8080)
    probe.new_connection(remote_port=8080)
    synack = await probe.handshake(options="mss 1460,nop,wscale 7")
    shift = synack.segment.options.wscale
    assert shift, "the peer offered no window scaling"
    edges: list[tuple[int, int]] = []
    last: int | None = None
    for i in range(60):
        await probe.send(".", 1 + i * 1000, 1, payload=1000)
        await asyncio.sleep(0.002)
        for r in probe.drain():
            if r.ack is None:
                continue
            edge = (r.ack + (r.segment.window << shift)) & MASK
            edges.append((r.ack, r.segment.window))
            if last is not None:
                assert ((edge - last) & MASK) < 0x80000000, (
                    f"right edge moved left by {(last - edge) & MASK} bytes at ack {r.ack}: "
                    f"{edges[-6:]}\n{probe.format_timeline()}")
            last = edge
    await asyncio.sleep(0.3)
    for r in probe.drain():
        if r.ack is not None:
            edge = (r.ack + (r.segment.window << shift)) & MASK
            assert last is None or ((edge - last) & MASK) < 0x80000000
            last = edge
            edges.append((r.ack, r.segment.window))
    assert len(edges) >= 10, edges


# Passive open without SACK or timestamps (so an ACK of a retransmission gives
# no RTT sample, RFC 6298 3 / Karn); the handshake ACK 20 ms after the
# SYN-ACK gives SRTT ~20 ms, RTO = SRTT + max(4 * RTTVAR, 200 ms) ~ 220 ms
# (the 200 ms floor dominates, so the probe's own lag hardly moves it).
RTO_BACKOFF_KEPT = """
peer listen 8080
0    < S 0:0(0) win 65535 <mss 1000>
+0   > S. 0:0(0) ack 1 <mss *>
+0.02 < . 1:1(0) ack 1 win 65535
+0   peer expect connected
+0   peer write 2000
+0   > * 1:1001(1000) ack 1
+0   > * 1001:2001(1000) ack 1
+0.2~+0.27 > * 1:1001(1000) ack 1
+0.05 < . 1:1(0) ack 1001 win 65535
+0   > * 1001:2001(1000) ack 1
+0.4~+0.54 > * 1001:2001(1000) ack 1
+0   < . 1:1(0) ack 2001 win 65535
+0   > nothing for 0.2
"""


@both
async def test_rto_backoff_survives_an_ack_without_rtt_sample(peer: Peer, probe: Probe) -> None:
    """RFC 6298 5.5 + Karn (3), Linux tcp_ack_update_rtt: the RTO doubles
    (~220 -> ~440 ms) at the timeout; the ACK of the retransmitted head gives
    no RTT sample, so the next timeout (for 1001:2001, re-sent at that ACK)
    still comes after ~440 ms, not after the ~220 ms base RTO."""
    from ustack.probe.conformance import SUITE_TOLERANCE
    from ustack.probe.script import parse_script, run_script

    script = parse_script(RTO_BACKOFF_KEPT, "rto backoff kept")
    await run_script(script, peer, probe, tolerance_floor=SUITE_TOLERANCE)


# BBR pinned on both peers, no SACK (so no tail loss probe, RFC 8985 7.2 needs
# SACK), SRTT ~100 ms.  The RTO retransmits one segment (cwnd = in flight 0 +
# 1, tcp_enter_loss); the ACK of it lets BBR raise cwnd to its floor of 4
# segments (bbr_set_cwnd: cwnd + acked, at least bbr_cwnd_min_target).
BBR_AFTER_RTO = """
sysctl net.ipv4.tcp_congestion_control=bbr
peer listen 8080
0    < S 0:0(0) win 65535 <mss 1000>
+0   > S. 0:0(0) ack 1 <mss *>
+0.1 < . 1:1(0) ack 1 win 65535
+0   peer expect connected
+0   peer write 10000
+0   > * 1:1001(1000) ack 1
+0   > * 1001:2001(1000) ack 1
+0   > * 2001:3001(1000) ack 1
+0   > * 3001:4001(1000) ack 1
+0   > * 4001:5001(1000) ack 1
+0   > * 5001:6001(1000) ack 1
+0   > * 6001:7001(1000) ack 1
+0   > * 7001:8001(1000) ack 1
+0   > * 8001:9001(1000) ack 1
+0   > * 9001:10001(1000) ack 1
+0.25~+0.45 > * 1:1001(1000) ack 1
+0   > nothing for 0.1
+0   < . 1:1(0) ack 1001 win 65535
+0   > * 1001:2001(1000) ack 1
+0   > * 2001:3001(1000) ack 1
+0   > * 3001:4001(1000) ack 1
+0   > * 4001:5001(1000) ack 1
+0   > nothing for 0.05
"""


@both
async def test_bbr_after_rto_sends_in_flight_plus_one(peer: Peer, probe: Probe) -> None:
    """Linux tcp_enter_loss sets cwnd = in flight + 1 for every algorithm;
    ustack's bbr kept its cwnd and resent the whole window at the RTO."""
    from ustack.probe.conformance import SUITE_TOLERANCE
    from ustack.probe.script import parse_script, run_script

    script = parse_script(BBR_AFTER_RTO, "bbr after rto")
    await run_script(script, peer, probe, tolerance_floor=SUITE_TOLERANCE)


# tcp_recovery = 5 (0x1 RACK | 0x4 TCP_RACK_NO_DUPTHRESH) on both peers: three
# segments SACKed above two holes with no reordering seen.  With the default
# 1 both holes are lost at once (reo_wnd 0, the rec-dupthresh scenario); with
# 0x4 RACK keeps its min_rtt/4 = 25 ms window and the first hole goes out at
# the reorder timeout (one segment: PRR's forced first retransmission).
RACK_NO_DUPTHRESH = """
sysctl net.ipv4.tcp_recovery=5
peer listen 8080
0    < S 0:0(0) win 65535 <mss 1000,sackOK,nop,nop>
+0   > S. 0:0(0) ack 1 <mss *,sackOK>
+0.1 < . 1:1(0) ack 1 win 65535
+0   peer expect connected
+0   peer write 5000
+0   > * 1:1001(1000) ack 1
+0   > * 1001:2001(1000) ack 1
+0   > * 2001:3001(1000) ack 1
+0   > * 3001:4001(1000) ack 1
+0   > * 4001:5001(1000) ack 1
+0.1 < . 1:1(0) ack 1 win 65535 <nop,nop,sack 2001:5001>
+0.015~+0.05 > * 1:1001(1000) ack 1
+0.01 < . 1:1(0) ack 1001 win 65535 <nop,nop,sack 2001:5001>
+0   > * 1001:2001(1000) ack 1
+0   < . 1:1(0) ack 5001 win 65535
"""


@both
async def test_tcp_recovery_0x4_keeps_the_rack_window_past_dupthresh(
        peer: Peer, probe: Probe) -> None:
    """Linux tcp_rack_reo_wnd with TCP_RACK_NO_DUPTHRESH (ip-sysctl.rst:
    "0x4 disables RACK's DUPACK threshold heuristic")."""
    from ustack.probe.conformance import SUITE_TOLERANCE
    from ustack.probe.script import parse_script, run_script

    script = parse_script(RACK_NO_DUPTHRESH, "tcp_recovery 5")
    await run_script(script, peer, probe, tolerance_floor=SUITE_TOLERANCE)
