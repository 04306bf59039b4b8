"""Per-connection TCP traces as JSON Lines (docs/trace.md, issue 11 item 1).

The TCP core reports through a hook (``ustack.tcp.trace``); this package
writes those events (:class:`TraceWriter`), decides which connections are
traced (:func:`trace_stack`, ``USTACK_TRACE``, ``trace=`` per connection),
checks the schema (:mod:`ustack.trace.schema`) and reads traces back
(:func:`read_trace`).
"""

from __future__ import annotations

from ustack.trace.attach import (
    ENV,
    StackTracer,
    TraceSpec,
    connection_hook,
    trace_stack,
    tracer_from_env,
)
from ustack.trace.reader import Trace, read_trace
from ustack.trace.schema import TraceSchemaError, validate_event, validate_file
from ustack.trace.writer import FORMAT, VERSION, TraceWriter

__all__ = [
    "ENV", "FORMAT", "VERSION", "StackTracer", "Trace", "TraceSchemaError", "TraceSpec",
    "TraceWriter", "connection_hook", "read_trace", "trace_stack", "tracer_from_env",
    "validate_event", "validate_file",
]
