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
