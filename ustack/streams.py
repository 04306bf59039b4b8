"""asyncio transports, protocols and streams over ustack's TCP.

:class:`TcpTransport` is an :class:`asyncio.Transport` whose other side is a
sans-I/O :class:`~ustack.tcp.TcpConnection` held in the stack's
:class:`~ustack.driver.tcp_table.TcpTable`.  On top of it the usual asyncio
machinery works unchanged: :class:`asyncio.StreamReaderProtocol`,
:class:`asyncio.StreamReader`/:class:`asyncio.StreamWriter`, user protocols,
and TLS through the standard library's :class:`asyncio.sslproto.SSLProtocol`.

Flow control is real in both directions:

* **Receive**: data is pulled out of the TCP core (``conn.recv``) only while
  the protocol has not paused reading.  A StreamReader whose buffer exceeds
  twice its ``limit`` pauses the transport; the bytes then stay in the TCP
  receive buffer, the advertised window shrinks to zero, and the peer stops
  (RFC 9293 section 3.8.6).  Reading again resumes the transport, pulls, and
  the core sends the window update.
* **Send**: ``write`` hands bytes to the core until its bounded send buffer
  is full; the rest waits in the transport.  Above the high-water mark the
  protocol is paused (``drain`` blocks); ``SendSpaceAvailable`` from the core
  (ACKs freeing the buffer) pushes more and resumes it below the low-water
  mark.

Errors are the ones asyncio sockets give: a RST answering our SYN raises
ConnectionRefusedError, SYN retries exhausted or ``timeout`` raise
TimeoutError, ARP failure raises ``OSError(EHOSTUNREACH)``, a RST during
transfer makes reads and ``drain`` raise ConnectionResetError.
"""

from __future__ import annotations

import asyncio
import errno as errno_mod
import ipaddress
import os
import socket
import ssl as ssl_mod
import weakref
from asyncio import sslproto
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol

from ustack.driver.tcp_table import Listener, TcpEndpoint, TcpTable
from ustack.names import KernelResolverNeeded
from ustack.reach import is_ipv4_literal
from ustack.sockets import ServerSocket, TransportSocket
from ustack.stream_reader import StreamReader
from ustack.tcp import events

DEFAULT_LIMIT = 2**16
_DEFAULT_LOW = DEFAULT_LIMIT // 4
#: the largest single ``recv`` pulled from the core per ``data_received``
_PULL_CHUNK = 256 * 1024
_DATA_AVAILABLE = events.DataAvailable
#: pieces the transport keeps of data the core could not take yet
_WRITE_CHUNK = 64 * 1024
#: the most resume_reading takes out of the core ahead of delivering it
_HOLD_MAX = 1024 * 1024

ClientConnectedCallback = Callable[
    [asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None] | None
]


def _os_error(err: int, where: str = "") -> OSError:
    """``OSError(errno)`` maps to ConnectionRefusedError, TimeoutError, ... itself."""
    message = os.strerror(err)
    if where:
        message = f"{message} ({where})"
    return OSError(err, message)


def _event_errno(event: Any) -> int:
    for name in ("errno", "err", "error", "code"):
        value = getattr(event, name, None)
        if isinstance(value, int):
            return value
    return errno_mod.ECONNRESET


#: IPv4 literals already parsed (a client connecting again and again to the
#: same address parses it once; ipaddress costs ~10 us a call)
_LITERALS: dict[str, bytes] = {}


#: the protocol of a transport still connecting (stateless; reading is
#: paused until attach() gives the application's): one for all
_PLACEHOLDER = asyncio.Protocol()


def _parse_ipv4(host: str) -> bytes:
    packed = _LITERALS.get(host)
    if packed is not None:
        return packed
    try:
        packed = ipaddress.IPv4Address(host).packed
    except ValueError:
        pass
    else:
        if len(_LITERALS) >= 1024:
            _LITERALS.clear()
        _LITERALS[host] = packed
        return packed
    raise ValueError(f"not an IPv4 address: {host!r}")


#: an IPv4 literal's four bytes (remembered; ValueError for anything else)
parse_ipv4 = _parse_ipv4


def _feeds_a_copy(protocol: asyncio.BaseProtocol) -> bool:
    """``protocol.data_received`` copies the data into a buffer of its own
    and keeps no reference to it: asyncio's StreamReaderProtocol itself
    (``StreamReader.feed_data`` extends a bytearray), not a subclass."""
    return type(protocol) is asyncio.StreamReaderProtocol


class NameResolver(Protocol):
    """Host name → IPv4 addresses (:class:`ustack.names.Resolver`)."""

    async def resolve(self, host: str) -> list[str]: ...


class StreamHost(Protocol):
    """What the stream functions use of the ``stack=`` they are given: its
    TCP driver (the connection table, and through it the typed port: our
    address, the loop) and its name resolver.  :class:`ustack.Stack` is
    one; streams never see the Stack itself (DESIGN.md "Transport driver")."""

    @property
    def tcp(self) -> TcpTable: ...

    @property
    def resolver(self) -> NameResolver: ...


async def resolve(stack: StreamHost, host: str) -> list[str]:
    """IPv4 addresses of ``host`` for ``stack`` (socket.gaierror on failure;
    names only the kernel's resolver knows fall back to it)."""
    if host in _LITERALS or is_ipv4_literal(host):
        return [host]
    try:
        return await stack.resolver.resolve(host)
    except KernelResolverNeeded:
        loop = asyncio.get_running_loop()
        infos = await loop.run_in_executor(
            None, socket.getaddrinfo, host, None, socket.AF_INET, socket.SOCK_STREAM)
        return list(dict.fromkeys(str(info[4][0]) for info in infos))


#: the shared, never written ``_extra`` of a transport given no extra info
_NO_EXTRA: dict[str, Any] = {}
#: ``_extra`` key of the weak reference to a transport's socket object
#: (TcpTransport.get_extra_info("socket"))
_SOCKET_REF: Final = "ustack.socket_ref"

#: the shared, never written ``_held``/``_pending`` of a transport at rest
#: (each becomes a deque of its own on first use: an empty deque is ~600 bytes)
_EMPTY: deque[bytes] = deque(maxlen=0)


# TcpTransport's rarely changed flags, as bits of its one ``_flags`` int:
# eight bool slots were 56 bytes of every connection (issue 14, memory per
# idle connection); each keeps its attribute name as a property
_F_RESUME_SCHEDULED: Final = 1
_F_PEER_EOF: Final = 2
_F_EOF_DELIVERED: Final = 4
_F_EOF_WANTED: Final = 8
_F_EOF_SENT: Final = 16
_F_LOST_WHEN_DRAINED: Final = 32
_F_WRITING_PAUSED: Final = 64
_F_BUFFERED: Final = 128


