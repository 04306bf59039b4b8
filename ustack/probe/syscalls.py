"""packetdrill's system calls, run against the peer under test.

:class:`SocketApi` keeps packetdrill's file-descriptor numbers (the first
socket is 3, then the lowest free number, as the kernel allocates them),
evaluates the arguments of a :class:`~ustack.probe.pktlang.SyscallSpec` and
calls the backend: real sockets in the kernel peer's namespace
(:mod:`.api_kernel`) or ustack's TCP table (:mod:`.api_ustack`).  Each
backend object is non-blocking underneath; a call on a blocking descriptor
waits for readiness on the event loop, so the probe keeps running while the
call "blocks" (packetdrill's ``...`` calls).

Addresses: ``...`` in ``bind``/``connect`` means packetdrill's defaults
(local address, port 8080; the remote is the probe); written addresses are
mapped: 192.168.0.1 is the peer under test, 192.0.2.1 the probe.
"""

from __future__ import annotations

import abc
import asyncio
import errno as E
import fcntl
import os
import select
import socket
from dataclasses import dataclass
from typing import Any

from ustack.probe.pktlang import ELLIPSIS, BinOr, Call, Ellipsis_, Struct, Symbol, SyscallSpec

#: packetdrill's default port for bind() and connect()
DEFAULT_PORT = 8080

_EXTRA = {
    "SOL_TCP": 6, "SOL_IP": 0, "TCP_INQ": 36, "TCP_CM_INQ": 36, "SIOCINQ": 0x541B,
    "SIOCOUTQ": 0x5411, "FIONREAD": 0x541B, "TCP_NOTSENT_LOWAT": 25, "TCP_CONGESTION": 13,
    "TCP_USER_TIMEOUT": 18, "TCP_QUICKACK": 12, "TCP_CORK": 3, "TCP_MAXSEG": 2,
    "TCP_INFO": 11, "TCP_NODELAY": 1, "TCP_KEEPIDLE": 4, "TCP_KEEPINTVL": 5,
    "TCP_KEEPCNT": 6, "TCP_SYNCNT": 7, "TCP_LINGER2": 8, "TCP_DEFER_ACCEPT": 9,
    "TCP_WINDOW_CLAMP": 10, "TCP_FASTOPEN": 23, "TCP_FASTOPEN_CONNECT": 30,
    "TCP_ZEROCOPY_RECEIVE": 35, "TCP_TX_DELAY": 37, "SO_ZEROCOPY": 60,
    "SO_TIMESTAMPING": 37, "MSG_ZEROCOPY": 0x4000000, "MSG_FASTOPEN": 0x20000000,
    "IP_FREEBIND": 15, "IP_MTU_DISCOVER": 10, "IP_TOS": 1, "O_RDWR": os.O_RDWR,
    "O_NONBLOCK": os.O_NONBLOCK, "F_GETFL": fcntl.F_GETFL, "F_SETFL": fcntl.F_SETFL,
    "SHUT_RD": 0, "SHUT_WR": 1, "SHUT_RDWR": 2, "SOCK_NONBLOCK": 0o4000,
    "IP_PMTUDISC_DONT": 0, "IP_PMTUDISC_WANT": 1, "IP_PMTUDISC_DO": 2,
    "IP_PMTUDISC_PROBE": 3, "EPOLL_CTL_ADD": 1, "EPOLL_CTL_DEL": 2, "EPOLL_CTL_MOD": 3,
    "EPOLLET": 1 << 31,
    # SO_TIMESTAMPING (include/uapi/linux/net_tstamp.h, errqueue.h)
    "SOF_TIMESTAMPING_TX_HARDWARE": 1 << 0, "SOF_TIMESTAMPING_TX_SOFTWARE": 1 << 1,
    "SOF_TIMESTAMPING_RX_HARDWARE": 1 << 2, "SOF_TIMESTAMPING_RX_SOFTWARE": 1 << 3,
    "SOF_TIMESTAMPING_SOFTWARE": 1 << 4, "SOF_TIMESTAMPING_SYS_HARDWARE": 1 << 5,
    "SOF_TIMESTAMPING_RAW_HARDWARE": 1 << 6, "SOF_TIMESTAMPING_OPT_ID": 1 << 7,
    "SOF_TIMESTAMPING_TX_SCHED": 1 << 8, "SOF_TIMESTAMPING_TX_ACK": 1 << 9,
    "SOF_TIMESTAMPING_OPT_CMSG": 1 << 10, "SOF_TIMESTAMPING_OPT_TSONLY": 1 << 11,
    "SOF_TIMESTAMPING_OPT_STATS": 1 << 12, "SOF_TIMESTAMPING_OPT_PKTINFO": 1 << 13,
    "SOF_TIMESTAMPING_OPT_TX_SWHW": 1 << 14, "SOF_TIMESTAMPING_OPT_ID_TCP": 1 << 16,
    "SCM_TIMESTAMPING": 37, "SCM_TSTAMP_SND": 0, "SCM_TSTAMP_SCHED": 1, "SCM_TSTAMP_ACK": 2,
    "SO_EE_ORIGIN_TIMESTAMPING": 4, "CMSG_LEVEL_IP": 0, "CMSG_TYPE_RECVERR": 11,
    "IP_RECVERR": 11, "MSG_ERRQUEUE": 0x2000, "MSG_TRUNC": 0x20, "MSG_EOR": 0x80,
    "MSG_MORE": 0x8000,
}

