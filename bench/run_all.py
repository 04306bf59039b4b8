#!/usr/bin/env python3
"""The issue-14 benchmark suite: every bench ``--runs`` times, one table.

Runs ``rr.py``, ``cps.py``, ``idle.py``, ``throughput.py`` (default GSO mode
and the exact wire, ``--no-gso``) and ``loss.py`` (short settings) as
subprocesses with ``--json``, interleaved run by run (run 1 of each bench,
then run 2 of each, ...) so that the machine's noise spreads over all of
them.  Every figure is reported as min / median / max over the runs, with the
acceptance target of issue 14 beside it, in ``bench/results.md`` (and
``bench/results.png`` when matplotlib, the ``plot`` extra, is importable).
The ratios are ustack / kernel measured side by side inside one bench run.

    sudo python3 bench/run_all.py [--runs 3] [--quick] [--json] [--only rr,cps]

Needs root (namespaces, AF_PACKET, nft for loss).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from stats import fmt_number, loadavg, markdown_table, spread  # noqa: E402

BENCHES = ("rr", "cps", "idle", "throughput", "throughput_exact", "loss")


@dataclass(frozen=True)
class Figure:
    """One line of the table: where a number is in a bench's JSON."""

    bench: str
    name: str
    unit: str
    get: Callable[[dict[str, Any]], float | None]
    #: the issue-14 acceptance target ("" when the figure is context)
    target: str = ""
    #: met(median) for figures with a target
    check: Callable[[float], bool] | None = None


def _dig(doc: dict[str, Any], *path: str) -> float | None:
    cur: Any = doc
    for key in path:
        if not isinstance(cur, dict) or key not in cur:
            return None
        cur = cur[key]
    return float(cur) if isinstance(cur, int | float) else None


Getter = Callable[[dict[str, Any]], float | None]


def at(*path: str, scale: float = 1.0) -> Getter:
    """A getter for the number at ``path`` in a bench's JSON (times ``scale``)."""
    def get(doc: dict[str, Any]) -> float | None:
        value = _dig(doc, *path)
        return None if value is None else value * scale
    return get


def _at_most(limit: float) -> Callable[[float], bool]:
    return lambda v: v <= limit


def _at_least(limit: float) -> Callable[[float], bool]:
    return lambda v: v >= limit


def _below(limit: float) -> Callable[[float], bool]:
    return lambda v: v < limit