def _flag(bit: int, doc: str) -> Any:
    """A bool attribute kept as ``bit`` of the transport's ``_flags``."""
    def get(self: TcpTransport) -> bool:
        return bool(self._flags & bit)

    def put(self: TcpTransport, on: bool) -> None:
        if on:
            self._flags |= bit
        else:
            self._flags &= ~bit
    return property(get, put, doc=doc)


def _byte_view(data: bytearray | memoryview) -> bytes | memoryview:
    """``data`` as a flat view of bytes (no copy), or a copy when it is not
    one (another item format, not contiguous)."""
    view = memoryview(data)
    if view.format == "B" and view.ndim == 1 and view.c_contiguous:
        return view
    return view.tobytes()


class TcpTransport(asyncio.Transport):
    """One TCP connection of a ustack Stack as an asyncio Transport.

    Slotted, and what an idle connection does not use is shared: no queue of
    its own until one is needed, peername/sockname read from the endpoint."""

    _start_tls_compatible = True

    __slots__ = (
        "_table", "_loop", "_protocol", "_ep", "_waiter", "_connected", "_reading_paused",
        "_held", "_lost", "_closing", "_pending", "_pending_size", "_high", "_low",
        "_flags", "_direct", "__weakref__",
    )

    # (the flags an idle connection does not look at: bits of _flags)
    _resume_scheduled = _flag(_F_RESUME_SCHEDULED, "a _resumed callback is scheduled")
    _peer_eof = _flag(_F_PEER_EOF, "the peer's FIN arrived")
    _eof_delivered = _flag(_F_EOF_DELIVERED, "the protocol got eof_received")
    _eof_wanted = _flag(_F_EOF_WANTED, "write_eof() called, FIN after the pending data")
    _eof_sent = _flag(_F_EOF_SENT, "the FIN is queued in the core")
    _lost_when_drained = _flag(_F_LOST_WHEN_DRAINED,
                               "connection_lost once the held data is delivered")
    _writing_paused = _flag(_F_WRITING_PAUSED, "pause_writing was called")
    _buffered = _flag(_F_BUFFERED, "the protocol is a BufferedProtocol")

    def __init__(
        self,
        table: TcpTable,
        protocol: asyncio.BaseProtocol,
        *,
        extra: dict[str, Any] | None = None,
        write_high: int = DEFAULT_LIMIT,
    ) -> None:
        # (asyncio.BaseTransport.__init__ only sets _extra, to a new dict)
        self._extra: dict[str, Any] = dict(extra) if extra else _NO_EXTRA
        self._table = table
        self._loop = table.loop
        self._protocol = protocol
        self._ep: TcpEndpoint | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._connected = False
        self._reading_paused = False
        #: the packed flags (_F_*), all False but _buffered's
        self._flags = _F_BUFFERED if isinstance(protocol, asyncio.BufferedProtocol) else 0
        #: bytes resume_reading took from the core, not yet delivered
        self._held: deque[bytes] = _EMPTY
        self._lost = False
        self._closing = False  # close() or abort() called
        self._pending: deque[bytes] = _EMPTY
        self._pending_size = 0
        self._high = write_high
        # (the default's low mark is one shared int: 16384 is no small int)
        self._low = _DEFAULT_LOW if write_high == DEFAULT_LIMIT else write_high // 4
        self._direct = _feeds_a_copy(protocol)

    # ------------------------------------------------------------ setup

    def _bind(self, ep: TcpEndpoint) -> None:
        self._ep = ep
        ep.owner = self

    # ------------------------------------------------------- BaseTransport

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "tcp_info":
            ep = self._ep
            return ep.conn.info(self._loop.time()) if ep is not None else default
        if name == "tcp_connection":
            return self._ep.conn if self._ep is not None else default
        if name == "peername" or name == "sockname":
            ep = self._ep
            if ep is not None and name not in self._extra:
                return ep.peername if name == "peername" else ep.sockname
        if name == "stack":
            return self._table.stack
        if name == "socket":
            if self._ep is None:
                return default
            # the transport keeps its socket object weakly: the socket holds
            # the transport, and a strong reference back made a cycle that
            # left every such connection's ~30 objects to the cyclic
            # collector (an echo server asking once per connection for
            # TCP_NODELAY: gen2 collections of ~20 objects per connection,
            # issue 14).  The same object while anyone holds it.
            ref = self._extra.get(_SOCKET_REF)
            sock = ref() if ref is not None else None
            if sock is None:
                if self._extra is _NO_EXTRA:
                    self._extra = {}
                sock = TransportSocket(self, self._ep.sockname, self._ep.peername)
                self._extra[_SOCKET_REF] = weakref.ref(sock)
            return sock
        return self._extra.get(name, default)

    # ------------------------------------------ per-connection options (setsockopt)

    def _core(self) -> Any:
        if self._ep is None:
            raise OSError(errno_mod.ENOTCONN, os.strerror(errno_mod.ENOTCONN))
        return self._ep.conn

    def _core_setter(self, method: str, option: str, *args: Any, **kwargs: Any) -> None:
        conn = self._core()
        setter = getattr(conn, method, None)
        if setter is None:
            raise OSError(errno_mod.ENOPROTOOPT,
                          f"{option}: the TCP core has no {method}() yet")
        setter(*args, **kwargs)
        assert self._ep is not None
        self._ep.touch()  # the option may release (or hold) output

    def set_nodelay(self, enabled: bool = True) -> None:
        """TCP_NODELAY: True sends small segments at once (no Nagle, RFC 9293 3.7.4)."""
        self._core_setter("set_nodelay", "TCP_NODELAY", bool(enabled))

    def set_keepalive(self, enabled: bool = True, *, idle: float | None = None,
                      interval: float | None = None, count: int | None = None) -> None:
        """SO_KEEPALIVE with TCP_KEEPIDLE/KEEPINTVL/KEEPCNT (RFC 9293 3.8.4)."""
        self._core_setter("set_keepalive", "SO_KEEPALIVE", bool(enabled), self._loop.time(),
                          idle=idle, interval=interval, count=count)

    def set_cork(self, enabled: bool = True) -> None:
        """TCP_CORK: hold partial segments until uncorked (Linux)."""
        self._core_setter("set_cork", "TCP_CORK", bool(enabled))

    def set_user_timeout(self, seconds: float) -> None:
        """TCP_USER_TIMEOUT (RFC 5482): give up when data stays unacknowledged this long."""
        self._core_setter("set_user_timeout", "TCP_USER_TIMEOUT", float(seconds))

    def set_send_buffer(self, nbytes: int) -> None:
        """SO_SNDBUF: bound of unacknowledged + unsent bytes in the core."""
        self._core_setter("set_send_buffer", "SO_SNDBUF", int(nbytes))

    def set_recv_buffer(self, nbytes: int) -> None:
        """SO_RCVBUF: bound of the advertised window and out-of-order data."""
        self._core_setter("set_recv_buffer", "SO_RCVBUF", int(nbytes))

    def set_congestion(self, name: str) -> None:
        """TCP_CONGESTION: switch the congestion controller (``reno``, ``cubic``, ...)."""
        self._core_setter("set_congestion", "TCP_CONGESTION", str(name))

    def set_quickack(self, enabled: bool = True) -> None:
        """TCP_QUICKACK: ACK at once instead of delaying (Linux)."""
        self._core_setter("set_quickack", "TCP_QUICKACK", bool(enabled))

    def set_maxseg(self, nbytes: int) -> None:
        """TCP_MAXSEG: the MSS (advertised before the handshake, sent after)."""
        self._core_setter("set_maxseg", "TCP_MAXSEG", int(nbytes))

    def set_notsent_lowat(self, nbytes: int) -> None:
        """TCP_NOTSENT_LOWAT: keep at most this many unsent bytes in the core."""
        self._core_setter("set_notsent_lowat", "TCP_NOTSENT_LOWAT", int(nbytes))

    def tcp_option(self, name: str) -> Any:
        """The current value of an option by name (``nodelay``, ``keepalive``,
        ``keepalive_idle``, ``keepalive_interval``, ``keepalive_count``,
        ``cork``, ``user_timeout``, ``send_buffer``, ``recv_buffer``,
        ``congestion``, ``quickack``, ``maxseg``, ``notsent_lowat``), read
        from the connection's config."""
        conn = self._core()
        if name == "congestion":
            return conn.cc.name
        value = getattr(conn.config, name, None)
        if value is None:
            raise OSError(errno_mod.ENOPROTOOPT, f"{name}: not an option of this TCP core")
        return value

    def is_closing(self) -> bool:
        return self._closing or self._lost

    def close(self) -> None:
        """Send what is buffered, then FIN (or RST if received data is unread,
        RFC 2525); ``connection_lost(None)`` follows once the data is in the
        TCP send buffer.  The connection finishes its close orphaned."""
        if self._closing or self._lost:
            return
        self._closing = True
        self._reading_paused = True
        if not self._pending:
            self._finish_close()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol
        self._buffered = isinstance(protocol, asyncio.BufferedProtocol)
        self._direct = _feeds_a_copy(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    # ------------------------------------------------------- ReadTransport

    def is_reading(self) -> bool:
        return not self._reading_paused and not self._closing and not self._lost

    def pause_reading(self) -> None:
        self._reading_paused = True

    def resume_reading(self) -> None:
        """Deliver again, from a later callback: never from inside this
        call, as asyncio's transports.  (StreamReader resumes reading
        *before* it makes the future it then awaits; data fed from inside
        ``resume_reading`` finds no waiter, pauses the reader again above
        its limit, and the read waits for data that already came.)

        What the TCP core holds is taken out now (up to :data:`_HOLD_MAX`)
        so the window update leaves with this iteration's flush, as when
        the data was delivered here; the protocol gets it from the
        scheduled callback."""
        if self._closing or self._lost or not self._reading_paused:
            return
        self._reading_paused = False
        if not self._connected:
            return
        ep = self._ep
        if ep is not None:
            self._hold(ep.conn)
            ep.touch()  # the window update, if the core queued one
        if not self._resume_scheduled:
            self._resume_scheduled = True
            self._loop.call_soon(self._resumed)

    def _hold(self, conn: Any) -> None:
        held = self._held
        size = sum(len(d) for d in held)
        now = self._loop.time()
        while size < _HOLD_MAX:
            n = conn.readable()
            if n <= 0:
                break
            data = conn.recv(min(n, _PULL_CHUNK), now)
            if not data:
                break
            if held is _EMPTY:
                held = self._held = deque()
            held.append(data)
            size += len(data)

    def _resumed(self) -> None:
        self._resume_scheduled = False
        if self._reading_paused or self._lost:
            return
        self._pull()
        if self._ep is not None:
            self._ep.touch()  # the window update, if the core queued one

    # ------------------------------------------------------ WriteTransport

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if high is None:
            high = DEFAULT_LIMIT if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high, self._low = high, low
        self._maybe_pause_protocol()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (self._low, self._high)

    def get_write_buffer_size(self) -> int:
        return self._pending_size

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if (type(data) is bytes and data and self._connected and not self._pending
                and not (self._flags & _F_EOF_WANTED or self._lost or self._closing)):
            # (the request/response case: the general branch below, inlined)
            ep = self._ep
            assert ep is not None
            try:
                taken = ep.live.send(data, self._loop.time())
            except OSError as exc:
                self._pending = _EMPTY
                self._pending_size = 0
                self._connection_lost(exc)
                return
            self._table.send_now(ep)  # on the wire in this call (kernel send())
            if taken < len(data):
                self._queue(memoryview(data)[taken:])
                self._maybe_pause_protocol()
            return
        self._write(data)

    def _write(self, data: bytes | bytearray | memoryview) -> None:
        """:meth:`write`, every case (tests/unit/test_streams_write_fast.py
        compares write's inlined bytes branch with it)."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError("data argument must be a bytes-like object, "
                            f"not {type(data).__name__!r}")
        if self._eof_wanted:
            raise RuntimeError("Cannot call write() after write_eof()")
        if self._lost or self._closing:
            return  # asyncio's transports drop silently; drain() reports the error
        if not data:
            return
        if self._pending or not self._connected:
            self._queue(data)
        else:
            ep = self._ep
            assert ep is not None
            # (a view, not a copy: the send buffer copies the part it takes,
            # _queue the rest; bytes(data) first copied it all, then the
            # rest again)
            taken = self._core_send(data if isinstance(data, bytes) else _byte_view(data))
            if taken < 0:
                return
            self._table.send_now(ep)  # on the wire in this call (kernel send())
            if taken < len(data):
                self._queue(memoryview(data)[taken:])
        self._maybe_pause_protocol()

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def write_eof(self) -> None:
        """Half-close: FIN after the pending data (RFC 9293 section 3.10.4)."""
        if self._eof_wanted or self._closing or self._lost:
            return
        self._eof_wanted = True
        if not self._pending and self._connected:
            self._send_fin()

    def write_urgent(self, data: bytes | bytearray | memoryview) -> None:
        """send(data, MSG_OOB): write ``data`` with its last byte urgent (URG,
        the urgent pointer one past it as Linux and BSD send it, RFC 6093;
        RFC 6093 6 recommends that new applications not use urgent data).
        ``data`` goes after everything written before; it must fit the send
        buffer at once: BlockingIOError (EAGAIN) while earlier writes are
        still buffered in this transport or the buffer lacks room (as a
        non-blocking send(MSG_OOB)), so await drain() first."""
        if self._eof_wanted:
            raise RuntimeError("Cannot call write_urgent() after write_eof()")
        if self._lost or self._closing or not data:
            return
        ep = self._ep
        if ep is None or not self._connected or self._pending:
            raise BlockingIOError(errno_mod.EAGAIN, "write_urgent: earlier writes are still "
                                  "buffered in the transport (await drain() first)")
        conn = ep.live
        if conn.send_space() < len(data):
            raise BlockingIOError(errno_mod.EAGAIN, "write_urgent: no room in the send buffer "
                                  "(await drain() first)")
        try:
            conn.send_urgent(bytes(data), self._loop.time())
        except OSError as exc:
            self._connection_lost(exc)
            return
        self._table.send_now(ep)  # on the wire in this call (kernel send())

    def can_write_eof(self) -> bool:
        return True

    def abort(self) -> None:
        """RST the connection (RFC 9293 section 3.10.5) and lose it at once."""
        self._force_close(None)

    def _force_close(self, exc: Exception | None) -> None:
        """``abort()`` handing ``exc`` to ``connection_lost``: the private hook
        of asyncio's transports that the standard library's SSLProtocol calls
        on a fatal TLS error and when the TLS shutdown times out (without it
        those raised AttributeError and the connection was never closed)."""
        if self._lost:
            return
        self._closing = True
        self._pending = _EMPTY
        self._pending_size = 0
        ep = self._ep
        if ep is not None:
            self._table.abort(ep)
            self._table.detach(ep)
        self._loop.call_soon(self._connection_lost, exc)  # as asyncio: never re-entrant

    # ------------------------------------------------------------ internals

    def _queue(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        if self._pending is _EMPTY:
            self._pending = deque()
        for i in range(0, len(view), _WRITE_CHUNK):
            piece = bytes(view[i : i + _WRITE_CHUNK])
            self._pending.append(piece)
            self._pending_size += len(piece)

    def _push(self) -> None:
        """Move pending data into the core's send buffer while it has room."""
        ep = self._ep
        if ep is None or not self._connected:
            return
        pending = self._pending
        moved = False
        while pending:
            chunk = pending[0]
            taken = self._core_send(chunk)
            if taken < 0:
                return
            if taken == 0:
                break
            moved = True
            self._pending_size -= taken
            if taken < len(chunk):
                pending[0] = chunk[taken:]
                break
            pending.popleft()
        if moved:
            ep.touch()
        if not pending:
            if self._closing:
                self._finish_close()
            elif self._eof_wanted and not self._eof_sent:
                self._send_fin()
        self._maybe_resume_protocol()

    def _core_send(self, data: bytes | memoryview) -> int:
        """``conn.send``; -1 (and the connection lost) if the core refuses
        because the connection already failed or closed underneath us."""
        assert self._ep is not None
        try:
            return self._ep.live.send(data, self._loop.time())
        except OSError as exc:
            self._pending = _EMPTY
            self._pending_size = 0
            self._connection_lost(exc)
            return -1

    def _send_fin(self) -> None:
        ep = self._ep
        if ep is None or self._eof_sent:
            return
        self._eof_sent = True
        ep.live.shutdown(self._loop.time())
        self._table.send_now(ep)  # the FIN leaves in this call (kernel shutdown())

    def _finish_close(self) -> None:
        ep = self._ep
        if ep is not None and not ep.removed:
            if self._connected:
                ep.live.close(self._loop.time())
                # the FIN (or RST) joins the table's drain of this loop
                # iteration: every connection closed in this iteration goes
                # out in one device burst (one sendmmsg instead of one per
                # close; a write() still sends in its call)
                ep.touch()
            else:
                ep.conn.abort(self._loop.time())
                ep.touch()
            self._table.detach(ep)
        self._loop.call_soon(self._connection_lost, None)

    def _maybe_pause_protocol(self) -> None:
        if self._pending_size > self._high and not self._writing_paused:
            self._writing_paused = True
            self._flow_control("pause_writing")

    def _maybe_resume_protocol(self) -> None:
        if self._writing_paused and self._pending_size <= self._low:
            self._writing_paused = False
            self._flow_control("resume_writing")

    def _flow_control(self, method: str) -> None:
        """Call ``protocol.pause_writing()``/``resume_writing()``; a failure goes
        to the loop's exception handler, as asyncio's own transports do."""
        try:
            getattr(self._protocol, method)()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:  # noqa: BLE001 - asyncio's policy
            self._loop.call_exception_handler({
                "message": f"protocol.{method}() failed",
                "exception": exc, "transport": self, "protocol": self._protocol,
            })

    def _pull(self) -> None:
        """Deliver in-order data to the protocol while it is not paused."""
        ep = self._ep
        if ep is None:
            return
        conn = ep.conn
        held = self._held
        if self._direct and not held:
            # asyncio's own StreamReaderProtocol (_feeds_a_copy): it copies
            # what it is given into its reader's buffer and keeps nothing,
            # so it gets a view of the receive buffer, one copy less (the
            # loop below with nothing held, for every request/response)
            # (its data_received is ``reader = self._stream_reader`` (a
            # property over a weak reference), then ``reader.feed_data(data)``
            # when the reader is alive: that, once per pull instead of per
            # chunk; nothing in feed_data can drop the reader synchronously)
            # (ustack's StreamReader is handed the receive buffer's chunks
            # themselves, no copy at all: it joins them when it is read)
            live = ep.live
            protocol: Any = self._protocol
            reader = protocol._stream_reader
            clock = self._loop.time
            if type(reader) is StreamReader:
                feed = reader.feed_chunks
                while not self._reading_paused and not self._lost:
                    n = conn.readable()
                    if n <= 0:
                        break
                    feed(live.recv_chunks(n if n < _PULL_CHUNK else _PULL_CHUNK, clock()))
            else:
                sink = protocol.data_received if reader is None else reader.feed_data
                while not self._reading_paused and not self._lost:
                    n = conn.readable()
                    if n <= 0:
                        break
                    live.recv_into(sink, n if n < _PULL_CHUNK else _PULL_CHUNK, clock())
            if self._flags & (_F_PEER_EOF | _F_LOST_WHEN_DRAINED):
                self._pull_end(conn, held)
            return
        self._pull_general(ep, conn, held)

    def _pull_general(self, ep: TcpEndpoint, conn: Any, held: Any) -> None:
        """:meth:`_pull`, every case (tests/unit/test_streams_pull_fast.py
        compares _pull's direct branch with it)."""
        while not self._reading_paused and not self._lost:
            if held:
                data = held.popleft()  # taken out by resume_reading, older
            else:
                n = conn.readable()
                if n <= 0:
                    break
                if self._direct:
                    # asyncio's own StreamReaderProtocol copies what it is
                    # given into its reader's buffer and keeps nothing: it
                    # gets a view of the receive buffer, one copy less; to
                    # ustack's StreamReader the chunks are handed over
                    reader = self._protocol._stream_reader  # type: ignore[attr-defined]
                    if type(reader) is StreamReader:
                        reader.feed_chunks(ep.live.recv_chunks(min(n, _PULL_CHUNK),
                                                               self._loop.time()))
                        continue
                    ep.live.recv_into(self._protocol.data_received,  # type: ignore[attr-defined]
                                      min(n, _PULL_CHUNK), self._loop.time())
                    continue
                data = ep.live.recv(min(n, _PULL_CHUNK), self._loop.time())  # (n > 0: live)
                if not data:
                    break
            if self._flags & _F_BUFFERED:
                asyncio.protocols._feed_data_to_buffered_proto(  # type: ignore[attr-defined]
                    self._protocol, data)
            else:
                self._protocol.data_received(data)  # type: ignore[attr-defined]
        self._pull_end(conn, held)

    def _pull_end(self, conn: Any, held: Any) -> None:
        """:meth:`_pull` after the data: the EOF, a close that waited for it."""
        if (
            self._peer_eof
            and not self._eof_delivered
            and not self._reading_paused
            and not self._lost
            and not held
            and conn.readable() == 0
        ):
            self._eof_delivered = True
            keep_open = self._protocol.eof_received()  # type: ignore[attr-defined]
            if not keep_open:
                self.close()
        if self._lost_when_drained and not held and conn.readable() == 0 and not self._lost:
            self._connection_lost(None)

    def _connection_lost(self, exc: Exception | None) -> None:
        if self._lost:
            return
        self._lost = True
        self._closing = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc or ConnectionResetError("connection closed"))
        if self._connected:
            try:
                self._protocol.connection_lost(exc)
            finally:
                if self._ep is not None:
                    self._table.detach(self._ep)

    # ------------------------------------------------------ events from TCP

    def tcp_event(self, event: events.Event) -> None:
        """Called by the table for every event of our connection."""
        kind = type(event)
        if self._lost:
            return
        if kind is _DATA_AVAILABLE:
            if self._connected:
                self._pull()
        elif kind is events.SendSpaceAvailable:
            self._push()
        elif kind is events.Connected:
            self._on_connected()
        elif kind is events.EofReceived:
            self._peer_eof = True
            if self._connected:
                self._pull()
        elif kind is events.ConnectionFailed:
            err = _event_errno(event)
            exc = _os_error(err, self._where())
            if self._ep is not None:
                self._table.detach(self._ep)
            if not self._connected:
                self._lost = True
                if self._waiter is not None and not self._waiter.done():
                    self._waiter.set_exception(exc)
            else:
                self._connection_lost(exc)
        elif kind is events.Closed:
            if not self._connected:
                self._lost = True
                if self._waiter is not None and not self._waiter.done():
                    self._waiter.set_exception(
                        _os_error(errno_mod.ECONNRESET, self._where()))
            elif self._held or (self._ep is not None and self._ep.conn.readable() > 0):
                # closed gracefully (LAST-ACK done) while a paused reader still
                # has data in the TCP buffer: deliver it first, then EOF
                self._lost_when_drained = True
                self._pull()
            else:
                self._connection_lost(None)

    def _where(self) -> str:
        peer = self.get_extra_info("peername")
        return f"{peer[0]}:{peer[1]}" if peer else ""

    def _on_connected(self) -> None:
        if self._connected:
            return
        self._connected = True
        if self._ep is not None and self._ep.conn.eof_received:
            self._peer_eof = True  # the FIN came while the connection waited in the accept queue
        self._protocol.connection_made(self)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        if self._pending:
            self._push()
        elif self._eof_wanted:
            self._send_fin()
        self._pull()

    def __repr__(self) -> str:
        # uvloop's loop.start_tls raises "transport <repr> is not supported by
        # start_tls()" for transports it did not make: the repr says what works
        state = "lost" if self._lost else "closing" if self._closing else "open"
        local, peer = self.get_extra_info("sockname"), self.get_extra_info("peername")
        return (f"<ustack TcpTransport {local} -> {peer} {state} (TLS: writer.start_tls, "
                "ustack.streams.start_tls or the ustack loop)>")


