"""tests/conftest.py: USTACK_REQUIRE_NETNS=1 turns skips into failures; an
empty run exits non-zero."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"


def _pytest(tmp: Path, require: bool) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "USTACK_REQUIRE_NETNS"}
    if require:
        env["USTACK_REQUIRE_NETNS"] = "1"
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-p", "no:randomly", "--rootdir", str(tmp), "-c", os.devnull,
                           str(tmp)], capture_output=True, text=True, env=env, timeout=120)


def _suite(tmp: Path) -> None:
    shutil.copy(CONFTEST, tmp / "conftest.py")
    (tmp / "test_x.py").write_text(
        "import pytest\n"
        "def test_ok():\n    pass\n"
        "def test_skips():\n    pytest.skip('no netns here')\n"
        "@pytest.mark.skip(reason='marked')\ndef test_marked():\n    pass\n"
        "@pytest.mark.xfail(reason='known')\ndef test_xfail():\n    assert False\n")


def test_skips_pass_without_flag(tmp_path: Path) -> None:
    _suite(tmp_path)
    proc = _pytest(tmp_path, require=False)
    assert proc.returncode == 0, proc.stdout
    assert "1 passed, 2 skipped, 1 xfailed" in proc.stdout


def test_skips_fail_with_flag(tmp_path: Path) -> None:
    _suite(tmp_path)
    proc = _pytest(tmp_path, require=True)
    assert proc.returncode == 1, proc.stdout
    # a skip in setup (marker, fixture) becomes an error, one in the test body a failure
    assert "1 failed, 1 passed, 1 xfailed, 1 error" in proc.stdout
    assert "no netns here" in proc.stdout and "USTACK_REQUIRE_NETNS=1" in proc.stdout


def test_no_tests_collected_is_an_error(tmp_path: Path) -> None:
    shutil.copy(CONFTEST, tmp_path / "conftest.py")
    assert _pytest(tmp_path, require=True).returncode == 5


def test_module_skipped_at_collection_fails_with_flag(tmp_path: Path) -> None:
    """pytest.importorskip at module level skips during collection, where
    pytest_runtest_makereport never runs: it must still fail CI."""
    shutil.copy(CONFTEST, tmp_path / "conftest.py")
    (tmp_path / "test_ok.py").write_text("def test_ok():\n    pass\n")
    (tmp_path / "test_gone.py").write_text(
        "import pytest\npytest.importorskip('ustack_no_such_module')\n"
        "def test_never():\n    pass\n")
    assert _pytest(tmp_path, require=False).returncode == 0
    proc = _pytest(tmp_path, require=True)
    assert proc.returncode != 0, proc.stdout
    assert "test_gone.py" in proc.stdout and "USTACK_REQUIRE_NETNS=1" in proc.stdout
    assert "ustack_no_such_module" in proc.stdout
