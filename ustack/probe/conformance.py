"""Run the scenario catalogue against a peer and render the comparison table.

Each scenario runs in a fresh lab (namespaces named ``hp…``, always torn
down), so sysctls, TIME-WAIT sockets and rate limiters never leak between
scenarios.  Results are recorded as JSON next to this module
(``conformance_results.json``) and rendered into ``docs/conformance.md``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ustack.lab import Lab
from ustack.probe.peers import DEFAULT_KERNEL_CC
from ustack.probe.scenarios import SCENARIOS, Scenario
from ustack.probe.script import ScriptError, parse_script, run_script
from ustack.probe.session import probe_session

RESULTS_PATH = Path(__file__).with_name("conformance_results.json")
#: timing floor for the suite: wider than packetdrill's 4 ms, since the two
#: cores of the test machine are shared (the 12.5 % rule still applies)
SUITE_TOLERANCE = 0.025

_counter = itertools.count(1)


def lab_name(prefix: str | None = None) -> str:
    """A short unique lab name (namespaces ``NAME-peer``/``NAME-stack``; the
    veth names must stay within 15 characters)."""
    base = prefix or f"hp{os.getpid() % 0xFFFF:x}"
    return f"{base}c{next(_counter)}"


@dataclass(slots=True)
class Result:
    scenario: str
    peer: str
    status: str  # pass, fail, n/a (the peer has no API for an action), error
    detail: str = ""
    seconds: float = 0.0


async def run_scenario(scenario: Scenario, kind: str, *,
                       tolerance: float = SUITE_TOLERANCE,
                       kernel_cc: str = DEFAULT_KERNEL_CC) -> Result:
    """Run one scenario against a fresh lab; never raises for a failure."""
    started = time.monotonic()
    lab = Lab.create(lab_name())
    await asyncio.to_thread(lab.up)
    try:
        script = parse_script(scenario.script, f"scenario {scenario.id}")
        async with probe_session(lab, kind, kernel_cc=kernel_cc) as (peer, probe):
            try:
                await run_script(script, peer, probe, tolerance_floor=tolerance)
            except ScriptError as exc:
                # a peer that cannot perform an action (no API for it) is "n/a"
                status = "n/a" if "NotImplementedError" in str(exc) else "fail"
                return Result(scenario.id, kind, status, str(exc),
                              time.monotonic() - started)
        return Result(scenario.id, kind, "pass", "", time.monotonic() - started)
    except Exception as exc:  # a peer that cannot start is an error, not a crash
        return Result(scenario.id, kind, "error", f"{type(exc).__name__}: {exc}",
                      time.monotonic() - started)
    finally:
        await asyncio.to_thread(lab.down)


def load_results(path: Path = RESULTS_PATH) -> dict[str, dict[str, dict[str, object]]]:
    """``{scenario id: {peer: result dict}}`` as recorded."""
    try:
        data: dict[str, dict[str, dict[str, object]]] = json.loads(path.read_text())
        return data
    except (OSError, ValueError):
        return {}


#: key of the run metadata in the results file (not a scenario id)
META = "_meta"


def save_results(results: list[Result], path: Path = RESULTS_PATH, *,
                 kernel_cc: str = DEFAULT_KERNEL_CC) -> None:
    data = load_results(path)
    for r in results:
        data.setdefault(r.scenario, {})[r.peer] = asdict(r)
    if any(r.peer == "kernel" for r in results):
        data.setdefault(META, {})["kernel"] = {"congestion": kernel_cc}
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def _code(text: str) -> str:
    """A markdown code span (segment lines hold ``<...>`` and ``|``)."""
    return "`" + " ".join(text.split()).replace("|", "\\|").replace("`", "'") + "`"


def _first_problem(detail: str) -> str:
    """The 'expected/actual' lines of a failure, compacted for a table cell."""
    lines = [ln.strip() for ln in detail.splitlines()]
    keep = [ln for ln in lines if ln.startswith(("expected:", "actual:", "the ")) or
            "Error" in ln.split(":", 1)[0]]
    if not keep:
        keep = lines[1:2] or [detail]
    return "; ".join(_code(k) for k in keep[:2])


def cell(result: dict[str, object] | None) -> str:
    if result is None:
        return "not run"
    status = str(result.get("status"))
    if status == "pass":
        return "pass"
    return f"**{status.upper()}**: {_first_problem(str(result.get('detail', '')))}"


def kernel_cc(data: dict[str, dict[str, dict[str, object]]] | None = None) -> str:
    """The congestion control the kernel results were recorded with."""
    data = load_results() if data is None else data
    return str(data.get(META, {}).get("kernel", {}).get("congestion", "not recorded (bbr)"))


def render_table(data: dict[str, dict[str, dict[str, object]]] | None = None, *,
                 only: set[str] | None = None) -> str:
    """The markdown table: scenario, RFC, Linux behaviour + result, ustack."""
    data = load_results() if data is None else data
    cc = kernel_cc(data)
    rows = [f"| # | scenario | RFC | Linux (expected) | kernel ({cc}) | ustack | notes |",
            "|---|---|---|---|---|---|---|"]
    for s in SCENARIOS:
        if only and s.id not in only:
            continue
        res = data.get(s.id, {})
        rows.append(f"| {s.id} | {s.title} | {s.rfc} | {_code(s.linux)} "
                    f"| {cell(res.get('kernel'))} | {cell(res.get('ustack'))} "
                    f"| {s.ustack_note} |")
    return "\n".join(rows)


def summary(data: dict[str, dict[str, dict[str, object]]] | None = None) -> str:
    data = load_results() if data is None else data
    parts = []
    for kind in ("kernel", "ustack"):
        statuses = [str(data.get(s.id, {}).get(kind, {}).get("status", "not run"))
                    for s in SCENARIOS]
        parts.append(f"{kind}: {statuses.count('pass')}/{len(SCENARIOS)} pass")
    return ", ".join(parts)
