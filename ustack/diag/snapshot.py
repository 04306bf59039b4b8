"""Snapshots of a live stack: one record per connection and listener.

Reads the stack's connection table ``stack.tcp`` (a
:class:`~ustack.driver.tcp_table.TcpTable`): ``endpoints()`` (each with ``conn``,
``local_addr``/``remote_addr`` as 4-byte ``bytes``, ``local_port``,
``remote_port``), ``listeners()`` (``port``, ``backlog``, ``accept_queue``),
``local_addr`` and ``now()``; per connection ``conn.info(now)`` (TcpInfo,
docs/architecture.md) and ``conn.config.recv_buffer``/``send_buffer`` for
``-m``, and ``stack.device.mtu`` as the path MTU.  Must run on the stack's event loop thread.
"""

from __future__ import annotations

import os
import socket
import weakref
from collections.abc import Iterator
from operator import attrgetter, methodcaller
from typing import Any

from ustack.diag.records import BasicRecord, SocketRecord, listener_record, record_from_info

_COMM: str | None = None


def process_name() -> str:
    """This process's name as ss shows it (``/proc/self/comm``)."""
    global _COMM
    if _COMM is None:
        try:
            with open("/proc/self/comm") as f:
                _COMM = f.read().strip()
        except OSError:
            _COMM = "python3"
    return _COMM


class _Serials:
    """Stable small serial numbers (our "inode") for live connections."""

    def __init__(self) -> None:
        self.next = 1
        self.by_id: dict[int, tuple[Any, int]] = {}

    def refresh(self, objects: list[Any]) -> list[int]:
        old = self.by_id
        new: dict[int, tuple[Any, int]] = {}
        out = []
        for obj in objects:
            entry = old.get(id(obj))
            if entry is None or entry[0] is not obj:
                entry = (obj, self.next)
                self.next += 1
            new[id(obj)] = entry
            out.append(entry[1])
        self.by_id = new
        return out


_serials: weakref.WeakKeyDictionary[Any, _Serials] = weakref.WeakKeyDictionary()


def _ntoa(addr: Any, cache: dict[Any, str]) -> str:
    text = cache.get(addr)
    if text is None:
        text = socket.inet_ntoa(addr) if isinstance(addr, bytes | bytearray) else str(addr)
        cache[addr] = text
    return text


def _send_queue(conn: Any, now: float) -> int:
    """Bytes in the send buffer (TcpInfo.send_q) without building a TcpInfo.
    Reads the TCP core's send buffer length; falls back to ``info(now)``."""
    try:
        return len(conn._sndbuf)
    except (AttributeError, TypeError):
        return int(conn.info(now).send_q)


def iter_udp_snapshot(stack: Any, detail: bool = True) -> Iterator[SocketRecord]:
    """One record per UDP socket of ``stack`` (``stack.udp``), as ss shows UDP:
    UNCONN (or ESTAB when connected), Recv-Q = queued bytes, Send-Q 0 (UDP
    sends at once), peer ``0.0.0.0:*`` unless connected; ``-m``: the receive
    buffer and the drops of a full queue."""
    udp = getattr(stack, "udp", None)
    if udp is None:
        return
    pid, comm, uid = os.getpid(), process_name(), os.getuid()
    for sock in udp.sockets():
        local, lport = sock.sockname
        peer = sock.peername
        yield SocketRecord(
            "ESTAB" if peer else "UNCONN", local, lport, peer[0] if peer else "0.0.0.0",
            peer[1] if peer else 0, sock.queued_bytes, 0, pid, comm, uid, sock.local_port,
            id(sock), rcvbuf=sock.rcvbuf, drops=sock.drops)


def snapshot(stack: Any, detail: bool = True) -> list[SocketRecord]:
    """Records for every listener and connection of ``stack`` (``stack.tcp``).

    With ``detail=False`` connections are :data:`BasicRecord` tuples holding
    only the basic fields (state, addresses, queues, owner), built without
    calling ``info(now)``; that is what the default ``ss`` view asks for.
    """
    return list(iter_snapshot(stack, detail))