# ------------------------------------------------------------------- TLS


class _SSLProtocol(sslproto.SSLProtocol):
    """The standard library's SSLProtocol with one fix: a flush (the peer's
    TCP FIN arrived, the rest of the TLS data waits in the incoming BIO) must
    not run while the application has paused reading.  Otherwise a resume
    callback scheduled before the application paused again finishes the TLS
    shutdown with undelivered data and the application sees EOF early (the
    flush runs again from ``_resume_reading`` when the application resumes)."""

    def _do_flush(self) -> None:
        app = self._app_transport
        closing = app is not None and app._closed  # the application's own close()
        if self._app_reading_paused and not closing:  # type: ignore[attr-defined]
            return  # (closing: shut TLS down at once, as the standard library does)
        super()._do_flush()  # type: ignore[misc]


async def start_tls(
    transport: asyncio.Transport,
    protocol: asyncio.BaseProtocol,
    sslcontext: ssl_mod.SSLContext,
    *,
    server_side: bool = False,
    server_hostname: str | None = None,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
    call_connection_made: bool = True,
) -> asyncio.Transport:
    """``loop.start_tls`` for any loop: uvloop's refuses foreign transports,
    so this runs the standard library's SSLProtocol (TLS over
    ``ssl.MemoryBIO``/``SSLObject``) over ours directly.

    ``call_connection_made=False`` is ``loop.start_tls``'s contract (the
    protocol already has its connection, e.g. ``StreamWriter.start_tls``);
    True gives a fresh protocol its ``connection_made`` after the handshake."""
    if not isinstance(sslcontext, ssl_mod.SSLContext):
        raise TypeError(f"sslcontext is expected to be an instance of ssl.SSLContext, "
                        f"got {sslcontext!r}")
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()
    ssl_protocol = _SSLProtocol(
        loop, protocol, sslcontext, waiter, server_side, server_hostname,
        ssl_handshake_timeout=ssl_handshake_timeout,  # type: ignore[arg-type]
        ssl_shutdown_timeout=ssl_shutdown_timeout,
        call_connection_made=call_connection_made,
    )
    transport.pause_reading()
    transport.set_protocol(ssl_protocol)
    conmade = loop.call_soon(ssl_protocol.connection_made, transport)
    resume = loop.call_soon(transport.resume_reading)
    try:
        await waiter
    except BaseException:
        transport.close()
        conmade.cancel()
        resume.cancel()
        raise
    return ssl_protocol._app_transport


