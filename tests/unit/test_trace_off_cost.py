"""bench/trace_off_cost.py's B tree: the mechanical removal of the TCP
core's trace call sites (docs/trace.md, "Cost") removes every one of them
and nothing else."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ustack_bench_trace_off_cost",
                                                  ROOT / "bench" / "trace_off_cost.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _trace_calls(tree: ast.AST) -> list[int]:
    """Lines calling ``trace(...)``/``self.trace(...)``/``self._trace_cc(...)``."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(
                f, ast.Attribute) else ""
            if name in ("trace", "_trace_cc"):
                out.append(node.lineno)
    return out


def test_strip_source_removes_guarded_sites_keeps_the_rest() -> None:
    src = (
        "def f(self, now, trace2):\n"
        "    trace = self.trace\n"
        "    x = 1\n"
        "    if trace is not None:\n"
        "        trace(now, 'a', {})\n"
        "    if self.trace is not None and x > 0:\n"
        "        self.trace(now, 'b',\n"
        "                   {})\n"
        "    if x and trace is not None:\n"
        "        trace(now, 'c', {})\n"
        "    if self.trace is None:\n"
        "        x = 2\n"
        "    if trace2 is not None:\n"
        "        x = 3\n"
        "    return x\n")
    out, lines = _bench().strip_source(src)
    assert lines == [2, 4, 6, 9]
    assert out.count("\n") == src.count("\n")  # line numbers stay
    tree = ast.parse(out)
    assert _trace_calls(tree) == []
    assert "self.trace is None" in out and "trace2 is not None" in out
    ns: dict[str, object] = {}
    exec(compile(out, "<b>", "exec"), ns)
    f = ns["f"]
    assert callable(f)

    class Obj:
        trace = None

    assert f(Obj(), 0.0, None) == 2


def test_stripping_the_real_core_leaves_no_trace_call() -> None:
    """Every trace call in ustack/tcp sits behind a stripped guard (or in
    ``_trace_cc``, only called from one): a new unguarded call site would
    make B still trace, and this test fail."""
    bench = _bench()
    total = 0
    for path in sorted((ROOT / "ustack" / "tcp").rglob("*.py")):
        if path.name == "trace.py":
            continue  # the hook contract, no call site
        src = path.read_text()
        out, lines = bench.strip_source(src)
        total += len(lines)
        tree = ast.parse(out)
        calls = _trace_calls(tree)
        trace_cc = [n for n in ast.walk(tree)
                    if isinstance(n, ast.FunctionDef) and n.name == "_trace_cc"]
        inside = {ln for fn in trace_cc
                  for ln in range(fn.lineno, (fn.end_lineno or fn.lineno) + 1)}
        assert [ln for ln in calls if ln not in inside] == [], path
    assert total >= 8  # state, seg_recv, seg_sent, cc, recovery x n
