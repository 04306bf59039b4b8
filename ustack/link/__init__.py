"""Devices that move Ethernet frames: AF_PACKET, in-memory pairs, wrappers."""

from ustack.link.base import Device, ReceivedFrame, Receiver

__all__ = ["Device", "ReceivedFrame", "Receiver"]