#: struct sock_extended_err fields, in order (include/uapi/linux/errqueue.h)
EE_FIELDS = ("ee_errno", "ee_origin", "ee_type", "ee_code", "ee_info", "ee_data")


def symbol_value(name: str) -> int:
    """The number a packetdrill symbol stands for (Linux values)."""
    if name == "NULL":
        raise Unsupported("unsupported: invalid buffer pointers (NULL)")
    if name in _EXTRA:
        return _EXTRA[name]
    for module in (socket, select, os, fcntl):
        value = getattr(module, name, None)
        if isinstance(value, int):
            return int(value)
    if name in E.__dict__ and isinstance(E.__dict__[name], int):
        return int(E.__dict__[name])
    raise ValueError(f"unknown symbol {name!r}")


def to_int(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, Symbol):
        return symbol_value(str(value))
    if isinstance(value, BinOr):
        out = 0
        for part in value.parts:
            out |= to_int(part)
        return out
    if isinstance(value, Call) and value.name in ("htons", "htonl", "ntohs", "ntohl") \
            and len(value.args) == 1:
        return to_int(value.args[0])  # numbers are host order here
    if isinstance(value, list) and len(value) == 1:
        return to_int(value[0])
    raise ValueError(f"expected a number, got {value!r}")


class SysError(Exception):
    """A system call failed with ``errno`` (returns -1)."""

    def __init__(self, errno: int, text: str = "") -> None:
        super().__init__(errno, text or os.strerror(errno))
        self.errno = errno


class Unsupported(Exception):
    """The script needs something this peer (or the probe) cannot do."""


class SyscallFailed(AssertionError):
    """A system call returned something other than what the script says."""


@dataclass(slots=True)
class FdEntry:
    obj: Any
    kind: str  # socket, epoll
    nonblocking: bool = False


#: a call without ``...`` must return within this long (else it "blocked")
NONBLOCKING_GRACE = 0.25


