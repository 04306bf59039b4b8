"""Test-suite policy, and helpers shared by several test modules.

``USTACK_REQUIRE_NETNS=1`` (set by ``.ci/run``): every skipped test is
reported as a failure, so CI can never pass by skipping the tests that need
root, namespaces or tools (tshark, ping).  Expected failures (xfail) are left
alone.  A module skipped at collection time becomes a collection error.
pytest itself exits with code 5 when it collects no test at all.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable, Generator
from typing import Any

import pytest

REQUIRE_ENV = "USTACK_REQUIRE_NETNS"


def _required() -> bool:
    return os.environ.get(REQUIRE_ENV) == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[
        None, Any, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if not _required() or not report.skipped or hasattr(report, "wasxfail"):
        return
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    report.outcome = "failed"
    report.longrepr = (f"skipped under {REQUIRE_ENV}=1, which turns skips into failures "
                       f"(CI must not pass by skipping): {reason}")


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, Any, None]:
    """A module skipped while collected (``pytest.importorskip`` or
    ``pytest.skip(allow_module_level=True)``) never reaches
    ``pytest_runtest_makereport``: make it a collection error instead."""
    outcome = yield
    report: pytest.CollectReport = outcome.get_result()
    if not _required() or not report.skipped:
        return
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    report.outcome = "failed"
    report.longrepr = (f"{collector.nodeid} skipped while collected under {REQUIRE_ENV}=1, "
                       f"which turns skips into failures (CI must not pass by skipping): "
                       f"{reason}")


def _compiled_build() -> bool:
    import ustack

    return ustack.accel_status()["mode"] == "compiled"


#: the subprocess of a pure_python batch writes each test's verdict here
PURE_REPORT_ENV = "USTACK_PURE_REPORT"
#: verdicts of pure_python tests already run in a batch: nodeid -> (outcome, text)
_PURE_RESULTS: dict[str, tuple[str, str]] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """In a pure_python batch's subprocess: record every phase's verdict."""
    path = os.environ.get(PURE_REPORT_ENV)
    if not path or (report.when != "call" and report.passed):
        return
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"nodeid": report.nodeid, "when": report.when,
                            "outcome": report.outcome, "text": report.longreprtext}) + "\n")


def _run_pure_batch(item: pytest.Function) -> None:
    """Run, in one pure subprocess, every pure_python test of ``item``'s
    module not run yet (one interpreter and collection instead of one per
    test), and keep their verdicts in :data:`_PURE_RESULTS`."""
    batch = [i.nodeid for i in item.session.items
             if isinstance(i, pytest.Function) and i.get_closest_marker("pure_python")
             and i.path == item.path and i.nodeid not in _PURE_RESULTS]
    if item.nodeid not in batch:
        batch.append(item.nodeid)
    with tempfile.TemporaryDirectory() as tmp:
        report = os.path.join(tmp, "verdicts.jsonl")
        env = dict(os.environ, USTACK_NO_ACCEL="1", **{PURE_REPORT_ENV: report})
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--no-header",
             *batch], cwd=item.config.rootpath, env=env, capture_output=True, text=True,
            timeout=1800)
        seen: dict[str, tuple[str, str]] = {}
        if os.path.exists(report):
            with open(report, encoding="utf-8") as f:
                for line in f:
                    rec = json.loads(line)
                    old = seen.get(rec["nodeid"])
                    if old is None or old[0] == "passed" or rec["outcome"] == "failed":
                        seen[rec["nodeid"]] = (rec["outcome"], f"[{rec['when']}] {rec['text']}")
    for nodeid in batch:
        _PURE_RESULTS[nodeid] = seen.get(nodeid) or (
            "failed", f"no verdict from the pure subprocess (exit {proc.returncode}):\n"
                      f"{proc.stdout[-6000:]}{proc.stderr[-2000:]}")


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """``@pytest.mark.pure_python(reason)``: a test that needs what only
    interpreted code has (it spies on or patches a method of a compiled
    class, deep-copies compiled objects, passes fakes where compiled code
    checks a class) runs, on the compiled build, in a subprocess on the pure
    build (``USTACK_NO_ACCEL=1``): the same test and assertions, and its
    verdict is this test's (docs/compiled.md).  The marked tests of one
    module share one subprocess."""
    if pyfuncitem.get_closest_marker("pure_python") is None or not _compiled_build():
        return None
    if pyfuncitem.nodeid not in _PURE_RESULTS:
        _run_pure_batch(pyfuncitem)
    outcome, text = _PURE_RESULTS.pop(pyfuncitem.nodeid)
    if outcome == "skipped":
        pytest.skip(f"on the pure build (USTACK_NO_ACCEL=1): {text}")
    if outcome != "passed":
        pytest.fail(f"{pyfuncitem.nodeid} failed on the pure build (USTACK_NO_ACCEL=1):\n"
                    f"{text[-8000:]}", pytrace=False)
    return True


def pytest_report_header(config: pytest.Config) -> str | None:
    if _required():
        return f"{REQUIRE_ENV}=1: skipped tests count as failures"
    return None


async def _run_ss(*argv: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ustack", "ss", *argv,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    return out.decode()


@pytest.fixture
def run_ss() -> Callable[..., Awaitable[str]]:
    """``ustack ss ARGV...`` as a separate process, the way a user runs it
    from another shell; returns its stdout (exit status 0 asserted)."""
    return _run_ss
