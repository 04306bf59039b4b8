"""``ustack run``: a stack in the foreground on one interface, answering ARP
and ping (and serving ``ustack ss``), until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any

from ustack.cli.errors import check_output_file, describe, raise_if_stdout_gone


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "run",
        help="run a stack in the foreground (answers ARP and ping) until Ctrl-C",
        description="Open IFACE with an AF_PACKET socket (needs CAP_NET_RAW), take "
        "ADDRESS, answer ARP and ping until SIGINT/SIGTERM, then write the capture.",
    )
    parser.add_argument("--iface", required=True, help="interface to run on (e.g. the "
                        "stack-side veth of `ustack lab up`)")
    parser.add_argument("--address", required=True, metavar="A/PLEN",
                        help="our IPv4 address and prefix length, e.g. 10.77.0.2/24")
    parser.add_argument("--gateway", metavar="G", help="default gateway (on-link)")
    parser.add_argument("--pcap", metavar="FILE", help="record every frame in and out")
    parser.add_argument("--trace", metavar="DIR", help="write a JSON Lines trace of every "
                        "TCP connection into DIR (docs/trace.md)")
    parser.add_argument("--pcap-fill-checksums", action="store_true",
                        help="write offloaded (partial) TCP/UDP checksums as computed, so "
                        "that tshark -o tcp.check_checksum:TRUE reports none bad")
    parser.add_argument("--mac", help="use this MAC instead of the interface's")
    parser.add_argument("--no-uvloop", action="store_true",
                        help="use the stock asyncio event loop")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.pcap is not None:
        problem = check_output_file(args.pcap, "--pcap")
        if problem:
            print(f"ustack run: {problem}", file=sys.stderr)
            return 2
    try:
        if args.no_uvloop:
            return asyncio.run(_serve(args))
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(_serve(args))
    except (ValueError, OSError) as exc:  # PermissionError (CAP_NET_RAW), ENODEV, bad input
        raise_if_stdout_gone(exc)
        print(f"ustack run: {describe(exc)}", file=sys.stderr)
        return 1


async def _serve(args: argparse.Namespace) -> int:
    from ustack.stack import Stack

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        stack = await Stack.start(iface=args.iface, address=args.address, gateway=args.gateway,
                                  mac=args.mac, pcap=args.pcap, trace_dir=args.trace)
        if args.pcap_fill_checksums:
            from ustack.cli.nc import fill_pcap_checksums

            fill_pcap_checksums(stack)
        try:
            gw = f" via {stack.gateway}" if stack.gateway else ""
            print(f"ustack: {stack.address}/{stack.prefixlen}{gw} on {args.iface} "
                  f"({stack.mac}); Ctrl-C to stop", flush=True)
            await stop.wait()
        finally:
            counters = stack.counters()
            await stack.close()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    drops = {k[5:]: v for k, v in counters.items() if k.startswith("drop.")}
    print(f"ustack: stopped; frames in {counters['frames_in']}, out {counters['frames_out']}, "
          f"dropped {counters['drops']}" + (f" {drops}" if drops else ""), flush=True)
    if args.pcap:
        print(f"ustack: capture written to {args.pcap}", flush=True)
    return 0
