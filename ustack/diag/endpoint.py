"""The diagnostics endpoint a running stack serves (our ``inet_diag`` socket).

``server = await serve_diagnostics(snapshot_fn)`` listens on a Unix socket
under the run directory (see :mod:`ustack.diag.protocol`); ``await
server.close()`` stops it and removes the file.  ``snapshot_fn(detail)``
returns the stack's records; it is called on the event loop, so it sees a
consistent table.  The state mask and the ss filter expression are applied
here, in the stack's process (like the kernel runs ss's bytecode filter), so a
selective query against 50,000 connections moves only the matching rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import json
import logging
import marshal
import os
import socket
from collections.abc import Callable, Iterable
from typing import Any

from ustack.diag import protocol
from ustack.diag.filter import Filter, FilterError, parse
from ustack.diag.records import ALL_STATES, BASIC_FIELD_COUNT, FIELDS, STATE_BITS, SocketRecord

SnapshotFn = Callable[[bool], Iterable[SocketRecord]]

log = logging.getLogger(__name__)
_serials = itertools.count(1)
_MAX_REQUEST = 64 * 1024


class DiagnosticsServer:
    """Serves ``snapshot_fn``'s records on one Unix socket."""

    def __init__(self, snapshot_fn: SnapshotFn, path: str | None = None, mode: int = 0o600):
        self.snapshot_fn = snapshot_fn
        if path is None:
            directory = protocol.run_dir()
            path = os.path.join(directory, protocol.endpoint_name(os.getpid(), next(_serials)))
        self.path = path
        self.mode = mode
        self._server: asyncio.AbstractServer | None = None
        self._sock: socket.socket | None = None
        self._task: asyncio.Task[None] | None = None
        self._filters: dict[str, Filter] = {}
        self.requests = 0

    def listen(self) -> None:
        """Create, bind (mode 0600) and listen on the socket; synchronous, so a
        caller can start serving without yielding to the event loop."""
        if self._sock is not None:
            return
        directory = os.path.dirname(self.path)
        os.makedirs(directory, mode=0o755, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(self.path)
            os.chmod(self.path, self.mode)
            sock.listen(64)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            raise
        self._sock = sock

    async def start(self) -> None:
        """Listen and serve (clients queue in the backlog until this runs)."""
        self.listen()
        assert self._sock is not None
        self._server = await asyncio.start_unix_server(self._handle, sock=self._sock)

    def start_soon(self) -> None:
        """Listen now and start serving on the running loop's next iterations."""
        self.listen()
        self._task = asyncio.get_running_loop().create_task(self.start())

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
        if task is not None:
            with contextlib.suppress(BaseException):
                await task
        server, self._server = self._server, None
        if server is not None:
            server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    async def __aenter__(self) -> DiagnosticsServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.read(_MAX_REQUEST), 5.0)
            writer.write(self.respond(request))
            await writer.drain()
        except (TimeoutError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _filter(self, text: str) -> Filter:
        flt = self._filters.get(text)
        if flt is None:
            flt = parse(text)
            if len(self._filters) > 64:
                self._filters.clear()
            self._filters[text] = flt
        return flt

    def respond(self, request: bytes) -> bytes:
        """Answer one request (see :mod:`ustack.diag.protocol`)."""
        was_enabled = gc.isenabled()
        gc.disable()  # building tens of thousands of tuples triggers needless collections
        try:
            return self._respond(request)
        finally:
            if was_enabled:
                gc.enable()

    def _respond(self, request: bytes) -> bytes:
        self.requests += 1
        try:
            query: dict[str, Any] = json.loads(request or b"{}")
            states = int(query.get("states", ALL_STATES))
            text = query.get("filter") or ""
            detail = bool(query.get("detail", True))
            predicate = self._filter(text).predicate if text else None
        except (ValueError, TypeError, FilterError) as exc:
            return marshal.dumps((protocol.VERSION, "error", str(exc)))
        records: Iterable[SocketRecord] = self.snapshot_fn(detail)
        if states != ALL_STATES:
            bits = STATE_BITS
            records = [r for r in records if bits.get(r.state, 0) & states]
        if predicate is not None:
            records = [r for r in records if predicate(r)]
        n = len(FIELDS) if detail else BASIC_FIELD_COUNT
        n = max(1, min(n, int(query.get("fields") or n)))
        if n == len(FIELDS):
            return marshal.dumps((protocol.VERSION, list(FIELDS), [tuple(r) for r in records]))
        rows = [r[:n] for r in records]
        return marshal.dumps((protocol.VERSION, list(FIELDS[:n]), rows))


async def serve_diagnostics(
    snapshot_fn: SnapshotFn, *, path: str | None = None, mode: int = 0o600
) -> DiagnosticsServer:
    """Start serving ``snapshot_fn(detail)``; returns the server (``await .close()``)."""
    server = DiagnosticsServer(snapshot_fn, path, mode)
    await server.start()
    return server


def attach_diagnostics(stack: Any) -> DiagnosticsServer | None:
    """Serve ``stack``'s snapshots until it closes (called by ``Stack.start``
    on its running loop; does not yield, so starting a stack stays atomic).

    Set ``USTACK_DIAG=0`` to disable.  A failure (read-only run directory, no
    permission) only logs a warning: diagnostics must never stop a stack.
    """
    if os.environ.get("USTACK_DIAG", "1") == "0" or not getattr(stack, "has_tcp", True):
        return None
    from ustack.diag.snapshot import snapshot

    server = DiagnosticsServer(lambda detail: snapshot(stack, detail))
    try:
        server.start_soon()
    except OSError as exc:
        log.warning("ustack: diagnostics endpoint %s not available: %s", server.path, exc)
        return None
    stack.add_close_hook(server.close)
    return server
