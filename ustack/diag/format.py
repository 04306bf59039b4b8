"""ss-style output for socket records.

The table follows iproute2 ``ss`` 6.x as printed to a pipe (its "compact"
rendering): each column is as wide as its widest cell, the address columns are
right-aligned up to the ``:`` and the ports left-aligned after it, everything
after the peer port (process, timer, details and the tab-indented ``-i``/``-m``
line) lives in the last column.  Figures are printed exactly as ``ss`` prints
``struct tcp_info`` (times in milliseconds with ``%g``, rates with k/M/G/T
unless ``-n``), zero-valued figures omitted.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from operator import itemgetter
from typing import Any, NamedTuple

from ustack.diag.records import SocketRecord
from ustack.diag.services import service_table


class FormatOptions(NamedTuple):
    """Which parts of the ss output to print (the ss option letters)."""

    numeric: bool = False  # -n
    resolve: bool = False  # -r
    options: bool = False  # -o (timers; ts/sack/ecn flags with -i)
    extended: bool = False  # -e (implies -o, as in ss)
    memory: bool = False  # -m
    processes: bool = False  # -p
    info: bool = False  # -i
    header: bool = True  # not -H
    oneline: bool = False  # -O
    show_state: bool = True  # False when exactly one state is selected
    show_netid: bool = False  # True when more than one protocol table is selected
    screen_width: int | None = None  # a terminal's width: spread columns as ss does
    #: each record's socket table ("tcp", "udp"), aligned with the records;
    #: None: all TCP.  UDP rows get no TCP details (-o -e -i), as in ss.
    netids: tuple[str, ...] | None = None

    @property
    def detail(self) -> bool:
        """Whether the TcpInfo figures are needed (not only the basic fields)."""
        return self.options or self.extended or self.memory or self.info


def format_ms_timer(ms: int) -> str:
    """ss's ``print_ms_timer``: 200ms, 1.500sec, 59sec, 1min5.500sec, 12min."""
    secs, msecs = divmod(ms, 1000)
    minutes, secs = divmod(secs, 60)
    out = ""
    if minutes:
        msecs = 0
        out = f"{minutes}min"
        if minutes > 9:
            secs = 0
    if secs:
        if secs > 9:
            msecs = 0
        out += f"{secs}{'.' if msecs else 'sec'}"
    if msecs:
        out += f"{msecs:03d}{'sec' if secs else 'ms'}"
    return out


def format_rate(bps: float, numeric: bool) -> str:
    """ss's ``sprint_bw`` (bits per second)."""
    if numeric:
        return f"{bps:.0f}"
    for limit, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if bps >= limit:
            return f"{bps / limit:.3g}{suffix}"
    return f"{bps:g}"


def _ms(seconds: float) -> float:
    """Seconds -> milliseconds with microsecond resolution (tcp_info's unit)."""
    if not math.isfinite(seconds):
        return seconds * 1000  # inf / nan stay so (text "inf", JSON null)
    return round(seconds * 1_000_000) / 1000


def _ms_int(seconds: float) -> int:
    """Seconds -> whole milliseconds, truncated (ss's lastsnd/lastrcv/busy)."""
    return int(seconds * 1000) if math.isfinite(seconds) else 0


def _timer_ms(seconds: float) -> int:
    return max(0, int(round(seconds * 1000))) if math.isfinite(seconds) else 0


def timer_text(r: SocketRecord) -> str:
    if not r.timer_name:
        return ""
    ms = _timer_ms(r.timer_expires)
    return f" timer:({r.timer_name},{format_ms_timer(ms)},{r.timer_count})"


def details_text(r: SocketRecord) -> str:
    out = f" uid:{r.uid}" if r.uid else ""
    out += f" ino:{r.ino} sk:{r.sk:x}"
    if r.state != "TIME-WAIT":
        out += f" {'-' if r.shut_rd else '<'}-{'-' if r.shut_wr else '>'}"
    return out


def skmem_text(r: SocketRecord) -> str:
    return (
        f" skmem:(r{r.recv_q if r.state != 'LISTEN' else 0},rb{r.rcvbuf},"
        f"t{r.send_q if r.state != 'LISTEN' else 0},tb{r.sndbuf},f0,"
        f"w{r.send_q if r.state != 'LISTEN' else 0},o0,bl0,d{r.drops})"
    )


