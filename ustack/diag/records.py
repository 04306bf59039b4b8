"""Socket snapshot records: ustack's analogue of an ``inet_diag`` message.

One :class:`SocketRecord` describes one connection or listener of a running
stack at one instant.  It is an immutable tuple (cheap to build, to marshal
across the diagnostics endpoint and to compare in tests) whose fields are the
addresses, the queues, the owning process and every figure the TCP core's
``TcpConnection.info(now)`` exposes (docs/architecture.md, "tcp core").

Field order matters: the first :data:`BASIC_FIELD_COUNT` fields are the ones the
default ``ss`` view and the filter language need, so the endpoint can send only
that prefix when the detailed figures are not asked for.

Units follow ``ss``: times in the record are seconds (floats) as in
``TcpInfo``; the formatter converts them to milliseconds the way ``ss`` prints
``tcp_info``.  Listener records carry the accept-queue length in ``recv_q`` and
the backlog in ``send_q`` (as Linux reports them for ``LISTEN`` sockets).
"""

from __future__ import annotations

import math
from collections import namedtuple
from collections.abc import Callable
from itertools import repeat
from operator import itemgetter
from typing import Any, NamedTuple

# ss display names, indexed by the kernel's TCP state numbers (include/net/tcp_states.h)
STATE_NAMES: tuple[str, ...] = (
    "UNKNOWN",
    "ESTAB",
    "SYN-SENT",
    "SYN-RECV",
    "FIN-WAIT-1",
    "FIN-WAIT-2",
    "TIME-WAIT",
    "UNCONN",
    "CLOSE-WAIT",
    "LAST-ACK",
    "LISTEN",
    "CLOSING",
)
STATE_BITS: dict[str, int] = {name: 1 << i for i, name in enumerate(STATE_NAMES) if i}
ALL_STATES = sum(STATE_BITS.values())

# spellings that appear in RFC 9293 / TcpState enums, mapped to ss display names
_STATE_ALIASES: dict[str, str] = {
    "ESTABLISHED": "ESTAB",
    "SYN_SENT": "SYN-SENT",
    "SYN_RECEIVED": "SYN-RECV",
    "SYN-RECEIVED": "SYN-RECV",
    "SYN_RECV": "SYN-RECV",
    "FIN_WAIT_1": "FIN-WAIT-1",
    "FIN_WAIT_2": "FIN-WAIT-2",
    "TIME_WAIT": "TIME-WAIT",
    "CLOSED": "UNCONN",
    "CLOSE": "UNCONN",
    "CLOSE_WAIT": "CLOSE-WAIT",
    "LAST_ACK": "LAST-ACK",
    "LISTENING": "LISTEN",
}


def ss_state_name(state: object) -> str:
    """Return the ss display name for a state given as an ss name, an enum
    with ``ss_name``, or an RFC-style name such as ``ESTABLISHED``."""
    name = getattr(state, "ss_name", None)
    if isinstance(name, str):
        return name
    text = getattr(state, "name", state)
    text = str(text).upper()
    if text in STATE_BITS:
        return text
    return _STATE_ALIASES.get(text, _STATE_ALIASES.get(text.replace("-", "_"), text))


