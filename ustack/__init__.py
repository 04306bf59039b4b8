"""ustack: a TCP/IP stack in Python that runs entirely in user space.

Three ways to use it (docs/asyncio.md):

* explicit: ``stack = await ustack.Stack.start(iface=..., address=...)`` then
  ``await stack.open_connection(host, port)`` / ``stack.start_server(...)``;
* the event loop: ``ustack.run(main(), iface=..., address=...)`` or
  ``asyncio.Runner(loop_factory=ustack.loop_factory(...))``, under which
  plain asyncio code (``asyncio.open_connection``, aiohttp, httpx,
  websockets) uses the stack;
* ``ustack exec --iface IF --address A/PLEN -- python app.py``.

Public names: :class:`Stack`, :func:`run`, :func:`loop_factory`,
:func:`open_connection`, :func:`start_server`, :func:`create_connection`,
:func:`create_server`, :class:`TcpConfig`, :class:`TcpTransport`,
:class:`Server`, :class:`StackInUseError`, :class:`ParseError`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    # mypy (and other type checkers) see the real objects; at run time they
    # are imported on first access (below) so that ``import ustack`` stays
    # cheap: ``ustack ss`` must start fast.
    from ustack.instance_lock import StackInUseError as StackInUseError
    from ustack.runtime import loop_factory as loop_factory
    from ustack.runtime import run as run
    from ustack.stack import Stack as Stack
    from ustack.streams import Server as Server
    from ustack.streams import TcpTransport as TcpTransport
    from ustack.streams import create_connection as create_connection
    from ustack.streams import create_server as create_server
    from ustack.streams import open_connection as open_connection
    from ustack.streams import start_server as start_server
    from ustack.tcp.config import TcpConfig as TcpConfig
    from ustack.wire.errors import ParseError as ParseError

_LAZY = {
    "Stack": "ustack.stack",
    "run": "ustack.runtime",
    "loop_factory": "ustack.runtime",
    "open_connection": "ustack.streams",
    "start_server": "ustack.streams",
    "create_connection": "ustack.streams",
    "create_server": "ustack.streams",
    "Server": "ustack.streams",
    "TcpTransport": "ustack.streams",
    "TcpConfig": "ustack.tcp.config",
    "StackInUseError": "ustack.instance_lock",
    "ParseError": "ustack.wire.errors",
}

__all__ = [*_LAZY, "__version__"]


if not TYPE_CHECKING:  # checkers see only the typed names above: a typo is an error

    def __getattr__(name: str) -> object:
        """Import a public name on first use."""
        module_name = _LAZY.get(name)
        if module_name is None:
            raise AttributeError(f"module 'ustack' has no attribute {name!r}")
        import importlib

        if module_name == "ustack.streams":
            importlib.import_module("ustack.stack")  # registers the default-stack starter
        value = getattr(importlib.import_module(module_name), name)
        globals()[name] = value  # later lookups skip __getattr__
        return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
