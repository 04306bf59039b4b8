"""Devices that move Ethernet frames: AF_PACKET, in-memory pairs, wrappers."""

from __future__ import annotations

from typing import Any

from ustack.link.base import Device, ReceivedFrame, Receiver

_LAZY = {
    "AfPacketDevice": "ustack.link.af_packet",
    "MemoryPair": "ustack.link.memory",
    "MemoryDevice": "ustack.link.memory",
    "PcapDevice": "ustack.link.pcap",
    "FaultDevice": "ustack.link.faults",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'ustack.link' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module_name), name)


__all__ = ["Device", "ReceivedFrame", "Receiver", *_LAZY]