def tcp_info_text(r: SocketRecord, opts: FormatOptions) -> str:
    """The ``-i`` figures in ss's order, zero-valued ones omitted."""
    parts: list[str] = []
    add = parts.append
    if opts.options or opts.extended:
        if r.ts_enabled:
            add("ts")
        if r.sack_enabled:
            add("sack")
        if r.ecn_enabled:
            add("ecn")
    if r.ca_name:
        add(r.ca_name)
    if r.wscale_enabled:
        add(f"wscale:{r.snd_wscale},{r.rcv_wscale}")
    rto = _ms(r.rto)
    if rto and rto != 3000:
        add(f"rto:{rto:g}")
    if r.backoff:
        add(f"backoff:{r.backoff}")
    srtt = r.srtt
    if srtt:
        add(f"rtt:{_ms(srtt):g}/{_ms(r.rttvar):g}")
    if r.ato:
        add(f"ato:{_ms(r.ato):g}")
    mss = r.mss
    cwnd = r.cwnd
    if mss:
        add(f"mss:{mss}")
    if r.pmtu:
        add(f"pmtu:{r.pmtu}")
    if r.rcvmss:
        add(f"rcvmss:{r.rcvmss}")
    if r.advmss:
        add(f"advmss:{r.advmss}")
    if cwnd:
        add(f"cwnd:{cwnd}")
    if r.ssthresh and r.ssthresh < 0xFFFF:
        add(f"ssthresh:{r.ssthresh}")
    if r.bytes_sent:
        add(f"bytes_sent:{r.bytes_sent}")
    if r.bytes_retrans:
        add(f"bytes_retrans:{r.bytes_retrans}")
    if r.bytes_acked:
        add(f"bytes_acked:{r.bytes_acked}")
    if r.bytes_received:
        add(f"bytes_received:{r.bytes_received}")
    if r.segs_out:
        add(f"segs_out:{r.segs_out}")
    if r.segs_in:
        add(f"segs_in:{r.segs_in}")
    if r.data_segs_out:
        add(f"data_segs_out:{r.data_segs_out}")
    if r.data_segs_in:
        add(f"data_segs_in:{r.data_segs_in}")
    if srtt > 0 and mss and cwnd:
        add(f"send {format_rate(cwnd * mss * 8 / srtt, opts.numeric)}bps")
    if r.last_send >= 0.001:
        add(f"lastsnd:{_ms_int(r.last_send)}")
    if r.last_recv >= 0.001:
        add(f"lastrcv:{_ms_int(r.last_recv)}")
    if r.last_ack >= 0.001:
        add(f"lastack:{_ms_int(r.last_ack)}")
    if r.pacing_rate:
        add(f"pacing_rate {format_rate(r.pacing_rate * 8, opts.numeric)}bps")
    if r.delivery_rate:
        add(f"delivery_rate {format_rate(r.delivery_rate * 8, opts.numeric)}bps")
    if r.delivered:
        add(f"delivered:{r.delivered}")
    if r.app_limited:
        add("app_limited")
    if r.busy_time >= 0.001:
        add(f"busy:{_ms_int(r.busy_time)}ms")
        # iproute2 ss.c tcp_show_info: the limited parts with their share
        if r.rwnd_limited >= 0.001:
            add(f"rwnd_limited:{_ms_int(r.rwnd_limited)}ms"
                f"({100.0 * r.rwnd_limited / r.busy_time:.1f}%)")
        if r.sndbuf_limited >= 0.001:
            add(f"sndbuf_limited:{_ms_int(r.sndbuf_limited)}ms"
                f"({100.0 * r.sndbuf_limited / r.busy_time:.1f}%)")
    if r.unacked:
        add(f"unacked:{r.unacked}")
    if r.retransmits or r.total_retrans:
        add(f"retrans:{r.retransmits}/{r.total_retrans}")
    if r.lost:
        add(f"lost:{r.lost}")
    if r.sacked and r.state != "LISTEN":
        add(f"sacked:{r.sacked}")
    if r.dsack_dups:
        add(f"dsack_dups:{r.dsack_dups}")
    if r.reordering != 3:
        add(f"reordering:{r.reordering}")
    if r.rcv_rtt:
        add(f"rcv_rtt:{_ms(r.rcv_rtt):g}")
    if r.rcv_space:
        add(f"rcv_space:{r.rcv_space}")
    if r.rcv_ssthresh:
        add(f"rcv_ssthresh:{r.rcv_ssthresh}")
    if r.notsent:
        add(f"notsent:{r.notsent}")
    if r.min_rtt:
        add(f"minrtt:{_ms(r.min_rtt):g}")
    if r.snd_wnd:
        add(f"snd_wnd:{r.snd_wnd}")
    if r.rcv_wnd:
        add(f"rcv_wnd:{r.rcv_wnd}")
    return " " + " ".join(parts) if parts else ""


