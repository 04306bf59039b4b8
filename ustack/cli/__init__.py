"""The ``ustack`` command.  Each verb lives in its own module under
``ustack.cli`` and exposes ``register(subparsers)``; the verb's parser sets
``func`` to a callable taking the parsed namespace and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys

VERBS = ("demo", "lab", "run", "nc", "ss", "probe", "exec")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ustack", description="A userspace TCP/IP stack in Python."
    )
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for verb in VERBS:
        try:
            module = importlib.import_module(f"ustack.cli.{verb}")
        except ModuleNotFoundError as exc:
            if exc.name == f"ustack.cli.{verb}":
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["ss"]:  # fast path: ss must start without importing every verb
        from ustack.cli.ss import run as run_ss

        return run_ss(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except PermissionError as exc:
        print(f"ustack {args.verb}: {exc}", file=sys.stderr)
        return 1
