"""packetdrill system calls on real Linux sockets in the kernel peer's namespace.

Every socket is created inside the lab's peer namespace (setns on this
thread) and used non-blocking from the asyncio loop; blocking calls wait with
``add_reader``/``add_writer``.  Each new socket gets the pinned congestion
control (``TCP_CONGESTION``, cubic unless the script or ``--kernel-cc`` says
otherwise; the host default here is bbr, DESIGN.md trap 7).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno as E
import os
import select
import socket
import struct
from typing import Any

from ustack.lab import enter_netns
from ustack.probe.pktlang import Struct
from ustack.probe.syscalls import EE_FIELDS, SocketApi, SysError, Unsupported, to_int
from ustack.probe.tcpinfo import TCP_INFO_LEN, decode_tcp_info

SOL_TCP = socket.IPPROTO_TCP


def _limit_blocking(sock: socket.socket) -> None:
    timeval = struct.pack("ll", BLOCKING_LIMIT, 0)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
TCP_CONGESTION = 13
TCP_INQ = 36
SIOCINQ = 0x541B
SIOCOUTQ = 0x5411
SCM_TIMESTAMPING = 37
IP_RECVERR = 11

_libc = ctypes.CDLL(None, use_errno=True)
for _name in ("send", "recv"):
    _fn = getattr(_libc, _name)
    _fn.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    _fn.restype = ctypes.c_ssize_t


def decode_cmsg(level: int, kind: int, raw: bytes) -> tuple[int, int, object]:
    """One control message of recvmsg: scm_timestamping as three wall-clock
    times (0.0 = none), sock_extended_err as a dict (the offender address
    after it is not decoded), anything else as its first int."""
    if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPING and len(raw) >= 48:
        v = struct.unpack("qqqqqq", raw[:48])
        return level, kind, tuple(v[2 * i] + v[2 * i + 1] / 1e9 for i in range(3))
    if level == socket.SOL_IP and kind == IP_RECVERR and len(raw) >= 16:
        errno_, origin, type_, code, _pad, info, data = struct.unpack("IBBBBII", raw[:16])
        return level, kind, dict(zip(EE_FIELDS, (errno_, origin, type_, code, info, data),
                                     strict=True))
    return level, kind, struct.unpack("i", raw[:4])[0] if len(raw) >= 4 else 0


#: safety net for calls blocking in a thread (SO_RCVTIMEO/SO_SNDTIMEO):
#: no script waits this long, and a stuck thread would keep the process alive
BLOCKING_LIMIT = 20


class KernelSocketApi(SocketApi):
    kind = "kernel"
    real_blocking = True

    def __init__(self, netns: str, address: str, probe_address: str,
                 congestion: str = "cubic") -> None:
        super().__init__()
        self.netns = netns
        self.address = address
        self.probe_address = probe_address
        self.congestion = congestion
        self.ports: dict[Any, int] = {}

    async def in_thread(self, obj: Any, call: Any) -> Any:
        """``call()`` with ``obj`` in blocking mode, in a worker thread (the
        loop keeps running the probe); the socket is non-blocking again after."""
        obj.setblocking(True)
        try:
            return await asyncio.to_thread(call)
        finally:
            obj.setblocking(False)

    def bound_port(self, obj: Any) -> int:
        return self.ports.get(obj, 8080)

    def new_socket(self, nonblocking: bool) -> Any:
        with enter_netns(self.netns):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        if self.congestion:
            sock.setsockopt(SOL_TCP, TCP_CONGESTION, self.congestion.encode())
        _limit_blocking(sock)
        return sock

    def bind(self, obj: Any, port: int) -> None:
        try:
            obj.bind((self.address, port))
        except OSError as exc:
            raise SysError(exc.errno or 0) from None
        self.ports[obj] = port

    def listen(self, obj: Any, backlog: int) -> None:
        obj.listen(backlog)

    def try_accept(self, obj: Any) -> Any:
        try:
            conn, _ = obj.accept()
        except BlockingIOError:
            raise
        except OSError as exc:
            raise SysError(exc.errno or 0) from None
        conn.setblocking(False)
        _limit_blocking(conn)
        return conn

    async def connect(self, obj: Any, port: int, nonblocking: bool) -> None:
        # the SYN leaves at once; a blocking connect's wait is then the same
        # as waiting for writability (no chrono or wakeup rule differs)
        err = obj.connect_ex((self.probe_address, port))
        if err == 0:
            return
        if err not in (115, 114):  # EINPROGRESS, EALREADY
            raise SysError(err)
        if nonblocking:
            raise SysError(err)
        while True:
            await self.wait(obj, "w")
            err = obj.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                raise SysError(err)
            try:
                obj.getpeername()
                return
            except OSError:
                continue

    def try_recv(self, obj: Any, n: int, flags: int) -> bytes:
        try:
            data: bytes = obj.recv(n, flags)
        except BlockingIOError:
            raise
        except OSError as exc:
            raise SysError(exc.errno or 0) from None
        return data

    def try_send(self, obj: Any, data: bytes, flags: int) -> int:
        try:
            sent: int = obj.send(data, flags | socket.MSG_NOSIGNAL)
        except BlockingIOError:
            raise
        except OSError as exc:
            raise SysError(exc.errno or 0) from None
        return sent

    async def wait(self, obj: Any, what: str) -> None:
        fut: asyncio.Future[None] = self.loop.create_future()

        def ready() -> None:
            if not fut.done():
                fut.set_result(None)

        fd = obj.fileno()
        if what == "r":
            self.loop.add_reader(fd, ready)
        else:
            self.loop.add_writer(fd, ready)
        try:
            await fut
        finally:
            with contextlib.suppress(Exception):  # the fd may be closed already
                if what == "r":
                    self.loop.remove_reader(fd)
                else:
                    self.loop.remove_writer(fd)

    def shutdown(self, obj: Any, how: int) -> None:
        try:
            obj.shutdown(how)
        except OSError as exc:
            raise SysError(exc.errno or 0) from None

    def close(self, obj: Any) -> None:
        obj.close()

    async def close_socket(self, obj: Any) -> None:
        """With SO_LINGER on and a non-zero time, Linux's close() blocks, on a
        non-blocking socket too (inet_release passes sk_lingertime to
        tcp_close, which waits in sk_stream_wait_close until the state leaves
        FIN-WAIT-1/CLOSING/LAST-ACK): run it in a thread so the probe keeps
        answering while it waits."""
        try:
            onoff, linger = struct.unpack(
                "ii", obj.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, 8))
        except OSError:
            onoff = linger = 0
        if onoff and linger:
            await asyncio.to_thread(obj.close)
        else:
            obj.close()

    def setsockopt(self, obj: Any, level: int, name: int, value: Any) -> None:
        if isinstance(value, Struct):
            if "l_onoff" in value.fields:
                raw = struct.pack("ii", to_int(value.fields["l_onoff"]),
                                  to_int(value.fields.get("l_linger", 0)))
            else:
                raise Unsupported(f"unsupported setsockopt value {value}")
            arg: Any = raw
        elif type(value) is str:  # a "string" (TCP_CONGESTION); Symbols are numbers
            arg = value.encode()
        else:
            arg = to_int(value) & 0xFFFFFFFF
            if arg >= 1 << 31:
                arg = struct.pack("I", arg)
        try:
            obj.setsockopt(level, name, arg)
        except OSError as exc:
            raise SysError(exc.errno or 0) from None

    def getsockopt(self, obj: Any, level: int, name: int, size: int) -> Any:
        try:
            if level == SOL_TCP and name == TCP_CONGESTION:
                raw = obj.getsockopt(level, name, 16)
                return raw.split(b"\0", 1)[0].decode()
            if level == socket.SOL_SOCKET and name == socket.SO_LINGER:
                onoff, linger = struct.unpack("ii", obj.getsockopt(level, name, 8))
                return {"l_onoff": onoff, "l_linger": linger}
            return struct.unpack("I", obj.getsockopt(level, name, 4))[0]
        except OSError as exc:
            raise SysError(exc.errno or 0) from None

    def ioctl(self, obj: Any, request: int) -> int:
        import fcntl

        try:
            raw = fcntl.ioctl(obj.fileno(), request, b"\0\0\0\0")
        except OSError as exc:
            raise SysError(exc.errno or 0) from None
        return int(struct.unpack("i", raw)[0])

    def poll_mask(self, obj: Any) -> int:
        p = select.poll()
        p.register(obj.fileno(), select.POLLIN | select.POLLOUT | select.POLLPRI
                   | getattr(select, "POLLRDHUP", 0x2000))
        events = p.poll(0)
        return events[0][1] if events else 0

    def tcp_info(self, obj: Any) -> dict[str, int]:
        return decode_tcp_info(obj.getsockopt(SOL_TCP, socket.TCP_INFO, TCP_INFO_LEN))

    def recvmsg_control(self, obj: Any, n: int, flags: int,
                        control: list[Any]) -> tuple[bytes, list[tuple[int, int, int]]]:
        try:
            data, anc, _flags, _addr = obj.recvmsg(n, socket.CMSG_SPACE(16) * 4, flags)
        except BlockingIOError:
            raise
        except OSError as exc:
            raise SysError(exc.errno or 0) from None
        out = []
        for level, kind, raw in anc:
            value = struct.unpack("i", raw[:4])[0] if len(raw) >= 4 else 0
            out.append((level, kind, value))
        return data, out

    def recv_errqueue(self, obj: Any, n: int) -> tuple[int, int, list[tuple[int, int, Any]]]:
        """The real recvmsg(MSG_ERRQUEUE) (the socket is non-blocking: EAGAIN
        when the queue is empty, as it never blocks anyway)."""
        try:
            data, anc, flags, _addr = obj.recvmsg(n, 1024, socket.MSG_ERRQUEUE)
        except BlockingIOError:
            raise SysError(E.EAGAIN) from None
        except OSError as exc:
            raise SysError(exc.errno or 0) from None
        return len(data), int(flags), [decode_cmsg(lvl, kind, raw) for lvl, kind, raw in anc]

    def try_null_io(self, obj: Any, n: int, flags: int, send: bool) -> int:
        """send(2)/recv(2) with a NULL buffer through libc (Python's socket
        methods cannot pass an invalid pointer); the kernel says EFAULT."""
        fd = obj.fileno()
        if send:
            result = _libc.send(fd, None, n, flags | socket.MSG_NOSIGNAL | socket.MSG_DONTWAIT)
        else:
            result = _libc.recv(fd, None, n, flags | socket.MSG_DONTWAIT)
        if result < 0:
            err = ctypes.get_errno()
            if err in (E.EAGAIN, E.EWOULDBLOCK):
                raise BlockingIOError
            raise SysError(err)
        return int(result)

    def epoll_create(self) -> Any:
        return select.epoll()

    def epoll_ctl(self, ep: Any, op: int, obj: Any, events: int) -> None:
        try:
            if op == 1:
                ep.register(obj.fileno(), events)
            elif op == 3:
                ep.modify(obj.fileno(), events)
            else:
                ep.unregister(obj.fileno())
        except OSError as exc:
            raise SysError(exc.errno or 0) from None

    def epoll_wait(self, ep: Any, maxevents: int) -> list[tuple[int, Any]]:
        return [(mask, fd) for fd, mask in ep.poll(0, maxevents)]

    def close_all(self) -> None:
        for entry in list(self.fds.values()):
            with contextlib.suppress(Exception):
                if isinstance(entry.obj, int):
                    os.close(entry.obj)
                else:
                    # wakes a call still blocked in a thread (close() would not)
                    with contextlib.suppress(OSError):
                        entry.obj.shutdown(socket.SHUT_RDWR)
                    entry.obj.close()
        self.fds.clear()

    def os_pipe(self) -> tuple[int, int]:
        r, w = os.pipe()
        os.set_blocking(r, False)
        os.set_blocking(w, False)
        return r, w

    def os_splice(self, obj: Any, pipe_fd: int, n: int) -> int:
        try:
            return os.splice(obj.fileno(), pipe_fd, n)
        except BlockingIOError:
            raise
        except OSError as exc:
            raise SysError(exc.errno or 0) from None

    async def splice_blocking(self, obj: Any, pipe_fd: int, n: int) -> int:
        """A blocking splice(2) (its end-of-data rules, the urgent mark, are
        the kernel's): the socket is blocking while a thread runs it."""
        obj.setblocking(True)
        try:
            return await asyncio.to_thread(self.os_splice, obj, pipe_fd, n)
        finally:
            obj.setblocking(False)

    def os_sendfile(self, obj: Any, file_fd: int, offset: int, n: int) -> int:
        try:
            return os.sendfile(obj.fileno(), file_fd, offset, n)
        except BlockingIOError:
            raise
        except OSError as exc:
            raise SysError(exc.errno or 0) from None

    async def wait_any(self, objs: list[Any], timeout: float | None) -> None:
        fut: asyncio.Future[None] = self.loop.create_future()

        def ready() -> None:
            if not fut.done():
                fut.set_result(None)

        fds = [o.fileno() for o in objs if hasattr(o, "fileno")]
        for fd in fds:
            self.loop.add_reader(fd, ready)
            self.loop.add_writer(fd, ready)
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            pass
        finally:
            for fd in fds:
                with contextlib.suppress(Exception):
                    self.loop.remove_reader(fd)
                    self.loop.remove_writer(fd)
