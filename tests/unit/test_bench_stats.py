"""bench/stats.py: the percentile, summary and table helpers the benchmarks
share (issue 14).  numpy, where installed, is the independent reference for
the percentile."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ustack_bench_stats",
                                                  ROOT / "bench" / "stats.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


stats = _load()


def test_percentile_small_cases() -> None:
    assert stats.percentile([5.0], 50) == 5.0
    assert stats.percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert stats.percentile([4.0, 1.0, 3.0, 2.0], 0) == 1.0
    assert stats.percentile([4.0, 1.0, 3.0, 2.0], 100) == 4.0
    # 1..101: the 99th percentile is exactly the 100th value
    assert stats.percentile([float(x) for x in range(1, 102)], 99) == 100.0
    assert stats.percentile([1.0, 2.0], 25) == pytest.approx(1.25)


def test_percentile_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        stats.percentile([], 50)
    with pytest.raises(ValueError):
        stats.percentile([1.0], 101)
    with pytest.raises(ValueError):
        stats.percentile([1.0], -1)


def test_percentile_matches_numpy_linear() -> None:
    np = pytest.importorskip("numpy")
    rng = random.Random(14)
    for n in (1, 2, 3, 10, 999, 1000, 1001):
        data = [rng.expovariate(0.01) for _ in range(n)]
        for q in (0, 1, 50, 90, 99, 99.9, 100):
            assert stats.percentile(data, q) == pytest.approx(float(np.percentile(data, q)))


def test_latency_summary_fields() -> None:
    data = [float(x) for x in range(1000, 0, -1)]
    s = stats.latency_summary(data)
    assert s["count"] == 1000
    assert s["min_us"] == 1 and s["max_us"] == 1000
    assert s["p50_us"] == pytest.approx(500.5)
    assert s["p99_us"] == pytest.approx(990.01)
    assert s["p999_us"] == pytest.approx(999.001)
    assert s["mean_us"] == pytest.approx(500.5)


def test_spread_and_ratio() -> None:
    assert stats.spread([3, 1, 2]) == {"min": 1.0, "median": 2.0, "max": 3.0, "n": 3.0}
    assert stats.spread([4, 1]) == {"min": 1.0, "median": 2.5, "max": 4.0, "n": 2.0}
    with pytest.raises(ValueError):
        stats.spread([])
    assert stats.ratio(3.0, 2.0) == 1.5
    assert stats.ratio(None, 2.0) is None
    assert stats.ratio(1.0, 0.0) is None


def test_fmt_number() -> None:
    assert stats.fmt_number(None) == "-"
    assert stats.fmt_number(0.0) == "0"
    assert stats.fmt_number(1.23456) == "1.23"
    assert stats.fmt_number(0.012345) == "0.0123"
    assert stats.fmt_number(123.4) == "123"
    assert stats.fmt_number(16300.0) == "16,300"
    assert stats.fmt_number(float("nan")) == "-"


def test_markdown_table() -> None:
    text = stats.markdown_table(["figure", "min", "target"],
                                [["rr p50 | 1 B", "1.5", "≤ 1.5x"], ["cps", "0.36", "-"]])
    lines = text.splitlines()
    assert lines[0] == "| figure | min | target |"
    assert lines[1] == "|---|---:|---|"
    assert lines[2] == "| rr p50 \\| 1 B | 1.5 | ≤ 1.5x |"
    assert len(lines) == 4 and text.endswith("\n")
    with pytest.raises(ValueError):
        stats.markdown_table(["a", "b"], [["only one"]])


def _run_all() -> ModuleType:
    import sys

    sys.path.insert(0, str(ROOT / "bench"))  # run_all imports its sibling stats
    try:
        spec = importlib.util.spec_from_file_location("ustack_bench_run_all",
                                                      ROOT / "bench" / "run_all.py")
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod  # (its dataclass looks its module up)
        spec.loader.exec_module(mod)
        return mod
    finally:
        sys.path.remove(str(ROOT / "bench"))


def test_run_all_collects_spreads_and_renders_the_table() -> None:
    ra = _run_all()
    rr = [{"ratios": {"uvloop_1": {"p50_us": v}}} for v in (1.2, 2.0, 1.6)]
    cps = [{"results": {"client_close_32": {"ratio": 0.5, "ustack": {"median": 10.0}}}}]
    idle = [{"results": {"100000": {"ustack": {"rss_per_conn": 3 * 1024.0,
                                               "ss": {"spread": {"median": 2.0}}}}}}]
    rows = ra.collect({"rr": rr, "cps": cps, "idle": idle}, ra.figures([10000, 100000]))
    by_name = {r["figure"]: r for r in rows}
    r = by_name["rr 1 B p50 ustack/kernel (uvloop)"]
    assert (r["min"], r["median"], r["max"], r["met"]) == (1.2, 1.6, 2.0, False)
    assert by_name["cps close 32 in flight, ustack client / kernel"]["met"] is False
    assert by_name["cps client_close_32 ustack"]["median"] == 10.0
    assert by_name["idle 100000: ustack RSS per connection"]["median"] == 3.0
    assert by_name["idle 100000: ustack RSS per connection"]["met"] is True
    assert by_name["idle 100000: ustack ss -tan wall time"]["met"] is False
    # figures no run produced are left out, not shown as zero
    assert "idle 10000: ustack RSS per connection" not in by_name
    doc = {"started": "now", "commit": "abc", "runs": 3, "quick": False,
           "loadavg_start": [1.0], "loadavg_end": [2.0], "command": "x", "figures": rows,
           "failures": [("loss", 2, "timed out")], "wall_seconds": {"rr": 1.0}}
    text = ra.render_markdown(doc)
    assert "| rr 1 B p50 ustack/kernel (uvloop) | x | 1.20 | 1.60 | 2.00 | <= 1.5 | **no** |" \
        in text
    assert "- loss run 2: timed out" in text
