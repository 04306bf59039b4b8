"""The ``ustack`` command.  Each verb lives in its own module under
``ustack.cli`` and exposes ``register(subparsers)``; the verb's parser sets
``func`` to a callable taking the parsed namespace and returning an exit code.

Adding a verb: write ``ustack/cli/<verb>.py`` with ``register``; every module
of this package that has one is a verb (:func:`verb_modules`).  :data:`VERBS`
only orders the help listing (one name per line, so parallel additions merge).

Rules for every verb, applied here once (see :mod:`ustack.cli.errors`):
bad arguments are one line and status 2 (:class:`~ustack.cli.errors.OneLineParser`);
an OSError or PermissionError escaping a verb is one line and status 1;
stdout's reader going away (``ustack ss | head -1``) ends the command quietly
with status 141, as a tool killed by SIGPIPE.  SIGPIPE itself stays ignored
(Python's default) rather than reset to SIG_DFL: a stack's own sockets (the
diagnostics endpoint, a peer closing) must raise EPIPE, never kill the process.
"""

from __future__ import annotations

import importlib
import sys

from ustack.cli.errors import (
    EXIT_PIPE,
    OneLineParser,
    describe,
    silence_stdout,
    stdout_gone,
)

VERBS = (
    "demo",
    "lab",
    "run",
    "nc",
    "ss",
    "probe",
    "exec",
    "plot",
    "sim",
    "nstat",
)


def verb_modules() -> list[str]:
    """The verbs: every name in :data:`VERBS`, in that order, then any other
    module of this package (not starting with ``_``).  The listed verbs never
    depend on listing the package directory, which a user who may import the
    modules but not read the directory (a checkout under a 0700 directory,
    run as nobody after the imports) cannot do."""
    import pkgutil

    found = {m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")}
    return list(VERBS) + sorted(found - set(VERBS))


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog="ustack", description="A userspace TCP/IP stack in Python.")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for name in verb_modules():
        module = importlib.import_module(f"ustack.cli.{name}")
        register = getattr(module, "register", None)
        if register is not None:  # helpers such as errors.py are no verbs
            register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    verb = argv[0] if argv and not argv[0].startswith("-") else ""
    try:
        try:
            code = _dispatch(argv)
        except SystemExit:  # argparse's --help / errors: what it printed must get out
            sys.stdout.flush()
            raise
        sys.stdout.flush()
        return code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError as exc:
        if stdout_gone():
            silence_stdout()
            return EXIT_PIPE
        print(f"ustack {verb}: {describe(exc)}".replace("ustack :", "ustack:"), file=sys.stderr)
        return 1
    except OSError as exc:  # PermissionError (CAP_NET_RAW), a missing file, ...
        print(f"ustack {verb}: {describe(exc)}".replace("ustack :", "ustack:"), file=sys.stderr)
        return 1


def _dispatch(argv: list[str]) -> int:
    if argv[:1] == ["ss"]:  # fast path: ss must start without importing every verb
        from ustack.cli.ss import run as run_ss

        return run_ss(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)
