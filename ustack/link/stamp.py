"""The two stamps of :mod:`ustack.link.rxtime` (``CURRENT``: the arrival
time of the frame being handled; ``SENT``: the send time of an output
round), in a module the compiled build covers.

rxtime itself stays interpreted (its ``StampedBatch`` subclasses ``list``);
with :class:`Stamp` defined there, every read and write of ``.t`` from the
compiled receive and send paths (several per request/response exchange) was
a generic attribute lookup on an interpreted object.  Compiled, ``Stamp`` is
a native class and ``.t`` a field.
"""

from __future__ import annotations


class Stamp:
    """A time on the driver's clock, or None."""

    __slots__ = ("t",)

    def __init__(self) -> None:
        self.t: float | None = None


#: the frame being handled right now (one receive path runs at a time: the
#: loop's thread handles a batch to its end before anything else)
CURRENT = Stamp()

#: when a device first handed a frame to the kernel since the TCP driver
#: cleared it (None): the driver's send time for the segments of one output
#: round (the system call, not when the core built them)
SENT = Stamp()

__all__ = ["CURRENT", "SENT", "Stamp"]
