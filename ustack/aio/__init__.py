"""asyncio on ustack: an event loop whose network goes through the stack.

:mod:`ustack.aio.loop` (the loop), :mod:`ustack.aio.runner` (``run``,
``loop_factory``, the policy ``ustack exec`` installs),
:mod:`ustack.aio.datagram` (UDP transports), :mod:`ustack.aio.launcher`
(running a program under ``ustack exec``).  See docs/asyncio.md.
"""
