"""Run an unmodified Python program with its event loops on ustack (what
``ustack exec -- python app.py ARGS`` does).

The launcher installs :class:`~ustack.aio.runner.UstackEventLoopPolicy`
(so ``asyncio.run``, ``asyncio.new_event_loop`` and ``uvloop.run`` build
ustack loops), then runs the program in this interpreter the way ``python``
would: ``sys.argv`` and ``sys.path[0]`` set, ``__name__ == "__main__"``
(``runpy``).  The exit status is the program's.
"""

from __future__ import annotations

import os
import runpy
import sys
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass

from ustack.aio.loop import UstackLoopMixin
from ustack.aio.runner import install

#: python options that take no value / one value (python(1))
_FLAGS = {"-u", "-B", "-E", "-s", "-S", "-I", "-q", "-O", "-OO", "-b", "-bb", "-d", "-v", "-P"}
_VALUED = {"-X", "-W"}


@dataclass(slots=True)
class Program:
    kind: str  # "script" | "module" | "code"
    target: str
    args: list[str]


class LaunchError(ValueError):
    """The command is not a Python program ustack exec can run."""


def parse_command(argv: list[str]) -> Program:
    """``python [OPTIONS] (script | -m module | -c code) [ARGS]`` or ``app.py ARGS``."""
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        raise LaunchError("nothing to run: ustack exec ... -- python app.py [ARGS]")
    first = os.path.basename(argv[0])
    if first.endswith(".py"):
        return Program("script", argv[0], argv[1:])
    if not (first.startswith("python") or os.path.realpath(argv[0]) == sys.executable):
        raise LaunchError(f"only Python programs run on ustack (python app.py ...), "
                          f"not {argv[0]!r}")
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg in _FLAGS:
            i += 1
        elif arg in _VALUED:
            i += 2
        elif arg == "-m" and i + 1 < len(argv):
            return Program("module", argv[i + 1], argv[i + 2:])
        elif arg.startswith("-m") and len(arg) > 2:
            return Program("module", arg[2:], argv[i + 1:])
        elif arg == "-c" and i + 1 < len(argv):
            return Program("code", argv[i + 1], argv[i + 2:])
        elif arg.startswith("-") and arg != "-":
            raise LaunchError(f"python option {arg!r} is not supported by ustack exec")
        else:
            return Program("script", arg, argv[i + 1:])
    raise LaunchError("no script, -m module or -c code after python")


def _exit_code(exc: SystemExit) -> int:
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def launch(program: Program, factory: Callable[[], UstackLoopMixin]) -> int:
    """Install the ustack loop policy and run ``program``; its exit status."""

    def starting_factory() -> UstackLoopMixin:
        try:
            return factory()
        except (OSError, ValueError) as exc:  # no CAP_NET_RAW, ENODEV, stack in use
            # the program's main() coroutine will never run: no warning about it
            warnings.filterwarnings("ignore", message="coroutine .* was never awaited")
            text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise SystemExit(f"ustack exec: {text}") from None  # one line, no [Errno N]

    install(starting_factory)
    try:
        if program.kind == "script":
            sys.argv = [program.target, *program.args]
            sys.path.insert(0, os.path.dirname(os.path.abspath(program.target)))
            runpy.run_path(program.target, run_name="__main__")
        elif program.kind == "module":
            sys.argv = [program.target, *program.args]
            sys.path.insert(0, os.getcwd())
            runpy.run_module(program.target, run_name="__main__", alter_sys=True)
        else:
            sys.argv = ["-c", *program.args]
            sys.path.insert(0, "")
            exec(compile(program.target, "<string>", "exec"), {"__name__": "__main__"})
    except SystemExit as exc:
        return _exit_code(exc)
    except KeyboardInterrupt:
        return 130
    except BaseException:  # the program's own error: report it as python would
        traceback.print_exc()
        return 1
    return 0


__all__ = ["Program", "LaunchError", "parse_command", "launch"]
