"""A pcap of a simulated network: every frame a host sends, stamped with the
simulated time (``loop.time()``), in one file (dpkt writer, Ethernet)."""

from __future__ import annotations

import os
from typing import Any, BinaryIO

import dpkt

from ustack.link.base import Frame
from ustack.sim.link import Dumbbell, SimDevice

SNAPLEN = 262144


class SimCapture:
    """``SimCapture(net, path)`` taps ``net``; ``close()`` completes the file."""

    def __init__(self, net: Dumbbell, path: str | os.PathLike[str], *,
                 epoch: float = 1_700_000_000.0) -> None:
        self.net = net
        self.path = os.fspath(path)
        #: pcap time = epoch + simulated time (a fixed date keeps files identical)
        self.epoch = epoch
        self._file: BinaryIO | None = open(self.path, "wb")  # noqa: SIM115
        self._writer: Any = dpkt.pcap.Writer(self._file, snaplen=SNAPLEN)
        self.frames = 0
        net.taps.append(self._tap)

    def _tap(self, dev: SimDevice, frame: Frame) -> None:
        if self._writer is None:
            return
        us = round(self.net.loop.time() * 1e6)
        self._writer.writepkt_time(frame, self.epoch + us // 1_000_000 + (us % 1_000_000) / 1e6)
        self.frames += 1

    def close(self) -> None:
        if self._tap in self.net.taps:
            self.net.taps.remove(self._tap)
        if self._file is not None:
            self._file.close()
        self._file = None
        self._writer = None


__all__ = ["SimCapture"]
