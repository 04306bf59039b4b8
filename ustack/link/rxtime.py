"""When a received frame arrived: the kernel's receive timestamp, on the
TCP driver's clock.

An RTT sample taken when ustack gets round to an ACK includes ustack's own
wake-up latency and, in a bulk send, the backlog of unread ACK frames.  The
kernel stamps every frame when it reaches the packet socket (a
``PACKET_RX_RING`` slot carries ``tp_sec``/``tp_nsec`` for free, Linux
``tpacket_get_timestamp``); that is the time the ACK reached us, as the
kernel's own TCP sees it (``tcp_mstamp`` is refreshed in the softirq that
takes the segment).

* The stamps are ``CLOCK_REALTIME``; the driver's clock is
  ``time.monotonic`` (``loop.time`` of asyncio, uvloop's fine clock).  A
  device converts with an offset sampled once per receive batch
  (:func:`realtime_offset`) and clamps each result to the batch's "now"
  (:func:`to_monotonic`): a stamp can never lie in the future, whatever the
  clocks did (NTP slews, a step of the wall clock).  The other bound, "not
  before the segment was sent", only the TCP core can check (it has the
  send times): an RTT sample that would come out negative is dropped there
  (``RttEstimator.update``).
* Sending, the other end of a sample: a device sets :data:`SENT` (if
  clear) just before its send system call; the TCP driver clears it before
  an output round and gives the core the time found after it
  (``TcpConnection.segments_sent``).
* A device hands a batch on as a :class:`StampedBatch`: a plain list of
  ``(frame, trusted)`` whose iteration sets :data:`CURRENT` to each frame's
  arrival time while that frame is being handled (the IPv4 layer and the
  TCP driver run synchronously inside the loop over the batch) and clears
  it at the end.  Consumers that only see a list (wrappers, tests) are
  unaffected; the TCP driver reads :data:`CURRENT` (None: no stamp, use the
  clock).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from ustack.link.base import ReceivedFrame
from ustack.link.stamp import CURRENT, SENT, Stamp

# (Stamp, CURRENT and SENT live in ustack.link.stamp, which the compiled
# build covers: the compiled paths read and write ``.t`` as a native field)


def realtime_offset() -> float:
    """``CLOCK_REALTIME - CLOCK_MONOTONIC`` now, in seconds (sample once per
    batch: two clock reads, ~0.1 us apart)."""
    return time.time() - time.monotonic()


def to_monotonic(sec: int, nsec: int, offset: float, now: float) -> float:
    """A kernel ``CLOCK_REALTIME`` stamp (``sec``, ``nsec``) on the monotonic
    clock, given :func:`realtime_offset` and the batch's monotonic ``now``;
    never later than ``now``."""
    t = sec + nsec * 1e-9 - offset
    return t if t < now else now


class StampedBatch(list[ReceivedFrame]):
    """A received batch with each frame's arrival time (``times[i]`` for
    frame ``i``); iterating sets :data:`CURRENT` frame by frame."""

    __slots__ = ("times",)

    def __init__(self, frames: list[ReceivedFrame], times: list[float]) -> None:
        super().__init__(frames)
        self.times = times

    def __iter__(self) -> Iterator[ReceivedFrame]:
        cur = CURRENT
        try:
            for frame, t in zip(list.__iter__(self), self.times, strict=False):
                cur.t = t
                yield frame
        finally:
            cur.t = None


__all__ = ["CURRENT", "SENT", "Stamp", "StampedBatch", "realtime_offset", "to_monotonic"]
