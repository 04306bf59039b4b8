"""A simulated network for real Stacks: devices, one-way links, a dumbbell.

:class:`SimLink` is one direction of a link: frames pay a random loss
(Bernoulli or Gilbert-Elliott), wait in a drop-tail queue of ``queue``
packets (RED optional) for a transmitter of ``rate`` bit/s, then travel for
``delay`` seconds (plus a uniform ``jitter``); a fraction can be reordered
(delivered ``reorder_delay`` later, past the frames behind them) or
duplicated.  Each link draws the same count of random numbers from its own
seeded ``random.Random`` for every frame, so one seed gives one run.

:class:`Dumbbell` joins a "left" and a "right" Ethernet segment through two
links (``forward`` left→right, ``reverse`` right→left): hosts on one side
reach each other at once, every frame to the other side crosses the link.
:class:`SimDevice` is the :class:`~ustack.link.base.Device` a Stack binds.
Time is the event loop's (``loop.time()``): run it under
:class:`~ustack.sim.clock.VirtualClockLoop`.
"""

from __future__ import annotations

import asyncio
import random
from array import array
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ustack.link.base import Device, Frame, ReceivedFrame, Receiver

BROADCAST = b"\xff" * 6


# ------------------------------------------------------------------ loss models


class LossModel:
    """Decides per frame whether the link loses it; ``draw`` is uniform [0, 1)."""

    def lost(self, draw: float, state_draw: float) -> bool:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class Bernoulli(LossModel):
    """Each frame is lost independently with probability ``p``."""

    p: float

    def lost(self, draw: float, state_draw: float) -> bool:
        return draw < self.p


@dataclass(slots=True)
class GilbertElliott(LossModel):
    """Two-state Markov loss (Gilbert 1960, Elliott 1963): ``p`` = P(good→bad)
    and ``r`` = P(bad→good) per frame; a frame is lost with ``loss_bad`` in
    the bad state and ``loss_good`` in the good one (netem's ``gemodel p r
    1-h 1-k``).  Mean loss = (p·loss_bad + r·loss_good) / (p + r)."""

    p: float
    r: float
    loss_bad: float = 1.0
    loss_good: float = 0.0
    bad: bool = False

    def lost(self, draw: float, state_draw: float) -> bool:
        if self.bad:
            if state_draw < self.r:
                self.bad = False
        elif state_draw < self.p:
            self.bad = True
        return draw < (self.loss_bad if self.bad else self.loss_good)


@dataclass(frozen=True, slots=True)
class Red:
    """Random Early Detection (Floyd and Jacobson 1993) on the packet count:
    drop with a probability rising from 0 at ``min_th`` to ``max_p`` at
    ``max_th`` of the averaged queue (weight ``weight``), always above."""

    min_th: float
    max_th: float
    max_p: float = 0.1
    weight: float = 0.002


# ------------------------------------------------------------------ links


@dataclass(slots=True)
class LinkSpec:
    """What one direction of a link does (see the module docstring)."""

    #: bit/s; None or 0 = infinitely fast (no queue)
    rate: float | None = None
    #: one-way propagation delay, seconds
    delay: float = 0.0
    #: uniform extra delay in [0, jitter) per frame; frames stay in order
    jitter: float = 0.0
    #: drop-tail limit: frames waiting for the transmitter
    queue: int = 1000
    #: per-frame loss: a probability (Bernoulli) or a LossModel
    loss: float | LossModel = 0.0
    red: Red | None = None
    #: probability that a frame is held back by ``reorder_delay``
    reorder: float = 0.0
    reorder_delay: float = 0.001
    duplicate: float = 0.0

    def loss_model(self) -> LossModel | None:
        if isinstance(self.loss, LossModel):
            return self.loss
        if not 0.0 <= self.loss <= 1.0:
            raise ValueError(f"loss must be a probability in [0, 1], got {self.loss}")
        return Bernoulli(self.loss) if self.loss > 0 else None


