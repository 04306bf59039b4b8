"""Running coroutines on ustack loops: :func:`factory_of` (a loop factory
for :class:`asyncio.Runner`), :func:`run_on`, and the loop policy that
``ustack exec`` installs so an unmodified program's ``asyncio.run`` lands
on ustack.  The public :func:`ustack.run` and :func:`ustack.loop_factory`
(:mod:`ustack.runtime`) give these the Stack's starter."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import uvloop

from ustack.aio.loop import StackOptions, StackStarter, UstackLoopMixin, new_loop

T = TypeVar("T")


def factory_of(options: StackOptions, starter: StackStarter, *,
               use_uvloop: bool = True) -> Callable[[], UstackLoopMixin]:
    """A factory of ustack loops; each starts its own stack with
    ``starter(options)`` (and closes it in ``loop.close()``)."""

    def factory() -> UstackLoopMixin:
        return new_loop(options, starter, use_uvloop=use_uvloop)

    return factory


def run_on(main: Coroutine[Any, Any, T], factory: Callable[[], UstackLoopMixin], *,
           debug: bool | None = None) -> T:
    """``asyncio.run(main)`` on a loop from ``factory``."""
    with asyncio.Runner(debug=debug, loop_factory=factory) as runner:
        return runner.run(main)


class UstackEventLoopPolicy(asyncio.DefaultEventLoopPolicy):
    """A policy whose new loops are ustack loops (what ``ustack exec``
    installs: ``asyncio.run``, ``asyncio.new_event_loop`` and
    ``asyncio.get_event_loop`` in the main thread all use it)."""

    def __init__(self, factory: Callable[[], UstackLoopMixin]) -> None:
        super().__init__()
        self._factory = factory

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        return self._factory()


def install(factory: Callable[[], UstackLoopMixin]) -> None:
    """Make every new event loop of this process a ustack loop (also
    ``uvloop.new_event_loop``, which ``uvloop.run`` uses)."""
    asyncio.set_event_loop_policy(UstackEventLoopPolicy(factory))
    uvloop.new_event_loop = factory  # type: ignore[assignment]


__all__ = ["factory_of", "run_on", "UstackEventLoopPolicy", "install"]