def figures(idle_counts: list[int]) -> list[Figure]:
    out = [
        Figure("rr", "rr 1 B p50 ustack/kernel (uvloop)", "x",
               at("ratios", "uvloop_1", "p50_us"), "<= 1.5", _at_most(1.5)),
        Figure("rr", "rr 1 B p99 ustack/kernel (uvloop)", "x", at("ratios", "uvloop_1", "p99_us")),
        Figure("rr", "rr 1 B p50 ustack/kernel (asyncio)", "x",
               at("ratios", "asyncio_1", "p50_us")),
        Figure("rr", "rr 1 KB p50 ustack/kernel (uvloop)", "x",
               at("ratios", "uvloop_1024", "p50_us")),
    ]
    for size in ("1", "1024"):
        for loop in ("ustack-uvloop", "kernel-uvloop", "ustack-asyncio", "kernel-asyncio"):
            for q, label in (("p50_us", "p50"), ("p99_us", "p99"), ("p999_us", "p99.9")):
                out.append(Figure("rr", f"rr {size} B {label} {loop}", "us",
                                  at("results", loop, size, q)))
    out.append(Figure("cps", "cps close 32 in flight, ustack client / kernel", "x",
                      at("results", "client_close_32", "ratio"), ">= 1.0", _at_least(1.0)))
    for side in ("client", "server"):
        for mode in ("close", "request"):
            for inflight in ("seq", "32", "256"):
                key = f"{side}_{mode}_{inflight}"
                if key != "client_close_32":
                    out.append(Figure("cps", f"cps {key} ustack/kernel", "x",
                                      at("results", key, "ratio")))
                for impl in ("ustack", "kernel"):
                    out.append(Figure("cps", f"cps {key} {impl}", "conn/s",
                                      at("results", key, impl, "median")))
    big = max(idle_counts) if idle_counts else 0
    for n in idle_counts:
        k = str(n)
        tgt = n == big and n >= 100_000
        out += [
            Figure("idle", f"idle {n}: ustack RSS per connection", "KiB",
                   at("results", k, "ustack", "rss_per_conn", scale=1 / 1024),
                   "<= 4 (100k)" if tgt else "", _at_most(4) if tgt else None),
            Figure("idle", f"idle {n}: same code on kernel sockets, process RSS per conn",
                   "KiB", at("results", k, "kernel", "rss_per_conn", scale=1 / 1024)),
            Figure("idle", f"idle {n}: ustack ss -tan wall time", "s",
                   at("results", k, "ustack", "ss", "spread", "median"),
                   "< 1.5 (100k)" if tgt else "", _below(1.5) if tgt else None),
            Figure("idle", f"idle {n}: iproute2 ss -tan over the kernel's", "s",
                   at("results", k, "kernel", "ss", "spread", "median")),
            Figure("idle", f"idle {n}: time to open, ustack", "s",
                   at("results", k, "ustack", "open_seconds")),
            Figure("idle", f"idle {n}: time to open, kernel", "s",
                   at("results", k, "kernel", "open_seconds")),
        ]
    for bench, mode in (("throughput", "default (GSO)"), ("throughput_exact", "exact wire")):
        exact = bench == "throughput_exact"
        for key, label in (("ustack_to_kernel", "ustack->kernel"),
                           ("kernel_to_ustack", "kernel->ustack")):
            out.append(Figure(bench, f"bulk {mode} {label} / kernel-to-kernel", "x",
                              at(key, "ratio_to_kernel"), "" if exact else ">= 0.35",
                              None if exact else _at_least(0.35)))
            out.append(Figure(bench, f"bulk {mode} {label}", "MB/s", at(key, "mbps"),
                              ">= 200" if exact else "", _at_least(200) if exact else None))
        out.append(Figure(bench, f"bulk {mode} kernel-to-kernel", "MB/s",
                          at("kernel_to_kernel", "mbps")))
    out.append(Figure("loss", "loss: ustack/kernel MB/s (first loss rate, first cc)", "x",
                      _loss_ratio))
    return out


def _loss_ratio(doc: dict[str, Any]) -> float | None:
    runs = doc.get("runs") or []
    if not runs or runs[0].get("ratio") is None:
        return None
    return float(runs[0]["ratio"])


# ------------------------------------------------------------------ running
def bench_argv(bench: str, quick: bool, idle_counts: list[int], rr_count: int | None,
               cc: str) -> list[str]:
    py = [sys.executable]
    # each bench run alternates ustack and kernel once (--rounds 1): the
    # suite's --runs give the spread
    if bench == "rr":
        extra = ["--quick"] if quick else ["--rounds", "1"]
        if rr_count:
            extra += ["--count", str(rr_count)]
        return [*py, str(HERE / "rr.py"), "--json", *extra]
    if bench == "cps":
        return [*py, str(HERE / "cps.py"), "--json", *(["--quick"] if quick else
                                                       ["--rounds", "1"])]
    if bench == "idle":
        return [*py, str(HERE / "idle.py"), "--json", "--conns",
                ",".join(map(str, idle_counts)), *(["--quick"] if quick else [])]
    if bench in ("throughput", "throughput_exact"):
        mb = "20" if quick else "200"
        gso = "--gso" if bench == "throughput" else "--no-gso"
        return [*py, str(HERE / "throughput.py"), "--json", "--mb", mb, gso, "--cc", cc]
    if bench == "loss":
        return [*py, str(HERE / "loss.py"), "--json", "--mb", "2" if quick else "10",
                "--loss", "1", "--cc", cc, "--timeout", "90"]
    raise ValueError(bench)


