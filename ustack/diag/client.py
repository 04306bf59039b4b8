"""Query every running stack's diagnostics endpoint and merge the records.

Blocking sockets only (no asyncio), so ``ustack ss`` starts fast.  An endpoint
file whose process is gone is removed; one whose process is alive but does not
answer within the timeout is skipped with a warning.

Nothing from an endpoint is believed unchecked: a run directory another user
could tamper with is skipped (:func:`protocol.check_dir`), the server must run
as this user or root (``SO_PEERCRED``), and the reply is validated field by
field (:func:`ustack.diag.records.validate_rows`); an endpoint failing any of
these is reported in one line and skipped, the other stacks' rows are shown.
(The reply is ``marshal``: safe to load only from a process of a trusted uid,
which is why the uid is checked first.)
"""

from __future__ import annotations

import contextlib
import errno
import json
import marshal
import os
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

from ustack.diag import protocol
from ustack.diag.records import (
    ALL_STATES,
    BASIC_FIELD_COUNT,
    FIELDS,
    TABLE_FIELD_COUNT,
    RowError,
    SocketRecord,
    records_from_rows,
    validate_columns,
    validate_rows,
)


class EndpointError(Exception):
    """A stack answered with an error or garbage."""


#: largest reply read from one endpoint (50,000 detailed rows are ~30 MB)
MAX_REPLY = 1 << 30


def endpoint_paths(
    directory: str | None = None, warn: Callable[[str], None] | None = None
) -> list[str]:
    """Endpoint sockets in ``directory`` (default: every search directory);
    a directory that fails :func:`protocol.check_dir` is skipped (``warn``)."""
    paths: list[str] = []
    trusted = protocol.client_trusted_uids()
    for d in [directory] if directory else protocol.search_dirs():
        try:
            protocol.check_dir(d, trusted=trusted)
            names = os.listdir(d)
        except protocol.UnsafeDirectory as exc:
            if warn is not None:
                warn(f"{exc}; its stacks are not shown")
            continue
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
    netid: str = "tcp",
) -> list[SocketRecord] | None:
    """Records from one endpoint; None when it is stale (and then removed).
    ``fields``: only the first N fields of each record (see records.FIELDS);
    ``netid="udp"``: the stack's UDP sockets instead of TCP's."""
    data = _ask(path, _request(states, filter_text, detail, fields, netid), timeout)
    if data is None:
        return None
    return decode_reply(path, data, _required(detail, fields))


def query_endpoint_both(
    path: str,
    *,
    states: int = ALL_STATES,
    filter_text: str = "",
    detail: bool = True,
    fields: int | None = None,
    timeout: float = 5.0,
) -> tuple[list[SocketRecord], list[SocketRecord]] | None:
    """TCP and UDP records of one endpoint in one request (``"netid":
    "all"``); a stack too old to know it is asked twice."""
    data = _ask(path, _request(states, filter_text, detail, fields, "all"), timeout)
    if data is None:
        return None
    required = _required(detail, fields)
    try:
        return decode_reply_both(path, data, required)
    except _NetidUnknown:
        tcp = query_endpoint(path, states=states, filter_text=filter_text, detail=detail,
                             fields=fields, timeout=timeout)
        udp = query_endpoint(path, states=states, filter_text=filter_text, detail=detail,
                             fields=fields, timeout=timeout, netid="udp")
        return None if tcp is None else (tcp, udp or [])


def _request(states: int, filter_text: str, detail: bool, fields: int | None,
             netid: str, columns: bool = False) -> bytes:
    query: dict[str, object] = {"v": protocol.VERSION, "states": states,
                                "filter": filter_text or None, "detail": detail}
    if fields:
        query["fields"] = fields
    if netid != "tcp":
        query["netid"] = netid
    if columns:
        query["columns"] = True
    return json.dumps(query).encode()


#: a columnar answer: the field names and one list of values per field
Columns = tuple[tuple[str, ...], list[list[Any]]]


def query_endpoint_columns(
    path: str,
    *,
    states: int = ALL_STATES,
    filter_text: str = "",
    fields: int = TABLE_FIELD_COUNT,
    timeout: float = 5.0,
    netid: str = "tcp",
) -> Columns | None:
    """The first ``fields`` fields of one endpoint's records as columns
    (``"columns": true``; a stack that answers rows has them transposed
    here); None when the endpoint is stale (and then removed)."""
    data = _ask(path, _request(states, filter_text, False, fields, netid, columns=True),
                timeout)
    if data is None:
        return None
    return decode_columns(path, data, FIELDS[:fields])