class _Names:
    """Port and host display names (memo dicts, one per output)."""

    def __init__(self, opts: FormatOptions) -> None:
        services = {} if opts.numeric else service_table()
        self.ports = _Memo(lambda p: services.get(p) or (str(p) if p else "*"))
        self.hosts = _Memo(self._host if opts.resolve else (lambda a: a + ":"))

    @staticmethod
    def _host(addr: str) -> str:
        import socket

        try:
            return socket.gethostbyaddr(addr)[0] + ":"
        except OSError:
            return addr + ":"


def _tail_text(r: SocketRecord, opts: FormatOptions) -> str:
    out = ""
    if opts.processes and r.pid:
        out += f' users:(("{r.comm}",pid={r.pid},fd={r.ino}))'
    if opts.options or opts.extended:
        out += timer_text(r)
    if opts.extended:
        out += details_text(r)
    if opts.memory or opts.info:
        if not opts.oneline:
            out += "\n\t"
        if opts.memory:
            out += skmem_text(r)
        if opts.info:
            out += tcp_info_text(r, opts)
    return out


_HEADER = (
    "Netid", "State", "Recv-Q", "Send-Q", "Local Address:", "Port", "Peer Address:", "Port",
    "Process",
)
_DELIMS = ("", " ", " ", " ", " ", "", " ", "", "")
_RIGHT = (False, False, False, False, True, False, True, False, False)
_NCOLS = len(_HEADER)


def format_table(records: Sequence[SocketRecord], opts: FormatOptions | None = None) -> str:
    """The ss table for ``records`` (in the given order), newline-terminated."""
    opts = opts or FormatOptions()
    want_tail = opts.processes or opts.detail
    n = len(records)
    # Work column by column on distinct values: the seven basic columns
    # picked out at C speed (not the whole record transposed), each raw
    # value mapped to its text through a memo dict, widths measured over the
    # distinct texts only, then raw values mapped to padded cells.
    columns: list[Sequence[Any]] = [list(map(itemgetter(i), records)) for i in range(7)]
    tails = ([_tail_text(r, opts if nid == "tcp" else _udp_opts(opts))
              for r, nid in zip(records, opts.netids or ("tcp",) * n, strict=False)]
             if want_tail else None)
    return _render(n, columns, tails, opts)


def format_table_columns(columns: Sequence[Sequence[Any]],
                         opts: FormatOptions | None = None) -> str:
    """:func:`format_table` for records given as columns (the first seven
    fields, :data:`~ustack.diag.records.FIELDS` order: state, addresses,
    ports, queues), as ``"columns": true`` replies carry them: the same
    text, without a tuple per row.  Only for the plain table (no ``-p``,
    ``-o``, ``-e``, ``-m``, ``-i``: those need whole records)."""
    opts = opts or FormatOptions()
    if opts.processes or opts.detail:
        raise ValueError("format_table_columns renders the plain table only")
    if len(columns) < 7:
        raise ValueError(f"the table needs 7 columns, not {len(columns)}")
    return _render(len(columns[0]), list(columns[:7]), None, opts)