class SocketRecord(NamedTuple):
    """One connection or listener.  Times are seconds; sizes bytes unless said."""

    # --- basic fields (the default view and the filter need only these) ---
    state: str  # ss display name: ESTAB, LISTEN, TIME-WAIT, ...
    local_addr: str
    local_port: int
    remote_addr: str  # "0.0.0.0" for a listener
    remote_port: int  # 0 for a listener (shown as "*")
    recv_q: int  # unread bytes; accept-queue length for LISTEN
    send_q: int  # unacknowledged + unsent bytes; backlog for LISTEN
    pid: int = 0
    comm: str = ""
    uid: int = 0
    ino: int = 0  # per-stack connection serial number (ustack has no inode)
    sk: int = 0  # unique id of the connection object
    # --- detailed figures (TcpInfo) ---
    timer_name: str = ""  # on keepalive timewait persist delack, "" = none
    timer_expires: float = 0.0  # seconds until the timer fires
    timer_count: int = 0  # retransmissions / probes so far
    shut_rd: bool = False
    shut_wr: bool = False
    ts_enabled: bool = False
    sack_enabled: bool = False
    ecn_enabled: bool = False
    wscale_enabled: bool = False
    ca_name: str = ""
    snd_wscale: int = 0
    rcv_wscale: int = 0
    rto: float = 0.0
    backoff: int = 0
    srtt: float = 0.0
    rttvar: float = 0.0
    ato: float = 0.0
    mss: int = 0
    pmtu: int = 0
    rcvmss: int = 0
    advmss: int = 0
    cwnd: int = 0
    ssthresh: int = 0
    bytes_sent: int = 0
    bytes_retrans: int = 0
    bytes_acked: int = 0
    bytes_received: int = 0
    segs_out: int = 0
    segs_in: int = 0
    data_segs_out: int = 0
    data_segs_in: int = 0
    last_send: float = 0.0  # seconds since
    last_recv: float = 0.0
    last_ack: float = 0.0
    pacing_rate: float = 0.0  # bytes per second
    delivery_rate: float = 0.0  # bytes per second
    delivered: int = 0
    app_limited: bool = False
    busy_time: float = 0.0
    unacked: int = 0
    retransmits: int = 0
    total_retrans: int = 0
    lost: int = 0
    sacked: int = 0
    dsack_dups: int = 0
    reordering: int = 3
    rcv_rtt: float = 0.0
    rcv_space: int = 0
    rcv_ssthresh: int = 0
    notsent: int = 0
    min_rtt: float = 0.0
    snd_wnd: int = 0
    rcv_wnd: int = 0
    snd_una: int = 0
    snd_nxt: int = 0
    rcv_nxt: int = 0
    rcvbuf: int = 0
    sndbuf: int = 0
    drops: int = 0
    #: Linux enum tcp_ca_state, and the parts of busy_time the peer's window
    #: or the send buffer was the limit (tcpi_rwnd_limited/tcpi_sndbuf_limited)
    ca_state: int = 0
    rwnd_limited: float = 0.0
    sndbuf_limited: float = 0.0


FIELDS: tuple[str, ...] = SocketRecord._fields
BASIC_FIELD_COUNT = FIELDS.index("sk") + 1
DEFAULTS: tuple[Any, ...] = tuple(SocketRecord._field_defaults.get(f) for f in FIELDS)
_DETAIL_TAIL: tuple[Any, ...] = DEFAULTS[BASIC_FIELD_COUNT:]

_FIN_RECEIVED = frozenset({"CLOSE-WAIT", "LAST-ACK", "CLOSING", "TIME-WAIT"})
_FIN_SENT = frozenset({"FIN-WAIT-1", "FIN-WAIT-2", "CLOSING", "LAST-ACK", "TIME-WAIT"})


def record_from_info(
    info: Any,
    local_addr: str,
    local_port: int,
    remote_addr: str,
    remote_port: int,
    *,
    pid: int = 0,
    comm: str = "",
    uid: int = 0,
    ino: int = 0,
    sk: int = 0,
    **extra: Any,
) -> SocketRecord:
    """Build a record from a ``TcpInfo`` (docs/architecture.md) and the 4-tuple.

    Every ``TcpInfo`` attribute whose name is a record field is copied; fields
    the TCP core does not (yet) expose keep their defaults.  ``info.timer`` is
    ``(name, seconds_until_expiry, count)`` or ``None``.  ``extra`` overrides
    any field (e.g. ``rcvbuf=`` from the stream layer).
    """
    values: dict[str, Any] = {}
    for name in FIELDS[BASIC_FIELD_COUNT:]:
        value = getattr(info, name, None)
        if value is not None:
            values[name] = value
    timer = getattr(info, "timer", None)
    if timer:
        values["timer_name"], values["timer_expires"], values["timer_count"] = timer
        if timer[0] == "persist" and not values.get("backoff"):
            # Linux's zero-window probe timer backs off icsk_backoff, which
            # tcp_info reports (tcp_send_probe0): ss shows backoff:N there too
            values["backoff"] = timer[2]
    state = ss_state_name(getattr(info, "state", "UNKNOWN"))
    # Linux marks the receive side shut once a FIN arrived and the send side
    # once ours was queued (sk_shutdown); ss's -e marker shows that.
    if state in _FIN_RECEIVED:
        values["shut_rd"] = True
    if state in _FIN_SENT:
        values["shut_wr"] = True
    values.update(extra)
    return SocketRecord(
        state,
        local_addr,
        int(local_port),
        remote_addr,
        int(remote_port),
        int(getattr(info, "recv_q", 0) or 0),
        int(getattr(info, "send_q", 0) or 0),
        pid,
        comm,
        uid,
        ino,
        sk,
        **values,
    )


