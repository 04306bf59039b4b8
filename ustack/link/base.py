"""What every device looks like to the layers above it.

A device moves whole Ethernet frames.  Receiving is push-style: the device
calls the receiver with a batch of frames each time the loop wakes it up, each
frame paired with ``trusted`` = True when the kernel vouched for the transport
checksum (``TP_STATUS_CSUMNOTREADY`` or ``TP_STATUS_CSUM_VALID``, DESIGN.md
trap 2), so the IPv4 layer can skip software verification for it.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Callable, Sequence

from ustack._mypyc import mypyc_attr

Frame = bytes
#: one received frame and whether its L4 checksum needs no software check
ReceivedFrame = tuple[bytes, bool]
Receiver = Callable[[Sequence[ReceivedFrame]], None]


# devices and wrappers are written outside the compiled build (ustack.sim)
@mypyc_attr(allow_interpreted_subclasses=True)
class Device(abc.ABC):
    """A link device bound to one interface (or one end of an in-memory pair)."""

    name: str
    mac: bytes
    mtu: int = 1500
    #: True when send_gso() can hand the kernel a TCP super-segment (vnet header)
    supports_gso: bool = False

    @abc.abstractmethod
    def attach(self, loop: asyncio.AbstractEventLoop, receiver: Receiver) -> None:
        """Start delivering received frames to ``receiver`` on ``loop``."""

    @abc.abstractmethod
    def send(self, frame: Frame) -> None:
        """Queue one frame for transmission; never blocks, may drop (counted)."""

    def send_many(self, frames: Sequence[Frame]) -> None:
        for frame in frames:
            self.send(frame)

    @abc.abstractmethod
    def close(self) -> None:
        """Detach from the loop and release the OS resources.  Idempotent."""

    def counters(self) -> dict[str, int]:
        return {}
