"""Socket-like views of ustack endpoints, for code that asks a transport for
its ``"socket"`` (``transport.get_extra_info("socket")``) or a server for
``server.sockets``.

No kernel socket exists behind them: :meth:`TransportSocket.fileno` is -1
and I/O methods are absent, as in :class:`asyncio.trsock.TransportSocket`.
What works is what libraries do with such a socket: ``family``/``type``,
``getsockname``/``getpeername``, and ``setsockopt``/``getsockopt`` for the
TCP options ustack implements (TCP_NODELAY, SO_KEEPALIVE, TCP_KEEPIDLE,
TCP_KEEPINTVL, TCP_KEEPCNT, TCP_CORK, TCP_USER_TIMEOUT, SO_SNDBUF,
SO_RCVBUF, TCP_CONGESTION, TCP_QUICKACK, TCP_MAXSEG, TCP_NOTSENT_LOWAT),
each mapped to the transport's typed setter.  Unknown options raise
``OSError(ENOPROTOOPT)`` like a socket.
"""

from __future__ import annotations

import errno
import os
import socket
from typing import Any, Protocol

Address = tuple[str, int]


class TcpOptionTarget(Protocol):
    """The per-connection setters of :class:`ustack.streams.TcpTransport`."""

    def set_nodelay(self, enabled: bool) -> None: ...
    def set_keepalive(self, enabled: bool, *, idle: float | None = None,
                      interval: float | None = None, count: int | None = None) -> None: ...
    def set_cork(self, enabled: bool) -> None: ...
    def set_user_timeout(self, seconds: float) -> None: ...
    def set_send_buffer(self, nbytes: int) -> None: ...
    def set_recv_buffer(self, nbytes: int) -> None: ...
    def set_congestion(self, name: str) -> None: ...
    def set_quickack(self, enabled: bool) -> None: ...
    def set_maxseg(self, nbytes: int) -> None: ...
    def set_notsent_lowat(self, nbytes: int) -> None: ...
    def tcp_option(self, name: str) -> Any: ...


def _noopt(level: int, optname: int) -> OSError:
    return OSError(errno.ENOPROTOOPT,
                   f"{os.strerror(errno.ENOPROTOOPT)} (level {level}, option {optname}) "
                   "on a ustack socket")


_TCP = socket.IPPROTO_TCP
_SOL = socket.SOL_SOCKET
#: (level, option) -> the name :meth:`TcpOptionTarget.tcp_option` knows
_OPTION_NAMES: dict[tuple[int, int], str] = {
    (_TCP, socket.TCP_NODELAY): "nodelay",
    (_SOL, socket.SO_KEEPALIVE): "keepalive",
    (_TCP, socket.TCP_KEEPIDLE): "keepalive_idle",
    (_TCP, socket.TCP_KEEPINTVL): "keepalive_interval",
    (_TCP, socket.TCP_KEEPCNT): "keepalive_count",
    (_TCP, socket.TCP_CORK): "cork",
    (_TCP, socket.TCP_USER_TIMEOUT): "user_timeout",
    (_SOL, socket.SO_SNDBUF): "send_buffer",
    (_SOL, socket.SO_RCVBUF): "recv_buffer",
    (_TCP, socket.TCP_CONGESTION): "congestion",
    (_TCP, socket.TCP_QUICKACK): "quickack",
    (_TCP, socket.TCP_MAXSEG): "maxseg",
    (_TCP, socket.TCP_NOTSENT_LOWAT): "notsent_lowat",
}


class _SocketBase:
    family = socket.AF_INET
    type = socket.SOCK_STREAM
    proto = socket.IPPROTO_TCP

    def __init__(self, sockname: Address) -> None:
        self._sockname = sockname

    def fileno(self) -> int:
        return -1

    def getsockname(self) -> Address:
        return self._sockname

    def gettimeout(self) -> float:
        return 0.0

    def setblocking(self, flag: bool) -> None:
        if flag:
            raise ValueError("ustack sockets are non-blocking")

    def settimeout(self, value: float | None) -> None:
        if value != 0:
            raise ValueError("ustack sockets are non-blocking")


