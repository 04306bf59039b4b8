"""Host-global kernel module parameters a script writes, saved and restored.

``echo 3 > /sys/module/tcp_cubic/parameters/hystart_detect`` (packetdrill's
cubic-hystart scripts) changes CUBIC for every socket on the host, in every
network namespace: a module parameter is not per namespace.  The kernel peer
therefore writes it only while holding an exclusive lock (``flock`` on
:data:`LOCK_PATH`, so two probe runs, in one suite or not, never overlap),
records the original values in a journal (:data:`JOURNAL_PATH`) before the
first write, and restores them when the run ends: on success, failure,
ctrl-c, SIGTERM (a handler turns it into SystemExit) and at interpreter exit.
A run killed with SIGKILL cannot restore; the next run that takes the lock
(and :func:`recover`, which the suite runner calls after every such script)
finds the journal and restores from it first.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import re
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

LOCK_PATH = Path("/run/lock/ustack-probe-modparams.lock")
JOURNAL_PATH = Path("/run/lock/ustack-probe-modparams.json")

_PARAM = re.compile(r"^/sys/module/([A-Za-z0-9_]+)/parameters/([A-Za-z0-9_]+)$")


def parse_param_path(path: str) -> tuple[str, str] | None:
    """``/sys/module/M/parameters/P`` -> (M, P); None for other paths."""
    m = _PARAM.match(path)
    return (m.group(1), m.group(2)) if m else None


def _param_path(module: str, name: str) -> Path:
    return Path("/sys/module") / module / "parameters" / name


def _restore_journal() -> None:
    """Write back what a journal says (the lock must be held)."""
    try:
        saved = json.loads(JOURNAL_PATH.read_text())
    except (OSError, ValueError):
        return
    for path, value in saved.items():
        with contextlib.suppress(OSError):
            Path(path).write_text(f"{value}\n")
    JOURNAL_PATH.unlink(missing_ok=True)


def recover() -> bool:
    """Restore from a journal left by a run that died holding the lock
    (returns True if there was one); a no-op while another run holds it."""
    if not JOURNAL_PATH.exists():
        return False
    try:
        fd = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        found = JOURNAL_PATH.exists()
        _restore_journal()
        return found
    finally:
        os.close(fd)


class ModuleParams:
    """The parameters one run has changed; :meth:`restore` puts them back."""

    def __init__(self) -> None:
        self.saved: dict[str, str] = {}
        self._fd: int | None = None
        self._prior_sigterm: Any = None

    def _acquire(self, timeout: float) -> None:
        if self._fd is not None:
            return
        LOCK_PATH.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise TimeoutError(f"another probe run holds {LOCK_PATH} "
                                       f"(host-global module parameters)") from None
                time.sleep(0.05)
        self._fd = fd
        _restore_journal()  # a run that died holding the lock left this
        atexit.register(self.restore)
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            with contextlib.suppress(ValueError):  # not the main thread
                self._prior_sigterm = signal.signal(signal.SIGTERM, _sigterm)

    def set(self, module: str, name: str, value: str, *, timeout: float = 300.0) -> None:
        """Write ``value``; the first write of a parameter saves its value."""
        path = _param_path(module, name)
        if not path.exists():
            raise ValueError(f"no module parameter {path}")
        self._acquire(timeout)
        key = str(path)
        if key not in self.saved:
            self.saved[key] = path.read_text().strip()
            JOURNAL_PATH.write_text(json.dumps(self.saved))
        try:
            path.write_text(f"{value.strip()}\n")
        except OSError as exc:
            raise ValueError(f"{path}: {exc.strerror or exc}") from None

    def restore(self) -> None:
        """Put every saved value back and release the lock (idempotent)."""
        for path, value in self.saved.items():
            with contextlib.suppress(OSError):
                Path(path).write_text(f"{value}\n")
        self.saved.clear()
        if self._fd is not None:
            JOURNAL_PATH.unlink(missing_ok=True)
            os.close(self._fd)
            self._fd = None
        with contextlib.suppress(Exception):
            atexit.unregister(self.restore)
        if self._prior_sigterm is not None:
            with contextlib.suppress(ValueError):
                signal.signal(signal.SIGTERM, self._prior_sigterm)
            self._prior_sigterm = None


def _sigterm(signum: int, frame: FrameType | None) -> None:
    """SIGTERM as SystemExit: finally blocks (and the restore) run."""
    sys.exit(128 + signum)