def _ssl_context(
    ssl: ssl_mod.SSLContext | bool | None, server_side: bool
) -> ssl_mod.SSLContext | None:
    if ssl is None or ssl is False:
        return None
    if ssl is True:
        if server_side:
            raise ValueError("a server needs an ssl.SSLContext with its certificate")
        return ssl_mod.create_default_context()
    if not isinstance(ssl, ssl_mod.SSLContext):
        raise TypeError(f"ssl must be an ssl.SSLContext, True or None, not {type(ssl).__name__}")
    return ssl


# ------------------------------------------------------------ connecting


async def connect_transport(
    table: TcpTable,
    raddr: bytes,
    port: int,
    *,
    local_port: int | None = None,
    timeout: float | None = None,
    trace: Any = None,
) -> TcpTransport:
    """Active open to ``raddr:port``: a connected TcpTransport with a
    placeholder protocol and reading paused (data waits in the TCP receive
    buffer) until :func:`attach` gives it the application's protocol.
    ``trace``: a file path or a hook(now, event, data) tracing this
    connection (docs/trace.md)."""
    loop = table.loop
    transport = TcpTransport(table, _PLACEHOLDER)
    transport._reading_paused = True  # nothing may reach the placeholder
    waiter: asyncio.Future[None] = loop.create_future()
    transport._waiter = waiter
    ep = table.connect(raddr, port, transport, local_port=local_port, trace=trace)
    transport._bind(ep)
    try:
        if timeout is None:
            await waiter
        else:
            async with asyncio.timeout(timeout):
                await waiter
    except TimeoutError:
        transport.abort()
        raise TimeoutError(errno_mod.ETIMEDOUT,
                           f"connect to {socket.inet_ntoa(raddr)}:{port} timed out after "
                           f"{timeout} s") from None
    except BaseException:
        if not transport._lost:
            transport.abort()
        raise
    finally:
        transport._waiter = None
    return transport