class ServerSocket(_SocketBase):
    """An entry of ``server.sockets`` for a ustack listener."""

    def setsockopt(self, level: int, optname: int, value: int | bytes) -> None:
        if (level, optname) in ((_SOL, socket.SO_REUSEADDR), (_SOL, socket.SO_REUSEPORT)):
            return  # one listener per port on a stack; accepted as asyncio passes it
        raise _noopt(level, optname)

    def getsockopt(self, level: int, optname: int, buflen: int = 0) -> int:
        if (level, optname) == (_SOL, socket.SO_ACCEPTCONN):
            return 1
        if (level, optname) == (_SOL, socket.SO_TYPE):
            return int(socket.SOCK_STREAM)
        raise _noopt(level, optname)

    def __repr__(self) -> str:
        return f"<ustack ServerSocket laddr={self._sockname}>"


class TransportSocket(_SocketBase):
    """``transport.get_extra_info("socket")`` of a ustack TCP transport."""

    def __init__(self, target: TcpOptionTarget, sockname: Address, peername: Address) -> None:
        super().__init__(sockname)
        self._target = target
        self._peername = peername

    def getpeername(self) -> Address:
        return self._peername

    def setsockopt(self, level: int, optname: int, value: int | bytes | None,
                   optlen: int | None = None) -> None:
        name = _OPTION_NAMES.get((level, optname))
        if name is None or value is None:
            raise _noopt(level, optname)
        if isinstance(value, bytes) and name != "congestion":
            value = int.from_bytes(value[:4], "little") if value else 0
        t = self._target
        if name == "nodelay":
            t.set_nodelay(bool(value))
        elif name == "keepalive":
            t.set_keepalive(bool(value))
        elif name in ("keepalive_idle", "keepalive_interval", "keepalive_count"):
            if not isinstance(value, int) or value < 1:
                raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
            enabled = bool(t.tcp_option("keepalive"))
            if name == "keepalive_idle":
                t.set_keepalive(enabled, idle=float(value))
            elif name == "keepalive_interval":
                t.set_keepalive(enabled, interval=float(value))
            else:
                t.set_keepalive(enabled, count=value)
        elif name == "cork":
            t.set_cork(bool(value))
        elif name == "user_timeout":
            t.set_user_timeout(int(value) / 1000.0)
        elif name == "send_buffer":
            t.set_send_buffer(int(value))
        elif name == "recv_buffer":
            t.set_recv_buffer(int(value))
        elif name == "congestion":
            text = value.split(b"\0", 1)[0].decode() if isinstance(value, bytes) else str(value)
            t.set_congestion(text)
        elif name == "quickack":
            t.set_quickack(bool(value))
        elif name == "maxseg":
            t.set_maxseg(int(value))
        elif name == "notsent_lowat":
            t.set_notsent_lowat(int(value))

    def getsockopt(self, level: int, optname: int, buflen: int = 0) -> int | bytes:
        if (level, optname) == (_SOL, socket.SO_TYPE):
            return int(socket.SOCK_STREAM)
        if (level, optname) == (_SOL, socket.SO_ERROR):
            return 0
        name = _OPTION_NAMES.get((level, optname))
        if name is None:
            raise _noopt(level, optname)
        value = self._target.tcp_option(name)
        if name == "congestion":
            raw = str(value).encode()
            return raw.ljust(buflen, b"\0")[:buflen] if buflen else raw
        if name == "user_timeout":
            return int(float(value) * 1000)
        if name in ("keepalive_idle", "keepalive_interval"):
            return int(value)
        return int(value)

    def __repr__(self) -> str:
        return f"<ustack TransportSocket laddr={self._sockname} raddr={self._peername}>"


__all__ = ["TransportSocket", "ServerSocket", "TcpOptionTarget"]
