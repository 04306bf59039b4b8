"""``ustack lab up|down|status``: build the two-namespace lab (see netns/README.md)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ustack.lab.lab import (
    DEFAULT_PEER_ADDRESS,
    DEFAULT_STACK_ADDRESS,
    Lab,
    LabError,
    status,
)


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "lab",
        help="create or remove a two-namespace veth lab",
        description="Two network namespaces joined by a veth pair: a kernel peer "
        "with an IPv4 address and a stack side with no kernel address for ustack.",
    )
    sub = parser.add_subparsers(dest="lab_verb", metavar="ACTION", required=True)

    up = sub.add_parser("up", help="create the lab (idempotent)")
    up.add_argument("--name", required=True, help="lab name (namespaces NAME-peer, NAME-stack)")
    up.add_argument("--peer-address", default=DEFAULT_PEER_ADDRESS, metavar="A/P",
                    help=f"kernel address in the peer namespace (default {DEFAULT_PEER_ADDRESS})")
    up.add_argument("--stack-address", default=DEFAULT_STACK_ADDRESS, metavar="A/P",
                    help=f"address ustack should use (default {DEFAULT_STACK_ADDRESS})")
    up.add_argument("--no-offloads", dest="offloads", action="store_false",
                    help="exact-wire mode: the peer kernel does its own checksums and "
                    "segmentation (no TSO super-frames, no partial checksums)")
    up.add_argument("--json", action="store_true", help="print the lab as one JSON object")
    up.set_defaults(func=_up)

    down = sub.add_parser("down", help="remove the lab (idempotent)")
    down.add_argument("--name", required=True)
    down.set_defaults(func=_down)

    st = sub.add_parser("status", help="list labs")
    st.add_argument("--json", action="store_true", help="print a JSON list")
    st.set_defaults(func=_status)


def _up(args: argparse.Namespace) -> int:
    try:
        lab = Lab.create(args.name, peer_address=args.peer_address,
                         stack_address=args.stack_address, offloads=args.offloads)
        lab.up()
    except (ValueError, LabError) as exc:
        print(f"ustack lab up: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(lab.to_dict()))
    else:
        print(f"lab {lab.name} is up\n"
              f"  peer  namespace {lab.peer_ns:<20} interface {lab.peer_if:<15} "
              f"address {lab.peer_address}/{lab.prefixlen}\n"
              f"  stack namespace {lab.stack_ns:<20} interface {lab.stack_if:<15} "
              f"(no kernel address; use {lab.stack_address})\n"
              f"run a stack:  ip netns exec {lab.stack_ns} ustack run --iface "
              f"{lab.stack_if} --address {lab.stack_address}\n"
              f"ping it:      ip netns exec {lab.peer_ns} ping {lab.stack_ip}")
    return 0


def _down(args: argparse.Namespace) -> int:
    try:
        lab = Lab.load(args.name) or Lab.create(args.name)
        lab.down()
    except (ValueError, LabError) as exc:
        print(f"ustack lab down: {exc}", file=sys.stderr)
        return 1
    return 0


def _status(args: argparse.Namespace) -> int:
    labs = status()
    if args.json:
        print(json.dumps(labs))
        return 0
    if not labs:
        print("no labs")
        return 0
    print(f"{'NAME':<16} {'STATE':<6} {'PEER NS':<22} {'STACK NS':<22} "
          f"{'PEER IF':<15} {'STACK IF':<15} ADDRESSES")
    for info in labs:
        state = "stale" if info.get("stale") else "up" if info["up"] else "GONE"
        print(f"{info['name']:<16} {state:<6} "
              f"{info['peer_ns']:<22} {info['stack_ns']:<22} {info['peer_if']:<15} "
              f"{info['stack_if']:<15} {info['peer_address']} <-> {info['stack_address']}")
    return 0
