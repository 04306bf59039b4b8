"""Diagnostics: socket snapshots, the ss filter language and formatter, and the
endpoint through which ``ustack ss`` reads running stacks.

Names are imported lazily so ``ustack ss`` starts fast::

    from ustack.diag import select, format_table
    print(format_table(select(stack.sockets(), "state established ( dport = :http )")))
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "SocketRecord": "ustack.diag.records",
    "record_from_info": "ustack.diag.records",
    "listener_record": "ustack.diag.records",
    "FilterError": "ustack.diag.filter",
    "Filter": "ustack.diag.filter",
    "parse": "ustack.diag.filter",
    "select": "ustack.diag.filter",
    "FormatOptions": "ustack.diag.format",
    "format_table": "ustack.diag.format",
    "format_json": "ustack.diag.format",
    "format_summary": "ustack.diag.format",
    "snapshot": "ustack.diag.snapshot",
    "serve_diagnostics": "ustack.diag.endpoint",
    "DiagnosticsServer": "ustack.diag.endpoint",
    "query_stacks": "ustack.diag.client",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'ustack.diag' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module_name), name)


__all__ = list(_LAZY)