class SocketApi(abc.ABC):
    """The fd table and the system calls (see the module docstring)."""

    kind = "?"

    def __init__(self) -> None:
        self.fds: dict[int, FdEntry] = {}
        self.loop = asyncio.get_running_loop()
        #: the fd of the connection ``%{ }%`` blocks look at
        self.current: int | None = None
        #: the probe-side hooks, set by the runner: (listen port) / (connect port)
        self.on_listen: Any = None
        self.on_connect: Any = None

    # ---------------------------------------------------------- backend
    def bound_port(self, obj: Any) -> int:
        return int(getattr(obj, "hp_port", 0) or DEFAULT_PORT)

    @abc.abstractmethod
    def new_socket(self, nonblocking: bool) -> Any: ...

    @abc.abstractmethod
    def bind(self, obj: Any, port: int) -> None: ...

    @abc.abstractmethod
    def listen(self, obj: Any, backlog: int) -> None: ...

    @abc.abstractmethod
    def try_accept(self, obj: Any) -> Any:
        """The accepted object, or raise BlockingIOError."""

    @abc.abstractmethod
    async def connect(self, obj: Any, port: int, nonblocking: bool) -> None: ...

    @abc.abstractmethod
    def try_recv(self, obj: Any, n: int, flags: int) -> bytes: ...

    @abc.abstractmethod
    def try_send(self, obj: Any, data: bytes, flags: int) -> int: ...

    @abc.abstractmethod
    async def wait(self, obj: Any, what: str) -> None:
        """Until ``obj`` may be readable ("r") or writable ("w") (spurious wakeups ok)."""

    @abc.abstractmethod
    def shutdown(self, obj: Any, how: int) -> None: ...

    @abc.abstractmethod
    def close(self, obj: Any) -> None: ...

    async def close_socket(self, obj: Any) -> None:
        """close(2) of a socket descriptor; a backend whose close can block
        (SO_LINGER with a non-zero time: Linux tcp_close waits in
        sk_stream_wait_close) overrides this."""
        self.close(obj)

    @abc.abstractmethod
    def setsockopt(self, obj: Any, level: int, name: int, value: Any) -> None: ...

    @abc.abstractmethod
    def getsockopt(self, obj: Any, level: int, name: int, size: int) -> Any: ...

    @abc.abstractmethod
    def ioctl(self, obj: Any, request: int) -> int: ...

    @abc.abstractmethod
    def poll_mask(self, obj: Any) -> int: ...

    @abc.abstractmethod
    def tcp_info(self, obj: Any) -> dict[str, int]: ...

    async def wait_any(self, objs: list[Any], timeout: float | None) -> None:
        """Until one of ``objs`` may have changed (default: a short sleep)."""
        await asyncio.sleep(min(0.001, timeout) if timeout is not None else 0.001)

    def recvmsg_control(self, obj: Any, n: int, flags: int,
                        control: list[Any]) -> tuple[bytes, list[tuple[int, int, int]]]:
        raise Unsupported(f"unsupported on {self.kind}: recvmsg with msg_control")

    def epoll_create(self) -> Any:
        raise Unsupported(f"unsupported on {self.kind}: epoll (no readiness-notification API)")

    def epoll_ctl(self, ep: Any, op: int, obj: Any, events: int) -> None:
        raise Unsupported(f"unsupported on {self.kind}: epoll")

    def epoll_wait(self, ep: Any, maxevents: int) -> list[tuple[int, Any]]:
        raise Unsupported(f"unsupported on {self.kind}: epoll")

    def close_all(self) -> None:
        for entry in list(self.fds.values()):
            try:
                if entry.kind == "socket":
                    self.close(entry.obj)
                elif entry.kind in ("pipe", "file"):
                    os.close(entry.obj)
                else:
                    entry.obj.close()
            except Exception:
                pass
        self.fds.clear()

    # ---------------------------------------------------------- fd table
    #: the fd number the script expects the current call to return (its
    #: numbers are names: packetdrill's own process may hold fd 3 already)
    _want_fd: int | None = None

    def _new_fd(self, obj: Any, kind: str = "socket", nonblocking: bool = False) -> int:
        fd = 3
        while fd in self.fds:
            fd += 1
        want, self._want_fd = self._want_fd, None
        if want is not None and want >= 3 and want not in self.fds:
            fd = want
        self.fds[fd] = FdEntry(obj, kind, nonblocking)
        return fd

    def _entry(self, value: Any, kind: str = "socket") -> FdEntry:
        fd = to_int(value)
        entry = self.fds.get(fd)
        if entry is None:
            raise SysError(E.EBADF)
        if entry.kind != kind:
            raise SysError(E.ENOTSOCK if kind == "socket" else E.EINVAL)
        return entry

    def fd_of(self, obj: Any) -> int | None:
        for fd, entry in self.fds.items():
            if entry.obj is obj:
                return fd
        return None

    # ---------------------------------------------------------- dispatch
    async def call(self, spec: SyscallSpec) -> tuple[int, Any]:
        """Run the call; returns (return value, extra) or raises SysError."""
        handler = getattr(self, "sys_" + spec.name, None)
        if handler is None:
            raise Unsupported(f"unsupported system call {spec.name}()")
        self._want_fd = spec.result if isinstance(spec.result, int) and \
            spec.name in ("socket", "accept", "accept4", "epoll_create", "epoll_create1",
                          "open") else None
        result: tuple[int, Any] = await handler(*spec.args)
        return result

    #: the backend runs calls on blocking descriptors as real blocking calls
    #: (in a thread), so wakeup rules and TCP_INFO's chrono counters are the
    #: peer's own; otherwise blocking is emulated by waiting for readiness
    real_blocking = False

    async def in_thread(self, obj: Any, call: Any) -> Any:
        raise NotImplementedError

    async def _blocking(self, entry: FdEntry, what: str, attempt: Any) -> Any:
        if self.real_blocking and not entry.nonblocking:
            try:  # at once when it would not block (no thread hand-off latency)
                return attempt()
            except BlockingIOError:
                return await self.in_thread(entry.obj, attempt)
        while True:
            try:
                return attempt()
            except BlockingIOError:
                if entry.nonblocking:
                    raise SysError(E.EAGAIN) from None
            await self.wait(entry.obj, what)

    # ---------------------------------------------------------- calls
    async def sys_socket(self, domain: Any, type_: Any, proto: Any = ELLIPSIS) -> tuple[int, Any]:
        if not isinstance(domain, Ellipsis_) and to_int(domain) != socket.AF_INET:
            raise Unsupported("unsupported: IPv6 (only AF_INET sockets)")
        flags = 0 if isinstance(type_, Ellipsis_) else to_int(type_)
        if flags & 0xF != socket.SOCK_STREAM:
            raise Unsupported("unsupported: only SOCK_STREAM sockets")
        nonblocking = bool(flags & _EXTRA["SOCK_NONBLOCK"])
        obj = self.new_socket(nonblocking)
        return self._new_fd(obj, nonblocking=nonblocking), None

    async def sys_bind(self, fd: Any, addr: Any = ELLIPSIS, _len: Any = ELLIPSIS
                       ) -> tuple[int, Any]:
        entry = self._entry(fd)
        self.bind(entry.obj, _port_of(addr))
        return 0, None

    async def sys_listen(self, fd: Any, backlog: Any) -> tuple[int, Any]:
        entry = self._entry(fd)
        self.listen(entry.obj, to_int(backlog))
        if self.on_listen is not None:
            self.on_listen(self.bound_port(entry.obj))
        return 0, None

    async def sys_accept(self, fd: Any, *_: Any) -> tuple[int, Any]:
        entry = self._entry(fd)
        obj = await self._blocking(entry, "r", lambda: self.try_accept(entry.obj))
        new = self._new_fd(obj)
        self.current = new
        return new, None

    sys_accept4 = sys_accept

    async def sys_connect(self, fd: Any, addr: Any = ELLIPSIS, _len: Any = ELLIPSIS
                          ) -> tuple[int, Any]:
        entry = self._entry(fd)
        port = _port_of(addr)
        self.current = to_int(fd)
        if self.on_connect is not None:
            self.on_connect(port)
        await self.connect(entry.obj, port, entry.nonblocking)
        return 0, None

    async def _recv(self, fd: Any, n: Any, flags: Any) -> tuple[int, Any]:
        entry = self._entry(fd)
        size = to_int(n)
        fl = to_int(flags)
        if fl & _EXTRA["MSG_ZEROCOPY"]:
            raise Unsupported("unsupported: MSG_ZEROCOPY")
        nonblock = fl & socket.MSG_DONTWAIT
        fl &= ~socket.MSG_DONTWAIT
        if nonblock:
            return len(self.try_recv_or_again(entry.obj, size, fl)), None
        data = await self._blocking(entry, "r", lambda: self.try_recv(entry.obj, size, fl))
        return len(data), None

    def try_recv_or_again(self, obj: Any, n: int, flags: int) -> bytes:
        try:
            return self.try_recv(obj, n, flags)
        except BlockingIOError:
            raise SysError(E.EAGAIN) from None

    async def sys_read(self, fd: Any, buf: Any, n: Any) -> tuple[int, Any]:
        if _is_null(buf):
            return await self._null_io(fd, to_int(n), 0, send=False)
        return await self._recv(fd, n, 0)

    async def sys_recv(self, fd: Any, buf: Any, n: Any, flags: Any = 0) -> tuple[int, Any]:
        if _is_null(buf):
            return await self._null_io(fd, to_int(n), to_int(flags), send=False)
        return await self._recv(fd, n, flags)

    async def sys_recvfrom(self, fd: Any, buf: Any, n: Any, flags: Any = 0, *_: Any
                           ) -> tuple[int, Any]:
        if _is_null(buf):
            return await self._null_io(fd, to_int(n), to_int(flags), send=False)
        return await self._recv(fd, n, flags)

    # ---------------------------------------------------------- NULL buffers
    def try_null_io(self, obj: Any, n: int, flags: int, send: bool) -> int:
        """send/recv of ``n`` bytes from/into a NULL buffer: the result (Linux:
        -1 EFAULT once the call gets as far as copying; 0 bytes copy nothing),
        SysError, or BlockingIOError while it would block first."""
        raise Unsupported(f"unsupported on {self.kind}: invalid buffer pointers (NULL)")

    async def _null_io(self, fd: Any, n: int, flags: int, *, send: bool) -> tuple[int, Any]:
        entry = self._entry(fd)
        nonblock = entry.nonblocking or bool(flags & socket.MSG_DONTWAIT)
        while True:
            try:
                return self.try_null_io(entry.obj, n, flags & ~socket.MSG_DONTWAIT, send), None
            except BlockingIOError:
                if nonblock:
                    raise SysError(E.EAGAIN) from None
            await self.wait(entry.obj, "w" if send else "r")

    async def _send(self, fd: Any, n: int, flags: Any) -> tuple[int, Any]:
        entry = self._entry(fd)
        fl = to_int(flags)
        if fl & _EXTRA["MSG_ZEROCOPY"]:
            raise Unsupported("unsupported: MSG_ZEROCOPY")
        if fl & _EXTRA["MSG_FASTOPEN"]:
            raise Unsupported("unsupported: TCP Fast Open (MSG_FASTOPEN)")
        nonblock = entry.nonblocking or bool(fl & socket.MSG_DONTWAIT)
        fl &= ~socket.MSG_DONTWAIT
        data = bytes(n)
        if self.real_blocking and not nonblock:
            try:
                sent = self.try_send(entry.obj, data, fl)
            except BlockingIOError:
                sent = 0
            if sent < n:  # the rest as one blocking send, as write(2) would
                rest = data[sent:]
                sent += int(await self.in_thread(entry.obj,
                                                 lambda: self.try_send(entry.obj, rest, fl)))
            return sent, None
        sent = 0
        while True:
            try:
                sent += self.try_send(entry.obj, data[sent:], fl)
            except BlockingIOError:
                if nonblock:
                    if sent:
                        return sent, None
                    raise SysError(E.EAGAIN) from None
            if sent >= n or (nonblock and sent):
                return sent, None
            await self.wait(entry.obj, "w")

    async def sys_write(self, fd: Any, buf: Any, n: Any) -> tuple[int, Any]:
        if _is_null(buf):
            return await self._null_io(fd, to_int(n), 0, send=True)
        return await self._send(fd, to_int(n), 0)

    async def sys_send(self, fd: Any, buf: Any, n: Any, flags: Any = 0) -> tuple[int, Any]:
        if _is_null(buf):
            return await self._null_io(fd, to_int(n), to_int(flags), send=True)
        return await self._send(fd, to_int(n), flags)

    async def sys_sendto(self, fd: Any, buf: Any, n: Any, flags: Any = 0, *_: Any
                         ) -> tuple[int, Any]:
        if _is_null(buf):
            return await self._null_io(fd, to_int(n), to_int(flags), send=True)
        return await self._send(fd, to_int(n), flags)

    async def sys_sendmsg(self, fd: Any, msg: Any, flags: Any = 0) -> tuple[int, Any]:
        if not isinstance(msg, Struct):
            raise ValueError("sendmsg needs a {msg_...} struct")
        if msg.fields.get("msg_control") not in (None, ELLIPSIS):
            raise Unsupported("unsupported: sendmsg with msg_control")
        return await self._send(fd, _iov_len(msg.fields.get("msg_iov", [])), flags)

    async def sys_recvmsg(self, fd: Any, msg: Any, flags: Any = 0) -> tuple[int, Any]:
        if not isinstance(msg, Struct):
            raise ValueError("recvmsg needs a {msg_...} struct")
        n = _iov_len(msg.fields.get("msg_iov", []))
        control = msg.fields.get("msg_control")
        fl = to_int(flags)
        if fl & _EXTRA["MSG_ERRQUEUE"]:
            # the error queue never blocks (Linux ip_recv_error: EAGAIN when empty)
            entry = self._entry(fd)
            got, msg_flags, cmsgs = self.recv_errqueue(entry.obj, n)
            want_flags = msg.fields.get("msg_flags")
            if want_flags is not None and not isinstance(want_flags, Ellipsis_) and \
                    to_int(want_flags) != msg_flags:
                raise SyscallFailed(f"recvmsg msg_flags: expected {to_int(want_flags):#x}, "
                                    f"got {msg_flags:#x}")
            if isinstance(control, list):
                self._match_cmsgs(control, cmsgs)
            return got, None
        if control in (None, ELLIPSIS):
            return await self._recv(fd, n, flags)
        entry = self._entry(fd)
        data, cmsgs = await self._blocking(
            entry, "r", lambda: self.recvmsg_control(entry.obj, n, fl, control))
        self._match_cmsgs(control if isinstance(control, list) else [control], cmsgs)
        return len(data), None

    # ---------------------------------------------------------- error queue
    #: set by the script runner: the wall-clock time (``time.time()``) of the
    #: script's time 0 (scm_timestamping values count from it, as packetdrill's
    #: script_time_to_live_time_usecs) and a callable giving the tolerance in s
    script_epoch = 0.0
    stamp_tolerance: Any = None

    def recv_errqueue(self, obj: Any, n: int) -> tuple[int, int, list[tuple[int, int, Any]]]:
        """recvmsg(MSG_ERRQUEUE): (bytes copied, msg_flags, control messages)
        with each message's data decoded: an int, a 3-tuple of wall-clock
        times (scm_timestamping, 0.0 = no stamp) or a dict of the
        sock_extended_err fields; SysError(EAGAIN) when the queue is empty."""
        raise Unsupported(f"unsupported on {self.kind}: recvmsg(MSG_ERRQUEUE)")

    def _match_cmsgs(self, control: list[Any], got: list[tuple[int, int, Any]]) -> None:
        """packetdrill's cmsg_expect_eq: the same messages in the same order;
        scm_timestamping values within the tolerance (a zero value is not
        checked), sock_extended_err field by field."""
        want = [c for c in control if isinstance(c, Struct)]
        shown = ", ".join(_cmsg_text(lvl, typ, val, self.script_epoch) for lvl, typ, val in got)
        if len(want) != len(got):
            raise SyscallFailed(f"recvmsg control messages: expected {len(want)}, got "
                                f"{len(got)}: [{shown}]")
        for i, (w, (level, kind, value)) in enumerate(zip(want, got, strict=True)):
            wl, wt = to_int(w.fields["cmsg_level"]), to_int(w.fields["cmsg_type"])
            if (wl, wt) != (level, kind):
                raise SyscallFailed(f"recvmsg cmsg {i}: expected level {wl} type {wt}, got "
                                    f"level {level} type {kind}: [{shown}]")
            data = w.fields.get("cmsg_data", ELLIPSIS)
            if isinstance(data, Ellipsis_):
                continue
            if isinstance(data, Struct) and ("scm_sec" in data.fields or
                                             "scm_nsec" in data.fields):
                sec = to_int(data.fields.get("scm_sec", 0))
                nsec = to_int(data.fields.get("scm_nsec", 0))
                if not sec and not nsec:
                    continue
                stamps = value if isinstance(value, tuple) else (0.0, 0.0, 0.0)
                expected = self.script_epoch + sec + nsec / 1e9
                tol = float(self.stamp_tolerance()) if self.stamp_tolerance else 0.004
                if abs(stamps[0] - expected) > tol:
                    raise SyscallFailed(
                        f"recvmsg cmsg {i}: bad timestamp: expected {sec + nsec / 1e9:.6f} s, "
                        f"got {stamps[0] - self.script_epoch:.6f} s (tolerance {tol:.3f} s)")
                continue
            if isinstance(data, Struct):
                fields = value if isinstance(value, dict) else {}
                for key, wv in data.fields.items():
                    if isinstance(wv, Ellipsis_):
                        continue
                    if str(key) not in fields:
                        raise SyscallFailed(f"recvmsg cmsg {i}: no field {key}: [{shown}]")
                    if fields[str(key)] != to_int(wv) & 0xFFFFFFFF:
                        raise SyscallFailed(f"recvmsg cmsg {i}: {key} expected {to_int(wv)}, "
                                            f"got {fields[str(key)]}: [{shown}]")
                continue
            if not isinstance(value, int) or value != to_int(data):
                raise SyscallFailed(f"recvmsg cmsg {i}: expected data {to_int(data)}, got "
                                    f"{value}: [{shown}]")

    async def sys_close(self, fd: Any) -> tuple[int, Any]:
        number = to_int(fd)
        entry = self.fds.pop(number, None)
        if entry is None:
            raise SysError(E.EBADF)
        if entry.kind == "socket":
            await self.close_socket(entry.obj)
        elif entry.kind in ("pipe", "file"):
            os.close(entry.obj)
        else:
            entry.obj.close()
        return 0, None

    async def sys_shutdown(self, fd: Any, how: Any) -> tuple[int, Any]:
        entry = self._entry(fd)
        self.shutdown(entry.obj, to_int(how))
        return 0, None

    async def sys_setsockopt(self, fd: Any, level: Any, name: Any, value: Any,
                             _len: Any = ELLIPSIS) -> tuple[int, Any]:
        entry = self._entry(fd)
        self.setsockopt(entry.obj, to_int(level), to_int(name), value)
        return 0, None

    async def sys_getsockopt(self, fd: Any, level: Any, name: Any, value: Any,
                             _len: Any = ELLIPSIS) -> tuple[int, Any]:
        entry = self._entry(fd)
        lvl, opt = to_int(level), to_int(name)
        actual = self.getsockopt(entry.obj, lvl, opt, 4)
        if isinstance(value, Ellipsis_):
            return 0, None
        if isinstance(value, str) and not isinstance(value, Symbol):
            if str(actual) != value:
                raise SyscallFailed(f"getsockopt value: expected {value!r}, got {actual!r}")
            return 0, None
        if isinstance(value, Struct):
            want = {k: to_int(v) for k, v in value.fields.items()}
            if actual != want:
                raise SyscallFailed(f"getsockopt value: expected {want}, got {actual}")
            return 0, None
        want_int = to_int(value)
        if isinstance(actual, int) and (actual & 0xFFFFFFFF) != (want_int & 0xFFFFFFFF):
            raise SyscallFailed(f"getsockopt value: expected {want_int}, got {actual}")
        return 0, None

    async def sys_fcntl(self, fd: Any, cmd: Any, arg: Any = None) -> tuple[int, Any]:
        entry = self.fds.get(to_int(fd))
        if entry is None:
            raise SysError(E.EBADF)
        command = to_int(cmd)
        if command == fcntl.F_GETFL:
            return os.O_RDWR | (os.O_NONBLOCK if entry.nonblocking else 0), None
        if command == fcntl.F_SETFL:
            entry.nonblocking = bool(to_int(arg) & os.O_NONBLOCK)
            return 0, None
        raise Unsupported(f"unsupported fcntl command {cmd}")

    async def sys_ioctl(self, fd: Any, request: Any, value: Any = ELLIPSIS) -> tuple[int, Any]:
        entry = self._entry(fd)
        actual = self.ioctl(entry.obj, to_int(request))
        if not isinstance(value, Ellipsis_) and to_int(value) != actual:
            raise SyscallFailed(f"ioctl value: expected {to_int(value)}, got {actual}")
        return 0, None

    async def sys_poll(self, fds: Any, nfds: Any, timeout: Any) -> tuple[int, Any]:
        items = fds if isinstance(fds, list) else [fds]
        specs = []
        for item in items:
            if not isinstance(item, Struct):
                raise ValueError("poll needs [{fd=N, events=..., revents=...}]")
            specs.append((self._entry(item.fields["fd"]),
                          to_int(item.fields.get("events", 0)),
                          item.fields.get("revents", ELLIPSIS)))
        limit = to_int(timeout)
        deadline = None if limit < 0 else self.loop.time() + limit / 1000
        while True:
            masks = [self.poll_mask(e.obj) & (ev | select.POLLERR | select.POLLHUP)
                     for e, ev, _ in specs]
            ready = sum(1 for m in masks if m)
            if ready or (deadline is not None and self.loop.time() >= deadline):
                break
            await self.wait_any([e.obj for e, _, _ in specs],
                                None if deadline is None else deadline - self.loop.time())
        for (_, _, want), got in zip(specs, masks, strict=True):
            if not isinstance(want, Ellipsis_) and to_int(want) != got:
                raise SyscallFailed(f"poll revents: expected {_mask_names(to_int(want))}, "
                                    f"got {_mask_names(got)}")
        return ready, None

    async def sys_epoll_create(self, _size: Any) -> tuple[int, Any]:
        return self._new_fd(self.epoll_create(), "epoll"), None

    async def sys_epoll_create1(self, _flags: Any) -> tuple[int, Any]:
        return self._new_fd(self.epoll_create(), "epoll"), None

    async def sys_epoll_ctl(self, epfd: Any, op: Any, fd: Any, event: Any) -> tuple[int, Any]:
        ep = self._entry(epfd, "epoll")
        entry = self._entry(fd)
        events = to_int(event.fields.get("events", 0)) if isinstance(event, Struct) else 0
        self.epoll_ctl(ep.obj, to_int(op), entry.obj, events)
        return 0, None

    async def sys_epoll_wait(self, epfd: Any, events: Any, maxevents: Any, timeout: Any
                             ) -> tuple[int, Any]:
        ep = self._entry(epfd, "epoll")
        limit = to_int(timeout)
        deadline = None if limit < 0 else self.loop.time() + limit / 1000
        while True:
            got = self.epoll_wait(ep.obj, to_int(maxevents))
            if got or (deadline is not None and self.loop.time() >= deadline):
                break
            await asyncio.sleep(0.001)
        wanted = events if isinstance(events, list) else [events]
        if got:
            for (mask, _obj), want in zip(got, wanted, strict=False):
                if isinstance(want, Struct) and "events" in want.fields:
                    w = to_int(want.fields["events"])
                    if w != mask:
                        raise SyscallFailed(f"epoll_wait events: expected {_mask_names(w)}, "
                                            f"got {_mask_names(mask)}")
        return len(got), None

    # ---------------------------------------------------------- other fds
    #: files the script's shell lines created: script path -> real path
    files: dict[str, str]

    def os_pipe(self) -> tuple[int, int]:
        raise Unsupported(f"unsupported on {self.kind}: pipe() (no splice)")

    def os_splice(self, obj: Any, pipe_fd: int, n: int) -> int:
        raise Unsupported(f"unsupported on {self.kind}: splice()")

    def os_sendfile(self, obj: Any, file_fd: int, offset: int, n: int) -> int:
        data = os.pread(file_fd, n, offset)
        return self.try_send(obj, data, 0)

    async def sys_pipe(self, fds: Any) -> tuple[int, Any]:
        r, w = self.os_pipe()
        fd_r = self._new_fd(r, "pipe")
        fd_w = self._new_fd(w, "pipe")
        if isinstance(fds, list) and len(fds) == 2 and \
                [to_int(fds[0]), to_int(fds[1])] != [fd_r, fd_w]:
            raise SyscallFailed(f"pipe() fds: expected {fds}, got [{fd_r}, {fd_w}]")
        return 0, None

    async def sys_open(self, path: Any, flags: Any = 0, *_: Any) -> tuple[int, Any]:
        files = getattr(self, "files", {})
        real = files.get(str(path))
        if real is None:
            raise Unsupported(f"unsupported: open() of {path!r}, a file the script's shell "
                              "lines did not create")
        return self._new_fd(os.open(real, os.O_RDONLY), "file"), None

    async def sys_splice(self, fd_in: Any, _off_in: Any, fd_out: Any, _off_out: Any,
                         n: Any, _flags: Any = 0) -> tuple[int, Any]:
        src = self.fds.get(to_int(fd_in))
        dst = self.fds.get(to_int(fd_out))
        if src is None or dst is None:
            raise SysError(E.EBADF)
        if src.kind != "socket" or dst.kind != "pipe":
            raise Unsupported("unsupported: splice() other than socket to pipe")
        if not src.nonblocking:
            return await self.splice_blocking(src.obj, dst.obj, to_int(n)), None
        try:
            return self.os_splice(src.obj, dst.obj, to_int(n)), None
        except BlockingIOError:
            raise SysError(E.EAGAIN) from None

    async def splice_blocking(self, obj: Any, pipe_fd: int, n: int) -> int:
        raise Unsupported(f"unsupported on {self.kind}: splice()")

    async def sys_sendfile(self, out_fd: Any, in_fd: Any, offset: Any, n: Any
                           ) -> tuple[int, Any]:
        out = self._entry(out_fd)
        src = self.fds.get(to_int(in_fd))
        if src is None or src.kind != "file":
            raise SysError(E.EBADF)
        off = 0 if isinstance(offset, Ellipsis_) else to_int(offset)
        sent = await self._blocking(out, "w", lambda: self.os_sendfile(out.obj, src.obj, off,
                                                                        to_int(n)))
        return int(sent), None


