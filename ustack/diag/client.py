"""Query every running stack's diagnostics endpoint and merge the records.

Blocking sockets only (no asyncio), so ``ustack ss`` starts fast.  An endpoint
file whose process is gone is removed; one whose process is alive but does not
answer within the timeout is skipped with a warning.
"""

from __future__ import annotations

import contextlib
import errno
import json
import marshal
import os
import socket
import sys
from collections.abc import Callable

from ustack.diag import protocol
from ustack.diag.records import ALL_STATES, SocketRecord, records_from_rows


class EndpointError(Exception):
    """A stack answered with an error or garbage."""


def endpoint_paths(directory: str | None = None) -> list[str]:
    """Endpoint sockets in ``directory`` (default: every search directory)."""
    paths: list[str] = []
    for d in [directory] if directory else protocol.search_dirs():
        try:
            names = os.listdir(d)
        except OSError:
            continue
        paths.extend(os.path.join(d, n) for n in names if protocol.pid_of(n) is not None)
    return sorted(paths)


def _remove_if_stale(path: str) -> bool:
    pid = protocol.pid_of(os.path.basename(path))
    if pid is not None and protocol.process_alive(pid):
        return False
    with contextlib.suppress(OSError):
        os.unlink(path)
    return True


def query_endpoint(
    path: str,
    *,
    states: int = ALL_STATES,
    filter_text: str = "",
    detail: bool = True,
    fields: int | None = None,
    timeout: float = 5.0,
) -> list[SocketRecord] | None:
    """Records from one endpoint; None when it is stale (and then removed).
    ``fields``: only the first N fields of each record (see records.FIELDS)."""
    query = {"v": protocol.VERSION, "states": states, "filter": filter_text or None,
             "detail": detail}
    if fields:
        query["fields"] = fields
    request = json.dumps(query).encode()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            _remove_if_stale(path)
            return None
        except OSError as exc:
            if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
                _remove_if_stale(path)
                return None
            raise
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        chunks: list[bytes] = []
        recv = sock.recv
        while True:
            chunk = recv(4 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        sock.close()
    try:
        reply = marshal.loads(b"".join(chunks))
        version, names, rows = reply
    except (EOFError, ValueError, TypeError) as exc:
        raise EndpointError(f"{path}: unreadable reply") from exc
    if names == "error":
        raise EndpointError(str(rows))
    if version != protocol.VERSION:
        raise EndpointError(f"{path}: protocol version {version}")
    return records_from_rows(names, rows)


def query_stacks(
    *,
    states: int = ALL_STATES,
    filter_text: str = "",
    detail: bool = True,
    fields: int | None = None,
    timeout: float = 5.0,
    directory: str | None = None,
    warn: Callable[[str], None] | None = None,
) -> list[SocketRecord]:
    """Merged records of every running stack (the state mask and filter are
    applied by each stack)."""
    warn = warn or (lambda msg: print(f"ustack ss: {msg}", file=sys.stderr))
    merged: list[SocketRecord] = []
    denied = 0
    for path in endpoint_paths(directory):
        try:
            records = query_endpoint(
                path, states=states, filter_text=filter_text, detail=detail, fields=fields,
                timeout=timeout,
            )
        except TimeoutError:
            warn(f"{path}: no answer within {timeout:g} s, skipped")
            continue
        except PermissionError:
            denied += 1
            continue
        except (OSError, EndpointError) as exc:
            warn(f"{path}: {exc}")
            continue
        if records:
            merged.extend(records)
    if denied:
        warn(
            f"{denied} stack(s) not shown: their endpoints are mode 0600 "
            "(run ustack ss as the stacks' user, e.g. root)"
        )
    return merged