def decode_columns(path: str, data: bytes,
                   required: tuple[str, ...] = FIELDS[:TABLE_FIELD_COUNT]) -> Columns:
    """The columns of a ``(1, "columns", names, columns)`` reply, checked
    field by field; a rows reply (an older stack) is checked and transposed;
    EndpointError (one line) for an error reply or anything misshapen."""
    try:
        reply = marshal.loads(data)
    except Exception:  # noqa: BLE001 - marshal raises several types on garbage
        raise EndpointError(f"{path}: unreadable reply ({len(data)} bytes)") from None
    if type(reply) is tuple and len(reply) == 4 and reply[1] == "columns":
        version, _tag, names, columns = reply
        if type(version) is not int or version != protocol.VERSION:
            raise EndpointError(f"{path}: unsupported protocol version {_short(version)}")
        try:
            return validate_columns(names, columns, required)
        except RowError as exc:
            raise EndpointError(f"{path}: malformed reply: {exc}") from None
    records = decode_reply(path, data, required)
    names_t = tuple(records[0]._fields) if records else required
    return names_t, [list(c) for c in zip(*records, strict=True)] if records else [
        [] for _ in names_t]


def _required(detail: bool, fields: int | None) -> tuple[str, ...]:
    wanted = fields or (len(FIELDS) if detail else BASIC_FIELD_COUNT)
    return FIELDS[:wanted]


def _ask(path: str, request: bytes, timeout: float) -> bytes | None:
    """One request, the whole reply; None when the endpoint is stale."""
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
        uid = protocol.peer_uid(sock)
        if uid not in protocol.client_trusted_uids():
            raise EndpointError(
                f"{path}: served by uid {uid}, neither you nor root: not believed, skipped"
            )
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        chunks: list[bytes] = []
        recv = sock.recv
        size = 0
        deadline = time.monotonic() + max(timeout, 1.0) * 4
        while True:
            chunk = recv(4 << 20)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_REPLY:
                raise EndpointError(f"{path}: reply larger than {MAX_REPLY >> 20} MB, skipped")
            if time.monotonic() > deadline:
                raise TimeoutError
    finally:
        sock.close()
    return b"".join(chunks)


class _NetidUnknown(EndpointError):
    """The stack answered an error about ``"netid": "all"`` (an older stack)."""


def decode_reply_both(
    path: str, data: bytes, required: tuple[str, ...] = FIELDS[:TABLE_FIELD_COUNT]
) -> tuple[list[SocketRecord], list[SocketRecord]]:
    """The TCP and UDP records of a ``"netid": "all"`` reply,
    ``(version, names, tcp_rows, udp_rows)``."""
    try:
        reply = marshal.loads(data)
    except Exception:  # noqa: BLE001 - marshal raises several types on garbage
        raise EndpointError(f"{path}: unreadable reply ({len(data)} bytes)") from None
    if type(reply) is tuple and len(reply) == 3 and reply[1] == "error" \
            and isinstance(reply[2], str) and '"netid"' in reply[2]:
        raise _NetidUnknown(f"{path}: {reply[2]}")
    if type(reply) is not tuple or len(reply) != 4:
        return decode_reply(path, data, required), []  # an error reply raises here
    version, names, tcp_rows, udp_rows = reply
    tcp = decode_reply(path, marshal.dumps((version, names, tcp_rows)), required)
    udp = decode_reply(path, marshal.dumps((version, names, udp_rows)), required)
    return tcp, udp


def decode_reply(
    path: str, data: bytes, required: tuple[str, ...] = FIELDS[:TABLE_FIELD_COUNT]
) -> list[SocketRecord]:
    """The records in one reply; EndpointError (one line) for an error reply
    or for anything not shaped as the protocol says."""
    try:
        reply = marshal.loads(data)
    except Exception:  # noqa: BLE001 - marshal raises several types on garbage
        raise EndpointError(f"{path}: unreadable reply ({len(data)} bytes)") from None
    if type(reply) is not tuple or len(reply) != 3:
        raise EndpointError(f"{path}: reply is not a (version, names, rows) triple")
    version, names, rows = reply
    if type(version) is not int or version != protocol.VERSION:
        raise EndpointError(f"{path}: unsupported protocol version {_short(version)}")
    if names == "error":
        raise EndpointError(f"{path}: {_short(rows, 200, str_plain=True)}")
    try:
        names_t, checked = validate_rows(names, rows, required)
    except RowError as exc:
        raise EndpointError(f"{path}: malformed reply: {exc}") from None
    return records_from_rows(names_t, checked)


