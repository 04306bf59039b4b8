"""Catalogue 43, receiver side, driven adaptively from Python: fill the
peer's small receive buffer, see it advertise a zero window, ACK an in-window
probe without taking its byte, and send a window update once the application
reads (RFC 9293 3.8.6.1, RFC 1122 4.2.2.17)."""

from __future__ import annotations

import pytest

from ustack.probe import Probe
from ustack.probe.peers import Peer

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("peer", ["kernel", "ustack"], indirect=True)
async def test_receiver_zero_window(peer: Peer, probe: Probe) -> None:
    await peer.set_option("net.ipv4.tcp_rmem", "4096 4096 4096")
    await peer.listen(8080)
    probe.new_connection(remote_port=8080)
    synack = await probe.handshake(options="mss 1000")
    window = synack.segment.window
    sent = 0
    for _ in range(200):  # send while the peer's window allows, until it closes
        chunk = min(1000, window)
        if chunk <= 0:
            break
        await probe.send("P.", 1 + sent, 1, payload=chunk)
        sent += chunk
        got = await probe.expect(".", 1, within=(0, 0.5))
        assert got.ack is not None and got.ack <= 1 + sent
        window = got.segment.window - (1 + sent - got.ack)
    else:
        pytest.fail("the peer's window never closed")
    probe.drain()
    zero_at = 1 + sent
    await probe.send("P.", zero_at, 1, payload=1)  # a zero-window probe with one byte
    await probe.expect(".", 1, zero_at, win=0, within=(0, 0.5))  # ACKed, byte not taken
    await peer.read(1 << 20, timeout=1.0)  # the application reads: window update
    update = await probe.expect(".", 1, zero_at, within=(0, 1.0))
    assert update.segment.window > 0
