"""bench/loss.py --runs N: the summary groups the repeats of each (loss,
algorithm) pair and shows min/median/max; the build mode is reported."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ustack_bench_loss", ROOT / "bench" / "loss.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


loss = _load()


def _run(percent: float, cc: str, k: float, u: float, cpu: float,
         ok: bool = True) -> dict[str, Any]:
    return {"loss_percent": percent, "congestion": cc,
            "kernel": {"mbps": k, "ok": True, "retrans": 10},
            "ustack": {"mbps": u, "ok": ok, "retrans": 12, "cpu_seconds": cpu},
            "ratio": u / k}


def test_summary_min_median_max_per_pair() -> None:
    res = {"build": "compiled", "load_before": [1.0, 1.0, 1.0], "load_after": [2.0, 2.0, 2.0],
           "runs": [_run(1, "cubic", 100, 50, 0.3), _run(1, "reno", 100, 10, 0.9),
                    _run(1, "cubic", 100, 20, 0.5), _run(1, "cubic", 50, 40, 0.4)]}
    text = loss.summary(res)
    assert "compiled build" in text and "[1.0, 1.0, 1.0] -> [2.0, 2.0, 2.0]" in text
    (cubic,) = [ln for ln in text.splitlines() if "| cubic |" in ln]
    # ratios 0.5, 0.2, 0.8; kernel 50/100/100; ustack 20/40/50; cpu .3/.4/.5
    assert "| 3 |" in cubic
    assert "0.200/0.500/0.800" in cubic
    assert "50.0/100.0/100.0" in cubic and "20.0/40.0/50.0" in cubic
    assert "0.300/0.400/0.500" in cubic
    assert "(BAD)" not in cubic
    (reno,) = [ln for ln in text.splitlines() if "| reno |" in ln]
    assert "| 1 |" in reno and "0.100/0.100/0.100" in reno


def test_summary_shows_run_queue_wait_and_both_sides_counters() -> None:
    runs = [_run(1, "reno", 100, 50, 0.3), _run(1, "reno", 100, 20, 0.5),
            _run(1, "reno", 100, 40, 0.4)]
    for r, wait, tlp, rto in zip(runs, (0.2, 0.9, 0.5), (1, 9, 4), (0, 2, 1), strict=True):
        r["ustack"]["sched"] = {"on_cpu_s": 0.3, "runqueue_wait_s": wait}
        r["ustack"]["counters"] = {"TcpExtTCPLossProbes": tlp, "TcpExtTCPTimeouts": rto}
        r["kernel"]["counters"] = {"TcpExtTCPLossProbes": 2, "TcpExtTCPTimeouts": 0}
    text = loss.summary({"runs": runs, "nice": -5})
    assert "nice -5" in text
    header = [ln for ln in text.splitlines() if ln.startswith("| loss |")][0]
    assert "ustack run-queue s" in header and "TLP k/u" in header and "RTO k/u" in header
    (reno,) = [ln for ln in text.splitlines() if "| reno |" in ln]
    assert "0.200/0.500/0.900" in reno  # run-queue wait min/median/max
    assert "| 2/4 |" in reno and "| 0/1 |" in reno  # medians kernel/ustack


def test_summary_without_counters_shows_dashes() -> None:
    (line,) = [ln for ln in loss.summary({"runs": [_run(0, "bbr", 100, 50, 0.3)]}).splitlines()
               if "| bbr |" in ln]
    assert line.endswith("| -/- | -/- |")


def test_mib_delta_per_key_and_unknown() -> None:
    before = {k: 1 for k in loss.MIB_KEYS}
    after = {k: 3 for k in loss.MIB_KEYS}
    assert loss.mib_delta(before, after) == {k: 2 for k in loss.MIB_KEYS}
    assert loss.mib_delta(None, after) is None


def test_summary_flags_a_bad_transfer() -> None:
    res = {"runs": [_run(2, "bbr", 100, 50, 0.3), _run(2, "bbr", 100, 50, 0.3, ok=False)]}
    assert "(BAD)" in loss.summary(res)


def test_build_mode_names_pure_or_compiled() -> None:
    assert loss.build_mode() in ("pure", "compiled")