def _render(n: int, columns: list[Sequence[Any]], tails: Sequence[str] | None,
            opts: FormatOptions) -> str:
    """The table of ``n`` rows from the seven basic columns and, when the
    options want them, each row's tail text (process, timer, details)."""
    names = _Names(opts)
    want_tail = tails is not None
    states, laddrs, lports, raddrs, rports, recvqs, sendqs = columns
    queue_memo = _Memo("{:<6d}".format)
    raw: list[tuple[Sequence[Any], _Memo | None]] = [
        ((opts.netids or ("tcp",) * n) if opts.show_netid else (), None),
        (states if opts.show_state else (), None),
        (recvqs, queue_memo),
        (sendqs, queue_memo),
        (laddrs, names.hosts),
        (lports, names.ports),
        (raddrs, names.hosts),
        (rports, names.ports),
        (tails if tails is not None else ("",) * n, None),
    ]
    enabled = [opts.show_netid, opts.show_state] + [True] * (_NCOLS - 2)

    # ss's render_calc_width() for output that is not a terminal: every column
    # as wide as its widest cell plus its left delimiter (not for the first one)
    texts: list[dict[Any, str]] = []
    widths = [0] * _NCOLS
    first = True
    tail = _NCOLS - 1  # Process column: long, mostly distinct texts
    for i, (values, memo) in enumerate(raw):
        if i == tail and want_tail:
            distinct = {}
            longest = max(map(len, values), default=0)
        elif memo is None:
            distinct = {v: v for v in set(values)}
        else:
            distinct = {v: memo[v] for v in set(values)}
        texts.append(distinct)
        if not enabled[i]:
            continue
        if distinct or not (i == tail and want_tail):
            longest = max(map(len, distinct.values()), default=0)
        if opts.header:
            longest = max(longest, len(_HEADER[i]))
        if not first and longest:
            widths[i] = longest + len(_DELIMS[i])
        else:
            widths[i] = longest
        if widths[i]:
            first = False

    if opts.screen_width:
        _spread(widths, opts.screen_width)
    active = [i for i in range(_NCOLS) if enabled[i]]

    def pad(n: int, i: int, text: str) -> str:
        # the first printed cell of a line has no delimiter; padding counts it
        delim = _DELIMS[i] if n else ""
        room = widths[i] - len(delim) if widths[i] else 0
        return delim + (text.rjust(room) if _RIGHT[i] else text.ljust(room))

    lines: list[str] = []
    if opts.header:
        lines.append("".join(pad(n, i, _HEADER[i]) for n, i in enumerate(active)))
    if n:
        padded: list[Iterable[str]] = []
        for n, i in enumerate(active):
            if i == tail and want_tail:
                padded.append([pad(n, tail, t) for t in raw[i][0]])
                continue
            cells = {v: pad(n, i, t) for v, t in texts[i].items()}
            padded.append(map(cells.__getitem__, raw[i][0]))
        lines.extend(map("".join, zip(*padded, strict=False)))
    return "\n".join(lines) + "\n" if lines else ""


def _spread(widths: list[int], screen: int) -> None:
    """ss's render_calc_width() on a terminal: columns no wider than the
    screen, then the room left on each screen line shared out between the
    columns on it (one extra space for the rightmost ones)."""
    for i, w in enumerate(widths):
        widths[i] = min(w, screen)
    total = linecols = 0
    eol = -1
    c = 0
    while c < len(widths):
        if not widths[c]:
            c += 1
            continue
        linecols += 1
        total += widths[c]
        last = not any(widths[c + 1 :])
        if not last and total < screen:
            c += 1
            continue
        if total != screen:
            if total > screen:
                total -= widths[c]
                c -= 1
                linecols -= 1
            pad = screen - total
            spacing, rem = divmod(pad, max(linecols, 1))
            for k in range(c, eol, -1):
                if not widths[k]:
                    continue
                widths[k] += spacing
                if rem:
                    widths[k] += 1
                    rem -= 1
        eol = c
        total = linecols = 0
        c += 1


class _Memo(dict[Any, str]):
    """value -> text, computing each distinct value once."""

    def __init__(self, fn: Callable[[Any], str]) -> None:
        super().__init__()
        self.fn = fn

    def __missing__(self, key: Any) -> str:
        text = self[key] = self.fn(key)
        return text


def _finite(x: float) -> float | None:
    """JSON has no NaN or infinity: such a figure becomes null."""
    return x if math.isfinite(x) else None


