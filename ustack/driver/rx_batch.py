"""The device's receive callback when TCP is attached: one batch of frames
between :meth:`TcpTable.begin_batch` and :meth:`TcpTable.end_batch`.

This is what :meth:`ustack.stack.Stack._receive` does, in a module the
compiled build covers (``Stack`` stays interpreted): on a 1-byte
request/response every answer is one batch, and the interpreted frame
around it was ~40 bytecodes of each exchange.  The IP layer takes each
frame's arrival stamp from a :class:`ustack.link.rxtime.StampedBatch`
itself (:meth:`ustack.net.ipv4.IpLayer.receive`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ustack.driver.tcp_table import TcpTable
from ustack.net.ipv4 import IpLayer


class BatchReceiver:
    """``receive(frames)``: the IP layer takes the batch inside one TCP
    receive batch (the drain at its end delivers the data and sends our
    answer in this call); then ``observer(frames)`` if set (Stack.rx_observer)."""

    __slots__ = ("ip", "tcp", "observer")

    def __init__(self, ip: IpLayer, tcp: TcpTable) -> None:
        self.ip = ip
        self.tcp = tcp
        self.observer: Callable[[Any], None] | None = None

    def receive(self, frames: Any) -> None:
        tcp = self.tcp
        tcp.begin_batch()
        try:
            self.ip.receive(frames)
            observer = self.observer
            if observer is not None:
                observer(frames)
        finally:
            tcp.end_batch()
