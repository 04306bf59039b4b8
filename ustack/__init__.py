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
:class:`Server`, :class:`StackInUseError`, :class:`ParseError`,
:func:`accel_status`.

The hot modules may run compiled (mypyc, docs/compiled.md); this module
decides, before the first of them is imported, whether the compiled build is
used: not with ``USTACK_NO_ACCEL=1``, and not when any compiled module's
source changed since the build (then everything runs from source, with one
warning).
"""

from __future__ import annotations

import os
import sys
from importlib.machinery import EXTENSION_SUFFIXES, ModuleSpec
from importlib.util import spec_from_file_location
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

__all__ = [*_LAZY, "__version__", "accel_status"]

_PKG = os.path.dirname(os.path.abspath(__file__))
_MANIFEST = "_accel_manifest.json"       # written by setup.py's build_ext
_REBUILD = ("rebuild (pip install -e . or python setup.py build_ext --inplace) "
            "or set USTACK_NO_ACCEL=1")


class _CompiledGate:
    """A meta-path finder in front of the default ones: it lets a compiled
    ustack module load only when the build manifest vouches for it (its
    source's sha256 is the one compiled) and the whole compiled build is
    fresh; otherwise it loads the module from its ``.py``.

    All or nothing: compiled modules call each other natively, so one stale
    module (or ``USTACK_NO_ACCEL=1``) sends every module to source."""

    def __init__(self) -> None:
        self.decided = False
        self.pure = os.environ.get("USTACK_NO_ACCEL", "") not in ("", "0")
        self.reason = "USTACK_NO_ACCEL is set" if self.pure else ""
        self.warned = self.pure          # say why once, when a .so is first passed over
        self.modules: frozenset[str] = frozenset()

    def decide(self) -> None:
        """Read the manifest and check every compiled source (once)."""
        if self.decided:
            return
        self.decided = True
        import json

        try:
            with open(os.path.join(_PKG, _MANIFEST), "rb") as f:
                manifest = json.load(f)
            digests: dict[str, str] = manifest["modules"]
            group: str = manifest["group"]
        except FileNotFoundError:
            if not self.pure:
                self.pure, self.reason = True, f"not built (no {_MANIFEST})"
            return
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self.pure, self.reason = True, f"unreadable {_MANIFEST}: {exc}"
            return
        self.modules = frozenset(digests)
        if self.pure:
            return
        if not _has_extension(_PKG, group.rpartition(".")[2]):
            self.pure, self.reason = True, "not built (no compiled library)"
            return
        stats: dict[str, list[int]] = manifest.get("stats", {})
        stale = []
        for name, digest in sorted(digests.items()):
            path = os.path.join(_PKG, *name.split(".")[1:]) + ".py"
            if not _same_source(path, digest, stats.get(name)):
                stale.append(path[len(os.path.dirname(_PKG)) + 1:])
        if stale:
            more = f" and {len(stale) - 3} more" if len(stale) > 3 else ""
            self.pure = True
            self.reason = f"source changed since the build: {', '.join(stale[:3])}{more}"

    def find_spec(self, fullname: str, path: object, target: object = None) -> ModuleSpec | None:
        """The ``.py`` spec of a compiled ustack module that must not run
        compiled; None (the default finders decide) otherwise."""
        if not fullname.startswith("ustack.") or not isinstance(path, list):
            return None
        leaf = fullname.rpartition(".")[2]
        for entry in path:
            if isinstance(entry, str) and _has_extension(entry, leaf):
                source = os.path.join(entry, leaf + ".py")
                if os.path.isfile(source):
                    break
        else:
            return None                  # not compiled (or a C helper with no .py)
        self.decide()
        if not self.pure and fullname in self.modules:
            return None                  # the vouched-for compiled module
        if not self.pure:
            _warn(f"{fullname} is not in the build manifest")  # a leftover .so
        elif not self.warned:
            _warn(self.reason)
            self.warned = True
        return spec_from_file_location(fullname, source)


def _same_source(path: str, digest: str, stat: list[int] | None) -> bool:
    """Is ``path`` the source that was compiled?  Same size and mtime as at
    the build: yes without reading it; otherwise its sha256 decides (a
    checkout that rewrote the same bytes is still the same source)."""
    try:
        st = os.stat(path)
        if stat is not None and [st.st_size, st.st_mtime_ns] == stat:
            return True
        import hashlib

        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest() == digest
    except OSError:
        return False


def _warn(why: str) -> None:
    import warnings

    warnings.warn(f"ustack: running from source, not compiled: {why}; {_REBUILD}",
                  RuntimeWarning, stacklevel=3)


def _has_extension(folder: str, leaf: str) -> bool:
    base = os.path.join(folder, leaf)
    return any(os.path.exists(base + suffix) for suffix in EXTENSION_SUFFIXES)


_GATE = _CompiledGate()
sys.meta_path.insert(0, _GATE)


def accel_status() -> dict[str, object]:
    """Which build runs: ``{"mode": "compiled" | "pure", "reason": why pure
    ("" when compiled), "modules": the modules that run compiled}``
    (docs/compiled.md)."""
    _GATE.decide()
    compiled = not _GATE.pure and bool(_GATE.modules)
    return {"mode": "compiled" if compiled else "pure",
            "reason": "" if compiled else _GATE.reason or "not built",
            "modules": sorted(_GATE.modules) if compiled else []}


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