def _udp_opts(opts: FormatOptions) -> FormatOptions:
    """A UDP row shows -p and -m (skmem), not the TCP figures of -o -e -i."""
    return opts._replace(options=False, extended=False, info=False)


def json_object(r: SocketRecord, opts: FormatOptions, netid: str = "tcp") -> dict[str, Any]:
    """One socket as ``-j`` prints it: the text output's labels and units
    (milliseconds, bits per second), every field of each selected group
    present (zeros included, so the keys do not depend on the values)."""
    listen = r.state == "LISTEN"
    obj: dict[str, Any] = {
        "netid": netid, "state": r.state, "recv_q": r.recv_q, "send_q": r.send_q,
        "local_address": r.local_addr, "local_port": r.local_port,
        "peer_address": r.remote_addr, "peer_port": r.remote_port,
    }
    if opts.processes:
        obj["users"] = [{"name": r.comm, "pid": r.pid, "fd": r.ino}] if r.pid else []
    if opts.options or opts.extended:
        obj["timer"] = {
            "name": r.timer_name,
            "expire_ms": _timer_ms(r.timer_expires),
            "retrans": r.timer_count,
        } if r.timer_name else None
    if opts.extended:
        obj["uid"] = r.uid
        obj["ino"] = r.ino
        obj["sk"] = f"{r.sk:x}"
        obj["shutdown"] = None if r.state == "TIME-WAIT" else (
            f"{'-' if r.shut_rd else '<'}-{'-' if r.shut_wr else '>'}")
    if opts.memory:
        queued = 0 if listen else r.send_q
        obj["skmem"] = {
            "r": 0 if listen else r.recv_q, "rb": r.rcvbuf, "t": queued, "tb": r.sndbuf,
            "f": 0, "w": queued, "o": 0, "bl": 0, "d": r.drops,
        }
    if opts.info:
        srtt, mss, cwnd = r.srtt, r.mss, r.cwnd
        obj.update({
            "ts": bool(r.ts_enabled), "sack": bool(r.sack_enabled),
            "ecn": bool(r.ecn_enabled), "cong_alg": r.ca_name,
            "snd_wscale": r.snd_wscale if r.wscale_enabled else None,
            "rcv_wscale": r.rcv_wscale if r.wscale_enabled else None,
            "rto": _finite(_ms(r.rto)), "backoff": r.backoff,
            "rtt": _finite(_ms(srtt)), "rttvar": _finite(_ms(r.rttvar)),
            "ato": _finite(_ms(r.ato)), "mss": mss, "pmtu": r.pmtu,
            "rcvmss": r.rcvmss, "advmss": r.advmss, "cwnd": cwnd,
            "ssthresh": r.ssthresh if r.ssthresh < 0xFFFF else None,
            "bytes_sent": r.bytes_sent, "bytes_retrans": r.bytes_retrans,
            "bytes_acked": r.bytes_acked, "bytes_received": r.bytes_received,
            "segs_out": r.segs_out, "segs_in": r.segs_in,
            "data_segs_out": r.data_segs_out, "data_segs_in": r.data_segs_in,
            "send": _finite(cwnd * mss * 8 / srtt) if srtt > 0 and mss and cwnd else 0,
            "lastsnd": _ms_int(r.last_send), "lastrcv": _ms_int(r.last_recv),
            "lastack": _ms_int(r.last_ack),
            "pacing_rate": _finite(r.pacing_rate * 8),
            "delivery_rate": _finite(r.delivery_rate * 8),
            "delivered": r.delivered, "app_limited": bool(r.app_limited),
            "busy": _ms_int(r.busy_time),
            "unacked": r.unacked, "retrans": r.retransmits,
            "retrans_total": r.total_retrans, "lost": r.lost,
            "sacked": 0 if listen else r.sacked, "dsack_dups": r.dsack_dups,
            "reordering": r.reordering, "rcv_rtt": _finite(_ms(r.rcv_rtt)),
            "rcv_space": r.rcv_space, "rcv_ssthresh": r.rcv_ssthresh,
            "notsent": r.notsent, "minrtt": _finite(_ms(r.min_rtt)),
            "snd_wnd": r.snd_wnd, "rcv_wnd": r.rcv_wnd,
        })
    return obj