async def connect_any(
    table: TcpTable,
    addresses: list[str],
    port: int,
    *,
    happy_eyeballs_delay: float | None = None,
    local_port: int | None = None,
    timeout: float | None = None,
    trace: Any = None,
) -> tuple[TcpTransport | None, list[OSError]]:
    """Connect to the first of ``addresses`` (IPv4 literals) that answers,
    as ``loop.create_connection`` does: without ``happy_eyeballs_delay`` one
    after the other; with it, staggered (RFC 8305 s.5): the next attempt
    starts when the previous one fails or after ``happy_eyeballs_delay``
    seconds, whichever is first, and the first to connect wins.  The
    others are cancelled: those still in SYN-SENT are dropped, those that
    connected meanwhile are reset (RFC 9293 s.3.10.5, ABORT).

    Returns the winner (None if every attempt failed) and the errors of
    the attempts that failed, in attempt order."""
    if happy_eyeballs_delay is None:
        errors: list[OSError] = []
        for address in addresses:
            try:
                return await connect_transport(table, _parse_ipv4(address), port,
                                               local_port=local_port, timeout=timeout,
                                               trace=trace), errors
            except OSError as exc:
                errors.append(exc)
        return None, errors
    return await _staggered(table, addresses, port, max(0.0, happy_eyeballs_delay),
                            local_port=local_port, timeout=timeout, trace=trace)


