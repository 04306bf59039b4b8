"""A device wrapper that records every frame in and out to a pcap file.

The file opens in Wireshark/tshark (link type Ethernet, microsecond
timestamps).  Frames are recorded as they cross the wrapper: received frames
before the layers above see them, sent frames before the inner device gets
them.

Frames the kernel marked ``TP_STATUS_CSUMNOTREADY`` (DESIGN.md trap 2) carry
only a partial TCP/UDP checksum, exactly as tcpdump would show them, and so do
the GSO super-segments ustack hands the kernel to cut (the kernel fills the
checksum in); ``fill_checksums=True`` writes both with the checksum computed,
so Wireshark's checksum validation shows them clean.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from typing import Any, BinaryIO, Final

import dpkt

from ustack.link.base import Device, Frame, ReceivedFrame, Receiver
from ustack.wire.checksum import fold, partial_sum, pseudo_header_sum

SNAPLEN: Final = 262144


class PcapDevice(Device):
    """``PcapDevice(inner, path)``: ``inner`` with a capture of its traffic."""

    def __init__(self, inner: Device, path: str | os.PathLike[str], *,
                 fill_checksums: bool = False) -> None:
        self.inner = inner
        self.path = os.fspath(path)
        self.name = inner.name
        self.mac = inner.mac
        self.mtu = inner.mtu
        self.supports_gso = inner.supports_gso
        self.fill_checksums = fill_checksums
        self._file: BinaryIO | None = open(self.path, "wb")  # noqa: SIM115
        self._writer: Any = dpkt.pcap.Writer(self._file, snaplen=SNAPLEN)
        self._receiver: Receiver | None = None
        self.frames_written = 0

    def _write(self, frame: bytes) -> None:
        if self._writer is None:
            return
        ts = time.time()
        if round(ts % 1 * 1_000_000) >= 1_000_000:  # dpkt would write usec=1000000
            ts = float(int(ts) + 1)
        self._writer.writepkt_time(frame, ts)
        self.frames_written += 1

    def attach(self, loop: asyncio.AbstractEventLoop, receiver: Receiver) -> None:
        self._receiver = receiver
        self.inner.attach(loop, self._on_frames)

    def _on_frames(self, frames: Sequence[ReceivedFrame]) -> None:
        fill = self.fill_checksums
        for frame, trusted in frames:
            self._write(with_l4_checksum(frame) if fill and trusted else frame)
        if self._receiver is not None:
            self._receiver(frames)

    def send(self, frame: Frame) -> None:
        self._write(frame)
        self.inner.send(frame)

    def send_many(self, frames: Sequence[Frame]) -> None:
        for frame in frames:
            self._write(frame)
        self.inner.send_many(frames)

    def send_gso(self, frame: Frame, gso_size: int) -> None:
        """Record the super-segment as one frame, then hand it to ``inner``."""
        self._write(with_l4_checksum(frame) if self.fill_checksums else frame)
        self.inner.send_gso(frame, gso_size)  # type: ignore[attr-defined]

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        """Close ``inner`` and the capture file (flushed).  Idempotent."""
        try:
            self.inner.close()
        finally:
            if self._file is not None:
                self._file.close()
            self._file = None
            self._writer = None

    def counters(self) -> dict[str, int]:
        out = self.inner.counters()
        out["pcap_frames"] = self.frames_written
        return out


def with_l4_checksum(frame: bytes) -> bytes:
    """``frame`` with its IPv4 TCP/UDP checksum computed (RFC 9293 3.1,
    RFC 768); anything else, or anything malformed, comes back unchanged."""
    if len(frame) < 34 or frame[12:14] != b"\x08\x00" or frame[14] >> 4 != 4:
        return frame
    ihl = (frame[14] & 0x0F) * 4
    total = int.from_bytes(frame[16:18], "big")
    proto = frame[23]
    offset = {6: 16, 17: 6}.get(proto)
    end = 14 + total
    l4 = 14 + ihl
    if (offset is None or ihl < 20 or end > len(frame) or end < l4 + offset + 2
            or int.from_bytes(frame[20:22], "big") & 0x3FFF):  # fragments: leave
        return frame
    segment = frame[l4:l4 + offset] + b"\x00\x00" + frame[l4 + offset + 2:end]
    csum = fold(pseudo_header_sum(frame[26:30], frame[30:34], proto, end - l4)
                + partial_sum(segment))
    if proto == 17 and csum == 0:
        csum = 0xFFFF
    return frame[:l4 + offset] + csum.to_bytes(2, "big") + frame[l4 + offset + 2:]


#: where ``Stack.start(pcap=..., pcap_side=...)`` records (issue 11 item 5)
PCAP_SIDES = ("wire", "stack")


def wrap_pcap(device: Device, path: str | os.PathLike[str], *, side: str = "wire",
              **options: Any) -> Device:
    """Put a :class:`PcapDevice` on ``device``'s ``side``.

    ``"stack"``: around the whole device, so the capture shows what the stack
    sent and was given.  ``"wire"``: below every fault injector
    (:class:`~ustack.link.faults.FaultDevice`, descending through ``inner``),
    so it shows what actually crossed the link: no frame the injector lost
    on the way out, each duplicate, corruption and delay as it happened, and
    incoming frames before the injector touched them.  Without an injector
    both sides are the same place.  Returns the device the stack should use.
    """
    from ustack.link.faults import FaultDevice

    if side not in PCAP_SIDES:
        raise ValueError(f"pcap_side must be 'wire' or 'stack', not {side!r}")
    if side == "stack" or not isinstance(device, FaultDevice):
        return PcapDevice(device, path, **options)
    parent = device
    while isinstance(parent.inner, FaultDevice):
        parent = parent.inner
    parent.inner = PcapDevice(parent.inner, path, **options)
    return device
