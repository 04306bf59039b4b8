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
from collections.abc import Callable, Iterable, Iterator
from itertools import compress
from operator import itemgetter
from typing import Any

from ustack.diag import protocol
from ustack.diag.filter import Filter, FilterError, Predicate, parse
from ustack.diag.records import (
    ALL_STATES,
    BASIC_FIELD_COUNT,
    FIELDS,
    STATE_BITS,
    TABLE_FIELD_COUNT,
    SocketRecord,
)

SnapshotFn = Callable[[bool], Iterable[SocketRecord]]
#: chunks of the seven table columns (``snapshot.iter_table_columns``)
ColumnsFn = Callable[[], Iterable[list[list[Any]]]]

log = logging.getLogger(__name__)
_serials = itertools.count(1)
_MAX_REQUEST = 64 * 1024
_CHUNK = 2000  # records read between two turns of the stack's event loop


class DiagnosticsServer:
    """Serves ``snapshot_fn``'s records on one Unix socket."""

    def __init__(self, snapshot_fn: SnapshotFn, path: str | None = None, mode: int = 0o600,
                 udp_snapshot_fn: SnapshotFn | None = None, *,
                 counters_fn: Callable[[], dict[str, int]] | None = None,
                 columns_fn: ColumnsFn | None = None):
        self.snapshot_fn = snapshot_fn
        #: the TCP table's seven basic fields as column chunks (the fast
        #: answer to ``"columns": true`` without a filter expression)
        self.columns_fn = columns_fn
        #: the UDP sockets, for requests with ``"netid": "udp"`` (none: no rows)
        self.udp_snapshot_fn = udp_snapshot_fn
        self._netid = "tcp"  # of the request being answered (set by _query)
        self._columns = False  # ditto: answer one list per field, not rows
        #: answers ``{"v": 1, "type": "counters"}`` (``ustack nstat``)
        self.counters_fn = counters_fn
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
        self.failures = 0

    def listen(self) -> None:
        """Create, bind (mode 0600) and listen on the socket; synchronous, so a
        caller can start serving without yielding to the event loop."""
        if self._sock is not None:
            return
        directory = os.path.dirname(self.path) or "."
        protocol.prepare_dir(directory)  # UnsafeDirectory: another user could swap us
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
            request = await asyncio.wait_for(_read_request(reader), 5.0)
            reply = await self.respond_async(request)
            _room_for(writer, len(reply))
            writer.write(reply)
            await writer.drain()
        except (TimeoutError, OSError):
            pass
        except Exception as exc:  # noqa: BLE001 - a client must never crash or flood the stack
            self.failures += 1
            if self.failures <= 3:
                log.warning("ustack: diagnostics request failed: %s: %s",
                            type(exc).__name__, exc)
            with contextlib.suppress(Exception):
                writer.write(_error(f"internal error: {type(exc).__name__}"))
                await writer.drain()
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

    def _query(self, request: bytes) -> tuple[int, Predicate | None, bool, int]:
        """Validate one request (see :mod:`ustack.diag.protocol`) field by
        field; anything else raises :class:`RequestError`."""
        if len(request) > _MAX_REQUEST:
            raise RequestError(f"request longer than {_MAX_REQUEST} bytes")
        try:
            query = json.loads(request or b"{}")
        except RecursionError:
            raise RequestError("request nested too deeply") from None
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
            raise RequestError(f"request is not JSON: {exc}") from None
        if not isinstance(query, dict):
            raise RequestError(f"request must be a JSON object, not {type(query).__name__}")
        version = query.get("v", protocol.VERSION)
        if type(version) is not int or version != protocol.VERSION:
            raise RequestError(f"unsupported protocol version {version!r}")
        states = query.get("states", ALL_STATES)
        if type(states) is not int or not 0 <= states <= ALL_STATES:
            raise RequestError(f'"states" must be a state bit mask, not {states!r:.40}')
        text = query.get("filter")
        if text is None:
            text = ""
        if not isinstance(text, str):
            raise RequestError(f'"filter" must be a string or null, not {type(text).__name__}')
        detail = query.get("detail", True)
        if not isinstance(detail, bool):
            raise RequestError(f'"detail" must be true or false, not {detail!r:.40}')
        n = len(FIELDS) if detail else BASIC_FIELD_COUNT
        fields = query.get("fields")
        if fields is not None:
            if type(fields) is not int or fields < 0:
                raise RequestError(f'"fields" must be a count, not {fields!r:.40}')
            n = max(1, min(n, fields or n))
        predicate = self._filter(text).predicate if text else None
        netid = query.get("netid", "tcp")
        if netid not in ("tcp", "udp", "all"):
            raise RequestError(f'"netid" must be "tcp", "udp" or "all", not {netid!r:.40}')
        columns = query.get("columns", False)
        if not isinstance(columns, bool):
            raise RequestError(f'"columns" must be true or false, not {columns!r:.40}')
        self._netid = netid
        self._columns = columns and netid != "all"
        return states, predicate, detail, n

    def _source(self, detail: bool, netid: str | None = None) -> Iterable[SocketRecord]:
        """The snapshot the last validated request asked for (TCP or UDP)."""
        if (netid or self._netid) == "udp":
            return self.udp_snapshot_fn(detail) if self.udp_snapshot_fn is not None else []
        return self.snapshot_fn(detail)

    @staticmethod
    def _encode_both(tcp: list[SocketRecord], udp: list[SocketRecord], n: int) -> bytes:
        """The reply to ``"netid": "all"``: ``(1, names, tcp_rows, udp_rows)``."""
        return marshal.dumps((protocol.VERSION, list(FIELDS[:n]), [r[:n] for r in tcp],
                              [r[:n] for r in udp]))

    @staticmethod
    def _select(
        records: Iterable[SocketRecord], states: int, predicate: Predicate | None
    ) -> list[SocketRecord]:
        if states != ALL_STATES:
            bits = STATE_BITS
            records = [r for r in records if bits.get(r.state, 0) & states]
        if predicate is not None:
            records = [r for r in records if predicate(r)]
        return records if isinstance(records, list) else list(records)

    def _encode(self, selected: list[SocketRecord], n: int) -> bytes:
        if self._columns:
            # one list per field: no per-row tuple here, none in the client
            return marshal.dumps((protocol.VERSION, "columns", list(FIELDS[:n]),
                                  [list(map(itemgetter(i), selected)) for i in range(n)]))
        if n == len(FIELDS):
            return marshal.dumps((protocol.VERSION, list(FIELDS), [tuple(r) for r in selected]))
        return marshal.dumps((protocol.VERSION, list(FIELDS[:n]), [r[:n] for r in selected]))

    def _counters(self, request: bytes) -> bytes | None:
        """The reply to a counters request (``ustack nstat``), else None:
        ``(1, "counters", {name: int})``."""
        if self.counters_fn is None or b'"counters"' not in request[:256]:
            return None
        try:
            query = json.loads(request)
        except (ValueError, RecursionError):
            return None
        if not isinstance(query, dict) or query.get("type") != "counters":
            return None
        values = {str(k): int(v) for k, v in self.counters_fn().items()}
        return marshal.dumps((protocol.VERSION, "counters", values))

    def respond(self, request: bytes) -> bytes:
        """Answer one request (see :mod:`ustack.diag.protocol`) in one go."""
        self.requests += 1
        counters = self._counters(request)
        if counters is not None:
            return counters
        try:
            states, predicate, detail, n = self._query(request)
        except (RequestError, FilterError) as exc:
            return _error(str(exc))
        with _no_gc():
            if self._netid == "all":
                return self._encode_both(
                    self._select(self._source(detail, "tcp"), states, predicate),
                    self._select(self._source(detail, "udp"), states, predicate), n)
            selected = self._select(self._source(detail), states, predicate)
            return self._encode(selected, n)

    async def respond_async(self, request: bytes) -> bytes:
        """Like :meth:`respond`, but when the snapshot is an iterator it is read
        in chunks with the loop running in between, so a stack with tens of
        thousands of connections keeps moving traffic while ss reads it."""
        self.requests += 1
        counters = self._counters(request)
        if counters is not None:
            return counters
        try:
            states, predicate, detail, n = self._query(request)
        except (RequestError, FilterError) as exc:
            return _error(str(exc))
        if (self._columns and self.columns_fn is not None and self._netid == "tcp"
                and predicate is None and not detail and n <= TABLE_FIELD_COUNT):
            columns = await self._gather_columns(self.columns_fn(), states)
            if columns is not None:
                with _no_gc():
                    return marshal.dumps((protocol.VERSION, "columns", list(FIELDS[:n]),
                                          columns[:n]))
        if self._netid == "all":
            tcp = await self._gather(self._source(detail, "tcp"), states, predicate)
            udp = await self._gather(self._source(detail, "udp"), states, predicate)
            with _no_gc():
                return self._encode_both(tcp, udp, n)
        selected = await self._gather(self._source(detail), states, predicate)
        with _no_gc():
            return self._encode(selected, n)

    async def _gather(self, source: Iterable[SocketRecord], states: int,
                      predicate: Predicate | None) -> list[SocketRecord]:
        """The selected records of a snapshot; an iterator is read in chunks
        with the loop running in between."""
        if isinstance(source, list | tuple):
            with _no_gc():
                return self._select(source, states, predicate)
        selected: list[SocketRecord] = []
        iterator = iter(source)
        while True:
            with _no_gc():
                chunk = list(itertools.islice(iterator, _CHUNK))
                selected.extend(self._select(chunk, states, predicate))
            if len(chunk) < _CHUNK:
                break
            await asyncio.sleep(0)
        return selected


    @staticmethod
    async def _gather_columns(chunks: Iterable[list[list[Any]]],
                              states: int) -> list[list[Any]] | None:
        """The table columns of the rows whose state is in ``states``, read
        chunk by chunk with the loop running in between; None when the
        stack's objects lack what the column getters read (then the record
        path answers)."""
        out: list[list[Any]] = [[] for _ in range(TABLE_FIELD_COUNT)]
        bits = STATE_BITS
        iterator = iter(chunks)
        first = True
        while True:
            with _no_gc():
                try:
                    chunk = next(iterator, None)
                except (AttributeError, TypeError, KeyError):
                    return None
                if chunk is None:
                    break
                if states != ALL_STATES:
                    keep = [bits.get(st, 0) & states for st in chunk[0]]
                    chunk = [list(compress(col, keep)) for col in chunk]
                for col, part in zip(out, chunk, strict=True):
                    col.extend(part)
            if not first:
                await asyncio.sleep(0)
            first = False
        return out