class SimLink:
    """One direction of a link; ``emit(frames)`` receives what arrives."""

    def __init__(self, loop: asyncio.AbstractEventLoop, spec: LinkSpec, seed: int | str,
                 emit: Callable[[list[Frame]], None], *, name: str = "link") -> None:
        for label, p in (("reorder", spec.reorder), ("duplicate", spec.duplicate)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{label} must be a probability in [0, 1], got {p}")
        if spec.delay < 0 or spec.jitter < 0 or spec.queue < 0:
            raise ValueError("delay, jitter and queue must be >= 0")
        self.loop = loop
        self.spec = spec
        self.name = name
        self.emit = emit
        self._loss = spec.loss_model()
        self._rng = random.Random(f"{seed}/{name}")
        self._random = self._rng.random
        self._clock = loop.time
        self._byte_time = 8.0 / spec.rate if spec.rate else 0.0
        self._busy_until = 0.0
        #: service start times of frames still waiting for the transmitter
        self._waiting: deque[float] = deque()
        self._red_avg = 0.0
        #: frames in flight in FIFO order: (arrival time, frame)
        self._pipe: deque[tuple[float, Frame]] = deque()
        self._last_arrival = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = 0.0
        #: seconds each accepted frame waited in the queue
        self.queue_delays = array("d")
        self._queue_delays_append = self.queue_delays.append
        self.stats: dict[str, int] = {
            "frames_in": 0, "bytes_in": 0, "frames_out": 0, "bytes_out": 0,
            "drop_loss": 0, "drop_queue": 0, "drop_red": 0, "reordered": 0,
            "duplicated": 0, "queue_max": 0,
        }

    def queue_length(self, now: float | None = None) -> int:
        """Frames waiting for the transmitter at ``now``."""
        t = self.loop.time() if now is None else now
        waiting = self._waiting
        while waiting and waiting[0] <= t:
            waiting.popleft()
        return len(waiting)

    def send(self, frame: Frame) -> None:
        spec = self.spec
        stats = self.stats
        rnd = self._random
        # the same draws for every frame, whatever becomes of it
        r_loss = rnd()
        r_state = rnd()
        r_red = rnd()
        r_jit = rnd()
        r_reo = rnd()
        r_dup = rnd()
        now = self._clock()
        size = len(frame)
        stats["frames_in"] += 1
        stats["bytes_in"] += size
        loss = self._loss
        if loss is not None and loss.lost(r_loss, r_state):
            stats["drop_loss"] += 1
            return
        depart = now
        byte_time = self._byte_time
        if byte_time:
            waiting = self._waiting
            while waiting and waiting[0] <= now:
                waiting.popleft()
            qlen = len(waiting)
            red = spec.red
            if red is not None:
                self._red_avg += red.weight * (qlen - self._red_avg)
                avg = self._red_avg
                if avg >= red.max_th or (avg > red.min_th and r_red < red.max_p * (
                        avg - red.min_th) / (red.max_th - red.min_th)):
                    stats["drop_red"] += 1
                    return
            busy = self._busy_until
            if busy > now:
                if qlen >= spec.queue:
                    stats["drop_queue"] += 1
                    return
                waiting.append(busy)
                if qlen + 1 > stats["queue_max"]:
                    stats["queue_max"] = qlen + 1
                start = busy
            else:
                start = now
            self._queue_delays_append(start - now)
            depart = self._busy_until = start + size * byte_time
        arrival = depart + spec.delay
        if spec.jitter:
            arrival += r_jit * spec.jitter
        if r_reo < spec.reorder:
            stats["reordered"] += 1
            self.loop.call_at(max(arrival, self._last_arrival) + spec.reorder_delay,
                              self._emit_one, frame)
            return
        if arrival < self._last_arrival:  # jitter never reorders
            arrival = self._last_arrival
        self._last_arrival = arrival
        pipe = self._pipe
        pipe.append((arrival, frame))
        if r_dup < spec.duplicate:
            stats["duplicated"] += 1
            pipe.append((arrival, frame))
        if self._timer is None:
            self._arm(arrival)

    def _arm(self, when: float) -> None:
        self._timer_when = when
        self._timer = self.loop.call_at(when, self._release)

    def _release(self) -> None:
        self._timer = None
        now = self._clock() + 1e-12
        pipe = self._pipe
        stats = self.stats
        if not pipe:
            return
        if pipe[0][0] > now:  # fired up to the loop's resolution early
            self._arm(pipe[0][0])
            return
        frame = pipe.popleft()[1]
        if not pipe or pipe[0][0] > now:
            # the common case: one frame at a time
            if pipe:
                self._arm(pipe[0][0])
            stats["frames_out"] += 1
            stats["bytes_out"] += len(frame)
            self.emit([frame])
            return
        out: list[Frame] = [frame]
        while pipe and pipe[0][0] <= now:
            out.append(pipe.popleft()[1])
        if pipe:
            self._arm(pipe[0][0])
        stats["frames_out"] += len(out)
        stats["bytes_out"] += sum(map(len, out))
        self.emit(out)

    def _emit_one(self, frame: Frame) -> None:
        self.stats["frames_out"] += 1
        self.stats["bytes_out"] += len(frame)
        self.emit([frame])

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._pipe.clear()


# ------------------------------------------------------------------ devices


class SimDevice(Device):
    """A host's network card on a :class:`Dumbbell` side."""

    def __init__(self, network: Dumbbell, side: str, name: str, mac: bytes, *,
                 mtu: int = 1500, trusted: bool = True) -> None:
        self.network = network
        self.side = side
        self.name = name
        self.mac = mac
        self.mtu = mtu
        #: frames arrive as ``trusted`` (no software L4 checksum check): the
        #: simulated wire corrupts nothing
        self.trusted = trusted
        self._receiver: Receiver | None = None
        self._closed = False
        self._stats = {"rx_frames": 0, "tx_frames": 0, "tx_bytes": 0, "rx_bytes": 0}

    def attach(self, loop: asyncio.AbstractEventLoop, receiver: Receiver) -> None:
        self._receiver = receiver

    def send(self, frame: Frame) -> None:
        if self._closed:
            return
        self._stats["tx_frames"] += 1
        self._stats["tx_bytes"] += len(frame)
        self.network.transmit(self, frame)

    def send_many(self, frames: Sequence[Frame]) -> None:
        if self._closed:
            return
        self._stats["tx_frames"] += len(frames)
        self._stats["tx_bytes"] += sum(map(len, frames))
        transmit = self.network.transmit
        for frame in frames:
            transmit(self, frame)

    def deliver(self, frames: Sequence[ReceivedFrame]) -> None:
        if self._receiver is None or self._closed:
            return
        self._stats["rx_frames"] += len(frames)
        self._receiver(frames)

    def close(self) -> None:
        self._closed = True

    def counters(self) -> dict[str, int]:
        return dict(self._stats)

    def __repr__(self) -> str:
        return f"SimDevice({self.name!r}, {self.side}, mac={self.mac.hex(':')})"


class _Side:
    """One Ethernet segment: MAC → device; delivers batches via call_soon."""

    def __init__(self, loop: asyncio.AbstractEventLoop, name: str) -> None:
        self.loop = loop
        self.name = name
        self.devices: dict[bytes, SimDevice] = {}
        self._inbox: dict[SimDevice, list[ReceivedFrame]] = {}
        self._scheduled = False

    def receive(self, frames: list[Frame], sender: SimDevice | None = None) -> None:
        inbox = self._inbox
        devices = self.devices
        for frame in frames:
            dst = frame[:6]
            if dst == BROADCAST:
                targets = [d for d in devices.values() if d is not sender]
            else:
                dev = devices.get(dst)
                if dev is None:
                    continue
                targets = [dev]
            for dev in targets:
                box = inbox.get(dev)
                if box is None:
                    inbox[dev] = [(frame, dev.trusted)]
                else:
                    box.append((frame, dev.trusted))
        if inbox and not self._scheduled:
            self._scheduled = True
            self.loop.call_soon(self._flush)

    def arrive(self, frames: list[Frame]) -> None:
        """Frames off a link, delivered at once (a link emits from its own
        timer callback, never from inside a ``send``)."""
        devices = self.devices
        if len(frames) == 1:
            frame = frames[0]
            dev = devices.get(frame[:6])
            if dev is not None:
                dev.deliver([(frame, dev.trusted)])
                return
        self.receive(frames)

    def _flush(self) -> None:
        self._scheduled = False
        inbox, self._inbox = self._inbox, {}
        for dev, frames in inbox.items():
            dev.deliver(frames)


class Dumbbell:
    """Two Ethernet segments joined by ``forward`` (left→right) and
    ``reverse`` (right→left) links.  ``add_host("left")`` returns a device."""

    def __init__(self, loop: asyncio.AbstractEventLoop, forward: LinkSpec,
                 reverse: LinkSpec | None = None, *, seed: int | str = 0) -> None:
        self.loop = loop
        self.left = _Side(loop, "left")
        self.right = _Side(loop, "right")
        if reverse is None:
            reverse = LinkSpec(rate=forward.rate, delay=forward.delay,
                               queue=max(forward.queue, 1000))
        self.forward = SimLink(loop, forward, seed, self.right.arrive, name="forward")
        self.reverse = SimLink(loop, reverse, seed, self.left.arrive, name="reverse")
        self._hosts = 0
        #: devices in creation order
        self.devices: list[SimDevice] = []
        #: called with (device, frame) for every frame a host sends (pcap taps)
        self.taps: list[Callable[[SimDevice, Frame], None]] = []

    def add_host(self, side: str, *, name: str | None = None, mtu: int = 1500) -> SimDevice:
        if side not in ("left", "right"):
            raise ValueError(f"side must be 'left' or 'right', not {side!r}")
        self._hosts += 1
        mac = bytes([0x02, 0x53, 0x49, 0x4D, self._hosts >> 8, self._hosts & 0xFF])
        dev = SimDevice(self, side, name or f"sim{self._hosts}", mac, mtu=mtu)
        (self.left if side == "left" else self.right).devices[mac] = dev
        self.devices.append(dev)
        return dev

    def transmit(self, dev: SimDevice, frame: Frame) -> None:
        for tap in self.taps:
            tap(dev, frame)
        here, there, link = ((self.left, self.right, self.forward) if dev.side == "left"
                             else (self.right, self.left, self.reverse))
        dst = frame[:6]
        # (no device has the broadcast address, and a MAC is on one side only)
        if dst in there.devices:
            link.send(frame)
        elif dst == BROADCAST:
            here.receive([frame], dev)
            link.send(frame)
        elif dst in here.devices:
            here.receive([frame], dev)

    def close(self) -> None:
        self.forward.close()
        self.reverse.close()


__all__ = ["Bernoulli", "Dumbbell", "GilbertElliott", "LinkSpec", "LossModel", "Red",
           "SimDevice", "SimLink"]