def format_json(records: Iterable[SocketRecord], opts: FormatOptions | None = None) -> str:
    """``-j``: one JSON array of socket objects (see :func:`json_object`), as
    iproute2's ``-j`` prints one array; ``[]`` when there is none."""
    import json

    opts = opts or FormatOptions()
    dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
    records = list(records)
    netids = opts.netids or ("tcp",) * len(records)
    items = [dumps(json_object(r, opts if nid == "tcp" else _udp_opts(opts), nid))
             for r, nid in zip(records, netids, strict=False)]
    return "[" + ",\n".join(items) + "]\n"


def summary_counts(records: Sequence[SocketRecord]) -> dict[str, int]:
    """The figures of ``ss -s`` computed as ss does from /proc/net/sockstat
    (misc/ss.c print_summary): ``alloc`` = full sockets (all but TIME-WAIT),
    ``inuse`` = hashed ones (neither TIME-WAIT nor closed), and
    closed = alloc - (inuse - tw), so TIME-WAIT counts inside ``closed``.
    ``estab`` is the kernel's CurrEstab: ESTABLISHED and CLOSE-WAIT (RFC 1213
    tcpCurrEstab; Linux counts CLOSE-WAIT since 6.10)."""
    counts: dict[str, int] = {}
    for r in records:
        counts[r.state] = counts.get(r.state, 0) + 1
    total = len(records)
    tw = counts.get("TIME-WAIT", 0)
    alloc = total - tw
    inuse = alloc - counts.get("UNCONN", 0)
    return {
        "total": alloc + tw,
        "estab": counts.get("ESTAB", 0) + counts.get("CLOSE-WAIT", 0),
        "closed": alloc - (inuse - tw),
        "orphaned": 0,  # ustack keeps no orphan accounting yet
        "timewait": tw,
        "inuse": inuse,
    }


def format_summary_json(records: Sequence[SocketRecord],
                        udp: Sequence[SocketRecord] = ()) -> str:
    """``-s -j``: the summary as one JSON object."""
    import json

    c = summary_counts(records)
    nudp = len(udp)
    zero = {"total": 0, "ip": 0, "ipv6": 0}
    inet = c["inuse"] + nudp
    obj = {
        "total": c["total"] + nudp,
        "tcp": {k: c[k] for k in ("total", "estab", "closed", "orphaned", "timewait")},
        "transport": {
            "raw": zero, "udp": {"total": nudp, "ip": nudp, "ipv6": 0},
            "tcp": {"total": c["inuse"], "ip": c["inuse"], "ipv6": 0},
            "inet": {"total": inet, "ip": inet, "ipv6": 0}, "frag": zero,
        },
    }
    return json.dumps(obj) + "\n"


def format_summary(records: Sequence[SocketRecord], udp: Sequence[SocketRecord] = ()) -> str:
    """``ss -s`` for ustack's sockets: TCP ``records`` and ``udp`` sockets
    (no RAW/FRAG/IPv6 in ustack: zeros); INET is TCP + UDP, as in ss."""
    c = summary_counts(records)
    inuse = c["inuse"]
    nudp = len(udp)
    inet = inuse + nudp
    lines = [
        f"Total: {c['total'] + nudp}",
        f"TCP:   {c['total']} (estab {c['estab']}, closed {c['closed']}, "
        f"orphaned {c['orphaned']}, timewait {c['timewait']})",
        "",
        "Transport Total     IP        IPv6",
        f"RAW\t  {0:<9d} {0:<9d} {0:<9d}",
        f"UDP\t  {nudp:<9d} {nudp:<9d} {0:<9d}",
        f"TCP\t  {inuse:<9d} {inuse:<9d} {0:<9d}",
        f"INET\t  {inet:<9d} {inet:<9d} {0:<9d}",
        f"FRAG\t  {0:<9d} {0:<9d} {0:<9d}",
        "",
    ]
    return "\n".join(lines) + "\n"


def single_state(mask: int) -> bool:
    """True when exactly one state is selected (ss then drops the State column)."""
    return mask != 0 and mask & (mask - 1) == 0