def listener_record(
    local_addr: str,
    local_port: int,
    accept_queue: int,
    backlog: int,
    *,
    pid: int = 0,
    comm: str = "",
    uid: int = 0,
    ino: int = 0,
    sk: int = 0,
) -> SocketRecord:
    """A ``LISTEN`` record: Recv-Q is the accept-queue length, Send-Q the backlog."""
    return SocketRecord(
        "LISTEN", local_addr, local_port, "0.0.0.0", 0, accept_queue, backlog,
        pid, comm, uid, ino, sk,
    )


#: The fields the default table needs: state, addresses, ports, queues.
TABLE_FIELD_COUNT = FIELDS.index("send_q") + 1
#: A record holding only those (what ``ustack ss -tan`` asks the endpoint for).
TableRecord = namedtuple("TableRecord", FIELDS[:TABLE_FIELD_COUNT])  # type: ignore[misc]

#: A record holding only the basic fields (what the endpoint sends when the
#: detailed figures are not asked for); same attribute names as SocketRecord.
BasicRecord = namedtuple("BasicRecord", FIELDS[:BASIC_FIELD_COUNT])  # type: ignore[misc]


def basic_record(row: tuple[Any, ...]) -> SocketRecord:
    """Complete a row holding only the basic prefix of fields."""
    return tuple.__new__(SocketRecord, row + _DETAIL_TAIL)


def records_from_rows(names: list[str] | tuple[str, ...], rows: list[Any]) -> list[SocketRecord]:
    """Rebuild records from rows whose columns are ``names`` (fast when
    ``names`` is a prefix of :data:`FIELDS`, which is what the endpoint sends).
    Rows of exactly the basic (table) fields become :data:`BasicRecord`
    (:data:`TableRecord`) tuples, which have only those attributes."""
    names = tuple(names)
    n = len(names)
    new = tuple.__new__
    if names == FIELDS:
        return [new(SocketRecord, row) for row in rows]
    if n == BASIC_FIELD_COUNT and names == FIELDS[:n]:
        # only basic attributes are needed by whoever asked for basic rows
        return [new(BasicRecord, row) for row in rows]  # type: ignore[misc]
    if n == TABLE_FIELD_COUNT and names == FIELDS[:n]:
        return [new(TableRecord, row) for row in rows]  # type: ignore[misc]
    if names == FIELDS[:n]:
        tail = DEFAULTS[n:]
        return [new(SocketRecord, tuple(row) + tail) for row in rows]
    index = {name: i for i, name in enumerate(names)}
    picks = [index.get(f, -1) for f in FIELDS]
    out = []
    pairs = list(zip(picks, DEFAULTS, strict=True))
    for row in rows:
        out.append(new(SocketRecord, tuple(row[p] if p >= 0 else d for p, d in pairs)))
    return out


# ----------------------------------------------------------- reply checking


class RowError(ValueError):
    """Rows from an endpoint that do not have the shape of records."""


