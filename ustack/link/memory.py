"""Two devices wired back to back in memory, for unit tests.

A frame sent on one end is delivered to the other end's receiver from
``loop.call_soon``: never re-entrantly from ``send()``, and every frame sent
before the loop gets to run arrives in one batch (as AF_PACKET does).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Final

from ustack.link.base import Device, Frame, ReceivedFrame, Receiver
from ustack.link.rxtime import StampedBatch

ETH_HEADER: Final = 14


class MemoryDevice(Device):
    """One end of a :class:`MemoryPair`."""

    def __init__(self, name: str, mac: bytes, mtu: int = 1500, *, trusted: bool = False) -> None:
        self.name = name
        self.mac = mac
        self.mtu = mtu
        #: the ``trusted`` flag given with every frame this end receives
        self.trusted = trusted
        self.peer: MemoryDevice | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._receiver: Receiver | None = None
        self._inbox: list[ReceivedFrame] = []
        #: when set, each frame this end receives is stamped with its value
        #: at the moment the peer sent it (the wire time, as the kernel's
        #: receive stamp; ustack.link.rxtime) and delivered as a StampedBatch
        self.stamp: Callable[[], float] | None = None
        self._inbox_times: list[float] = []
        self._scheduled = False
        self._closed = False
        #: every frame this end sent, in order (handy for assertions)
        self.sent: list[Frame] = []
        self.record_sent = False
        self._stats = {"rx_frames": 0, "rx_bytes": 0, "rx_batches": 0, "tx_frames": 0,
                       "tx_bytes": 0, "tx_drops_oversize": 0, "tx_drops_closed": 0}

    def attach(self, loop: asyncio.AbstractEventLoop, receiver: Receiver) -> None:
        if self._closed:
            raise RuntimeError(f"device {self.name} is closed")
        self._loop = loop
        self._receiver = receiver
        if self._inbox:
            self._schedule()

    def send(self, frame: Frame) -> None:
        peer = self.peer
        stats = self._stats
        if len(frame) > self.mtu + ETH_HEADER:
            stats["tx_drops_oversize"] += 1
            return
        if self._closed or peer is None or peer._closed:
            stats["tx_drops_closed"] += 1
            return
        stats["tx_frames"] += 1
        stats["tx_bytes"] += len(frame)
        if self.record_sent:
            self.sent.append(bytes(frame))
        peer._inbox.append((bytes(frame), peer.trusted))
        if peer.stamp is not None:
            peer._inbox_times.append(peer.stamp())
        peer._schedule()

    def _schedule(self) -> None:
        if self._scheduled or self._loop is None or self._closed:
            return
        self._scheduled = True
        self._loop.call_soon(self._deliver)

    def _deliver(self) -> None:
        self._scheduled = False
        frames, self._inbox = self._inbox, []
        times, self._inbox_times = self._inbox_times, []
        if not frames or self._receiver is None or self._closed:
            return
        stats = self._stats
        stats["rx_frames"] += len(frames)
        stats["rx_bytes"] += sum(len(f) for f, _ in frames)
        stats["rx_batches"] += 1
        self._receiver(StampedBatch(frames, times) if len(times) == len(frames) and self.stamp
                       else frames)

    def close(self) -> None:
        self._closed = True
        self._inbox = []
        self._inbox_times = []

    def counters(self) -> dict[str, int]:
        return dict(self._stats)

    def __repr__(self) -> str:
        return f"MemoryDevice({self.name!r}, mac={self.mac.hex(':')})"


class MemoryPair:
    """``a, b = MemoryPair()``: frames sent on ``a`` arrive at ``b`` and back."""

    def __init__(
        self,
        mac_a: bytes = bytes.fromhex("020000000001"),
        mac_b: bytes = bytes.fromhex("020000000002"),
        *,
        mtu: int = 1500,
        trusted: bool = False,
        names: tuple[str, str] = ("mem0", "mem1"),
    ) -> None:
        self.a = MemoryDevice(names[0], mac_a, mtu, trusted=trusted)
        self.b = MemoryDevice(names[1], mac_b, mtu, trusted=trusted)
        self.a.peer = self.b
        self.b.peer = self.a

    def __iter__(self) -> Iterator[MemoryDevice]:
        return iter((self.a, self.b))

    def close(self) -> None:
        self.a.close()
        self.b.close()