def _short(value: object, limit: int = 40, *, str_plain: bool = False) -> str:
    """A printable, bounded rendering of a value from an untrusted reply."""
    if str_plain and isinstance(value, str):
        text = value
    elif isinstance(value, str | bytes):
        text = repr(value[: limit + 1])
    elif value is None or isinstance(value, float) or (
            isinstance(value, int) and abs(value) < 10 ** limit):
        text = repr(value)  # (a huge int has no repr: int_max_str_digits)
    else:  # (a container could be nested deeper than repr can go)
        text = f"a {type(value).__name__}"
    text = "".join(c if c.isprintable() else "?" for c in text[: limit + 1])
    return text if len(text) <= limit else text[:limit] + "..."


def query_stacks(
    *,
    states: int = ALL_STATES,
    filter_text: str = "",
    detail: bool = True,
    fields: int | None = None,
    timeout: float = 5.0,
    directory: str | None = None,
    warn: Callable[[str], None] | None = None,
    paths: list[str] | None = None,
    netid: str = "tcp",
) -> list[SocketRecord]:
    """Merged records of every running stack, or of the endpoints in
    ``paths`` (the state mask and filter are applied by each stack)."""
    merged: list[SocketRecord] = []

    def ask(path: str) -> bool:
        records = query_endpoint(path, states=states, filter_text=filter_text, detail=detail,
                                 fields=fields, timeout=timeout, netid=netid)
        if records:
            merged.extend(records)
        return records is not None

    _each_endpoint(ask, timeout, directory, warn, paths)
    return merged


def query_stacks_columns(
    *,
    states: int = ALL_STATES,
    filter_text: str = "",
    fields: int = TABLE_FIELD_COUNT,
    timeout: float = 5.0,
    directory: str | None = None,
    warn: Callable[[str], None] | None = None,
    paths: list[str] | None = None,
    netid: str = "tcp",
) -> list[list[Any]]:
    """:func:`query_stacks` as columns: the first ``fields`` fields of the
    merged records (:data:`FIELDS` order), one list per field, stacks in
    the same order as there."""
    merged: list[list[Any]] = [[] for _ in range(fields)]
    wanted = FIELDS[:fields]

    def ask(path: str) -> bool:
        got = query_endpoint_columns(path, states=states, filter_text=filter_text,
                                     fields=fields, timeout=timeout, netid=netid)
        if got is None:
            return False
        names, columns = got
        index = {name: i for i, name in enumerate(names)}
        for out, name in zip(merged, wanted, strict=True):
            out.extend(columns[index[name]])
        return True

    _each_endpoint(ask, timeout, directory, warn, paths)
    return merged


def query_stacks_both(
    *,
    states: int = ALL_STATES,
    filter_text: str = "",
    detail: bool = True,
    fields: int | None = None,
    timeout: float = 5.0,
    directory: str | None = None,
    warn: Callable[[str], None] | None = None,
    paths: list[str] | None = None,
) -> tuple[list[SocketRecord], list[SocketRecord]]:
    """:func:`query_stacks` for TCP and UDP at once: one request per stack."""
    tcp: list[SocketRecord] = []
    udp: list[SocketRecord] = []

    def ask(path: str) -> bool:
        both = query_endpoint_both(path, states=states, filter_text=filter_text,
                                   detail=detail, fields=fields, timeout=timeout)
        if both is None:
            return False
        tcp.extend(both[0])
        udp.extend(both[1])
        return True

    _each_endpoint(ask, timeout, directory, warn, paths)
    return tcp, udp


def _each_endpoint(ask: Callable[[str], bool], timeout: float, directory: str | None,
                   warn: Callable[[str], None] | None, paths: list[str] | None) -> None:
    """``ask(path)`` for every endpoint; failures reported in one line each."""
    warn = warn or (lambda msg: print(f"ustack ss: {msg}", file=sys.stderr))
    denied = 0
    for path in endpoint_paths(directory, warn) if paths is None else paths:
        try:
            ask(path)
        except TimeoutError:
            warn(f"{path}: no answer within {timeout:g} s, skipped")
            continue
        except PermissionError:
            denied += 1
            continue
        except EndpointError as exc:  # its message names the endpoint
            warn(str(exc))
            continue
        except OSError as exc:
            warn(f"{path}: {exc.strerror or exc}")
            continue
    if denied:
        warn(
            f"{denied} stack(s) not shown: their endpoints are mode 0600 "
            "(run ustack ss as the stacks' user, e.g. root)"
        )