async def _staggered(table: TcpTable, addresses: list[str], port: int, delay: float, *,
                     local_port: int | None, timeout: float | None,
                     trace: Any) -> tuple[TcpTransport | None, list[OSError]]:
    loop = asyncio.get_running_loop()
    order: dict[asyncio.Task[TcpTransport], int] = {}
    pending: set[asyncio.Task[TcpTransport]] = set()
    failed: list[tuple[int, OSError]] = []
    winner: TcpTransport | None = None
    started = 0
    try:
        while winner is None:
            if started < len(addresses):
                task = loop.create_task(connect_transport(
                    table, _parse_ipv4(addresses[started]), port, local_port=local_port,
                    timeout=timeout, trace=trace))
                order[task] = started
                pending.add(task)
                started += 1
            if not pending:
                break
            wait = delay if started < len(addresses) else None
            done, pending = await asyncio.wait(pending, timeout=wait,
                                               return_when=asyncio.FIRST_COMPLETED)
            for task in sorted(done, key=order.__getitem__):
                exc = task.exception()
                if exc is None:
                    if winner is None:
                        winner = task.result()
                    else:
                        task.result().abort()  # connected too, but second
                elif isinstance(exc, OSError):
                    failed.append((order[task], exc))
                else:
                    raise exc
            # a failure (or the delay) starts the next attempt at once
    finally:
        for task in pending:
            task.cancel()  # connect_transport aborts its connection when cancelled
        if pending:
            results = await asyncio.gather(*pending, return_exceptions=True)
            for result in results:
                if isinstance(result, TcpTransport):
                    result.abort()
    failed.sort(key=lambda item: item[0])
    return winner, [exc for _i, exc in failed]


async def attach(
    transport: TcpTransport,
    protocol: asyncio.BaseProtocol,
    *,
    ssl: ssl_mod.SSLContext | bool | None = None,
    server_hostname: str | None = None,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
) -> asyncio.Transport:
    """Hand a transport from :func:`connect_transport` to ``protocol``
    (``connection_made`` is called), through TLS when ``ssl`` is given."""
    sslcontext = _ssl_context(ssl, server_side=False)
    _light_drain_waiters(protocol)
    if transport._lost:
        raise ConnectionResetError(errno_mod.ECONNRESET,
                                   f"connection to {transport._where()} lost before use")
    if sslcontext is not None:
        try:
            return await start_tls(transport, protocol, sslcontext,
                                   server_hostname=server_hostname,
                                   ssl_handshake_timeout=ssl_handshake_timeout,
                                   ssl_shutdown_timeout=ssl_shutdown_timeout)
        except BaseException:
            transport.abort()
            raise
    return attach_plain(transport, protocol)


def attach_plain(transport: TcpTransport, protocol: asyncio.BaseProtocol) -> TcpTransport:
    """:func:`attach` without TLS, as a plain call (no coroutine to make and
    run per connection)."""
    _light_drain_waiters(protocol)
    if transport._lost:
        raise ConnectionResetError(errno_mod.ECONNRESET,
                                   f"connection to {transport._where()} lost before use")
    transport.set_protocol(protocol)
    protocol.connection_made(transport)
    if _QUIET_ATTACH and _nothing_waits(transport):
        # resume_reading() would find nothing to take out of the core and
        # schedule a callback (and two drains) that deliver nothing: what
        # arrives from now on comes with its own event (DataAvailable,
        # EofReceived) to a transport that is reading
        transport._reading_paused = False
    else:
        transport.resume_reading()
    return transport


#: take :func:`attach`'s shortcut (tests turn it off to compare)
_QUIET_ATTACH = True


def _nothing_waits(transport: TcpTransport) -> bool:
    """A transport that connected and got nothing yet: paused by
    :func:`connect_transport`, not closing, nothing held, no EOF, no data
    in the TCP receive buffer."""
    ep = transport._ep
    return (transport._reading_paused and transport._connected and not transport._closing
            and not transport._lost and not transport._held
            and not transport._flags & (_F_PEER_EOF | _F_LOST_WHEN_DRAINED | _F_RESUME_SCHEDULED)
            and ep is not None and not ep.removed and ep.conn.readable() == 0)