def _kinds() -> dict[str, str]:
    """Each field's type: its default's, or for the basic seven as annotated."""
    kinds = {"state": "str", "local_addr": "str", "local_port": "int", "remote_addr": "str",
             "remote_port": "int", "recv_q": "int", "send_q": "int"}
    for name, default in SocketRecord._field_defaults.items():
        kinds[name] = type(default).__name__
    assert set(kinds) == set(FIELDS) and set(kinds.values()) <= {"str", "int", "float", "bool"}
    return kinds


#: each field's type name as annotated: "str", "int", "float" or "bool"
FIELD_KINDS: dict[str, str] = _kinds()
_ALLOWED_TYPES: dict[str, frozenset[type]] = {
    "str": frozenset({str}),
    "int": frozenset({int, bool}),
    "float": frozenset({float, int, bool}),
    "bool": frozenset({bool, int}),
}
_TIMER_NAMES = frozenset({"", "on", "keepalive", "timewait", "persist", "delack", "off"})
_PORT_FIELDS = frozenset({"local_port", "remote_port"})
_ADDR_FIELDS = frozenset({"local_addr", "remote_addr"})
_MAX_TEXT = 64
#: kernel counters are u64; a bigger int could not even be printed
#: (sys.int_info.default_max_str_digits)
_MAX_NUMBER = 2**64


def _is_dotted_quad(text: str) -> bool:
    parts = text.split(".")
    return len(parts) == 4 and all(
        p.isdigit() and p.isascii() and len(p) <= 3 and int(p) <= 255 for p in parts
    )


def _check_column(name: str, column: list[Any]) -> None:
    kind = FIELD_KINDS[name]
    types = set(map(type, column))
    if not types <= _ALLOWED_TYPES[kind]:
        bad = sorted(t.__name__ for t in types - _ALLOWED_TYPES[kind])
        raise RowError(f"field {name} holds {', '.join(bad)}, not {kind}")
    if kind == "str":
        values = set(column)
        if name == "state":
            wrong = values - STATE_BITS.keys()
        elif name in _ADDR_FIELDS:
            wrong = {v for v in values if not _is_dotted_quad(v)}
        elif name == "timer_name":
            wrong = values - _TIMER_NAMES
        else:  # comm, ca_name: short printable names
            wrong = {v for v in values if len(v) > _MAX_TEXT or not v.isprintable()}
        if wrong:
            raise RowError(f"field {name} holds {min(wrong)[:_MAX_TEXT]!r}")
        return
    if kind == "float" and not all(map(math.isfinite, column)):
        raise RowError(f"field {name} holds a value that is not finite")
    if column and min(column) < 0:
        raise RowError(f"field {name} holds a negative value")
    if column and max(column) > _MAX_NUMBER:
        raise RowError(f"field {name} holds a number above 2**64")
    if name in _PORT_FIELDS and column and max(column) > 0xFFFF:
        raise RowError(f"field {name} holds a port above 65535")
    if kind == "bool" and column and max(column) > 1:
        raise RowError(f"field {name} holds a number other than 0 and 1, not a boolean")


def validate_rows(
    names: Any, rows: Any, required: tuple[str, ...] | None = None
) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
    """Check an endpoint's reply field by field before anything formats it:
    ``names`` distinct record field names including ``required`` (default:
    the table fields),
    ``rows`` a list of tuples of that width, every column of its field's type
    (an ``int`` for an int, finite numbers from 0 to 2**64, ports up to
    65535, known state and timer names, dotted-quad addresses, short printable
    names).  Returns (names, rows) as tuples; raises :class:`RowError`.
    Works column by column at C speed (50,000 rows: a few ms per field)."""
    names_t = _check_names(names, required)
    if type(rows) is not list:
        raise RowError("rows are not a list")
    if not rows:
        return names_t, []
    row_types = set(map(type, rows))
    if not row_types <= {tuple, list}:
        raise RowError("a row is not a tuple")
    width = len(names_t)
    if set(map(len, rows)) != {width}:
        raise RowError(f"a row does not have {width} fields")
    rows_t: list[tuple[Any, ...]] = rows if row_types == {tuple} else list(map(tuple, rows))
    # narrow replies (the default table) column by column; wide ones (-i, -e,
    # -m) row-wise first, column by column only to name a bad field
    if width <= 16 or not _rows_look_valid(names_t, rows_t):
        for i, name in enumerate(names_t):
            _check_column(name, list(map(itemgetter(i), rows_t)))
        if width > 16:  # the row-wise test failed where no column did
            raise RowError("malformed rows")
    return names_t, rows_t


