"""The public API as users see it: ``import ustack`` is typed for mypy
(misuse is reported, no ``Any`` leaks through the lazy imports), cheap,
and ``help(ustack)`` lists the entry points."""

from __future__ import annotations

import os
import pydoc
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import ustack

ROOT = Path(__file__).resolve().parents[2]

MISUSE = textwrap.dedent('''
    import asyncio
    import ustack

    async def main() -> None:
        stack = await ustack.Stack.start(iface="veth-us", address=10)      # E1: int address
        await ustack.Stack.start(iface="veth-us", tcp_config="fast")       # E2: not a TcpConfig
        reader, writer = await stack.open_connection("10.77.0.1", 80)
        transport = writer.transport
        assert isinstance(transport, ustack.TcpTransport)
        transport.set_keepalive(True, idle="10s")                          # E3: str idle
        transport.set_nodelay()
        n: str = ustack.run                                                # E4: a function
        ustack.no_such_name                                                # E5: no attribute
        ustack.Stack.start(iface="x").address                              # E6: coroutine

    ustack.run(main(), iface="veth-us", address="10.77.0.2/24", gatway="10.77.0.1")  # E7
    ustack.run(main, iface="veth-us")                                      # E8: not a coroutine
    ok: int = ustack.run(asyncio.sleep(0, 5), iface="veth-us")
    asyncio.Runner(loop_factory=ustack.loop_factory("veth-us", use_uvloop=1.5))  # E9
''')


def test_mypy_strict_reports_misuse(tmp_path: Path) -> None:
    script = tmp_path / "user_script.py"
    script.write_text(MISUSE)
    env = dict(os.environ, MYPYPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", "--follow-imports=silent",
         "--cache-dir", os.devnull, str(script)],  # a cache would replay an old run's paths
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    out = proc.stdout
    lines = {int(line.split(":")[1]) for line in out.splitlines()
             if line.startswith(str(script)) and ": error:" in line}
    source = MISUSE.splitlines()
    expected = {i + 1 for i, text in enumerate(source) if "# E" in text}
    assert expected <= lines, f"missing errors on lines {sorted(expected - lines)}:\n{out}"
    assert lines <= expected, f"unexpected errors on lines {sorted(lines - expected)}:\n{out}"
    assert 'Argument "address" to "start" of "Stack" has incompatible type "int"' in out
    assert 'Module has no attribute "no_such_name"' in out


def test_help_lists_entry_points() -> None:
    text = pydoc.render_doc(ustack, renderer=pydoc.plaintext)  # type: ignore[attr-defined]
    for name in ("Stack", "run", "loop_factory", "open_connection", "start_server"):
        assert f"\n    {name}" in text or f" {name}(" in text, name


def test_import_is_cheap_and_lazy() -> None:
    code = ("import sys, ustack; "
            "print(sorted(m for m in ('ustack.stack', 'ustack.streams', 'uvloop', 'ssl') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), check=True)
    assert out.stdout.strip() == "[]"


def test_unknown_attribute_raises() -> None:
    with pytest.raises(AttributeError):
        ustack.nope  # type: ignore[attr-defined]  # noqa: B018
    assert ustack.Stack.__name__ == "Stack"
    assert callable(ustack.run) and callable(ustack.loop_factory)
