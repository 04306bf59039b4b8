"""Seeded fault injection in both directions (DESIGN.md trap 5: no netem here).

``FaultDevice(inner, seed, loss=0.01, ...)`` drops, duplicates, reorders,
corrupts and delays frames going out through ``inner`` and frames coming in
from it.  The same seed and the same traffic give the same faults: each
direction has its own ``random.Random`` and draws a fixed number of numbers per
frame, so a change in one direction's traffic does not shift the other's.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from typing import Final

from ustack.link.base import Device, Frame, ReceivedFrame, Receiver

ETH_HEADER: Final = 14


class _Direction:
    """The faults of one direction.  ``emit`` gets frames that survived."""

    def __init__(self, owner: FaultDevice, tag: str,
                 emit: Callable[[list[ReceivedFrame]], None]) -> None:
        self.owner = owner
        self.rng = random.Random(f"{owner.seed}/{tag}")
        self.tag = tag
        self.emit = emit
        self.held: ReceivedFrame | None = None
        self.held_timer: asyncio.TimerHandle | None = None

    def process(self, frames: Sequence[ReceivedFrame]) -> None:
        o = self.owner
        rng = self.rng
        out: list[ReceivedFrame] = []
        stats = o.stats
        tag = self.tag
        for frame, trusted in frames:
            # always draw the same numbers per frame, whatever happens to it
            r_loss, r_corrupt, r_dup, r_reorder = (rng.random(), rng.random(),
                                                   rng.random(), rng.random())
            r_pos, r_bit = rng.random(), rng.randrange(8)
            if r_loss < o.loss:
                stats[f"fault_{tag}_lost"] += 1
                continue
            if r_corrupt < o.corrupt and len(frame) > ETH_HEADER:
                # flip one bit past the Ethernet header, so the frame still
                # reaches IP/TCP and a checksum has to catch it; the kernel
                # never vouched for this version of the frame
                pos = ETH_HEADER + int(r_pos * (len(frame) - ETH_HEADER))
                buf = bytearray(frame)
                buf[pos] ^= 1 << r_bit
                frame, trusted = bytes(buf), False
                stats[f"fault_{tag}_corrupted"] += 1
            copies = [(frame, trusted)]
            if r_dup < o.duplicate:
                copies.append((frame, trusted))
                stats[f"fault_{tag}_duplicated"] += 1
            for item in copies:
                if self.held is not None:  # the held frame goes after this one
                    out.append(item)
                    out.append(self.held)
                    self.held = None
                    if self.held_timer is not None:
                        self.held_timer.cancel()
                        self.held_timer = None
                elif r_reorder < o.reorder and item is copies[0]:
                    self.held = item
                    stats[f"fault_{tag}_reordered"] += 1
                else:
                    out.append(item)
        if self.held is not None and self.held_timer is None:
            loop = o.loop()
            if loop is not None:
                self.held_timer = loop.call_later(o.reorder_timeout, self._release_held)
        if out:
            self._deliver(out)

    def _release_held(self) -> None:
        self.held_timer = None
        if self.held is not None:
            held, self.held = self.held, None
            self._deliver([held])

    def _deliver(self, frames: list[ReceivedFrame]) -> None:
        o = self.owner
        if o.delay <= 0 and o.jitter <= 0:
            self.emit(frames)
            return
        loop = o.loop()
        if loop is None:
            self.emit(frames)
            return
        if o.jitter > 0:  # one draw per frame from a separate stream
            for frame in frames:
                wait = o.delay + o.jitter_rng.random() * o.jitter
                loop.call_later(wait, self._emit_later, [frame])
        else:
            loop.call_later(o.delay, self._emit_later, frames)

    def _emit_later(self, frames: list[ReceivedFrame]) -> None:
        if not self.owner.closed:
            self.emit(frames)

    def cancel(self) -> None:
        if self.held_timer is not None:
            self.held_timer.cancel()
            self.held_timer = None
        self.held = None


class FaultDevice(Device):
    """``inner`` seen through a lossy, duplicating, reordering, corrupting link.

    Probabilities are per frame (0.0 to 1.0), separately in each direction.
    ``reorder`` holds a frame back until the next one has passed (or
    ``reorder_timeout`` seconds went by).  ``delay`` (seconds, plus a uniform
    ``jitter``) is added to every frame.  ``directions`` is ``"both"``,
    ``"tx"`` or ``"rx"``.
    """

    def __init__(
        self,
        inner: Device,
        seed: int | str,
        *,
        loss: float = 0.0,
        duplicate: float = 0.0,
        reorder: float = 0.0,
        corrupt: float = 0.0,
        delay: float = 0.0,
        jitter: float = 0.0,
        reorder_timeout: float = 0.005,
        directions: str = "both",
    ) -> None:
        for label, p in (("loss", loss), ("duplicate", duplicate), ("reorder", reorder),
                         ("corrupt", corrupt)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{label} must be a probability in [0, 1], got {p}")
        if delay < 0 or jitter < 0 or reorder_timeout < 0:
            raise ValueError("delay, jitter and reorder_timeout must be >= 0")
        if directions not in ("both", "tx", "rx"):
            raise ValueError(f"directions must be 'both', 'tx' or 'rx', not {directions!r}")
        self.inner = inner
        self.seed = seed
        self.loss, self.duplicate, self.reorder, self.corrupt = loss, duplicate, reorder, corrupt
        self.delay, self.jitter, self.reorder_timeout = delay, jitter, reorder_timeout
        self.directions = directions
        self.name = inner.name
        self.mac = inner.mac
        self.mtu = inner.mtu
        self.jitter_rng = random.Random(f"{seed}/jitter")
        self.closed = False
        self.stats: dict[str, int] = {
            f"fault_{d}_{what}": 0
            for d in ("tx", "rx")
            for what in ("lost", "corrupted", "duplicated", "reordered")
        }
        self._loop: asyncio.AbstractEventLoop | None = None
        self._receiver: Receiver | None = None
        self._tx = _Direction(self, "tx", self._tx_emit)
        self._rx = _Direction(self, "rx", self._rx_emit)

    def loop(self) -> asyncio.AbstractEventLoop | None:
        if self._loop is None:
            try:
                self._loop = asyncio.get_running_loop()
            except RuntimeError:
                return None
        return self._loop

    # receive
    def attach(self, loop: asyncio.AbstractEventLoop, receiver: Receiver) -> None:
        self._loop = loop
        self._receiver = receiver
        self.inner.attach(loop, self._on_frames)

    def _on_frames(self, frames: Sequence[ReceivedFrame]) -> None:
        if self.directions == "tx":
            self._rx_emit(frames)
        else:
            self._rx.process(frames)

    def _rx_emit(self, frames: Sequence[ReceivedFrame]) -> None:
        if self._receiver is not None and not self.closed:
            self._receiver(frames)

    # send
    def send(self, frame: Frame) -> None:
        self.send_many((frame,))

    def send_many(self, frames: Sequence[Frame]) -> None:
        if self.closed:
            return
        if self.directions == "rx":
            self.inner.send_many(frames)
        else:
            self._tx.process([(f, False) for f in frames])

    def _tx_emit(self, frames: Sequence[ReceivedFrame]) -> None:
        if not self.closed:
            self.inner.send_many([f for f, _ in frames])

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._tx.cancel()
        self._rx.cancel()
        self.inner.close()

    def counters(self) -> dict[str, int]:
        out = self.inner.counters()
        out.update(self.stats)
        return out