async def create_connection(
    protocol_factory: Callable[[], asyncio.BaseProtocol],
    host: str,
    port: int,
    *,
    stack: StreamHost | None = None,
    local_port: int | None = None,
    timeout: float | None = None,
    ssl: ssl_mod.SSLContext | bool | None = None,
    server_hostname: str | None = None,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
    happy_eyeballs_delay: float | None = None,
    trace: Any = None,
) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
    """Like ``loop.create_connection`` over ustack: active open to host:port
    (``trace``: see :func:`connect_transport`).

    ``host`` is an IPv4 address or a name (hosts file, then DNS over the
    stack's UDP; socket.gaierror when it does not resolve); the addresses
    are tried in order, or staggered with ``happy_eyeballs_delay``, as
    asyncio does (:func:`connect_any`)."""
    if stack is None:
        stack = await default_stack()
    addresses = await resolve(stack, host)
    if ssl and server_hostname is None:
        server_hostname = host
    transport, errors = await connect_any(stack.tcp, addresses, port,
                                          happy_eyeballs_delay=happy_eyeballs_delay,
                                          local_port=local_port, timeout=timeout, trace=trace)
    if transport is None:
        raise connect_errors(errors)
    protocol = protocol_factory()
    tr = await attach(transport, protocol, ssl=ssl, server_hostname=server_hostname,
                      ssl_handshake_timeout=ssl_handshake_timeout,
                      ssl_shutdown_timeout=ssl_shutdown_timeout)
    return tr, protocol


def connect_errors(errors: list[OSError]) -> OSError:
    """asyncio's rule: one error, or errors that all read the same, raise the
    first; else one OSError listing them all."""
    if not errors:
        return OSError(errno_mod.EHOSTUNREACH, "no address to connect to")
    if len(errors) == 1 or all(str(e) == str(errors[0]) for e in errors):
        return errors[0]
    return OSError("Multiple exceptions: " + ", ".join(str(e) for e in errors))


async def open_connection(
    host: str,
    port: int,
    *,
    stack: StreamHost | None = None,
    limit: int = DEFAULT_LIMIT,
    local_port: int | None = None,
    timeout: float | None = None,
    ssl: ssl_mod.SSLContext | bool | None = None,
    server_hostname: str | None = None,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
    happy_eyeballs_delay: float | None = None,
    trace: Any = None,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Like :func:`asyncio.open_connection` over ustack (``trace``: see
    :func:`connect_transport`)."""
    loop = asyncio.get_running_loop()
    reader = StreamReader(limit=limit, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    _light_drain_waiters(protocol)
    transport, _ = await create_connection(
        lambda: protocol, host, port, stack=stack, local_port=local_port, timeout=timeout,
        ssl=ssl, server_hostname=server_hostname, ssl_handshake_timeout=ssl_handshake_timeout,
        ssl_shutdown_timeout=ssl_shutdown_timeout, happy_eyeballs_delay=happy_eyeballs_delay,
        trace=trace,
    )
    writer = StreamWriter(transport, protocol, reader, loop)
    return reader, writer


def _light_drain_waiters(protocol: asyncio.BaseProtocol) -> None:
    """asyncio's FlowControlMixin (StreamReaderProtocol's base) keeps its
    drain waiters in a deque (~760 bytes empty, per connection); it only
    appends, removes and iterates them, which a list (56 bytes) does the
    same.  Done for every protocol a transport is given (attach, accept),
    so ``asyncio.open_connection``/``start_server`` on the ustack loop get
    it too; a protocol without the deque is left alone."""
    waiters = getattr(protocol, "_drain_waiters", None)
    if isinstance(waiters, deque) and not waiters:
        protocol._drain_waiters = []  # type: ignore[attr-defined]


class StreamWriter(asyncio.StreamWriter):
    """asyncio's StreamWriter whose ``start_tls`` works on any loop: it runs
    :func:`start_tls` on the ustack transport instead of ``loop.start_tls``
    (uvloop's refuses transports it did not make)."""

    async def start_tls(self, sslcontext: ssl_mod.SSLContext, *,
                        server_hostname: str | None = None,
                        ssl_handshake_timeout: float | None = None,
                        ssl_shutdown_timeout: float | None = None) -> None:
        protocol: Any = self._protocol  # type: ignore[attr-defined]
        server_side = protocol._client_connected_cb is not None
        await self.drain()
        new_transport = await start_tls(
            self.transport, protocol, sslcontext, server_side=server_side,  # type: ignore[arg-type]
            server_hostname=server_hostname, ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout, call_connection_made=False)
        self._transport = new_transport
        protocol._replace_writer(self)


# --------------------------------------------------------------- serving


class Server(asyncio.AbstractServer):
    """What ``start_server``/``create_server`` return, shaped like asyncio.Server."""

    def __init__(
        self,
        table: TcpTable,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        port: int,
        backlog: int,
        sslcontext: ssl_mod.SSLContext | None,
        ssl_handshake_timeout: float | None,
    ) -> None:
        self._table = table
        self._address = socket.inet_ntoa(table.local_addr)
        self._loop = self._table.loop
        self._factory = protocol_factory
        self._ssl = sslcontext
        self._ssl_handshake_timeout = ssl_handshake_timeout
        self._listener: Listener | None = self._table.listen(port, backlog, self._accept)
        self._listener.set_accepting(False)
        self._serving = False
        self._serving_forever: asyncio.Future[None] | None = None
        self._closed = self._loop.create_future()
        self._transports: weakref.WeakSet[TcpTransport] = weakref.WeakSet()

    @property
    def port(self) -> int:
        return self._listener.port if self._listener is not None else 0

    @property
    def sockets(self) -> tuple[ServerSocket, ...]:
        """Socket-like objects (no OS socket exists) whose ``getsockname()``
        is the listening address, as asyncio.Server's."""
        if self._listener is None:
            return ()
        return (ServerSocket((self._address, self._listener.port)),)

    @property
    def addresses(self) -> list[tuple[str, int]]:
        if self._listener is None:
            return []
        return [(self._address, self._listener.port)]

    @property
    def backlog(self) -> int:
        return self._listener.backlog if self._listener is not None else 0

    def _accept(self, ep: TcpEndpoint) -> None:
        protocol = self._factory()
        _light_drain_waiters(protocol)
        if self._ssl is not None:
            transport = TcpTransport(self._table, asyncio.Protocol())
            self._transports.add(transport)
            transport._reading_paused = True  # the ClientHello waits for start_tls
            transport._bind(ep)
            transport._connected = True
            self._loop.create_task(self._tls_accept(transport, protocol))
        else:
            transport = TcpTransport(self._table, protocol)
            self._transports.add(transport)
            transport._bind(ep)
            transport._on_connected()

    async def _tls_accept(self, transport: TcpTransport, protocol: asyncio.BaseProtocol) -> None:
        assert self._ssl is not None
        try:
            await start_tls(transport, protocol, self._ssl, server_side=True,
                            ssl_handshake_timeout=self._ssl_handshake_timeout)
        except (TimeoutError, OSError, ssl_mod.SSLError, ConnectionError):
            transport.abort()

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def close_clients(self) -> None:
        """Close every accepted connection (asyncio.Server, Python 3.13)."""
        for transport in list(self._transports):
            transport.close()

    def abort_clients(self) -> None:
        """Reset every accepted connection (asyncio.Server, Python 3.13)."""
        for transport in list(self._transports):
            transport.abort()

    def is_serving(self) -> bool:
        return self._serving

    async def start_serving(self) -> None:
        if self._listener is None:
            raise RuntimeError(f"server {self!r} is closed")
        self._serving = True
        self._listener.set_accepting(True)

    async def serve_forever(self) -> None:
        if self._serving_forever is not None:
            raise RuntimeError(f"server {self!r} is already being awaited on serve_forever()")
        if self._listener is None:
            raise RuntimeError(f"server {self!r} is closed")
        await self.start_serving()
        self._serving_forever = self._loop.create_future()
        try:
            await self._serving_forever
        except asyncio.CancelledError:
            try:
                self.close()
                await self.wait_closed()
            finally:
                raise
        finally:
            self._serving_forever = None

    def close(self) -> None:
        """Stop listening (unaccepted connections get a RST); open connections stay."""
        listener = self._listener
        if listener is None:
            return
        self._listener = None
        self._serving = False
        listener.close()
        if self._serving_forever is not None and not self._serving_forever.done():
            self._serving_forever.cancel()
            self._serving_forever = None
        if not self._closed.done():
            self._closed.set_result(None)

    async def wait_closed(self) -> None:
        if self._listener is None:
            return
        await asyncio.shield(self._closed)

    def __repr__(self) -> str:
        return f"<ustack Server port={self.port} serving={self._serving}>"


async def create_server(
    protocol_factory: Callable[[], asyncio.BaseProtocol],
    host: str | None = None,
    port: int = 0,
    *,
    stack: StreamHost | None = None,
    backlog: int = 128,
    ssl: ssl_mod.SSLContext | None = None,
    ssl_handshake_timeout: float | None = None,
    start_serving: bool = True,
) -> Server:
    """Like ``loop.create_server`` over ustack (one address: the stack's)."""
    if stack is None:
        stack = await default_stack()
    if host not in (None, "", "0.0.0.0"):
        ours = socket.inet_ntoa(stack.tcp.local_addr)
        if _parse_ipv4(str(host)) != stack.tcp.local_addr:
            raise OSError(errno_mod.EADDRNOTAVAIL,
                          f"{os.strerror(errno_mod.EADDRNOTAVAIL)}: {host} is not this "
                          f"stack's address ({ours})")
    server = Server(stack.tcp, protocol_factory, port, backlog,
                    _ssl_context(ssl, server_side=True), ssl_handshake_timeout)
    if start_serving:
        await server.start_serving()
    return server


async def start_server(
    client_connected_cb: ClientConnectedCallback,
    host: str | None = None,
    port: int = 0,
    *,
    stack: StreamHost | None = None,
    limit: int = DEFAULT_LIMIT,
    backlog: int = 128,
    ssl: ssl_mod.SSLContext | None = None,
    ssl_handshake_timeout: float | None = None,
    start_serving: bool = True,
) -> Server:
    """Like :func:`asyncio.start_server` over ustack."""
    loop = asyncio.get_running_loop()

    def connected(reader: asyncio.StreamReader,
                  writer: asyncio.StreamWriter) -> Awaitable[None] | None:
        # asyncio's StreamReaderProtocol made a plain StreamWriter, whose
        # start_tls asks loop.start_tls (uvloop's refuses our transport):
        # make the same object ours (no new state) so server-side
        # ``writer.start_tls`` works on every loop
        if type(writer) is asyncio.StreamWriter:
            writer.__class__ = StreamWriter
        return client_connected_cb(reader, writer)

    def factory() -> asyncio.BaseProtocol:
        reader = StreamReader(limit=limit, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, connected, loop=loop)
        _light_drain_waiters(protocol)
        return protocol

    return await create_server(factory, host, port, stack=stack, backlog=backlog, ssl=ssl,
                               ssl_handshake_timeout=ssl_handshake_timeout,
                               start_serving=start_serving)


# --------------------------------------------------------- default stack


class NoDefaultStackError(RuntimeError):
    """``ustack.open_connection``/``start_server`` without a configured stack."""


_default: dict[asyncio.AbstractEventLoop, StreamHost] = {}
_loop_stacks: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, Callable[[], Awaitable[StreamHost]]] = \
    weakref.WeakKeyDictionary()


