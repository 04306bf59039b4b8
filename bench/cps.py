#!/usr/bin/env python3
"""Connections per second: ustack vs the kernel, the same asyncio code.

One lab (:class:`ustack.lab.Lab`), the roles of ``bench/aio_peer.py``:

* **ustack as client**: the server is ``aio_peer.py serve`` on kernel
  sockets (uvloop) in the peer namespace; the client ``aio_peer.py cps``
  runs in the stack namespace on ustack, then (same code, same veth) on
  kernel sockets;
* **ustack as server**: ``aio_peer.py serve`` runs in the stack namespace on
  ustack, then on kernel sockets; the client is ``aio_peer.py cps`` on
  kernel sockets (uvloop) in the peer namespace.

Each client measures every pair of mode (``close``: connect + close;
``request``: connect + 1-byte echo + close) and concurrency (sequential, 32
and 256 in flight).  ``--rounds`` alternations; per figure the min / median /
max over the rounds, and the ustack / kernel ratio of the medians (and per
round).  The client closes first, so TIME-WAIT stays on the client side; the
server listens on several ports so that the kernel client's TIME-WAIT never
runs out of 4-tuples.

    sudo python3 bench/cps.py [--quick] [--json] [--conns 3000] [--rounds 3]

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

from aio_lab import run_client, serving  # noqa: E402
from stats import loadavg, ratio, spread  # noqa: E402

from ustack.lab import Lab  # noqa: E402

PORTS = list(range(7101, 7109))
MODES = {"close": 0, "request": 1}


def _key(side: str, mode: str, inflight: int) -> str:
    return f"{side}_{mode}_{'seq' if inflight == 1 else inflight}"


def _collect(into: dict[str, dict[str, list[float]]], impl: str, side: str,
             res: dict[str, Any], errors: dict[str, int]) -> None:
    mode_of = {v: k for k, v in MODES.items()}
    for run in res["runs"]:
        key = _key(side, mode_of[run["request"]], run["inflight"])
        into.setdefault(key, {}).setdefault(impl, []).append(run["cps"])
        for name, n in run["errors"].items():
            errors[f"{impl} {key} {name}"] = errors.get(f"{impl} {key} {name}", 0) + n


def measure(lab: Lab, flavour: str, sides: list[str], inflights: list[int], conns: int,
            seq_conns: int, rounds: int) -> tuple[dict[str, dict[str, list[float]]],
                                                  dict[str, int]]:
    figures: dict[str, dict[str, list[float]]] = {}
    errors: dict[str, int] = {}
    cps_args = ["--ports", ",".join(map(str, PORTS)),
                "--requests", ",".join(str(v) for v in MODES.values()),
                "--inflights", ",".join(map(str, inflights)),
                "--conns", str(conns), "--seq-conns", str(seq_conns)]
    impls = {"ustack": f"ustack-{flavour}", "kernel": f"kernel-{flavour}"}
    for _ in range(rounds):
        if "client" in sides:
            with serving(lab, PORTS):
                for impl, loop in impls.items():
                    res = run_client(lab, loop, "cps", ["--host", lab.peer_address, *cps_args])
                    _collect(figures, impl, "client", res, errors)
        if "server" in sides:
            for impl, loop in impls.items():
                with serving(lab, PORTS, in_stack=True, loop=loop):
                    res = run_client(lab, f"kernel-{flavour}", "cps",
                                     ["--host", lab.stack_ip, *cps_args], in_stack=False)
                _collect(figures, impl, "server", res, errors)
    return figures, errors


def summarise(figures: dict[str, dict[str, list[float]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, by_impl in figures.items():
        entry: dict[str, Any] = {impl: spread(vals) | {"runs": vals}
                                 for impl, vals in by_impl.items()}
        us, k = by_impl.get("ustack"), by_impl.get("kernel")
        if us and k:
            entry["ratio"] = ratio(entry["ustack"]["median"], entry["kernel"]["median"])
            entry["ratio_per_round"] = [ratio(a, b) for a, b in zip(us, k, strict=False)]
        out[key] = entry
    return out


def summary_line(doc: dict[str, Any]) -> str:
    parts = []
    for key, e in doc["results"].items():
        if "ustack" in e and "kernel" in e:
            parts.append(f"{key} {e['ustack']['median']:.0f}/{e['kernel']['median']:.0f}"
                         f" ({e['ratio']:.2f}x)")
    return ("cps ustack/kernel conn/s: " + "; ".join(parts)
            + f" (load {doc['loadavg']})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--conns", type=int, default=3000, help="connections per concurrent run")
    p.add_argument("--seq-conns", type=int, default=1000, help="connections per sequential run")
    p.add_argument("--inflights", default="1,32,256")
    p.add_argument("--sides", default="client,server",
                   help="client (ustack connects), server (ustack accepts)")
    p.add_argument("--flavour", choices=("uvloop", "asyncio"), default="uvloop",
                   help="the loop under both the ustack and the kernel code")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="a few-second run")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--name", default=None, help="lab name (default b14cps<pid>)")
    args = p.parse_args(argv)
    if args.quick:
        args.conns, args.seq_conns, args.rounds = 300, 100, 1
    inflights = [int(x) for x in args.inflights.split(",")]
    sides = args.sides.split(",")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    lab = Lab.create(args.name or f"b14cps{os.getpid() % 100000}")
    load0 = loadavg()
    lab.up(owner_pid=os.getpid())
    try:
        figures, errors = measure(lab, args.flavour, sides, inflights, args.conns,
                                  args.seq_conns, args.rounds)
    finally:
        lab.down()
    doc = {"bench": "cps", "flavour": args.flavour, "conns": args.conns,
           "seq_conns": args.seq_conns, "rounds": args.rounds, "inflights": inflights,
           "results": summarise(figures), "errors": errors, "loadavg": load0,
           "loadavg_end": loadavg()}
    if args.json:
        print(json.dumps(doc, indent=1))
    else:
        for key, e in doc["results"].items():
            us, k = e.get("ustack"), e.get("kernel")
            line = f"{key:22s}"
            for name, s in (("ustack", us), ("kernel", k)):
                if s:
                    line += (f"  {name} {s['median']:8.0f}/s"
                             f" [{s['min']:.0f}..{s['max']:.0f}]")
            if e.get("ratio") is not None:
                line += f"  ratio {e['ratio']:.2f}x"
            print(line)
        if errors:
            print("errors:", errors)
        print(summary_line(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
