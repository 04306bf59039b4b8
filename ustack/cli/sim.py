"""``ustack sim``: bulk TCP flows of real ustack Stacks over a simulated
bottleneck, in virtual time (docs/sim.md)."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "sim",
        help="run TCP flows over a simulated link in virtual time",
        description="Run one bulk TCP flow per --flows entry (each its own ustack Stack) "
        "through a simulated bottleneck to one receiver Stack, under a virtual clock. "
        "The same --seed gives byte-identical output.",
    )
    parser.add_argument("--rate", default="100mbit", help="bottleneck rate, tc units "
                        "(100mbit, 1gbit; 0 = unlimited) [100mbit]")
    parser.add_argument("--rtt", default="20ms", help="base round-trip time, split evenly "
                        "between the directions [20ms]")
    parser.add_argument("--queue", type=int, default=100, metavar="N",
                        help="drop-tail queue in packets [100]")
    parser.add_argument("--loss", default="0", help="Bernoulli loss on the data direction "
                        "(0.5%% or 0.005) [0]")
    parser.add_argument("--gilbert", metavar="P,R[,BAD[,GOOD]]",
                        help="Gilbert-Elliott loss instead: P(good->bad), P(bad->good), loss "
                        "in the bad [1] and good [0] state")
    parser.add_argument("--red", metavar="MIN,MAX[,P]",
                        help="RED on the queue: thresholds in packets and max probability")
    parser.add_argument("--jitter", default="0", help="uniform extra one-way delay [0]")
    parser.add_argument("--reorder", default="0", help="fraction of frames delivered late")
    parser.add_argument("--reorder-delay", default="1ms", help="how late [1ms]")
    parser.add_argument("--duplicate", default="0", help="fraction of frames duplicated")
    parser.add_argument("--flows", default="reno", help="comma-separated congestion "
                        "controls, one flow each (reno,cubic,...) [reno]")
    parser.add_argument("--stagger", default="0", help="start flow i at i*STAGGER [0]")
    parser.add_argument("--seconds", type=float, default=30.0, help="run length [30]")
    parser.add_argument("--warmup", default="0", help="ignore each flow's first WARMUP "
                        "seconds in its goodput [0]")
    parser.add_argument("--seed", type=int, default=1, help="random seed [1]")
    parser.add_argument("--trace", metavar="DIR", help="write JSON Lines traces of every "
                        "stack (one subdirectory per stack)")
    parser.add_argument("--pcap", metavar="FILE", help="capture every frame the hosts sent "
                        "(simulated time stamps)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(func=run)


def _floats(text: str, n_min: int, n_max: int, what: str) -> list[float]:
    parts = text.split(",")
    if not n_min <= len(parts) <= n_max:
        raise ValueError(f"{what} takes {n_min} to {n_max} comma-separated numbers: {text!r}")
    try:
        return [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"{what}: not a number in {text!r}") from None


def build_experiment(args: argparse.Namespace) -> Any:
    from ustack.sim import Experiment, Flow, GilbertElliott, LinkSpec, Red
    from ustack.sim.units import parse_rate, parse_ratio, parse_time
    from ustack.tcp import congestion

    rate = parse_rate(args.rate)
    delay = parse_time(args.rtt) / 2
    loss: Any = parse_ratio(args.loss)
    if args.gilbert:
        g = _floats(args.gilbert, 2, 4, "--gilbert")
        for v in g:
            if not 0 <= v <= 1:
                raise ValueError(f"--gilbert: probabilities must be within 0..1: {args.gilbert}")
        g += [1.0, 0.0][len(g) - 2:]
        loss = GilbertElliott(g[0], g[1], loss_bad=g[2], loss_good=g[3])
    red = None
    if args.red:
        r = _floats(args.red, 2, 3, "--red")
        if not 0 <= r[0] < r[1]:
            raise ValueError(f"--red: need 0 <= MIN < MAX: {args.red}")
        red = Red(*r)
    if args.queue < 0:
        raise ValueError("--queue must be >= 0")
    if args.seconds <= 0:
        raise ValueError("--seconds must be > 0")
    names = [n.strip() for n in args.flows.split(",") if n.strip()]
    if not names:
        raise ValueError("--flows needs at least one congestion control name")
    for name in names:
        if name not in congestion.available():
            raise ValueError(f"unknown congestion control {name!r}; available: "
                             f"{', '.join(congestion.available())}")
    stagger = parse_time(args.stagger)
    link = LinkSpec(rate=rate or None, delay=delay, jitter=parse_time(args.jitter),
                    queue=args.queue, loss=loss, red=red, reorder=parse_ratio(args.reorder),
                    reorder_delay=parse_time(args.reorder_delay),
                    duplicate=parse_ratio(args.duplicate))
    return Experiment(flows=[Flow(n, start=i * stagger) for i, n in enumerate(names)],
                      link=link, seconds=args.seconds, seed=args.seed,
                      warmup=parse_time(args.warmup), trace_dir=args.trace, pcap=args.pcap)


def run(args: argparse.Namespace) -> int:
    from ustack.sim import run_experiment

    try:
        exp = build_experiment(args)
        result = run_experiment(exp)
    except (ValueError, OSError) as exc:
        print(f"ustack sim: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(result.to_json() if args.json else result.format_text())
    return 0
