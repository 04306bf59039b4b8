"""``ustack plot TRACE``: time-sequence, cwnd and RTT panels (docs/trace.md)."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "plot",
        help="draw a trace (or a pcap's TCP flow) as a time-sequence graph",
        description="Draw a ustack trace (a .jsonl file, or a directory of them) as a "
        "Stevens time-sequence graph (data, retransmissions, ACK and receive-window lines, "
        "SACK blocks) with cwnd/ssthresh/in-flight and srtt/min_rtt/rto panels; a pcap "
        "gives the time-sequence graph of one of its TCP flows. Needs matplotlib "
        "(pip install 'ustack[plot]').",
    )
    parser.add_argument("trace", metavar="TRACE", help="trace file, trace directory or pcap")
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="output file [TRACE.png, or .svg with --format svg]")
    parser.add_argument("--conn", type=int, default=0, metavar="N",
                        help="which connection: the N-th trace file of a directory (sorted), "
                        "the N-th largest TCP flow of a pcap [0]")
    parser.add_argument("--format", choices=("png", "svg", "pdf"), default=None,
                        help="image format [from the output name, else png]")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ustack.plot import PlotError, PlotUnavailable, plot_path

    fmt = args.format
    if fmt is None and args.output and "." in args.output:
        ext = args.output.rsplit(".", 1)[1].lower()
        fmt = ext if ext in ("png", "svg", "pdf") else None
    try:
        info = plot_path(args.trace, args.output, conn=args.conn, fmt=fmt)
    except (PlotError, PlotUnavailable, OSError) as exc:
        print(f"ustack plot: {exc}", file=sys.stderr)
        return 1
    print(f"{info.path}: {', '.join(info.panels)}"
          + (" (decimated)" if info.decimated else ""))
    return 0
