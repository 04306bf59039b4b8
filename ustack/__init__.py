"""ustack: a TCP/IP stack in Python that runs entirely in user space."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# Public names are imported lazily so that ``import ustack`` stays cheap (the
# ``ustack ss`` command must start fast) and a layer under construction cannot
# break the others.
_LAZY = {
    "Stack": "ustack.stack",
    "open_connection": "ustack.streams",
    "start_server": "ustack.streams",
    "create_connection": "ustack.streams",
    "create_server": "ustack.streams",
    "ParseError": "ustack.wire.errors",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'ustack' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module_name), name)


__all__ = list(_LAZY) + ["__version__"]
