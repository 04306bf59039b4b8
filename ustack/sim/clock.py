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
import contextvars
import functools
import heapq
import selectors
from asyncio import events
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar, TypeVarTuple

T = TypeVar("T")
_Ts = TypeVarTuple("_Ts")


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


#: asyncio's cap on one select() wait (base_events.MAXIMUM_SELECT_TIMEOUT)
_MAX_WAIT = 24 * 3600
#: asyncio's thresholds for purging cancelled timers from the heap
_MIN_SCHEDULED = 100
_CANCELLED_FRACTION = 0.5


class _Handle(events.Handle):
    """asyncio's Handle, built without the debug-mode lookups."""

    __slots__ = ()

    def __init__(self, callback: Callable[..., Any], args: tuple[Any, ...],
                 loop: asyncio.AbstractEventLoop, context: contextvars.Context | None) -> None:
        self._context = contextvars.copy_context() if context is None else context
        self._loop = loop
        self._callback = callback
        self._args = args
        self._cancelled = False
        self._repr = None
        self._source_traceback = None


class _TimerHandle(events.TimerHandle):
    """asyncio's TimerHandle, built without the debug-mode lookups."""

    __slots__ = ()

    def __init__(self, when: float, callback: Callable[..., Any], args: tuple[Any, ...],
                 loop: asyncio.AbstractEventLoop, context: contextvars.Context | None) -> None:
        self._context = contextvars.copy_context() if context is None else context
        self._loop = loop
        self._callback = callback
        self._args = args
        self._cancelled = False
        self._repr = None
        self._source_traceback = None
        self._when = when
        self._scheduled = True


class _Due(float):
    """A timer heap entry: the float is the handle's deadline.  asyncio's
    heap holds TimerHandles compared by a Python ``__lt__`` on ``_when``;
    this one compares floats in C, with the same outcomes (so the heap
    evolves exactly as asyncio's, ties included)."""

    __slots__ = ("handle",)
    handle: events.TimerHandle


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """An event loop on simulated time.  ``loop.time()`` starts at ``start``.

    ``_run_once``, ``call_soon`` and ``call_at`` are asyncio's own (CPython
    3.11 ``base_events``) with what cannot happen here taken out: no file is
    ever ready, so there is no select() call and no I/O event to process (a
    wait moves the clock), and no debug-mode bookkeeping (debug mode keeps
    its checks).  The order of callbacks, the clock's arithmetic and the
    timer heap's order are asyncio's, so a run gives the same result to the
    byte as on the plain loop (tests/unit/test_sim.py)."""

    def __init__(self, start: float = 0.0) -> None:
        self.clock = VirtualClock(start)
        super().__init__(VirtualSelector(self.clock))
        # no slack between "now" and a timer's deadline: timers fire exactly
        self._clock_resolution = 1e-9
        self.errors: list[BaseException] = []
        self.set_exception_handler(self._on_error)
        # loop.time() is read several times a frame: a C-level callable
        # instead of a Python method (same value)
        self.time: Callable[[], float] = functools.partial(  # type: ignore[method-assign]
            getattr, self.clock, "now")
        #: the timer heap (asyncio's ``_scheduled``, of :class:`_Due` entries)
        self._due: list[_Due] = []

    def time(self) -> float:
        return self.clock.now

    def call_soon(self, callback: Callable[[*_Ts], object], *args: *_Ts,
                  context: contextvars.Context | None = None) -> events.Handle:
        loop: Any = self  # asyncio's private state (not in the type stubs)
        if loop._closed:
            raise RuntimeError("Event loop is closed")
        if loop._debug:
            loop._check_thread()
            loop._check_callback(callback, "call_soon")
        handle = _Handle(callback, args, self, context)
        loop._ready.append(handle)
        return handle

    def call_at(self, when: float, callback: Callable[[*_Ts], object], *args: *_Ts,
                context: contextvars.Context | None = None) -> events.TimerHandle:
        loop: Any = self
        if when is None:
            raise TypeError("when cannot be None")
        if loop._closed:
            raise RuntimeError("Event loop is closed")
        if loop._debug:
            loop._check_thread()
            loop._check_callback(callback, "call_at")
        timer = _TimerHandle(when, callback, args, self, context)
        due = _Due(when)
        due.handle = timer
        heapq.heappush(self._due, due)
        return timer

    def _run_once(self) -> None:
        loop: Any = self
        due = self._due
        ready = loop._ready
        n = len(due)
        if n > _MIN_SCHEDULED and loop._timer_cancelled_count / n > _CANCELLED_FRACTION:
            live = []
            for entry in due:
                h: Any = entry.handle
                if h._cancelled:
                    h._scheduled = False
                else:
                    live.append(entry)
            heapq.heapify(live)
            self._due = due = live
            loop._timer_cancelled_count = 0
        else:
            while due and due[0].handle._cancelled:
                loop._timer_cancelled_count -= 1
                h = heapq.heappop(due).handle
                h._scheduled = False
        clock = self.clock
        if not ready and not loop._stopping:
            if not due:
                loop._selector.select(None)  # raises SimDeadlock
            # the selector's wait, as VirtualSelector.select(timeout) does it
            timeout = min(max(0, due[0] - clock.now), _MAX_WAIT)
            if timeout > 0:
                clock.now += timeout
        end_time = clock.now + loop._clock_resolution
        while due and due[0] < end_time:
            h = heapq.heappop(due).handle
            h._scheduled = False
            ready.append(h)
        popleft = ready.popleft
        for _ in range(len(ready)):
            h = popleft()
            if h._cancelled:
                continue
            if loop._debug:
                loop._current_handle = h
                try:
                    h._run()
                finally:
                    loop._current_handle = None
            else:
                h._run()
        h = None  # break cycles when an exception occurs

    def close(self) -> None:
        super().close()
        self._due.clear()

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
