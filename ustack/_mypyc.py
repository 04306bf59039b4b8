"""``mypyc_attr`` for the compiled build (docs/compiled.md) without a run-time
dependency on mypy_extensions: mypy and mypyc see the real decorator, which
mypyc applies at compile time; interpreted, it is a no-op."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_extensions import mypyc_attr as mypyc_attr
else:

    def mypyc_attr(*attrs: str, **kwattrs: object) -> Any:
        """No-op outside mypyc (the class or function unchanged)."""
        return lambda thing: thing


__all__ = ["mypyc_attr"]
