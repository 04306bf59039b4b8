"""How every ``ustack`` verb reports bad input: one line on stderr and a
non-zero status, never a traceback (the dispatcher in :mod:`ustack.cli`
applies these to every verb; verbs use them for their own checks).

- :class:`OneLineParser`: argparse errors as one line (``ustack nc: argument
  -w/--timeout: invalid float value: 'abc' (see ustack nc --help)``), status 2.
- :func:`describe`: an exception as users read it, without ``[Errno N]``.
- :func:`check_output_file`: an output path (``--pcap``) that can be created,
  checked before a stack starts.
- :func:`stdout_gone`: whether a BrokenPipeError came from stdout's reader
  leaving (``ustack ss | head -1``), which is not an error (status 141, as a
  shell reports a tool killed by SIGPIPE, and nothing printed).
"""

from __future__ import annotations

import argparse
import math
import os
import select
import sys
from typing import NoReturn

#: exit status after stdout's reader went away: 128 + SIGPIPE, what a shell
#: shows for a standard tool killed by the signal
EXIT_PIPE = 141


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (subparsers inherit it)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def describe(exc: BaseException) -> str:
    """One line for a user: an OSError without the ``[Errno N]`` noise, with
    the file it concerns."""
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
        if exc.filename is not None:
            text = f"{os.fsdecode(exc.filename)}: {text}"
        return text
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())  # one line, whatever the message held


def check_output_file(path: str, option: str) -> str | None:
    """Why ``path`` cannot be written as a new output file (None if it can)."""
    if not path:
        return f"{option}: empty file name"
    if "\0" in path:
        return f"{option}: file name holds a NUL byte"
    if os.path.isdir(path):
        return f"{option} {path}: is a directory"
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        return f"{option} {path}: directory {directory} does not exist"
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"{option} {path}: directory {directory} is not writable"
    return None


def positive_seconds(text: str) -> float:
    """argparse type: a finite number of seconds > 0 (``-w -1`` is refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text!r}")
    return value


def stdout_gone() -> bool:
    """True when stdout is a pipe or socket whose reader has gone away."""
    try:
        fd = sys.stdout.fileno() if sys.stdout is not None else 1
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        events = poller.poll(0)
    except (OSError, ValueError, AttributeError):
        return False
    return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in events)


def silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush of what is
    still buffered cannot complain about the broken pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def raise_if_stdout_gone(exc: BaseException) -> None:
    """Re-raise a BrokenPipeError caused by stdout's reader leaving, so the
    dispatcher ends quietly instead of a verb reporting it as an error."""
    if isinstance(exc, BrokenPipeError) and stdout_gone():
        raise exc
