"""A virtual-clock asyncio event loop: time jumps to the next scheduled event.

:class:`VirtualClockLoop` is a :class:`asyncio.SelectorEventLoop` whose
``time()`` is a counter instead of ``time.monotonic()`` and whose selector
never waits: when the loop has nothing ready it asks the selector to wait
until the earliest timer, and the selector moves the counter forward by that
much and returns at once.  Everything that reads the clock through
``loop.time()`` (the Stack, the TCP table, ``asyncio.sleep``,
``asyncio.timeout``, ``call_later``) then sees simulated time, and a 60 s
experiment costs only the CPU time of its callbacks.

There is no real I/O under this loop (the selector reports no file as ready),
so only in-memory devices work (``ustack.sim.link``).  A loop left with
nothing scheduled and nothing ready can never make progress; the selector
raises :class:`SimDeadlock` instead of blocking forever.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

T = TypeVar("T")


class SimDeadlock(RuntimeError):
    """The simulated world has no event left but a task is still waiting."""


class _KeyMap(Mapping[Any, selectors.SelectorKey]):
    def __init__(self, keys: dict[int, selectors.SelectorKey]) -> None:
        self._keys = keys

    def __len__(self) -> int:
        return len(self._keys)

    def __getitem__(self, fileobj: Any) -> selectors.SelectorKey:
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        return self._keys[fd]

    def __iter__(self) -> Any:
        return iter(self._keys)


class VirtualSelector(selectors.BaseSelector):
    """Keeps registrations (the loop's self-pipe) but never reports one ready;
    ``select(timeout)`` advances the virtual clock by ``timeout``."""

    def __init__(self, clock: VirtualClock) -> None:
        self._clock = clock
        self._keys: dict[int, selectors.SelectorKey] = {}

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        key = selectors.SelectorKey(fileobj, fd, events, data)
        self._keys[fd] = key
        return key

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        return self._keys.pop(fd)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            raise SimDeadlock("virtual clock: nothing is scheduled and nothing is ready, "
                              "but the loop was asked to wait (a task waits forever)")
        if timeout > 0:
            self._clock.now += timeout
        return []

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return _KeyMap(self._keys)

    def close(self) -> None:
        self._keys.clear()


class VirtualClock:
    """The simulated time in seconds (a plain attribute: cheap to read)."""

    __slots__ = ("now",)

    def __init__(self, start: float = 0.0) -> None:
        self.now = start


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """An event loop on simulated time.  ``loop.time()`` starts at ``start``."""

    def __init__(self, start: float = 0.0) -> None:
        self.clock = VirtualClock(start)
        super().__init__(VirtualSelector(self.clock))
        # no slack between "now" and a timer's deadline: timers fire exactly
        self._clock_resolution = 1e-9
        self.errors: list[BaseException] = []
        self.set_exception_handler(self._on_error)

    def time(self) -> float:
        return self.clock.now

    def _on_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, BaseException):
            self.errors.append(exc)
        self.default_exception_handler(context)


def run(main: Coroutine[Any, Any, T], *, start: float = 0.0) -> T:
    """Run ``main`` to completion on a fresh :class:`VirtualClockLoop`
    (like :func:`asyncio.run`, but in simulated time)."""
    loop = VirtualClockLoop(start)
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(main)
    finally:
        try:
            _cancel_all(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))


__all__ = ["SimDeadlock", "VirtualClock", "VirtualClockLoop", "VirtualSelector", "run"]
