"""Keep a little freed memory at the top of the C heap (glibc ``M_TOP_PAD``).

A bulk receive allocates big buffers and frees them in arrival order: a
64 KB ``bytes`` per GRO frame (``socket.recv`` of a frame the ring slot
could not hold), 64 KB chunks joined from exact-wire segments.  glibc's
``free`` gives the top of the heap back to the kernel (``brk``) as soon as
more than ``M_TRIM_THRESHOLD`` (128 KB) is free there, which is every time
the application has read everything, i.e. once per receive batch; the next
batch then grows the heap again and the kernel hands every page back
through a page fault that zeroes it.  In the GSO download
(``bench/throughput.py --gso --only down``) that was ~22 % of the stack
process's samples (perf: exc_page_fault, clear_page, __do_sys_brk) and
36-66k page faults per 300 MB against 18k with the pad below.

``M_TOP_PAD`` is how much more than asked glibc takes from the kernel when
it grows the heap and leaves at the top when it trims: with a few MB (what
a receive window of frames needs) the same pages are used again.  It is
bounded (:data:`TOP_PAD`, freed memory is kept up to that much, not more)
and glibc only: anywhere else, or with ``USTACK_NO_HEAP_PAD=1``, nothing is
changed.  (glibc's own dynamic threshold does the same, and more, once a
block above 128 KB has been freed; asyncio's StreamReader buffer used to
be such a block.)
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from typing import Final

#: glibc's mallopt parameter number of M_TOP_PAD (malloc.h)
M_TOP_PAD: Final = -2
#: bytes kept at the top of the heap: a 4 MB receive window of frames, twice
TOP_PAD: Final = 8 << 20

#: what the first call did (empty until then)
_result: list[bool] = []


def keep_heap_top(nbytes: int = TOP_PAD) -> bool:
    """Set glibc's ``M_TOP_PAD`` to ``nbytes``, once per process (later
    calls return what the first did).  True when it was set."""
    if not _result:
        _result.append(_set(nbytes))
    return _result[0]


def _set(nbytes: int) -> bool:
    if os.environ.get("USTACK_NO_HEAP_PAD") or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        if not hasattr(libc, "gnu_get_libc_version"):  # (glibc only: musl has no M_TOP_PAD)
            return False
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_TOP_PAD, nbytes) == 1)
