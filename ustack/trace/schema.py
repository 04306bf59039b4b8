"""The trace schema (docs/trace.md) as code: :func:`validate_event` checks one
decoded line, :func:`validate_file` a whole trace.

Every line: ``t`` (seconds since the open, >= 0) and ``ev`` (one of
``ustack.tcp.trace.EVENTS``).  Each event has required keys (below, with
their types; ``None`` marks a value that may be null); extra keys are
allowed, so the core can add some without breaking readers.
"""

from __future__ import annotations

import json
import os
from typing import Any

from ustack.tcp.trace import EVENTS

Num = (int, float)
_INT: tuple[type, ...] = (int,)
_NUM: tuple[type, ...] = Num
_STR: tuple[type, ...] = (str,)
_BOOL: tuple[type, ...] = (bool,)
_LIST: tuple[type, ...] = (list,)
_NULL = type(None)

#: event → {key: allowed types}
REQUIRED: dict[str, dict[str, tuple[type, ...]]] = {
    "open": {"local": _STR, "remote": _STR},
    "close": {"local": _STR, "remote": _STR, "errno": (int, _NULL)},
    "state": {"old": _STR, "new": _STR},
    "seg_sent": {"seq": _INT, "ack": _INT, "len": _INT, "flags": _STR, "win": _INT,
                 "sack": _LIST, "rtx": _BOOL},
    "seg_recv": {"seq": _INT, "ack": _INT, "len": _INT, "flags": _STR, "win": _INT,
                 "sack": _LIST},
    "cc": {"cwnd": _NUM, "ssthresh": (*_NUM, _NULL), "in_flight": _NUM,
           "pacing_rate": (*_NUM, _NULL), "delivery_rate": (*_NUM, _NULL),
           "srtt": (*_NUM, _NULL), "rttvar": (*_NUM, _NULL), "min_rtt": (*_NUM, _NULL),
           "rto": (*_NUM, _NULL), "ca_state": _STR},
    "recovery": {"reason": _STR},
}
#: the header keys of the first line (an ``open`` event written by TraceWriter)
HEADER: dict[str, tuple[type, ...]] = {"format": _STR, "version": _INT, "start": _NUM,
                                       "wall": _NUM}
RECOVERY_REASONS = ("dupthresh", "rack", "tlp", "rto", "undo", "exit")
_U32 = 1 << 32


class TraceSchemaError(ValueError):
    """A line that does not follow docs/trace.md."""


def _check(obj: dict[str, Any], key: str, types: tuple[type, ...], ev: str) -> None:
    if key not in obj:
        raise TraceSchemaError(f"{ev}: missing key {key!r}")
    value = obj[key]
    # bool is an int in Python: only accept it where bool is asked for
    if isinstance(value, bool) and bool not in types:
        raise TraceSchemaError(f"{ev}: {key!r} is a bool, expected {types}")
    if not isinstance(value, types):
        raise TraceSchemaError(f"{ev}: {key!r} = {value!r} has the wrong type")


def validate_event(obj: Any, *, first: bool = False) -> None:
    """Raise TraceSchemaError unless ``obj`` is a valid trace line."""
    if not isinstance(obj, dict):
        raise TraceSchemaError(f"a trace line is a JSON object, not {type(obj).__name__}")
    t = obj.get("t")
    if isinstance(t, bool) or not isinstance(t, Num) or t < 0:
        raise TraceSchemaError(f"'t' must be a number >= 0, got {t!r}")
    ev = obj.get("ev")
    if ev not in EVENTS:
        raise TraceSchemaError(f"unknown event {ev!r}; events: {', '.join(EVENTS)}")
    for key, types in REQUIRED[ev].items():
        _check(obj, key, types, ev)
    if first:
        if ev != "open":
            raise TraceSchemaError(f"the first line must be 'open', not {ev!r}")
        for key, types in HEADER.items():
            _check(obj, key, types, "header")
    if ev in ("seg_sent", "seg_recv"):
        for key in ("seq", "ack"):
            if not 0 <= obj[key] < _U32:
                raise TraceSchemaError(f"{ev}: {key} {obj[key]} is not a 32-bit number")
        if obj["len"] < 0 or obj["win"] < 0:
            raise TraceSchemaError(f"{ev}: negative len or win")
        for block in obj["sack"]:
            if (not isinstance(block, list) or len(block) != 2
                    or not all(isinstance(x, int) and 0 <= x < _U32 for x in block)):
                raise TraceSchemaError(f"{ev}: SACK block {block!r} is not [start, end]")
    elif ev == "recovery" and obj["reason"] not in RECOVERY_REASONS:
        raise TraceSchemaError(f"recovery: unknown reason {obj['reason']!r}")


def validate_file(path: str | os.PathLike[str]) -> dict[str, int]:
    """Check every line of a trace; return the count of each event."""
    counts: dict[str, int] = {}
    last_t = 0.0
    with open(path, encoding="ascii") as f:
        for n, line in enumerate(f, 1):
            try:
                obj = json.loads(line)
                validate_event(obj, first=(n == 1))
            except (TraceSchemaError, ValueError) as exc:
                raise TraceSchemaError(f"{os.fspath(path)}:{n}: {exc}") from None
            if obj["t"] + 1e-6 < last_t:
                raise TraceSchemaError(f"{os.fspath(path)}:{n}: time goes backwards")
            last_t = obj["t"]
            counts[obj["ev"]] = counts.get(obj["ev"], 0) + 1
    if not counts:
        raise TraceSchemaError(f"{os.fspath(path)}: empty trace")
    return counts


__all__ = ["HEADER", "RECOVERY_REASONS", "REQUIRED", "TraceSchemaError", "validate_event",
           "validate_file"]
