"""bench/rr.py, cps.py and idle.py (issue 14) end to end with their smallest
settings, so that the benchmarks cannot rot.  Only the shape of their JSON is
checked (and that every connection asked for was made): never a figure, the
machine running CI is noisy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ustack.lab.fixtures import require_netns, unique_lab_name

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[2]


def _run(script: str, *args: str) -> dict[str, Any]:
    name = unique_lab_name()
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / script), "--json",
                           "--name", name, *args],
                          capture_output=True, text=True, timeout=200, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the lab is gone
    assert name not in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                      text=True).stdout
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


def _positive(x: Any) -> bool:
    return isinstance(x, int | float) and x > 0


def test_rr_quick_json_shape() -> None:
    require_netns()
    doc = _run("rr.py", "--quick", "--loops", "ustack-uvloop,kernel-uvloop", "--sizes", "1")
    assert doc["bench"] == "rr" and doc["sizes"] == [1]
    for loop in ("ustack-uvloop", "kernel-uvloop"):
        r = doc["results"][loop]["1"]
        assert r["count"] == doc["count"]
        assert all(_positive(r[k]) for k in ("p50_us", "p99_us", "p999_us"))
        assert r["p50_us"] <= r["p99_us"] <= r["p999_us"] <= r["max_us"]
    ratio = doc["ratios"]["uvloop_1"]
    assert set(ratio) == {"p50_us", "p99_us", "p999_us"} and _positive(ratio["p50_us"])
    assert isinstance(doc["loadavg"], list)


def test_cps_quick_json_shape() -> None:
    require_netns()
    doc = _run("cps.py", "--quick", "--sides", "client,server", "--inflights", "32")
    assert doc["bench"] == "cps"
    assert set(doc["results"]) == {f"{side}_{mode}_32" for side in ("client", "server")
                                   for mode in ("close", "request")}
    for entry in doc["results"].values():
        for impl in ("ustack", "kernel"):
            assert _positive(entry[impl]["median"])
            assert entry[impl]["min"] <= entry[impl]["median"] <= entry[impl]["max"]
        assert _positive(entry["ratio"])
    assert doc["errors"] == {}


def test_idle_quick_json_shape() -> None:
    require_netns()
    doc = _run("idle.py", "--quick", "--conns", "200")
    assert doc["bench"] == "idle" and doc["ok"] is True
    entry = doc["results"]["200"]
    for impl in ("ustack", "kernel"):
        r = entry[impl]
        assert r["conns"] == 200 and r["lost"] == 0 and r["errors"] == {}
        assert isinstance(r["rss_per_conn"], float)
        assert _positive(r["open_seconds"])
        assert r["ss"]["returncode"] == 0 and r["ss"]["established"] == 200
        assert _positive(r["ss"]["spread"]["median"])