#: ``Stack.start``, registered by ``ustack.stack`` when it is imported (streams
#: never imports the Stack: the stack composes streams, not the reverse)
_stack_starter: Callable[..., Awaitable[StreamHost]] | None = None


def set_stack_starter(starter: Callable[..., Awaitable[StreamHost]]) -> None:
    """What :func:`default_stack` calls to start the USTACK_IFACE stack."""
    global _stack_starter
    _stack_starter = starter


def register_loop_stack(loop: asyncio.AbstractEventLoop,
                        starter: Callable[[], Awaitable[StreamHost]]) -> None:
    """Make ``starter()`` (which starts or returns the loop's stack) what
    :func:`default_stack` answers on ``loop`` (the ustack event loop does this)."""
    _loop_stacks[loop] = starter
_default_lock: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}


async def default_stack() -> StreamHost:
    """The stack configured by USTACK_IFACE, USTACK_ADDRESS (and optional
    USTACK_GATEWAY), started on first use, one per event loop."""
    loop = asyncio.get_running_loop()
    stack = _default.get(loop)
    if stack is not None:
        return stack
    starter = _loop_stacks.get(loop)
    if starter is not None:  # a ustack event loop: its own stack
        return await starter()
    lock = _default_lock.setdefault(loop, asyncio.Lock())
    async with lock:
        stack = _default.get(loop)
        if stack is not None:
            return stack
        iface = os.environ.get("USTACK_IFACE")
        address = os.environ.get("USTACK_ADDRESS")
        if not iface or not address:
            missing = " and ".join(n for n, v in (("USTACK_IFACE", iface),
                                                  ("USTACK_ADDRESS", address)) if not v)
            raise NoDefaultStackError(
                f"no default ustack stack: set {missing} (e.g. USTACK_IFACE=veth-us "
                "USTACK_ADDRESS=10.77.0.2/24, optional USTACK_GATEWAY), or pass a "
                "Stack: await stack.open_connection(...)")
        if _stack_starter is None:
            raise NoDefaultStackError("no default ustack stack: ustack.stack is not imported "
                                      "(import ustack.stack, or use ustack.open_connection)")
        stack = await _stack_starter(iface=iface, address=address,
                                     gateway=os.environ.get("USTACK_GATEWAY") or None)
        _default[loop] = stack
        return stack


__all__ = [
    "TcpTransport", "Server", "create_connection", "open_connection", "create_server",
    "start_server", "start_tls", "default_stack", "NoDefaultStackError", "connect_transport",
    "connect_any", "attach", "attach_plain", "parse_ipv4", "resolve", "register_loop_stack",
    "StreamReader", "StreamWriter", "StreamHost",
    "NameResolver",
]
