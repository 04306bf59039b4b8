"""The compiled build's run-time switch (ustack/__init__.py, docs/compiled.md):
USTACK_NO_ACCEL=1 runs every module from source, a compiled module runs only
when the build manifest vouches for its source (sha256), one stale source
sends everything to source with one warning, and CI really tests the
compiled build (it fails when the build silently did not happen)."""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import subprocess
import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest

import ustack

ROOT = Path(__file__).resolve().parents[2]
NO_ACCEL = os.environ.get("USTACK_NO_ACCEL", "") not in ("", "0")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
SUFFIX = EXTENSION_SUFFIXES[0]

#: prints the status and where the probe module came from, as JSON
PROBE = """
import json, sys, warnings
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    import ustack
    import ustack.tcp.x as x
    import ustack.tcp.y as y
print(json.dumps({"status": ustack.accel_status(), "x": x.__file__, "y": y.__file__,
                  "warnings": [str(w.message) for w in caught]}))
"""


def _fake_tree(tmp_path: Path, *, manifest: bool = True, stale: bool = False,
               listed: bool = True, lib: bool = True) -> Path:
    """A copy of ustack/__init__.py with a package ``ustack.tcp`` holding
    ``x.py``, ``y.py`` and, for each, a "compiled" ``.so`` of garbage bytes:
    loading one fails, so a test sees whether the gate let it through."""
    pkg = tmp_path / "ustack"
    (pkg / "tcp").mkdir(parents=True)
    shutil.copy(ROOT / "ustack" / "__init__.py", pkg / "__init__.py")
    (pkg / "tcp" / "__init__.py").write_text("")
    digests = {}
    for leaf in ("x", "y"):
        source = pkg / "tcp" / f"{leaf}.py"
        source.write_text(f"VALUE = {leaf!r}\n")
        (pkg / "tcp" / f"{leaf}{SUFFIX}").write_bytes(b"not an ELF file")
        digests[f"ustack.tcp.{leaf}"] = hashlib.sha256(source.read_bytes()).hexdigest()
    if lib:
        (pkg / f"_accel__mypyc{SUFFIX}").write_bytes(b"not an ELF file")
    if not listed:
        del digests["ustack.tcp.y"]
    if manifest:
        (pkg / "_accel_manifest.json").write_text(json.dumps(
            {"format": 1, "group": "ustack._accel__mypyc", "modules": digests}))
    if stale:
        with open(pkg / "tcp" / "y.py", "a") as f:
            f.write("# edited after the build\n")
    return tmp_path


def _run_in(tree: Path, code: str, *, no_accel: bool = False) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter importing ustack from ``tree``
    (USTACK_NO_ACCEL set only when asked); it must exit 0."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    env.pop("USTACK_NO_ACCEL", None)
    if no_accel:
        env["USTACK_NO_ACCEL"] = "1"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, cwd=tree, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc


def _probe(tree: Path, *, no_accel: bool = False) -> dict[str, object]:
    result: dict[str, object] = json.loads(_run_in(tree, PROBE, no_accel=no_accel).stdout)
    return result


def test_stale_source_sends_every_module_to_source_with_one_warning(tmp_path: Path) -> None:
    out = _probe(_fake_tree(tmp_path, stale=True))
    assert str(out["x"]).endswith("x.py") and str(out["y"]).endswith("y.py")
    status = out["status"]
    assert isinstance(status, dict)
    assert status["mode"] == "pure" and status["modules"] == []
    assert "source changed since the build: ustack/tcp/y.py" in status["reason"]
    warnings = out["warnings"]
    assert isinstance(warnings, list) and len(warnings) == 1
    assert "running from source, not compiled" in warnings[0]
    assert "ustack/tcp/y.py" in warnings[0]


def test_no_accel_runs_everything_from_source_silently(tmp_path: Path) -> None:
    out = _probe(_fake_tree(tmp_path), no_accel=True)
    assert str(out["x"]).endswith("x.py") and str(out["y"]).endswith("y.py")
    assert out["status"] == {"mode": "pure", "reason": "USTACK_NO_ACCEL is set", "modules": []}
    assert out["warnings"] == []


def test_compiled_module_without_manifest_is_not_trusted(tmp_path: Path) -> None:
    out = _probe(_fake_tree(tmp_path, manifest=False))
    assert str(out["x"]).endswith("x.py") and str(out["y"]).endswith("y.py")
    warnings = out["warnings"]
    assert isinstance(warnings, list) and len(warnings) == 1
    assert "not built (no _accel_manifest.json)" in warnings[0]


def test_compiled_module_missing_from_manifest_loads_from_source(tmp_path: Path) -> None:
    tree = _fake_tree(tmp_path, listed=False)
    code = ("import warnings; warnings.simplefilter('always')\n"
            "import ustack.tcp.y as y; print(y.__file__)")
    proc = _run_in(tree, code)
    assert proc.stdout.strip().endswith("y.py")
    assert "ustack.tcp.y is not in the build manifest" in proc.stderr


def test_fresh_compiled_module_is_let_through(tmp_path: Path) -> None:
    """With a fresh manifest the gate steps aside: the default loader takes
    the (garbage) extension, which proves it would run the compiled one."""
    tree = _fake_tree(tmp_path)
    code = ("import ustack\nprint(ustack.accel_status()['mode'])\n"
            "try:\n    import ustack.tcp.x\nexcept ImportError as e:\n    print('so', e)\n")
    proc = _run_in(tree, code)
    mode, loaded = proc.stdout.splitlines()
    assert mode == "compiled"
    assert loaded.startswith("so ") and f"x{SUFFIX}" in loaded


def test_missing_shared_library_means_pure(tmp_path: Path) -> None:
    out = _probe(_fake_tree(tmp_path, lib=False))
    assert str(out["x"]).endswith("x.py")
    status = out["status"]
    assert isinstance(status, dict) and status["mode"] == "pure"
    assert "no compiled library" in status["reason"]


def test_this_run_uses_the_build_it_says() -> None:
    """The mode of this test run: pure under USTACK_NO_ACCEL=1, compiled in
    CI (a CI whose compiled build silently failed fails here), and every
    module of the manifest loaded the way accel_status() reports."""
    status = ustack.accel_status()
    if NO_ACCEL:
        assert status["mode"] == "pure" and status["reason"] == "USTACK_NO_ACCEL is set"
    elif IN_CI:
        assert status["mode"] == "compiled", f"CI must test the compiled build: {status}"
        # the default set (setup.py HOT_DIRS), one module of each folder
        modules = status["modules"]
        assert isinstance(modules, list)
        assert {"ustack.tcp.connection", "ustack.tcp.congestion.cubic", "ustack.wire.tcp",
                "ustack.net.ipv4", "ustack.driver.tcp_table",
                "ustack.link.af_packet"} <= set(modules), modules
    manifest = ROOT / "ustack" / "_accel_manifest.json"
    names = sorted(json.loads(manifest.read_text())["modules"]) if manifest.exists() else []
    if status["mode"] == "compiled":
        assert status["modules"] == names and names
    for name in names or ["ustack.tcp.connection"]:
        module = importlib.import_module(name)
        compiled = not str(module.__file__).endswith(".py")
        assert compiled == (status["mode"] == "compiled"), (name, module.__file__, status)


@pytest.mark.parametrize("name", ["ustack.tcp.connection", "ustack.wire.tcp"])
def test_pure_subprocess_really_is_pure(name: str) -> None:
    env = dict(os.environ, USTACK_NO_ACCEL="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", f"import {name} as m; print(m.__file__)"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith(".py")