def run_bench(argv: list[str], timeout: float) -> tuple[dict[str, Any] | None, str]:
    """One bench process; (its JSON, "") or (None, the reason)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(HERE.parent) + (
        os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout:g} s"
    start = proc.stdout.find("{")
    if start < 0:
        return None, f"exit {proc.returncode}: {proc.stderr.strip()[-800:]}"
    try:
        doc: dict[str, Any] = json.loads(proc.stdout[start:])
    except ValueError as exc:
        return None, f"exit {proc.returncode}, unreadable JSON ({exc}): {proc.stderr[-400:]}"
    if proc.returncode != 0:
        doc["exit_status"] = proc.returncode
    return doc, ""


def collect(docs: dict[str, list[dict[str, Any]]], figs: list[Figure]) -> list[dict[str, Any]]:
    rows = []
    for f in figs:
        values = [v for d in docs.get(f.bench, []) if (v := f.get(d)) is not None]
        if not values:
            continue
        s = spread(values)
        rows.append({"bench": f.bench, "figure": f.name, "unit": f.unit, "values": values,
                     **{k: s[k] for k in ("min", "median", "max")}, "target": f.target,
                     "met": (f.check(s["median"]) if f.check is not None else None)})
    return rows


def render_markdown(doc: dict[str, Any]) -> str:
    """bench/results.md: the table (targets first), then the context."""
    head = [
        "# ustack benchmark results (issue 14)",
        "",
        f"Written by `bench/run_all.py` at {doc['started']} (commit {doc['commit']}), "
        f"{doc['runs']} run(s) per bench{' (--quick)' if doc['quick'] else ''}; "
        f"load average at the start {doc['loadavg_start']}, at the end {doc['loadavg_end']}. "
        "Ratios are ustack / kernel with the same asyncio code, measured side by side "
        "inside one bench run; min / median / max over the runs. The machine is shared "
        "and noisy: compare ratios, not absolute figures.",
        "",
        f"Command: `{doc['command']}`",
        "",
    ]

    def table(rows: list[dict[str, Any]]) -> str:
        return markdown_table(
            ["figure", "unit", "min", "median", "max", "target", "met (median)"],
            [[r["figure"], r["unit"], fmt_number(r["min"]), fmt_number(r["median"]),
              fmt_number(r["max"]), r["target"] or "",
              "" if r["met"] is None else ("yes" if r["met"] else "**no**")]
             for r in rows])

    targets = [r for r in doc["figures"] if r["target"]]
    context = [r for r in doc["figures"] if not r["target"]]
    parts = head + ["## Acceptance figures", "", table(targets), "", "## All figures", "",
                    table(context)]
    if doc["failures"]:
        parts += ["", "## Bench runs that failed", ""]
        parts += [f"- {name} run {i}: {why}" for name, i, why in doc["failures"]]
    parts += ["", "Per-bench wall times (s): " + ", ".join(
        f"{k} {fmt_number(v)}" for k, v in doc["wall_seconds"].items()), ""]
    return "\n".join(parts)


def render_png(doc: dict[str, Any], path: Path) -> bool:
    """A bar chart of the ustack/kernel ratios (median, min..max whiskers);
    False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rows = [r for r in doc["figures"] if r["unit"] == "x"]
    if not rows:
        return False
    fig, ax = plt.subplots(figsize=(10, 0.35 * len(rows) + 1.5))
    ys = range(len(rows))
    med = [r["median"] for r in rows]
    lo = [r["median"] - r["min"] for r in rows]
    hi = [r["max"] - r["median"] for r in rows]
    colors = ["tab:green" if r["met"] else ("tab:red" if r["met"] is False else "tab:blue")
              for r in rows]
    ax.barh(list(ys), med, xerr=[lo, hi], color=colors, capsize=3)
    ax.set_yticks(list(ys), [r["figure"] for r in rows], fontsize=7)
    ax.axvline(1.0, color="black", linewidth=0.8)
    if min(r["min"] for r in rows) > 0:
        ax.set_xscale("log")  # ratios from ~0.02 (exact wire) to ~20 (rr p99)
    ax.invert_yaxis()
    ax.set_xlabel("ustack / kernel (median of runs; whiskers min..max)")
    ax.set_title(f"ustack vs kernel, {doc['runs']} run(s), {doc['started']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(HERE.parent), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        out = ""
    return out or "unknown"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3, help="runs of every bench")
    p.add_argument("--only", default=",".join(BENCHES), help="comma list of " +
                   ",".join(BENCHES))
    p.add_argument("--idle-conns", default="10000,100000",
                   help="idle.py's connection counts")
    p.add_argument("--rr-count", type=int, default=None, help="rr.py --count")
    p.add_argument("--cc", default="cubic",
                   help="the kernel's and ustack's congestion control in the bulk benches "
                   "(the host default is bbr; ustack's is cubic)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: one run, each bench's --quick, idle 1000 connections")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per bench run")
    p.add_argument("--out", default=str(HERE / "results.md"), help="the markdown table")
    p.add_argument("--png", default=None, help="the plot (default: --out with .png)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    if args.quick:
        args.runs = 1
        if args.idle_conns == p.get_default("idle_conns"):
            args.idle_conns = "1000"
    if os.geteuid() != 0:
        print("bench/run_all.py: needs root (namespaces, AF_PACKET)", file=sys.stderr)
        return 2
    benches = [b for b in args.only.split(",") if b]
    bad = [b for b in benches if b not in BENCHES]
    if bad:
        p.error(f"unknown bench(es) {bad}; choose from {BENCHES}")
    if "loss" in benches and shutil.which("nft") is None:
        print("bench/run_all.py: nft missing, skipping loss", file=sys.stderr)
        benches.remove("loss")
    idle_counts = [int(x) for x in args.idle_conns.split(",") if x]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load0 = loadavg()
    docs: dict[str, list[dict[str, Any]]] = {b: [] for b in benches}
    failures: list[tuple[str, int, str]] = []
    wall: dict[str, float] = {b: 0.0 for b in benches}
    loads: list[dict[str, Any]] = []
    for i in range(1, args.runs + 1):
        for b in benches:
            cmd = bench_argv(b, args.quick, idle_counts, args.rr_count, args.cc)
            print(f"run_all: run {i}/{args.runs} {b} (load {loadavg()})", file=sys.stderr,
                  flush=True)
            t0 = time.perf_counter()
            doc, why = run_bench(cmd, args.timeout)
            wall[b] += time.perf_counter() - t0
            loads.append({"bench": b, "run": i, "loadavg": loadavg()})
            if doc is None:
                failures.append((b, i, why))
                print(f"run_all: {b} run {i} failed: {why}", file=sys.stderr, flush=True)
            else:
                docs[b].append(doc)
    result: dict[str, Any] = {
        "bench": "run_all", "started": started, "commit": _commit(), "runs": args.runs,
        "quick": args.quick, "benches": benches, "command": " ".join(
            ["python3", "bench/run_all.py", *(argv if argv is not None else sys.argv[1:])]),
        "loadavg_start": load0, "loadavg_end": loadavg(), "loadavg_per_run": loads,
        "figures": collect(docs, figures(idle_counts)), "failures": failures,
        "wall_seconds": wall, "raw": docs,
    }
    out = Path(args.out)
    out.write_text(render_markdown(result))
    png = Path(args.png) if args.png else out.with_suffix(".png")
    result["png"] = str(png) if render_png(result, png) else None
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(out.read_text())
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
