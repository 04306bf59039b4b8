"""Wiring a probe to a peer in a lab (used by the fixtures, the CLI and the
conformance suite)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from ustack.lab import Lab
from ustack.probe.endpoint import RawEndpoint
from ustack.probe.peers import KernelPeer, Peer, UstackPeer
from ustack.probe.probe import Probe

PEER_KINDS = ("kernel", "ustack")


async def start_peer(lab: Lab, kind: str) -> Peer:
    """A kernel or ustack peer in ``lab`` (the lab must be up)."""
    if kind == "kernel":
        return KernelPeer(lab)
    if kind == "ustack":
        return await UstackPeer.start(lab)
    raise ValueError(f"unknown peer {kind!r}: expected one of {', '.join(PEER_KINDS)}")


async def open_probe(peer: Peer, *, local_port: int | None = None,
                     remote_port: int | None = None, pcap: str | None = None) -> Probe:
    """A probe on the peer's opposite veth end, its peer MAC resolved;
    ``pcap`` records the probe's frames."""
    endpoint = RawEndpoint.open(peer.probe_iface, peer.probe_address, peer.address,
                                netns=peer.probe_netns, pcap=pcap)
    try:
        await endpoint.resolve()
    except BaseException:
        endpoint.close()
        raise
    return Probe(endpoint, local_port=local_port, remote_port=remote_port)


def close_probe(probe: Probe) -> None:
    endpoint = probe.endpoint
    if isinstance(endpoint, RawEndpoint):
        endpoint.close()


@contextlib.asynccontextmanager
async def probe_session(lab: Lab, kind: str, *,
                        pcap: str | None = None) -> AsyncIterator[tuple[Peer, Probe]]:
    """``async with probe_session(lab, "kernel") as (peer, probe): ...``"""
    peer = await start_peer(lab, kind)
    try:
        probe = await open_probe(peer, pcap=pcap)
        try:
            yield peer, probe
        finally:
            close_probe(probe)
    finally:
        await peer.aclose()
