"""Where traces come from: per connection, per stack, or ``USTACK_TRACE``.

* Per connection: ``open_connection(..., trace=path_or_callable)`` reaches
  ``TcpTable.connect(trace=...)``; a path becomes a :class:`TraceWriter`, a
  callable is used as the hook itself (it gets ``open`` and ``close`` too).
* Per stack: :func:`trace_stack` (``Stack.start(trace_dir=...)``) sets the
  table's ``tracer``: every new connection, active or passive, gets a file in
  that directory.
* ``USTACK_TRACE=DIR``: every Stack of the process traces into DIR (file
  names then carry the pid, so several processes can share it).
"""

from __future__ import annotations

import itertools
import os
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Union

from ustack.tcp.trace import TraceHook
from ustack.trace.writer import TraceWriter

if TYPE_CHECKING:
    from ustack.stack import Stack

ENV = "USTACK_TRACE"

#: what ``trace=`` accepts: a file path, a hook, or a :class:`StackTracer`
TraceSpec = Union[str, "os.PathLike[str]", TraceHook, "StackTracer"]

_counter = itertools.count(1)


def _endpoint(addr: bytes, port: int) -> str:
    return f"{socket.inet_ntoa(addr)}:{port}"


class StackTracer:
    """Gives every connection of a stack its own file in ``directory``."""

    def __init__(self, directory: str | os.PathLike[str], *, pid_in_name: bool = False,
                 header: dict[str, Any] | None = None) -> None:
        self.directory = os.fspath(directory)
        #: extra (or overriding) header keys of every file, e.g. ``wall``
        self.header = dict(header or {})
        os.makedirs(self.directory, exist_ok=True)
        self.pid_in_name = pid_in_name
        self._n = itertools.count(1)
        #: the files written so far, in order of opening
        self.paths: list[str] = []

    def open(self, now: float, laddr: bytes, lport: int, raddr: bytes,
             rport: int) -> TraceWriter:
        n = next(_counter) if self.pid_in_name else next(self._n)
        name = (f"{socket.inet_ntoa(laddr)}.{lport}-{socket.inet_ntoa(raddr)}.{rport}"
                f"-{n:04d}.jsonl")
        if self.pid_in_name:
            name = f"{os.getpid()}-{name}"
        path = os.path.join(self.directory, name)
        self.paths.append(path)
        return TraceWriter(path, local=_endpoint(laddr, lport), remote=_endpoint(raddr, rport),
                           now=now, **self.header)

    def __repr__(self) -> str:
        return f"StackTracer({self.directory!r})"


def connection_hook(spec: TraceSpec, now: float, laddr: bytes, lport: int, raddr: bytes,
                    rport: int) -> TraceHook:
    """The hook for one new connection (the TCP table calls this)."""
    if isinstance(spec, StackTracer):
        return spec.open(now, laddr, lport, raddr, rport)
    if isinstance(spec, (str, os.PathLike)):
        return TraceWriter(spec, local=_endpoint(laddr, lport), remote=_endpoint(raddr, rport),
                           now=now)
    if callable(spec):
        spec(now, "open", {"local": _endpoint(laddr, lport), "remote": _endpoint(raddr, rport)})
        return spec
    raise TypeError(f"trace must be a path or a callable(now, event, data), not {spec!r}")


def trace_stack(stack: Stack, directory: str | os.PathLike[str], *,
                pid_in_name: bool = False, header: dict[str, Any] | None = None) -> StackTracer:
    """Trace every later connection of ``stack`` into ``directory``."""
    tracer = StackTracer(directory, pid_in_name=pid_in_name, header=header)
    stack.tcp.tracer = tracer
    return tracer


def tracer_from_env(environ: dict[str, str] | None = None) -> StackTracer | None:
    """A tracer for ``USTACK_TRACE`` (None when unset or empty)."""
    value = (os.environ if environ is None else environ).get(ENV, "")
    return StackTracer(value, pid_in_name=True) if value else None


Hook = Callable[[float, str, dict[str, Any]], None]

__all__ = ["ENV", "StackTracer", "TraceSpec", "attach_tracing", "connection_hook", "trace_stack",
           "tracer_from_env"]


def attach_tracing(stack: Stack, trace_dir: str | os.PathLike[str] | None) -> None:
    """``Stack.start``'s hook: ``trace_dir``, else ``$USTACK_TRACE``, else off."""
    if trace_dir is not None:
        trace_stack(stack, trace_dir)
        return
    tracer = tracer_from_env()
    if tracer is not None:
        stack.tcp.tracer = tracer