def _check_names(names: Any, required: tuple[str, ...] | None) -> tuple[str, ...]:
    """A reply's field names: distinct known names including ``required``
    (default: the table fields)."""
    if type(names) not in (list, tuple) or not all(type(n) is str for n in names):
        raise RowError("field names are not a list of strings")
    names_t = tuple(names)
    unknown = [n for n in names_t if n not in FIELD_KINDS]
    if unknown:
        raise RowError(f"unknown field {unknown[0][:_MAX_TEXT]!r}")
    if len(set(names_t)) != len(names_t):
        raise RowError("a field name appears twice")
    required = FIELDS[:TABLE_FIELD_COUNT] if required is None else required
    missing = [n for n in required if n not in names_t]
    if missing:
        raise RowError(f"field {missing[0]} is missing")
    return names_t


def validate_columns(
    names: Any, columns: Any, required: tuple[str, ...] | None = None
) -> tuple[tuple[str, ...], list[list[Any]]]:
    """:func:`validate_rows` for a columnar reply (``"columns": true``):
    ``columns`` a list holding one list per name, all of one length, each
    checked as :func:`_check_column` checks a column of rows.  Returns
    (names, columns); raises :class:`RowError`."""
    names_t = _check_names(names, required)
    if type(columns) is not list or not all(type(c) is list for c in columns):
        raise RowError("columns are not a list of lists")
    if len(columns) != len(names_t):
        raise RowError(f"{len(columns)} columns for {len(names_t)} field names")
    if len(set(map(len, columns))) > 1:
        raise RowError("the columns do not have one length")
    for name, column in zip(names_t, columns, strict=True):
        _check_column(name, column)
    return names_t, columns


def _getter(indices: list[int]) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
    """itemgetter that always returns a tuple (one index: a 1-tuple)."""
    if len(indices) == 1:
        i = indices[0]
        return lambda row: (row[i],)
    return itemgetter(*indices)


def _rows_look_valid(names: tuple[str, ...], rows: list[tuple[Any, ...]]) -> bool:
    """The checks of :func:`_check_column` for all columns at once, row-wise
    at C speed (no per-column lists): the distinct type signatures of the
    rows, one minimum over every numeric cell, one sum over every float cell
    (NaN and infinity survive a sum), the string columns by their distinct
    values, the ports by their maximum."""
    kinds = [FIELD_KINDS[n] for n in names]
    int_in_bool = set()
    for sig in set(map(tuple, map(map, repeat(type), rows))):
        for i, (t, kind) in enumerate(zip(sig, kinds, strict=True)):
            if t not in _ALLOWED_TYPES[kind]:
                return False
            if kind == "bool" and t is not bool:
                int_in_bool.add(i)
    numeric = [i for i, k in enumerate(kinds) if k != "str"]
    if numeric and (min(map(min, map(_getter(numeric), rows))) < 0
                    or max(map(max, map(_getter(numeric), rows))) > _MAX_NUMBER):
        return False
    floats = [i for i, k in enumerate(kinds) if k == "float"]
    if floats and not math.isfinite(sum(map(sum, map(_getter(floats), rows)))):
        return False
    try:
        for i, (name, kind) in enumerate(zip(names, kinds, strict=True)):
            if kind == "str":
                _check_column(name, list(set(map(itemgetter(i), rows))))
            else:
                limit = 0xFFFF if name in _PORT_FIELDS else 1 if i in int_in_bool else None
                if limit is not None and max(map(itemgetter(i), rows)) > limit:
                    return False
    except RowError:
        return False
    return True
