"""``ustack exec``: run an unmodified asyncio program with its network on ustack.

    ustack exec --iface IF --address A/PLEN [--gateway G] [--pcap FILE] -- python app.py ARGS

USTACK_IFACE / USTACK_ADDRESS / USTACK_GATEWAY stand in for the options.
The exit status is the program's.  See docs/asyncio.md.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "exec",
        help="run an asyncio program with its network on ustack",
        description="Run a Python program whose asyncio event loops (asyncio.run, "
        "uvloop.run, new_event_loop) put TCP, UDP, DNS and TLS on a ustack stack on "
        "IFACE. The exit status is the program's.",
        usage="ustack exec [--iface IF] [--address A/PLEN] [--gateway G] [--pcap FILE] "
              "[--trace DIR] [--dns SERVER] [--no-uvloop] -- python app.py [ARGS...]",
    )
    parser.add_argument("--iface", help="interface (default: $USTACK_IFACE)")
    parser.add_argument("--address", metavar="A/PLEN",
                        help="our IPv4 address and prefix length (default: $USTACK_ADDRESS)")
    parser.add_argument("--gateway", metavar="G", help="default gateway ($USTACK_GATEWAY)")
    parser.add_argument("--pcap", metavar="FILE", help="record every frame in and out")
    parser.add_argument("--trace", metavar="DIR", help="write a JSON Lines trace of every "
                        "TCP connection into DIR (sets $USTACK_TRACE; docs/trace.md)")
    parser.add_argument("--dns", action="append", metavar="SERVER",
                        help="nameserver (A.B.C.D[:PORT]) instead of /etc/resolv.conf's; "
                             "repeatable")
    parser.add_argument("--no-offload", action="store_true",
                        help="exact wire: no GSO/GRO (PACKET_VNET_HDR)")
    parser.add_argument("--no-uvloop", action="store_true",
                        help="use the stock asyncio event loop under the program")
    parser.add_argument("command", nargs=argparse.REMAINDER,
                        help="-- python app.py ARGS (or -m module, -c code)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ustack.aio.launcher import LaunchError, launch, parse_command
    from ustack.runtime import loop_factory

    if args.trace:  # the program's stacks start in this process and read it
        import os

        os.environ["USTACK_TRACE"] = os.path.abspath(args.trace)
    try:
        program = parse_command(list(args.command))
        factory = loop_factory(args.iface, args.address, args.gateway, pcap=args.pcap,
                               dns=args.dns, offload=not args.no_offload,
                               use_uvloop=not args.no_uvloop)
    except (LaunchError, ValueError) as exc:
        print(f"ustack exec: {exc}", file=sys.stderr)
        return 2
    return launch(program, factory)
