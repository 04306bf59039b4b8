"""The JSON Lines trace writer: one connection, one file, one event a line.

:class:`TraceWriter` is a :data:`~ustack.tcp.trace.TraceHook`: the TCP core
calls it as ``writer(now, event, data)``.  Each line is one JSON object,
``{"t": <seconds since open>, "ev": <event>, ...data}``; the first line is
the ``open`` event carrying the header (format, start time, addresses),
the last one ``close``.  The schema is docs/trace.md; ``ustack.trace.schema``
checks it.

Segment events are formatted by hand (they are most of a trace and
``json.dumps`` costs about three times more); anything else goes through
the standard encoder.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import math
import os
import time
import weakref
from typing import IO, Any

FORMAT = "ustack-trace"
VERSION = 1

_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False, default=str).encode
_SEG_FMT = ('{"t":%.6f,"ev":"%s","seq":%d,"ack":%d,"len":%d,"flags":"%s","win":%d,'
            '"sack":%s,"rtx":%s}\n')
_SEG_RECV_FMT = ('{"t":%.6f,"ev":"seg_recv","seq":%d,"ack":%d,"len":%d,"flags":"%s",'
                 '"win":%d,"sack":%s}\n')
#: the cc keys in the order the writer lays them out (docs/trace.md)
CC_KEYS = ("cwnd", "ssthresh", "in_flight", "pacing_rate", "delivery_rate", "srtt", "rttvar",
           "min_rtt", "rto", "ca_state")
_CC_FMT = ('{"t":%.6f,"ev":"cc","cwnd":%s,"ssthresh":%s,"in_flight":%s,"pacing_rate":%s,'
           '"delivery_rate":%s,"srtt":%s,"rttvar":%s,"min_rtt":%s,"rto":%s,"ca_state":"%s"}\n')
_open_writers: weakref.WeakSet[TraceWriter] = weakref.WeakSet()


def _num(value: Any) -> str:
    """A JSON number (or null for None, inf and nan)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        raise TypeError("bool is not a number here")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else "null"
    raise TypeError(f"not a number: {value!r}")


def _clean(value: Any) -> Any:
    """JSON has no inf/nan: write null for them (e.g. an unset ssthresh)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


class TraceWriter:
    """``TraceWriter(path, local="10.0.0.1:40000", remote="10.0.1.1:5001", now=t)``.

    ``now`` is the loop time of the open; every ``t`` is relative to it.
    ``close(now, errno)`` (or the ``close`` event) writes the last line and
    closes the file; later events are ignored.
    """

    def __init__(self, target: str | os.PathLike[str] | IO[str], *, local: str = "",
                 remote: str = "", now: float = 0.0, **header: Any) -> None:
        if isinstance(target, (str, os.PathLike)):
            self.path: str | None = os.fspath(target)
            self._file: IO[str] | None = open(  # noqa: SIM115
                self.path, "w", buffering=1 << 20, encoding="ascii")
            self._owns = True
        else:
            self.path = None
            self._file = target
            self._owns = False
        self.start = now
        self.local = local
        self.remote = remote
        self.events = 0
        self._write = self._file.write
        head = {"t": 0.0, "ev": "open", "local": local, "remote": remote,
                "format": FORMAT, "version": VERSION, "start": now, "wall": time.time(),
                "pid": os.getpid()}
        head.update(header)
        self._write(_encode(head) + "\n")
        _open_writers.add(self)

    def __call__(self, now: float, event: str, data: dict[str, Any]) -> None:
        if self._file is None:
            return
        self.events += 1
        t = now - self.start
        if event == "seg_sent" and len(data) == 7:
            sack = data["sack"]
            self._write(_SEG_FMT % (t, event, data["seq"], data["ack"], data["len"],
                                    data["flags"], data["win"], _encode(sack) if sack else "[]",
                                    "true" if data["rtx"] else "false"))
            return
        if event == "seg_recv" and len(data) == 6:
            sack = data["sack"]
            self._write(_SEG_RECV_FMT % (t, data["seq"], data["ack"], data["len"],
                                         data["flags"], data["win"],
                                         _encode(sack) if sack else "[]"))
            return
        if event == "cc" and len(data) == 10:
            try:
                self._write(_CC_FMT % (t, _num(data["cwnd"]), _num(data["ssthresh"]),
                                       _num(data["in_flight"]), _num(data["pacing_rate"]),
                                       _num(data["delivery_rate"]), _num(data["srtt"]),
                                       _num(data["rttvar"]), _num(data["min_rtt"]),
                                       _num(data["rto"]), data["ca_state"]))
                return
            except (KeyError, TypeError):
                pass  # another shape: the general encoder below
        if event == "close":
            self.close(now, data.get("errno"), _data=data)
            return
        self._write_generic(t, event, data)

    def _write_generic(self, t: float, event: str, data: dict[str, Any]) -> None:
        record: dict[str, Any] = {"t": round(t, 6), "ev": event}
        for key, value in data.items():
            record[key] = _clean(value)
        try:
            self._write(_encode(record) + "\n")
        except ValueError:  # a float we did not clean (nested): be lenient
            self._write(json.dumps(record, default=str).replace("NaN", "null")
                        .replace("-Infinity", "null").replace("Infinity", "null") + "\n")

    def close(self, now: float | None = None, errno: int | None = None, *,
              _data: dict[str, Any] | None = None) -> None:
        """Write the ``close`` line (once) and close the file."""
        if self._file is None:
            return
        data = {"local": self.local, "remote": self.remote, "errno": errno}
        if _data:
            data.update(_data)
        t = (now - self.start) if now is not None else 0.0
        self._write_generic(t, "close", data)
        self._finish()

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def _finish(self) -> None:
        f, self._file = self._file, None
        _open_writers.discard(self)
        if f is None:
            return
        if self._owns:
            f.close()
        else:
            f.flush()

    def __repr__(self) -> str:
        return f"TraceWriter({self.path or '<stream>'!r}, {self.local} -> {self.remote})"


@atexit.register
def _flush_all() -> None:
    """Traces of connections still open at exit keep what they recorded."""
    for writer in list(_open_writers):
        with contextlib.suppress(OSError, ValueError):
            writer.flush()


__all__ = ["FORMAT", "VERSION", "TraceWriter"]