def _cmsg_text(level: int, kind: int, value: Any, epoch: float) -> str:
    if isinstance(value, tuple):
        shown = "/".join(f"{v - epoch:.6f}" if v else "0" for v in value)
        return f"{{level {level} type {kind} ts {shown}}}"
    if isinstance(value, dict):
        return f"{{level {level} type {kind} " + " ".join(f"{k}={v}" for k, v in value.items()) \
            + "}"
    return f"{{level {level} type {kind} data {value}}}"


def _is_null(buf: Any) -> bool:
    """The buffer argument is ``NULL`` (an invalid pointer: EFAULT)."""
    return isinstance(buf, Symbol) and buf == "NULL"


def _port_of(addr: Any) -> int:
    if isinstance(addr, Struct):
        port = addr.fields.get("sin_port")
        if port is not None:
            return to_int(port)
    return DEFAULT_PORT


def _iov_len(iov: Any) -> int:
    total = 0
    for item in iov if isinstance(iov, list) else [iov]:
        if isinstance(item, Struct):
            length = item.fields.get("iov_len", item.fields.get(1))
            total += to_int(length) if length is not None else 0
    return total


_MASKS = [(select.POLLIN, "POLLIN"), (select.POLLPRI, "POLLPRI"),
          (select.POLLOUT, "POLLOUT"), (select.POLLERR, "POLLERR"),
          (select.POLLHUP, "POLLHUP"), (getattr(select, "POLLRDHUP", 0x2000), "POLLRDHUP")]


def _mask_names(mask: int) -> str:
    names = [n for bit, n in _MASKS if mask & bit]
    return "|".join(names) if names else str(mask)


async def check_result(spec: SyscallSpec, outcome: tuple[int, Any] | SysError) -> None:
    """Compare a call's outcome with ``= RESULT [ERRNO]``."""
    if isinstance(outcome, SysError):
        got, err = -1, E.errorcode.get(outcome.errno, str(outcome.errno))
    else:
        got, err = outcome[0], None
    if isinstance(spec.result, Ellipsis_):
        return
    want = to_int(spec.result)
    if got != want or (spec.errno is not None and err != spec.errno) or \
            (spec.errno is None and err is not None and want != -1):
        shown = f"{got}" + (f" {err}" if err else "")
        expected = f"{want}" + (f" {spec.errno}" if spec.errno else "")
        raise SyscallFailed(f"{spec.name}() returned {shown}, expected {expected}")
