#!/usr/bin/env python3
"""Request/response latency: ustack vs the kernel, the same asyncio code.

One lab (:class:`ustack.lab.Lab`): the echo server is ``bench/aio_peer.py
serve`` on the kernel's sockets (uvloop) in the peer namespace, the same
process for every client.  The client is ``bench/aio_peer.py rr`` (one
connection, write N bytes, ``readexactly(N)``, repeat) started in the *stack*
namespace, so every client crosses the same veth into the peer namespace:

* ``ustack-uvloop`` / ``ustack-asyncio``: ``ustack.loop_factory`` (the
  stack drives the stack-side veth through AF_PACKET; that veth has no kernel
  address meanwhile);
* ``kernel-uvloop`` / ``kernel-asyncio``: plain loops on kernel sockets; the
  stack-side veth gets the stack's address in the kernel for the run only.

The configurations alternate ``--rounds`` times (noise hits them alike); the
samples of all rounds are pooled per configuration.  Latencies in µs;
TCP_NODELAY on every socket.  The ratio lines compare each ustack loop with
the kernel on the same loop type.

    sudo python3 bench/rr.py [--quick] [--json] [--sizes 1,1024] [--count 20000]

Needs root (namespaces, AF_PACKET).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from aio_lab import run_client, start_server, stop_server  # noqa: E402
from aio_peer import LOOPS  # noqa: E402
from stats import latency_summary, loadavg, ratio  # noqa: E402

from ustack.lab import Lab  # noqa: E402

PORT = 7001


def measure(lab: Lab, loops: list[str], sizes: list[int], count: int, warmup: int,
            rounds: int) -> dict[str, Any]:
    samples: dict[str, dict[int, list[float]]] = {lp: {s: [] for s in sizes} for lp in loops}
    per_round: dict[str, dict[int, list[float]]] = {lp: {s: [] for s in sizes} for lp in loops}
    server = start_server(lab, [PORT])
    try:
        for _ in range(rounds):
            for lp in loops:
                res = run_client(lab, lp, "rr", ["--host", lab.peer_address, "--ports",
                                           str(PORT), "--sizes", ",".join(map(str, sizes)),
                                           "--count", str(count), "--warmup", str(warmup)])
                for s in sizes:
                    got = res["sizes"][str(s)]
                    samples[lp][s] += got
                    per_round[lp][s].append(latency_summary(got)["p50_us"])
    finally:
        stop_server(server)
    out: dict[str, Any] = {}
    for lp in loops:
        out[lp] = {}
        for s in sizes:
            summary: dict[str, Any] = dict(latency_summary(samples[lp][s]))
            summary["round_p50_us"] = per_round[lp][s]
            out[lp][str(s)] = summary
    return out


def ratios(results: dict[str, Any], sizes: list[int]) -> dict[str, dict[str, float | None]]:
    """ustack / kernel on the same loop type, per size and percentile."""
    out: dict[str, dict[str, float | None]] = {}
    for flavour in ("uvloop", "asyncio"):
        us, k = results.get(f"ustack-{flavour}"), results.get(f"kernel-{flavour}")
        if us is None or k is None:
            continue
        for s in sizes:
            out[f"{flavour}_{s}"] = {q: ratio(us[str(s)][q], k[str(s)][q])
                                     for q in ("p50_us", "p99_us", "p999_us")}
    return out


def summary_line(doc: dict[str, Any]) -> str:
    parts = []
    res = doc["results"]
    for s in doc["sizes"]:
        for lp in doc["loops"]:
            r = res[lp][str(s)]
            parts.append(f"{lp} {s}B p50 {r['p50_us']:.0f}/p99 {r['p99_us']:.0f}us")
    for key, r in doc["ratios"].items():
        if r["p50_us"] is not None:
            parts.append(f"ratio {key} p50 {r['p50_us']:.2f}x")
    return "rr: " + "; ".join(parts) + f" (load {doc['loadavg']})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1,1024", help="request sizes in bytes (comma list)")
    p.add_argument("--count", type=int, default=20000, help="exchanges per size and round")
    p.add_argument("--warmup", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=3, help="alternations of the loops")
    p.add_argument("--loops", default=",".join(LOOPS), help="comma list of " + ",".join(LOOPS))
    p.add_argument("--quick", action="store_true", help="a few-second run")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--name", default=None, help="lab name (default b14rr<pid>)")
    args = p.parse_args(argv)
    if args.quick:
        args.count, args.warmup, args.rounds = 1000, 100, 1
    sizes = [int(x) for x in args.sizes.split(",")]
    loops = args.loops.split(",")
    bad = [lp for lp in loops if lp not in LOOPS]
    if bad:
        p.error(f"unknown loop(s) {bad}; choose from {LOOPS}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    lab = Lab.create(args.name or f"b14rr{os.getpid() % 100000}")
    load0 = loadavg()
    lab.up(owner_pid=os.getpid())
    try:
        results = measure(lab, loops, sizes, args.count, args.warmup, args.rounds)
    finally:
        lab.down()
    doc = {"bench": "rr", "sizes": sizes, "loops": loops, "count": args.count,
           "warmup": args.warmup, "rounds": args.rounds, "results": results,
           "ratios": ratios(results, sizes), "loadavg": load0, "loadavg_end": loadavg()}
    if args.json:
        print(json.dumps(doc, indent=1))
    else:
        for s in sizes:
            for lp in loops:
                r = results[lp][str(s)]
                print(f"{lp:15s} {s:5d} B  p50 {r['p50_us']:7.1f}  p99 {r['p99_us']:7.1f}  "
                      f"p99.9 {r['p999_us']:7.1f} us  (n={int(r['count'])})")
        for key, r in doc["ratios"].items():
            print(f"ustack/kernel {key:14s} " + "  ".join(
                f"{q[:-3]} {v:.2f}x" for q, v in r.items() if v is not None))
        print(summary_line(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
