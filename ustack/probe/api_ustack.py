"""packetdrill system calls on ustack: sockets made of TcpTable entries.

A :class:`UstackSocket` is what a socket descriptor is in the kernel, built
on :class:`~ustack.driver.tcp_table.TcpTable` (``listen``/``connect``) and the
sans-I/O :class:`~ustack.tcp.connection.TcpConnection` (``send``, ``recv``,
``shutdown``, ``close``).  Readiness is read from the connection itself;
the table's events only wake waiters.

Socket options: set before the connection exists, they go into the
``TcpConfig`` the connection is created with (the table's config; a lab runs
one script, so this is per socket in effect); on a connection they use the
connection's setters (``set_nodelay``, ``set_keepalive`` and, when the TCP
core has them, ``set_cork``, ``set_user_timeout``, ``set_maxseg``,
``set_notsent_lowat``, ``set_send_buffer``, ``set_recv_buffer``,
``set_quickack``, ``set_congestion``); TCP_INQ is the socket's (recvmsg's
TCP_CM_INQ control message); SO_TIMESTAMPING is the socket's, its stamps
taken from the connection's trace hook (:meth:`UstackSocket.on_trace`).
MSG_MORE and MSG_EOR go to ``TcpConnection.send(more=)`` and
``mark_record_end``, send(MSG_OOB) to ``send_urgent`` (recv(MSG_OOB) is
unsupported: received urgent bytes stay in the stream).  Anything else raises
:class:`~ustack.probe.syscalls.Unsupported` naming the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno as E
import select
import socket
import time
from collections import deque
from typing import Any

from ustack.probe.pktlang import Struct
from ustack.probe.syscalls import SocketApi, SysError, Unsupported, to_int
from ustack.probe.tcpinfo import tcpi_from_ustack
from ustack.tcp import events
from ustack.tcp.send_buffer import SOCK_MIN_SNDBUF
from ustack.tcp.state import TcpState
from ustack.wire.seq import seq_le, seq_lt

SOL_TCP = socket.IPPROTO_TCP
SOL_SOCKET = socket.SOL_SOCKET

#: TCP_INQ and its control message type TCP_CM_INQ (include/uapi/linux/tcp.h)
_TCP_INQ = _TCP_CM_INQ = 36

#: SO_TIMESTAMPING flags and report types (include/uapi/linux/net_tstamp.h)
_SO_TIMESTAMPING = 37
_SOF_TX_SOFTWARE = 1 << 1
_SOF_SOFTWARE = 1 << 4
_SOF_OPT_ID = 1 << 7
_SOF_TX_SCHED = 1 << 8
_SOF_TX_ACK = 1 << 9
_SOF_OPT_TSONLY = 1 << 11
_SOF_OPT_ID_TCP = 1 << 16
#: SOF_TIMESTAMPING_TX_RECORD_MASK (TX_HARDWARE | TX_SOFTWARE | TX_SCHED | TX_ACK)
_SOF_TX_RECORD = 1 | _SOF_TX_SOFTWARE | _SOF_TX_SCHED | _SOF_TX_ACK
_SCM_TSTAMP_SND, _SCM_TSTAMP_SCHED, _SCM_TSTAMP_ACK = 0, 1, 2
_SO_EE_ORIGIN_TIMESTAMPING = 4
_IP_RECVERR = 11
_MSG_ERRQUEUE = 0x2000
_MSG_TRUNC = 0x20
_MSG_EOR = 0x80
_IP_TOS = 1
_IP_MTU_DISCOVER = 10
_IP_FREEBIND = 15
_IP_PMTUDISC_WANT = 1
_IP_PMTUDISC_DO = 2

#: Linux sk_stream_closing(): a lingering close() waits while in these states
_CLOSING_STATES = (TcpState.FIN_WAIT_1, TcpState.CLOSING, TcpState.LAST_ACK)

#: (level, option) -> (name, TcpConfig field, TcpConnection setter, converter)
_OPTIONS: dict[tuple[int, int], tuple[str, str | None, str | None, Any]] = {
    (SOL_TCP, 1): ("TCP_NODELAY", "nodelay", "set_nodelay", bool),
    (SOL_TCP, 3): ("TCP_CORK", "cork", "set_cork", bool),
    (SOL_TCP, 18): ("TCP_USER_TIMEOUT", "user_timeout", "set_user_timeout",
                    lambda v: v / 1000),
    (SOL_TCP, 2): ("TCP_MAXSEG", "mss", "set_maxseg", int),
    (SOL_TCP, 25): ("TCP_NOTSENT_LOWAT", "notsent_lowat", "set_notsent_lowat", int),
    (SOL_TCP, 12): ("TCP_QUICKACK", None, "set_quickack", bool),
    (SOL_TCP, 4): ("TCP_KEEPIDLE", "keepalive_idle", None, float),
    (SOL_TCP, 5): ("TCP_KEEPINTVL", "keepalive_interval", None, float),
    (SOL_TCP, 6): ("TCP_KEEPCNT", "keepalive_count", None, int),
    (SOL_TCP, 13): ("TCP_CONGESTION", "congestion", "set_congestion", str),
    (SOL_SOCKET, socket.SO_KEEPALIVE): ("SO_KEEPALIVE", "keepalive", None, bool),
    # Linux sock_setsockopt doubles the value and sets at least SOCK_MIN_SNDBUF
    (SOL_SOCKET, socket.SO_SNDBUF): ("SO_SNDBUF", "send_buffer", "set_send_buffer",
                                     lambda v: max(2 * v, SOCK_MIN_SNDBUF)),
    (SOL_SOCKET, socket.SO_RCVBUF): ("SO_RCVBUF", "recv_buffer", "set_recv_buffer",
                                     lambda v: 2 * v),
}


class UstackSocket:
    """One descriptor: unbound, listening, or one connection."""

    def __init__(self, api: UstackSocketApi) -> None:
        self.api = api
        self.hp_port = 0
        self.listener: Any = None
        self.backlog: deque[Any] = deque()
        self.ep: Any = None
        self.error: int | None = None
        self.connected = False
        self.shut_rd = False
        self.changed = asyncio.Event()
        #: options set before a connection exists: TcpConfig field -> value
        self.pending: dict[str, Any] = {}
        #: SO_LINGER as (l_onoff, l_linger); (0, 0) is the default
        self.linger: tuple[int, int] = (0, 0)
        #: TCP_NOTSENT_LOWAT as set on this socket (Linux tp->notsent_lowat:
        #: getsockopt reads it, 0 = the sysctl applies); children inherit it
        self.notsent_lowat = 0
        #: TCP_INQ: recvmsg reports the bytes left to read (TCP_CM_INQ)
        self.inq = False
        #: events of the connection so far (epoll's edge-triggered wakeups)
        self.wakeups = 0
        #: SO_TIMESTAMPING: the flags, the OPT_ID base sequence number, the
        #: writes waiting for stamps ([last byte's seq, flags, sent]) and the
        #: error queue ((SCM_TSTAMP_*, loop time, ee_data, payload length))
        self.tsflags = 0
        self.tskey = 0
        self.ts_marks: list[list[Any]] = []
        self.errqueue: deque[tuple[int, float, int, int]] = deque()
        self.ts_hooked = False
        #: IP_TOS (inet->tos), IP_MTU_DISCOVER (inet->pmtudisc, default
        #: IP_PMTUDISC_WANT), IP_FREEBIND; children inherit them (sk_clone_lock)
        self.ip_tos = 0
        self.pmtudisc = _IP_PMTUDISC_WANT
        self.freebind = 0

    def apply_ip_options(self) -> None:
        """Hand IP_TOS / IP_MTU_DISCOVER to the connection's IPv4 headers:
        DF only for IP_PMTUDISC_WANT and _DO (Linux ip_dont_fragment; TCP
        sends PROBE, INTERFACE and OMIT without DF)."""
        ep = self.ep
        if ep is not None and not ep.removed:
            self.api.table.set_ip_options(
                ep, self.ip_tos, self.pmtudisc in (_IP_PMTUDISC_WANT, _IP_PMTUDISC_DO))

    # the table calls this for every event of our connection
    def tcp_event(self, event: events.Event) -> None:
        self.wakeups += 1
        if isinstance(event, events.ConnectionFailed):
            self.error = event.errno
        elif isinstance(event, events.Connected):
            self.connected = True
        self.changed.set()
        self.api.activity()

    def on_trace(self, now: float, event: str, data: dict[str, Any]) -> None:
        """The connection's trace hook (ustack.tcp.trace) as SO_TIMESTAMPING
        sees it: the segment holding a write's last byte leaving is its
        SCM_TSTAMP_SCHED and SCM_TSTAMP_SND, each time it is sent (Linux
        stamps the skb carrying tskey when it enters the qdisc and the
        driver; tcp_fragment_tstamp moves the mark with that byte), the
        first ACK that covers the byte its SCM_TSTAMP_ACK (tcp_ack_tstamp from
        tcp_clean_rtx_queue)."""
        marks = self.ts_marks
        if not marks:
            return
        if event == "seg_sent" and data["len"]:
            seq = data["seq"]
            end = (seq + data["len"]) & 0xFFFFFFFF
            for mark in marks:
                key, flags, _sent = mark
                if not (seq_le(seq, key) and seq_lt(key, end)):
                    continue
                # a retransmission is stamped again (the clone Linux sends
                # shares the skb's tx_flags), as the kernel peer shows
                mark[2] = True
                if flags & _SOF_TX_SCHED:
                    self._stamp(_SCM_TSTAMP_SCHED, now, key, data["len"])
                if flags & _SOF_TX_SOFTWARE:
                    self._stamp(_SCM_TSTAMP_SND, now, key, data["len"])
        elif event == "seg_recv" and "." in data["flags"] and "R" not in data["flags"]:
            ack = data["ack"]
            ep = self.ep
            if ep is None or not seq_le(ack, ep.conn.snd_nxt):
                return  # not an acceptable ACK (RFC 9293 3.10.7.4)
            keep = []
            for mark in marks:
                key, flags, sent = mark
                if sent and seq_lt(key, ack):
                    if flags & _SOF_TX_ACK:
                        self._stamp(_SCM_TSTAMP_ACK, now, key, 1)
                else:
                    keep.append(mark)
            self.ts_marks = keep

    def _stamp(self, kind: int, now: float, key: int, length: int) -> None:
        ee_data = (key - self.tskey) & 0xFFFFFFFF if self.tsflags & _SOF_OPT_ID else 0
        self.errqueue.append((kind, now, ee_data,
                              0 if self.tsflags & _SOF_OPT_TSONLY else length))
        self.wakeups += 1
        self.changed.set()

    def on_child(self, ep: Any) -> None:
        child = UstackSocket(self.api)
        child.notsent_lowat = self.notsent_lowat
        child.ep = ep
        child.ip_tos, child.pmtudisc, child.freebind = self.ip_tos, self.pmtudisc, self.freebind
        child.apply_ip_options()
        if self.tsflags:  # SO_TIMESTAMPING is inherited (Linux sk_clone_lock)
            self.api._set_timestamping(child, self.tsflags)
        child.connected = True
        ep.owner = child
        self.backlog.append(child)
        self.wakeups += 1
        self.changed.set()
        self.api.activity()


class UstackSocketApi(SocketApi):
    kind = "ustack"

    def __init__(self, stack: Any, probe_address: str) -> None:
        super().__init__()
        self.stack = stack
        self.table = stack.tcp
        self.probe_address = socket.inet_aton(probe_address)
        self._wake = asyncio.Event()

    def activity(self) -> None:
        self._wake.set()

    def _now(self) -> float:
        return float(self.loop.time())

    # ---------------------------------------------------------- basics
    def new_socket(self, nonblocking: bool) -> Any:
        return UstackSocket(self)

    def bind(self, obj: Any, port: int) -> None:
        if obj.hp_port:
            raise SysError(E.EINVAL)
        obj.hp_port = port

    def _config_with(self, obj: UstackSocket) -> Any:
        config = self.table.config
        if obj.pending:
            known = {k: v for k, v in obj.pending.items() if hasattr(config, k)}
            config = config.with_(**known)
        return config

    def listen(self, obj: Any, backlog: int) -> None:
        self.table.config = self._config_with(obj)
        try:
            obj.listener = self.table.listen(obj.hp_port or 8080, max(1, backlog),
                                             obj.on_child)
        except OSError as exc:
            raise SysError(exc.errno or E.EADDRINUSE) from None

    def try_accept(self, obj: Any) -> Any:
        if obj.listener is None:
            raise SysError(E.EINVAL)
        if not obj.backlog:
            raise BlockingIOError
        return obj.backlog.popleft()

    async def connect(self, obj: Any, port: int, nonblocking: bool) -> None:
        if obj.ep is not None:
            raise SysError(E.EISCONN if obj.connected else E.EALREADY)
        saved = self.table.config
        self.table.config = self._config_with(obj)
        try:
            obj.ep = self.table.connect(self.probe_address, port, obj,
                                        local_port=obj.hp_port or None)
        finally:
            self.table.config = saved
        obj.apply_ip_options()  # before the SYN leaves (the table drains later)
        if nonblocking:
            raise SysError(E.EINPROGRESS)
        while not obj.connected:
            if obj.error is not None:
                raise SysError(obj.error)
            await self.wait(obj, "w")

    # ---------------------------------------------------------- data
    def try_recv(self, obj: Any, n: int, flags: int) -> bytes:
        ep = obj.ep
        if ep is None:
            raise SysError(E.ENOTCONN)
        conn = ep.conn
        if flags & socket.MSG_PEEK:
            raise Unsupported("unsupported on ustack: MSG_PEEK")
        if flags & socket.MSG_OOB:
            raise Unsupported("unsupported on ustack: MSG_OOB")
        data: bytes = conn.recv(n, self._now())
        if data:
            ep.touch()
            return data
        if obj.error is not None:
            err, obj.error = obj.error, None
            raise SysError(err)
        if getattr(conn, "eof_received", False) or obj.shut_rd or ep.removed:
            return b""
        raise BlockingIOError

    def try_send(self, obj: Any, data: bytes, flags: int) -> int:
        ep = obj.ep
        if ep is None:
            raise SysError(E.EPIPE)
        if obj.error is not None:
            err, obj.error = obj.error, None
            raise SysError(err)
        try:
            if flags & socket.MSG_OOB:  # the last byte urgent (TcpConnection.send_urgent)
                n: int = ep.conn.send_urgent(data, self._now())
            else:
                n = ep.conn.send(data, self._now(), more=bool(flags & socket.MSG_MORE))
        except OSError as exc:
            raise SysError(exc.errno or E.EPIPE) from None
        if n and flags & _MSG_EOR:
            ep.conn.mark_record_end()
        if n and obj.tsflags & _SOF_TX_RECORD:
            # tcp_tx_timestamp: the write's last byte carries the stamps
            conn = ep.conn
            key = (conn.snd_una + conn.send_queue - 1) & 0xFFFFFFFF
            obj.ts_marks.append([key, obj.tsflags, False])
        ep.touch()
        if n == 0 and data:
            raise BlockingIOError
        return n

    def try_null_io(self, obj: Any, n: int, flags: int, send: bool) -> int:
        """A NULL buffer: -1 EFAULT where Linux's copy would fault (the
        data stays queued), after the same waits as a real call."""
        ep = obj.ep
        if ep is None:
            raise SysError(E.EPIPE if send else E.ENOTCONN)
        if obj.error is not None:
            err, obj.error = obj.error, None
            raise SysError(err)
        conn = ep.conn
        if n == 0:
            return 0
        if send:
            if conn.send_space() <= 0:
                if conn.shut_wr or ep.removed:
                    raise SysError(E.EPIPE)
                raise BlockingIOError
            raise SysError(E.EFAULT)
        if conn.readable():
            raise SysError(E.EFAULT)
        if getattr(conn, "eof_received", False) or obj.shut_rd or ep.removed:
            return 0
        raise BlockingIOError

    def recv_errqueue(self, obj: Any, n: int) -> tuple[int, int, list[tuple[int, int, Any]]]:
        """One SO_TIMESTAMPING report (Linux ip_recv_error): the segment's
        payload as data (none with OPT_TSONLY; MSG_TRUNC when it does not
        fit), SCM_TIMESTAMPING with the software stamp in ts[0] when
        SOF_TIMESTAMPING_SOFTWARE is on, IP_RECVERR with ENOMSG."""
        if not obj.errqueue:
            raise SysError(E.EAGAIN)
        kind, when, ee_data, length = obj.errqueue.popleft()
        flags = _MSG_ERRQUEUE | (_MSG_TRUNC if length > n else 0)
        cmsgs: list[tuple[int, int, Any]] = []
        if obj.tsflags & _SOF_SOFTWARE:
            wall = when + (time.time() - self.loop.time())
            cmsgs.append((SOL_SOCKET, _SO_TIMESTAMPING, (wall, 0.0, 0.0)))
        cmsgs.append((socket.SOL_IP, _IP_RECVERR, {
            "ee_errno": E.ENOMSG, "ee_origin": _SO_EE_ORIGIN_TIMESTAMPING, "ee_type": 0,
            "ee_code": 0, "ee_info": kind, "ee_data": ee_data}))
        return min(n, length), flags, cmsgs

    def _set_ip_option(self, obj: UstackSocket, name: int, value: int) -> None:
        """IP_TOS (Linux do_ip_setsockopt: a stream socket keeps its own ECN
        bits, ustack has none: the low two bits are cleared), IP_MTU_DISCOVER
        (IP_PMTUDISC_DONT..OMIT, else EINVAL) and IP_FREEBIND (recorded: the
        probe's bind() names only the stack's own address, so there is no
        non-local address to allow)."""
        if name == _IP_TOS:
            obj.ip_tos = value & 0xFC
        elif name == _IP_MTU_DISCOVER:
            if not 0 <= value <= 5:
                raise SysError(E.EINVAL)
            obj.pmtudisc = value
        else:
            obj.freebind = int(bool(value))
            return
        try:
            obj.apply_ip_options()
        except ValueError as exc:
            raise Unsupported(f"unsupported on ustack: {exc}") from None

    def _set_timestamping(self, obj: UstackSocket, flags: int) -> None:
        """SO_TIMESTAMPING (Linux sock_set_timestamping): OPT_ID on a TCP
        socket needs a connection (EINVAL in CLOSE/LISTEN) and starts the
        key count at SND.UNA (write_seq with OPT_ID_TCP) when first set."""
        ep = obj.ep
        if flags & _SOF_OPT_ID and not obj.tsflags & _SOF_OPT_ID:
            if ep is None or ep.removed or obj.listener is not None:
                raise SysError(E.EINVAL)
            conn = ep.conn
            obj.tskey = (conn.snd_una + (conn.send_queue if flags & _SOF_OPT_ID_TCP else 0)
                         ) & 0xFFFFFFFF
        obj.tsflags = flags
        if ep is not None and not obj.ts_hooked:
            conn = ep.conn
            prior = conn.trace

            def hook(now: float, event: str, data: dict[str, Any]) -> None:
                if prior is not None:
                    prior(now, event, data)
                obj.on_trace(now, event, data)

            conn.trace = hook
            obj.ts_hooked = True

    def recvmsg_control(self, obj: Any, n: int, flags: int,
                        control: list[Any]) -> tuple[bytes, list[tuple[int, int, int]]]:
        """recvmsg with a control buffer: with TCP_INQ on, one TCP_CM_INQ
        message, the in-order bytes still to read, 1 after the peer's FIN
        when none are left ("continue reading", Linux tcp_inq_hint)."""
        data = self.try_recv(obj, n, flags)
        if not obj.inq:
            return data, []
        conn = obj.ep.conn
        inq = int(conn.readable())
        if inq == 0 and getattr(conn, "eof_received", False):
            inq = 1
        return data, [(SOL_TCP, _TCP_CM_INQ, inq)]

    async def wait_any(self, objs: list[Any], timeout: float | None) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), min(0.05, timeout or 0.05))

    async def wait(self, obj: Any, what: str) -> None:
        """Until something happened; a blocked writer ("w") sleeps on until
        the socket is writable, as Linux's sk_stream_wait_memory is woken
        only by sk_stream_write_space (a third of the buffer free)."""
        while True:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 0.05)
            if what != "w" or self._write_ready(obj):
                return

    def _write_ready(self, obj: Any) -> bool:
        ep = obj.ep
        if ep is None or ep.removed or obj.error is not None or not obj.connected:
            return True
        conn = ep.conn
        return bool(conn.shut_wr or conn.send_space() > 0
                    or getattr(conn, "error", None) is not None)

    def shutdown(self, obj: Any, how: int) -> None:
        ep = obj.ep
        if ep is None:
            raise SysError(E.ENOTCONN)
        if how in (0, 2):
            obj.shut_rd = True
        if how in (1, 2):
            ep.conn.shutdown(self._now())
            ep.touch()

    def close(self, obj: Any) -> None:
        if obj.listener is not None:
            obj.listener.close()
            for child in obj.backlog:  # accepted by TCP, never by the application
                self.table.abort(child.ep)
            obj.backlog.clear()
            return
        ep = obj.ep
        if ep is None or ep.removed:
            return
        if obj.linger[0] and obj.linger[1] == 0:
            # SO_LINGER on with a zero timeout: close() aborts, RST instead of
            # FIN (Linux tcp_close -> tcp_disconnect, RFC 9293 3.10.5 ABORT)
            self.table.abort(ep)
            return
        ep.conn.close(self._now())
        ep.touch()
        self.table.detach(ep)

    async def close_socket(self, obj: Any) -> None:
        """close(2); with SO_LINGER on and a non-zero time it returns once the
        FIN is acknowledged (the state leaves FIN-WAIT-1/CLOSING/LAST-ACK), the
        connection is reset, or the linger time is over, as Linux's tcp_close
        (sk_stream_wait_close).  The connection is orphaned after the wait."""
        ep = obj.ep
        onoff, seconds = obj.linger
        if (obj.listener is not None or ep is None or ep.removed or not onoff
                or not seconds):
            self.close(obj)
            return
        ep.conn.close(self._now())
        ep.touch()
        deadline = self._now() + seconds
        while not ep.removed and ep.conn.state in _CLOSING_STATES:
            left = deadline - self._now()
            if left <= 0:
                break
            # no event marks the FIN's ACK: look again every few ms
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), min(0.005, left))
        self.table.detach(ep)

    # ---------------------------------------------------------- options
    def setsockopt(self, obj: Any, level: int, name: int, value: Any) -> None:
        if (level, name) == (SOL_SOCKET, socket.SO_REUSEADDR):
            return  # ports are free as soon as the table says so
        if (level, name) == (SOL_SOCKET, socket.SO_LINGER):
            if not isinstance(value, Struct):
                raise SysError(E.EINVAL, "SO_LINGER takes {l_onoff=N, l_linger=N}")
            fields = value.fields
            obj.linger = (int(bool(to_int(fields.get("l_onoff", fields.get(0, 0))))),
                          max(0, to_int(fields.get("l_linger", fields.get(1, 0)))))
            return
        if (level, name) == (SOL_TCP, _TCP_INQ):
            obj.inq = bool(to_int(value))
            return
        if (level, name) == (SOL_SOCKET, _SO_TIMESTAMPING):
            self._set_timestamping(obj, to_int(value))
            return
        if level == socket.SOL_IP and name in (_IP_TOS, _IP_MTU_DISCOVER, _IP_FREEBIND):
            self._set_ip_option(obj, name, to_int(value))
            return
        entry = _OPTIONS.get((level, name))
        if entry is None:
            raise Unsupported(f"unsupported on ustack: setsockopt level {level} option "
                              f"{name} ({_option_name(level, name)})")
        label, field, setter, convert = entry
        if isinstance(value, Struct):
            raise Unsupported(f"unsupported on ustack: {label} with a struct")
        raw = value if type(value) is str else to_int(value)
        converted = convert(raw)
        if label == "TCP_NOTSENT_LOWAT":
            obj.notsent_lowat = int(converted)
        ep = obj.ep
        if ep is None or ep.removed:
            if label == "TCP_CONGESTION":
                _check_congestion(str(converted))
            if field is None or not hasattr(self.table.config, field):
                raise Unsupported(f"unsupported on ustack: {label} (TcpConfig has no "
                                  f"{field or label.lower()})")
            obj.pending[field] = converted
            if obj.listener is not None:  # new children take the table's config
                self.table.config = self.table.config.with_(**{field: converted})
            return
        conn = ep.conn
        if label == "SO_KEEPALIVE":
            conn.set_keepalive(bool(converted), self._now())
        elif label in ("TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT"):
            keyword = {"TCP_KEEPIDLE": "idle", "TCP_KEEPINTVL": "interval",
                       "TCP_KEEPCNT": "count"}[label]
            conn.set_keepalive(conn.config.keepalive, self._now(), **{keyword: converted})
        elif setter is not None and hasattr(conn, setter):
            method = getattr(conn, setter)
            try:
                try:
                    method(converted, self._now())
                except TypeError:
                    method(converted)
            except ValueError as exc:  # e.g. an unknown congestion control
                raise SysError(E.ENOENT if label == "TCP_CONGESTION" else E.EINVAL,
                               str(exc)) from None
        else:
            raise Unsupported(f"unsupported on ustack: {label} on a connection "
                              f"(TcpConnection has no {setter})")
        ep.touch()

    def getsockopt(self, obj: Any, level: int, name: int, size: int) -> Any:
        if (level, name) == (SOL_SOCKET, socket.SO_ERROR):
            err, obj.error = obj.error, None
            return err or 0
        if (level, name) == (SOL_SOCKET, socket.SO_LINGER):
            return {"l_onoff": obj.linger[0], "l_linger": obj.linger[1]}
        if (level, name) == (SOL_TCP, 25):  # TCP_NOTSENT_LOWAT: the socket's own value
            return obj.notsent_lowat
        if (level, name) == (SOL_TCP, _TCP_INQ):
            return int(obj.inq)
        if (level, name) == (SOL_SOCKET, _SO_TIMESTAMPING):
            return obj.tsflags
        if level == socket.SOL_IP and name == _IP_TOS:
            return obj.ip_tos
        if level == socket.SOL_IP and name == _IP_MTU_DISCOVER:
            return obj.pmtudisc
        if level == socket.SOL_IP and name == _IP_FREEBIND:
            return obj.freebind
        ep = obj.ep
        if (level, name) == (SOL_TCP, 2):  # TCP_MAXSEG
            if ep is None:
                return int(obj.pending.get("mss", self.table.config.mss))
            return int(ep.conn.send_mss)
        entry = _OPTIONS.get((level, name))
        if entry is None:
            raise Unsupported(f"unsupported on ustack: getsockopt "
                              f"{_option_name(level, name)}")
        label, field, _setter, _convert = entry
        config = ep.conn.config if ep is not None else self._config_with(obj)
        if field is None or not hasattr(config, field):
            raise Unsupported(f"unsupported on ustack: getsockopt {label}")
        value = getattr(config, field)
        if isinstance(value, bool):
            return int(value)
        if label == "TCP_USER_TIMEOUT":
            return int(round(value * 1000))
        if isinstance(value, float):
            return int(value)
        return value

    def ioctl(self, obj: Any, request: int) -> int:
        ep = obj.ep
        if ep is None:
            raise SysError(E.EINVAL)
        if request == 0x541B:  # SIOCINQ
            return int(ep.conn.readable())
        if request == 0x5411:  # SIOCOUTQ
            return int(ep.conn.send_queue)
        raise Unsupported(f"unsupported on ustack: ioctl {request:#x}")

    def poll_mask(self, obj: Any) -> int:
        if obj.listener is not None:
            return select.POLLIN if obj.backlog else 0
        ep = obj.ep
        if ep is None:
            return select.POLLOUT | select.POLLHUP
        conn = ep.conn
        mask = 0
        eof = bool(getattr(conn, "eof_received", False))
        if conn.readable() or eof or obj.error is not None:
            mask |= select.POLLIN
        if eof:
            mask |= getattr(select, "POLLRDHUP", 0x2000)
        if obj.connected and conn.send_space() > 0:
            mask |= select.POLLOUT
        if obj.error is not None:
            mask |= select.POLLERR
        if ep.removed or (eof and conn.shut_wr):
            mask |= select.POLLHUP
        return mask

    # ---------------------------------------------------------- epoll
    def epoll_create(self) -> Any:
        return _Epoll()

    def epoll_ctl(self, ep: Any, op: int, obj: Any, events: int) -> None:
        items = ep.items
        if op == 1:  # EPOLL_CTL_ADD
            if obj in items:
                raise SysError(E.EEXIST)
            items[obj] = _EpItem(events)  # pending: ep_insert polls at once
        elif op == 3:  # EPOLL_CTL_MOD
            if obj not in items:
                raise SysError(E.ENOENT)
            items[obj] = _EpItem(events)
        elif items.pop(obj, None) is None:  # EPOLL_CTL_DEL
            raise SysError(E.ENOENT)

    def epoll_wait(self, ep: Any, maxevents: int) -> list[tuple[int, Any]]:
        """Level-triggered items report while ready; EPOLLET ones once per
        wakeup (Linux ep_poll_callback: any event of the socket, new data
        each time some arrives), with the socket's whole current mask."""
        out: list[tuple[int, Any]] = []
        for obj, item in list(ep.items.items()):
            if len(out) >= maxevents:
                break
            rx = int(getattr(obj.ep.conn, "bytes_received", 0)) if obj.ep is not None else 0
            if (obj.wakeups, rx) != item.seen:
                item.seen = (obj.wakeups, rx)
                item.pending = True
            mask = self.poll_mask(obj) & (item.events | select.POLLERR | select.POLLHUP)
            if not mask:
                continue
            if item.events & _EPOLLET:
                if not item.pending:
                    continue
                item.pending = False
            out.append((mask, obj))
        return out

    def tcp_info(self, obj: Any) -> dict[str, int]:
        ep = obj.ep
        if ep is None:
            raise Unsupported("unsupported on ustack: TCP_INFO of a socket with no connection")
        return tcpi_from_ustack(ep.conn.info(self._now()))

    def close_all(self) -> None:
        for entry in list(self.fds.values()):
            with contextlib.suppress(Exception):
                self.close(entry.obj)
        self.fds.clear()


_EPOLLET = 1 << 31


class _EpItem:
    """One registered socket: its events, whether a wakeup is unreported,
    and the (wakeups, bytes received) it was last seen at."""

    __slots__ = ("events", "pending", "seen")

    def __init__(self, events: int) -> None:
        self.events = events
        self.pending = True
        self.seen: tuple[int, int] | None = None


class _Epoll:
    """An epoll instance over ustack sockets (no fd of its own)."""

    def __init__(self) -> None:
        self.items: dict[Any, _EpItem] = {}

    def close(self) -> None:
        self.items.clear()


def _option_name(level: int, name: int) -> str:
    from ustack.probe.syscalls import _EXTRA

    prefix = {SOL_TCP: "TCP_", SOL_SOCKET: "SO_", 0: "IP_"}.get(level, "")
    for key, value in _EXTRA.items():
        if value == name and key.startswith(prefix):
            return key
    for key in dir(socket):
        if key.startswith(prefix) and getattr(socket, key) == name:
            return key
    return f"{level}/{name}"


def _check_congestion(name: str) -> None:
    from ustack.tcp import congestion

    names = getattr(congestion, "_REGISTRY", None)
    if names is not None and name not in names:
        raise SysError(E.ENOENT, f"no congestion control {name!r}")
