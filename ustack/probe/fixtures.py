"""pytest fixtures for probe tests (registered through ``ustack.pytest_plugin``).

* ``kernel_peer``: the Linux kernel in the lab's peer namespace.
* ``ustack_peer``: a ustack Stack on the lab's stack-side veth.
* ``peer``: either one; ``kernel`` by default, or parametrize it indirectly:
  ``@pytest.mark.parametrize("peer", ["kernel", "ustack"], indirect=True)``.
* ``probe``: a :class:`~ustack.probe.Probe` facing ``peer`` (on the other veth
  end, with its own MAC and address, the peer's MAC already resolved).

A test then reads::

    async def test_rst_in_window(peer, probe):
        await peer.listen(8080)
        probe.new_connection(remote_port=8080)
        await probe.handshake()
        await probe.send("R", 1000)
        await probe.expect(".", 1, 1, within=(0, 0.1))   # challenge ACK
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from ustack.lab import Lab
from ustack.probe.peers import KernelPeer, Peer, UstackPeer
from ustack.probe.probe import Probe
from ustack.probe.session import close_probe, open_probe, start_peer

__all__ = ["kernel_peer", "ustack_peer", "peer", "probe"]


@pytest_asyncio.fixture
async def kernel_peer(lab: Lab) -> AsyncIterator[KernelPeer]:
    peer = KernelPeer(lab)
    try:
        yield peer
    finally:
        await peer.aclose()


@pytest_asyncio.fixture
async def ustack_peer(lab: Lab) -> AsyncIterator[UstackPeer]:
    try:
        peer = await UstackPeer.start(lab)
    except ImportError as exc:
        pytest.skip(f"ustack Stack not available yet: {exc}")
    try:
        yield peer
    finally:
        await peer.aclose()


@pytest_asyncio.fixture
async def peer(request: pytest.FixtureRequest, lab: Lab) -> AsyncIterator[Peer]:
    kind = getattr(request, "param", "kernel")
    try:
        p = await start_peer(lab, kind)
    except ImportError as exc:
        pytest.skip(f"{kind} peer not available yet: {exc}")
    try:
        yield p
    finally:
        await p.aclose()


@pytest_asyncio.fixture
async def probe(peer: Peer) -> AsyncIterator[Probe]:
    p = await open_probe(peer)
    try:
        yield p
    finally:
        close_probe(p)