class RequestError(ValueError):
    """A malformed request: answered with an error reply."""


def _error(message: str) -> bytes:
    return marshal.dumps((protocol.VERSION, "error", message[:500]))


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    """The request: everything up to the client's end of writing (bounded)."""
    data = b""
    while len(data) <= _MAX_REQUEST:
        chunk = await reader.read(_MAX_REQUEST)
        if not chunk:
            break
        data += chunk
    return data


_SO_SNDBUFFORCE = 32  # Linux asm-generic/socket.h (CAP_NET_ADMIN: above wmem_max)


def _room_for(writer: asyncio.StreamWriter, size: int) -> None:
    """Let the socket take a large reply in one send (a send buffer of the
    reply's size, bounded by MAX_SNDBUF), so the client reads it without the
    stack's loop having to wake up once per ~200 KB (on a busy machine each
    wakeup waits for the scheduler)."""
    if size <= 1 << 18:
        return
    sock = writer.get_extra_info("socket")
    if sock is None:
        return
    want = min(size, MAX_SNDBUF)
    for opt in (_SO_SNDBUFFORCE, socket.SO_SNDBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, want)
            return
        except OSError:
            continue


#: the largest send buffer asked for a reply (the kernel doubles it)
MAX_SNDBUF = 64 << 20


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """Building tens of thousands of tuples triggers needless collections."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


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
    from ustack.diag.snapshot import iter_snapshot, iter_table_columns, iter_udp_snapshot

    server = DiagnosticsServer(lambda detail: iter_snapshot(stack, detail),
                               udp_snapshot_fn=lambda detail: iter_udp_snapshot(stack, detail),
                               counters_fn=getattr(stack, "counters", None),
                               columns_fn=lambda: iter_table_columns(stack))
    try:
        server.start_soon()
    except OSError as exc:
        log.warning("ustack: diagnostics endpoint %s not available: %s", server.path, exc)
        return None
    stack.add_close_hook(server.close)
    return server
