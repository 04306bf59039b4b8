"""Small pure helpers shared by the benchmarks: percentiles, min/median/max
summaries, the load average, and the markdown table of ``bench/results.md``.

Stdlib only, no I/O except :func:`loadavg`; unit-tested in
``tests/unit/test_bench_stats.py``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from typing import Any


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of ``samples``, linearly interpolated
    between the two closest ranks (numpy's default "linear" method).

    Raises ValueError for an empty sequence or q outside [0, 100].
    """
    if not samples:
        raise ValueError("percentile of no samples")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile {q} outside [0, 100]")
    data = sorted(samples)
    pos = (len(data) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = math.ceil(pos)
    if lo == hi:
        return float(data[lo])
    return float(data[lo] + (data[hi] - data[lo]) * (pos - lo))


def latency_summary(samples_us: Sequence[float]) -> dict[str, float]:
    """p50/p99/p99.9, mean, min and max of latencies (µs), plus the count."""
    data = sorted(samples_us)
    return {
        "count": float(len(data)),
        "p50_us": percentile(data, 50),
        "p99_us": percentile(data, 99),
        "p999_us": percentile(data, 99.9),
        "mean_us": sum(data) / len(data),
        "min_us": float(data[0]),
        "max_us": float(data[-1]),
    }


def spread(values: Iterable[float]) -> dict[str, float]:
    """min / median / max (and the number of values) of several runs."""
    data = sorted(float(v) for v in values)
    if not data:
        raise ValueError("spread of no values")
    return {"min": data[0], "median": percentile(data, 50), "max": data[-1],
            "n": float(len(data))}


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is missing or b is zero."""
    if a is None or b is None or b == 0:
        return None
    return a / b


def loadavg() -> list[float]:
    """The 1, 5 and 15 minute load averages ([] where unavailable)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def fmt_number(value: float | None, digits: int = 3) -> str:
    """A figure for a table: ``digits`` significant digits, "-" for None."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if value == 0:
        return "0"
    mag = abs(value)
    if mag >= 10 ** digits:
        return f"{value:,.0f}"
    decimals = max(0, digits - 1 - math.floor(math.log10(mag)))
    return f"{value:.{decimals}f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table; cells are str()-ed, '|' escaped, numbers
    right-aligned (by the separator row)."""
    def cell(x: Any) -> str:
        return str(x).replace("|", "\\|").replace("\n", " ")

    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"row {row!r} has {len(row)} cells, header has {len(header)}")
    numeric = [any(cell(r[i]).strip() for r in rows)
               and all(_looks_numeric(cell(r[i])) for r in rows)
               for i in range(len(header))]
    lines = ["| " + " | ".join(cell(h) for h in header) + " |",
             "|" + "|".join("---:" if num else "---" for num in numeric) + "|"]
    lines += ["| " + " | ".join(cell(x) for x in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _looks_numeric(text: str) -> bool:
    t = text.replace(",", "").rstrip("x%").strip()
    if t in ("-", ""):
        return True
    try:
        float(t)
    except ValueError:
        return False
    return True
