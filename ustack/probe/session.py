"""Wiring a probe to a peer in a lab (used by the fixtures, the CLI and the
conformance suite)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from ustack.lab import Lab
from ustack.probe.endpoint import RawEndpoint
from ustack.probe.peers import DEFAULT_KERNEL_CC, KernelPeer, Peer, UstackPeer
from ustack.probe.probe import Probe

PEER_KINDS = ("kernel", "ustack")


async def start_peer(lab: Lab, kind: str, *, kernel_cc: str = DEFAULT_KERNEL_CC,
                     offload: bool = False) -> Peer:
    """A kernel or ustack peer in ``lab`` (the lab must be up); the kernel
    peer's sockets use ``kernel_cc`` (TCP_CONGESTION).  ``offload``: the peer
    sends super-segments (kernel TSO/GSO, ustack GSO) as packetdrill's TUN
    device lets the kernel do; otherwise exact MSS-sized segments."""
    if kind == "kernel":
        return KernelPeer(lab, congestion=kernel_cc, segment_offload=offload)
    if kind == "ustack":
        return await UstackPeer.start(lab, offload=offload)
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
    probe = Probe(endpoint, local_port=local_port, remote_port=remote_port)
    if isinstance(peer, KernelPeer):
        peer.learn_probe_mac(bytes(endpoint.mac))
        peer.mark_baseline(probe)
    return probe


def close_probe(probe: Probe) -> None:
    endpoint = probe.endpoint
    if isinstance(endpoint, RawEndpoint):
        endpoint.close()


@contextlib.asynccontextmanager
async def probe_session(lab: Lab, kind: str, *, pcap: str | None = None,
                        kernel_cc: str = DEFAULT_KERNEL_CC, offload: bool = False
                        ) -> AsyncIterator[tuple[Peer, Probe]]:
    """``async with probe_session(lab, "kernel") as (peer, probe): ...``"""
    peer = await start_peer(lab, kind, kernel_cc=kernel_cc, offload=offload)
    try:
        probe = await open_probe(peer, pcap=pcap)
        try:
            yield peer, probe
        finally:
            close_probe(probe)
    finally:
        await peer.aclose()
