"""The cyclic garbage collector's young-generation threshold while ustack
loops run (docs/asyncio.md, section 2).

A ustack loop keeps in Python objects what the kernel keeps in its own
memory: every connection is a dozen GC-tracked objects (the connection and
its rooms, the endpoint, the transport, TIME-WAIT records), allocated at
connect and freed at close.  With CPython's historical gen0 threshold of
700 net container allocations a client opening and closing connections
ran a young collection every ~40 connections, ~5-7 us of CPU per
connection (bench/cps.py, 32 in flight).  CPython 3.13 raised the default
threshold to 2000 for the same reason (many more types are GC-tracked than
when 700 was chosen in 2000).  So, on an interpreter older than 3.13, while
at least one ustack loop is open, the gen0 threshold is 3.13's 2000:

* only when the application has not set one itself (the threshold is
  still the interpreter's default 700 when the first loop opens);
* given back (700) when the last ustack loop closes, unless someone
  changed it meanwhile;
* ``USTACK_GC_GEN0=0`` leaves the collector alone (opt-out);
  ``USTACK_GC_GEN0=N`` uses N instead of 2000.

Generations 1 and 2 keep their thresholds; nothing is frozen or disabled.
"""

from __future__ import annotations

import gc
import os
import sys
from typing import Final

#: CPython 3.13's default gen0 threshold
GEN0: Final = 2000
#: the default of CPython < 3.13
_OLD_DEFAULT: Final = 700

_open = 0
_set: tuple[int, int, int] | None = None  # what we set (None: we did not)


def _wanted() -> int:
    raw = os.environ.get("USTACK_GC_GEN0", "")
    if not raw:
        return GEN0 if sys.version_info < (3, 13) else 0
    try:
        return max(0, int(raw))
    except ValueError:
        return 0


def loop_opened() -> None:
    """A ustack loop opened: the first one raises gen0 (see the module doc)."""
    global _open, _set
    _open += 1
    if _open != 1:
        return
    want = _wanted()
    t0, t1, t2 = gc.get_threshold()
    if want and t0 == _OLD_DEFAULT:
        gc.set_threshold(want, t1, t2)
        _set = (want, t1, t2)


def loop_closed() -> None:
    """A ustack loop closed: the last one gives the threshold back if it is
    still the one :func:`loop_opened` set."""
    global _open, _set
    if _open == 0:
        return
    _open -= 1
    if _open or _set is None:
        return
    if gc.get_threshold() == _set:
        gc.set_threshold(_OLD_DEFAULT, _set[1], _set[2])
    _set = None


def open_loops() -> int:
    """How many ustack loops hold the policy (tests)."""
    return _open


__all__ = ["GEN0", "loop_opened", "loop_closed", "open_loops"]