def iter_snapshot(stack: Any, detail: bool = True) -> Iterator[SocketRecord]:
    """:func:`snapshot` one record at a time: the table is listed at the
    first ``next()``, each connection is read when its record is produced (so
    the endpoint can let the stack run between chunks of a large table)."""
    table = stack.tcp
    now = table.now()
    pid = os.getpid()
    comm = process_name()
    uid = os.getuid()
    names: dict[Any, str] = {}
    try:
        serials = _serials[table]
    except KeyError:
        serials = _serials[table] = _Serials()
    except TypeError:  # not weak-referenceable
        serials = _Serials()

    listeners = list(table.listeners())
    endpoints = list(table.endpoints())
    inos = serials.refresh(listeners + endpoints)
    local = _ntoa(getattr(table, "local_addr", b"\0\0\0\0"), names)
    # ustack does no path-MTU discovery: the path MTU is the interface's
    mtu = int(getattr(getattr(stack, "device", None), "mtu", 0) or 0)
    for lst, ino in zip(listeners, inos, strict=False):
        yield listener_record(
            local, lst.port, len(lst.accept_queue), lst.backlog,
            pid=pid, comm=comm, uid=uid, ino=ino, sk=id(lst),
        )
    if not detail:
        # the default view needs no TcpInfo: ~1 us per connection instead of ~30
        new = tuple.__new__
        for ep, ino in zip(endpoints, inos[len(listeners) :], strict=False):
            conn = ep.conn
            yield new(  # type: ignore[misc]
                BasicRecord,
                (
                    conn.state.ss_name,
                    _ntoa(ep.local_addr, names),
                    ep.local_port,
                    _ntoa(ep.remote_addr, names),
                    ep.remote_port,
                    conn.readable(),
                    _send_queue(conn, now),
                    pid, comm, uid, ino, id(ep),
                ),
            )
        return
    for ep, ino in zip(endpoints, inos[len(listeners) :], strict=False):
        conn = ep.conn
        info = conn.info(now)
        config = getattr(conn, "config", None)
        yield record_from_info(
            info,
            _ntoa(ep.local_addr, names),
            ep.local_port,
            _ntoa(ep.remote_addr, names),
            ep.remote_port,
            pid=pid, comm=comm, uid=uid, ino=ino, sk=id(ep),
            pmtu=mtu,
            rcvbuf=getattr(config, "recv_buffer", 0),
            sndbuf=getattr(config, "send_buffer", 0),
        )


class _NameMemo(dict[Any, str]):
    """value -> display name (``ss_name`` of a state, dotted quad of an
    address), computed once per distinct value."""

    def __init__(self, fn: Any) -> None:
        super().__init__()
        self.fn = fn

    def __missing__(self, key: Any) -> str:
        text: str = self.fn(key)
        self[key] = text
        return text


_ep_conn = attrgetter("conn")
_ep_local_addr = attrgetter("local_addr")
_ep_local_port = attrgetter("local_port")
_ep_remote_addr = attrgetter("remote_addr")
_ep_remote_port = attrgetter("remote_port")
#: the state's enum member name, read at C speed (an Enum's ``__hash__`` is
#: Python code: a dict keyed by members would cost a call per connection)
_conn_state_name = attrgetter("state._name_")
_conn_readable = methodcaller("readable")
#: what _send_queue reads (a TimeWait record has an empty one too)
_conn_sndbuf = attrgetter("_sndbuf")


def iter_table_columns(stack: Any, chunk: int = 10_000) -> Iterator[list[list[Any]]]:
    """The seven table fields of :func:`iter_snapshot`'s ``detail=False``
    records (state, addresses, ports, Recv-Q, Send-Q) as columns, ``chunk``
    connections at a time (listeners first): what ``"columns": true``
    requests get, without a tuple per connection.  Each column is built at C
    speed (``map`` over attribute getters); the values are those of the
    record path, which ``tests/unit/test_diag_columns.py`` checks.  Serial
    numbers (ino) are not refreshed: the table has no ino column."""
    table = stack.tcp
    listeners = list(table.listeners())
    endpoints = list(table.endpoints())
    names = _NameMemo(lambda a: _ntoa(a, {}))
    local = names[getattr(table, "local_addr", b"\0\0\0\0")]
    if listeners:
        cols: list[list[Any]] = [[] for _ in range(7)]
        for lst in listeners:
            rec = listener_record(local, lst.port, len(lst.accept_queue), lst.backlog)
            for col, value in zip(cols, rec[:7], strict=True):
                col.append(value)
        yield cols
    if not endpoints:
        return
    # member name -> ss name, for the members of the connections' state enum
    ss_names = {m._name_: m.ss_name for m in type(endpoints[0].conn.state)}
    for start in range(0, len(endpoints), chunk):
        eps = endpoints[start : start + chunk]
        conns = list(map(_ep_conn, eps))
        yield [
            list(map(ss_names.__getitem__, map(_conn_state_name, conns))),
            list(map(names.__getitem__, map(_ep_local_addr, eps))),
            list(map(_ep_local_port, eps)),
            list(map(names.__getitem__, map(_ep_remote_addr, eps))),
            list(map(_ep_remote_port, eps)),
            list(map(_conn_readable, conns)),
            list(map(len, map(_conn_sndbuf, conns))),
        ]
