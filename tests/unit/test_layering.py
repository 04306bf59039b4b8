"""Layering (DESIGN.md "Transport driver", issue 10 item 7): the TCP driver
(ustack/driver), the streams (ustack/streams.py) and the ustack event loop
(ustack/aio), and the modules they are built from (names, sockets, reach,
addressing, UDP, DNS wire format), depend on the driver and its typed port,
never on the Stack:

* none of them imports ``ustack.stack``, not even for type checking (read
  from the source's syntax tree), and importing any of them in a fresh
  interpreter leaves ``ustack.stack`` out of ``sys.modules`` (so no module
  they import pulls it in either);
* none has an import inside a function or class, nor ``importlib`` /
  ``__import__`` calls: a deferred import is how a cycle hides.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "ustack"
FORBIDDEN = "ustack.stack"


#: what the streams and the loop are built from besides the driver (checked too)
SUPPORT = ["names.py", "sockets.py", "reach.py", "addressing.py", "net/udp.py", "wire/dns.py"]


def _layer_modules() -> list[str]:
    files = [*sorted((PACKAGE / "driver").glob("*.py")), PACKAGE / "streams.py",
             *sorted((PACKAGE / "aio").glob("*.py")), *(PACKAGE / f for f in SUPPORT)]
    names = []
    for path in files:
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        names.append(".".join(parts))
    return names


MODULES = _layer_modules()


def _imported_names(node: ast.Import | ast.ImportFrom) -> list[str]:
    """Every module an import statement may bind (``from a import b`` may be
    the module ``a.b``)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    return [base, *(f"{base}.{alias.name}" for alias in node.names)]


def violations(source: str) -> list[str]:
    """What in ``source`` breaks the layering rules, one line each."""
    tree = ast.parse(source)
    found: list[str] = []
    module_level: set[int] = set()

    def mark(stmts: list[ast.stmt]) -> None:
        # module-level statements, including those inside module-level
        # ``if``/``try`` blocks (``if TYPE_CHECKING:``, optional imports)
        for stmt in stmts:
            module_level.add(id(stmt))
            if isinstance(stmt, ast.If):
                mark(stmt.body)
                mark(stmt.orelse)
            elif isinstance(stmt, ast.Try):
                mark(stmt.body)
                mark(stmt.orelse)
                mark(stmt.finalbody)
                for handler in stmt.handlers:
                    mark(handler.body)

    mark(tree.body)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            if isinstance(node, ast.ImportFrom) and node.level:
                found.append(f"line {node.lineno}: relative import")
            names = _imported_names(node)
            if any(n == FORBIDDEN or n.startswith(FORBIDDEN + ".") for n in names):
                found.append(f"line {node.lineno}: imports {FORBIDDEN}")
            if id(node) not in module_level:
                found.append(f"line {node.lineno}: import inside a function or class "
                             f"({', '.join(a.name for a in node.names)})")
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else \
                func.id if isinstance(func, ast.Name) else ""
            if name in ("import_module", "__import__"):
                found.append(f"line {node.lineno}: dynamic import ({name})")
    return found


def test_the_checker_sees_what_it_must() -> None:
    """The rules catch each way of breaking them (else the real test proves nothing)."""
    bad = {
        "import ustack.stack\n": "imports ustack.stack",
        "from ustack.stack import Stack\n": "imports ustack.stack",
        "from ustack import stack\n": "imports ustack.stack",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ustack.stack import S\n":
            "imports ustack.stack",
        "def f():\n    import json\n": "inside a function",
        "class C:\n    import json\n": "inside a function or class",
        "import importlib\nimportlib.import_module('ustack.stack')\n": "dynamic import",
        "from . import stack\n": "relative import",
    }
    for source, expected in bad.items():
        assert any(expected in v for v in violations(source)), source
    good = ("import asyncio\nfrom typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from ustack.driver.tcp_table import TcpTable\n"
            "try:\n    import uvloop\nexcept ImportError:\n    uvloop = None\n"
            "from ustack.stack_identity import x\n")
    assert violations(good) == []


def test_layer_modules_are_found() -> None:
    assert {"ustack.driver", "ustack.driver.port", "ustack.driver.tcp_table",
            "ustack.streams", "ustack.aio", "ustack.aio.loop", "ustack.aio.runner",
            "ustack.aio.datagram", "ustack.aio.launcher"} <= set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_source_does_not_reach_the_stack(module: str) -> None:
    path = ROOT / (module.replace(".", "/") + ".py")
    if not path.exists():
        path = ROOT / module.replace(".", "/") / "__init__.py"
    assert violations(path.read_text()) == [], module


@pytest.mark.parametrize("module", MODULES)
def test_import_in_a_fresh_interpreter_leaves_the_stack_out(module: str) -> None:
    code = ("import importlib, sys\n"
            f"importlib.import_module({module!r})\n"
            f"print(sorted(m for m in sys.modules if m == {FORBIDDEN!r} "
            f"or m.startswith({FORBIDDEN + '.'!r})))\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", f"importing {module} loads {out.stdout.strip()}"


def test_the_stack_composes_them() -> None:
    """The other direction holds: the Stack and the composition root import
    the driver, the streams and the loop (so the check above is not vacuous)."""
    code = ("import sys, ustack.runtime\n"
            "print(all(m in sys.modules for m in ('ustack.stack', 'ustack.driver.tcp_table',"
            " 'ustack.streams', 'ustack.aio.loop')))\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=60)
    assert out.stdout.strip() == "True", out.stderr
