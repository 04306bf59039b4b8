"""The TCP connection table: demultiplexing, listeners, ports, ISNs, timers.

One :class:`TcpTable` per :class:`~ustack.stack.Stack`.  It owns every
sans-I/O :class:`~ustack.tcp.TcpConnection` of the stack and is the only
place where they meet the asyncio loop:

* **Demultiplexing** (RFC 9293 section 3.10.7): an arriving segment goes to the
  connection with its 4-tuple, else to the listener on its port, else it gets
  the reply the TCP core prescribes for a segment with no connection
  (:func:`ustack.tcp.reply_to_unmatched`, usually a RST).
* **Listeners** keep a backlog: connections still in SYN-RECEIVED plus the
  established ones nobody has accepted yet.  A SYN that would exceed it is
  dropped, as Linux drops it when the accept queue is full.
* **Ports and ISNs**: ephemeral ports per RFC 6056 and initial sequence
  numbers per RFC 6528, both computed by the TCP core's helpers.
* **Output batching**: anything that may make a connection produce output
  (an input segment, a timer, an application call) only marks the connection
  *dirty*; one ``call_soon`` callback per loop iteration then drains events
  and ``segments_to_send`` of every dirty connection.  A receive batch of 64
  segments therefore costs one drain, not 64.
* **One timer** for the whole table: a heap of ``(deadline, n, endpoint)``
  with lazy invalidation and a single ``loop.call_at`` handle for the
  earliest entry.  A deadline that moves *later* (the retransmission timer
  re-armed by every ACK) costs nothing: the stale, earlier heap entry fires,
  finds the connection not yet due and pushes its real deadline.  Only a
  deadline that moves *earlier* pushes a new entry.  10,000 connections mean
  one timer handle.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import heapq
import itertools
import os
import socket
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from ustack.tcp import events
from ustack.tcp.config import TcpConfig
from ustack.tcp.isn import IsnGenerator
from ustack.tcp.listener import listener_action, reply_to_unmatched
from ustack.tcp.mib import TcpMib
from ustack.tcp.ports import PortAllocator
from ustack.wire.tcp import FIN, HEADER_LEN, PROTO_TCP, PSH, RST, SegmentEncoder, TcpSegment
from ustack.wire.tcp import HEADER as TCP_HEADER

if TYPE_CHECKING:
    from ustack.stack import Stack
    from ustack.tcp.connection import TcpConnection


def _fine_clock(loop: asyncio.AbstractEventLoop) -> Callable[[], float]:
    """The connections' clock: ``loop.time``, except on uvloop, whose
    ``loop.time()`` has 1 ms resolution (every sub-millisecond RTT came out
    as 0 or 1 ms): there ``time.monotonic``, the same clock at ns resolution.
    Deadlines still go to ``loop.call_at`` unchanged: uvloop's time is the
    monotonic clock in whole milliseconds, so a timer fires on time or < 1 ms
    late, never early.  (A simulated loop keeps its own ``loop.time``.)"""
    if type(loop).__module__.split(".")[0] == "uvloop":
        return time.monotonic
    return loop.time


def _connection_class() -> type[TcpConnection]:
    from ustack.tcp.connection import TcpConnection

    return TcpConnection

#: (local port, remote address, remote port): the stack has one local address.
ConnKey = tuple[int, bytes, int]

#: largest GSO payload: IPv4 total length 65535 - 20 (IP) - 60 (TCP with options)
GSO_MAX_PAYLOAD = 65535 - 20 - 60

#: how often the heap may hold stale entries before it is rebuilt
_HEAP_SLACK = 4


class EndpointOwner(Protocol):
    """Who consumes a connection's events (the streams transport)."""

    def tcp_event(self, event: events.Event) -> None: ...


class TcpEndpoint:
    """One table entry: a TCP connection, its addresses, its owner."""

    __slots__ = (
        "conn", "table", "key", "local_addr", "remote_addr", "local_port", "remote_port",
        "owner", "listener", "heap_deadline", "removed", "accepted",
    )

    def __init__(
        self,
        table: TcpTable,
        conn: TcpConnection,
        local_addr: bytes,
        local_port: int,
        remote_addr: bytes,
        remote_port: int,
    ) -> None:
        self.conn = conn
        self.table = table
        self.local_addr = local_addr
        self.local_port = local_port
        self.remote_addr = remote_addr
        self.remote_port = remote_port
        self.key: ConnKey = (local_port, remote_addr, remote_port)
        self.owner: EndpointOwner | None = None
        self.listener: Listener | None = None
        #: deadline of this endpoint's earliest live heap entry (None: no entry)
        self.heap_deadline: float | None = None
        self.removed = False
        self.accepted = False

    def touch(self) -> None:
        """The application changed the connection: drain it this iteration."""
        self.table.touch(self)

    @property
    def peername(self) -> tuple[str, int]:
        return (socket.inet_ntoa(self.remote_addr), self.remote_port)

    @property
    def sockname(self) -> tuple[str, int]:
        return (socket.inet_ntoa(self.local_addr), self.local_port)

    def __repr__(self) -> str:
        state = getattr(self.conn.state, "ss_name", self.conn.state)
        return f"<TcpEndpoint {self.sockname} -> {self.peername} {state}>"


class Listener:
    """A passive open on one local port (RFC 9293 section 3.10.1, LISTEN)."""

    def __init__(
        self,
        table: TcpTable,
        port: int,
        backlog: int,
        on_connection: Callable[[TcpEndpoint], None],
    ) -> None:
        self.table = table
        self.port = port
        self.backlog = max(1, backlog)
        self.on_connection = on_connection
        #: children still in SYN-RECEIVED
        self.half_open: set[TcpEndpoint] = set()
        #: established children not yet handed to ``on_connection``
        self.accept_queue: deque[TcpEndpoint] = deque()
        self.accepting = True
        self.closed = False
        self.syn_dropped = 0

    @property
    def pending(self) -> int:
        return len(self.half_open) + len(self.accept_queue)

    def set_accepting(self, accepting: bool) -> None:
        """Hand established connections to the server (True) or queue them."""
        self.accepting = accepting
        if accepting:
            self._drain_accept_queue()

    def _established(self, ep: TcpEndpoint) -> None:
        self.half_open.discard(ep)
        self.accept_queue.append(ep)
        self._drain_accept_queue()

    def _child_gone(self, ep: TcpEndpoint) -> None:
        self.half_open.discard(ep)
        with contextlib.suppress(ValueError):
            self.accept_queue.remove(ep)

    def _drain_accept_queue(self) -> None:
        while self.accepting and self.accept_queue and not self.closed:
            ep = self.accept_queue.popleft()
            ep.listener = None
            ep.accepted = True
            self.on_connection(ep)

    def close(self) -> None:
        """Stop listening; reset children nobody accepted (as Linux does)."""
        if self.closed:
            return
        self.closed = True
        self.table._listeners.pop(self.port, None)
        for ep in list(self.half_open) + list(self.accept_queue):
            self.table.abort(ep)
        self.half_open.clear()
        self.accept_queue.clear()


class TcpTable:
    """All TCP connections and listeners of one stack, on one asyncio loop."""

    EPHEMERAL_RANGE = (32768, 60999)  # Linux's net.ipv4.ip_local_port_range

    def __init__(
        self,
        stack: Stack,
        *,
        config: TcpConfig | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.stack = stack
        self.loop = loop or asyncio.get_running_loop()
        self._clock = _fine_clock(self.loop)
        mtu = int(getattr(getattr(stack, "device", None), "mtu", 1500) or 1500)
        #: IPv4 payload room per frame; and the largest TCP payload that
        #: always fits (40 bytes of options at most)
        self._mtu_payload = mtu - 20
        self._small_payload = mtu - 20 - 60
        #: the device segments TCP for us (PACKET_VNET_HDR): let the core emit
        #: super-segments of whole MSS multiples up to 64 KiB
        self._gso = getattr(stack.ip, "transmit_gso", None) is not None
        if config is None:
            config = TcpConfig()
            if self._gso:
                config.max_segment = GSO_MAX_PAYLOAD
        self.config = config
        self._ip_send: Callable[[bytes, int, bytes], Any] = stack.ip.send
        self._ip_send_many: Callable[[bytes, int, list[bytes]], Any] = getattr(
            stack.ip, "send_many", None) or self._send_each
        self.local_addr: bytes = socket.inet_aton(stack.address)
        # the IP layer's TCP fast path (Ethernet + IPv4 + TCP in one pack),
        # else encode here and use send_many / send
        self._ip_send_tcp: Callable[[bytes, list[TcpSegment], SegmentEncoder], Any] = getattr(
            stack.ip, "send_tcp_many", None) or self._send_tcp_encoded
        self._new_encoder: Callable[[bytes], SegmentEncoder] = getattr(
            stack.ip, "tcp_encoder", None) or (lambda dst: SegmentEncoder(self.local_addr, dst))
        #: trace every new connection (ustack.trace.StackTracer, a path or a
        #: hook; ``Stack.start(trace_dir=...)``); None = off
        self.tracer: Any = None
        self._isn = IsnGenerator(os.urandom(16))
        #: the stack-wide TCP MIB (nstat names), shared by every connection
        self.mib = TcpMib()
        self._ports = PortAllocator(*self.EPHEMERAL_RANGE)
        self._conns: dict[ConnKey, TcpEndpoint] = {}
        self._listeners: dict[int, Listener] = {}
        self._dirty: dict[TcpEndpoint, None] = {}
        self._flush_handle: asyncio.Handle | None = None
        self._heap: list[tuple[float, int, TcpEndpoint]] = []
        self._heap_counter = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = 0.0
        self._closed = False
        self.counters: dict[str, int] = {
            "tcp_segs_in": 0,
            "tcp_segs_out": 0,
            "tcp_rst_sent_unmatched": 0,
            "tcp_syn_dropped_backlog": 0,
            "tcp_timer_fires": 0,
            "tcp_active_opens": 0,
            "tcp_passive_opens": 0,
            "tcp_gso_out": 0,
        }

    # ------------------------------------------------------------------ queries

    def endpoints(self) -> Iterator[TcpEndpoint]:
        """Every connection in the table (for ``ss``)."""
        return iter(list(self._conns.values()))

    def listeners(self) -> Iterator[Listener]:
        return iter(list(self._listeners.values()))

    def __len__(self) -> int:
        return len(self._conns)

    def now(self) -> float:
        """The connections' clock (see :func:`_fine_clock`)."""
        return self._clock()

    # ------------------------------------------------------------- opening

    def connect(
        self,
        remote_addr: bytes,
        remote_port: int,
        owner: EndpointOwner,
        *,
        local_port: int | None = None,
        trace: Any = None,
    ) -> TcpEndpoint:
        """Active open (RFC 9293 section 3.10.1): queue a SYN, return the entry.
        ``trace``: a path or hook for this connection (ustack.trace)."""
        self._check_open()
        if not 0 < remote_port < 65536:
            raise ValueError(f"port must be 1..65535, not {remote_port}")
        now = self.now()
        if local_port is None:
            local_port = self._ephemeral_port(remote_addr, remote_port)
        elif not 0 < local_port < 65536:
            raise ValueError(f"local port must be 1..65535, not {local_port}")
        key = (local_port, remote_addr, remote_port)
        if key in self._conns:
            raise OSError(errno.EADDRINUSE, f"{os.strerror(errno.EADDRINUSE)}: "
                          f"local port {local_port} to {socket.inet_ntoa(remote_addr)}:"
                          f"{remote_port} is taken")
        iss = self._isn.isn(self.local_addr, local_port, remote_addr, remote_port, now)
        conn = _connection_class().connect(
            local_port, remote_port, iss, now, self.config, mib=self.mib,
            trace=self._trace_hook(trace, now, local_port, remote_addr, remote_port))
        ep = TcpEndpoint(self, conn, self.local_addr, local_port, remote_addr, remote_port)
        ep.owner = owner
        ep.accepted = True
        self._conns[key] = ep
        self.counters["tcp_active_opens"] += 1
        self.touch(ep)
        return ep

    def listen(
        self, port: int, backlog: int, on_connection: Callable[[TcpEndpoint], None]
    ) -> Listener:
        """Passive open on ``port`` (0 picks a free ephemeral port)."""
        self._check_open()
        if port == 0:
            port = self._free_listen_port()
        if not 0 < port < 65536:
            raise ValueError(f"port must be 0..65535, not {port}")
        if port in self._listeners:
            raise OSError(errno.EADDRINUSE, f"{os.strerror(errno.EADDRINUSE)}: "
                          f"port {port} already has a listener")
        listener = Listener(self, port, backlog, on_connection)
        self._listeners[port] = listener
        return listener

    def _ephemeral_port(self, remote_addr: bytes, remote_port: int) -> int:
        in_use = _PortsInUse(self, remote_addr, remote_port)
        try:
            return self._ports.choose(self.local_addr, remote_addr, remote_port, in_use)
        except OSError as exc:
            raise OSError(errno.EADDRNOTAVAIL, f"{os.strerror(errno.EADDRNOTAVAIL)}: "
                          f"no free local port to {socket.inet_ntoa(remote_addr)}:"
                          f"{remote_port}") from exc

    def _free_listen_port(self) -> int:
        lo, hi = self.EPHEMERAL_RANGE
        used = {k[0] for k in self._conns} | set(self._listeners)
        start = int.from_bytes(os.urandom(2), "big") % (hi - lo + 1)
        for i in range(hi - lo + 1):
            port = lo + (start + i) % (hi - lo + 1)
            if port not in used:
                return port
        raise OSError(errno.EADDRINUSE, "no free port to listen on")

    # ----------------------------------------------------------- application

    def abort(self, ep: TcpEndpoint) -> None:
        """RST the connection now (RFC 9293 section 3.10.5, ABORT)."""
        if ep.removed:
            return
        ep.conn.abort(self.now())
        self.touch(ep)

    def detach(self, ep: TcpEndpoint) -> None:
        """The owner is gone; the connection finishes (FIN-WAIT, TIME-WAIT) orphaned."""
        ep.owner = None

    def touch(self, ep: TcpEndpoint) -> None:
        """Drain ``ep`` (events, segments, deadline) later in this loop iteration."""
        if ep.removed:
            return
        self._dirty[ep] = None
        if self._flush_handle is None:
            self._flush_handle = self.loop.call_soon(self._flush)

    def flush_now(self) -> None:
        """Drain every dirty connection now (the stack may call this at the end
        of a receive batch instead of waiting for the ``call_soon``)."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        self._flush()

    # ----------------------------------------------------------------- input

    def ip_input(self, src: bytes, dst: bytes, payload: bytes | memoryview, *_: Any) -> None:
        """IP protocol handler for protocol 6: decode and demultiplex."""
        try:
            seg = TcpSegment.decode(payload)
        except Exception:  # ParseError; counted, never raised out of the receive path
            self.counters["tcp_decode_errors"] = self.counters.get("tcp_decode_errors", 0) + 1
            return
        # fast path (every segment of a running transfer): the connection
        # exists, stays, and only needs draining; else the full demultiplexer
        ep = self._conns.get((seg.dst_port, src, seg.src_port))
        if ep is None or ep.removed:
            self.segment_received(src, dst, seg)
            return
        self.counters["tcp_segs_in"] += 1
        conn = ep.conn
        conn.receive(seg, self._clock())
        if getattr(conn, "reopen_syn", None) is not None:
            self._reopen(ep, src, dst, seg)
            return
        self._dirty[ep] = None
        if self._flush_handle is None:
            self._flush_handle = self.loop.call_soon(self._flush)

    def segment_received(self, src: bytes, dst: bytes, seg: TcpSegment) -> None:
        """Demultiplex one decoded segment (RFC 9293 section 3.10.7)."""
        self.counters["tcp_segs_in"] += 1
        ep = self._conns.get((seg.dst_port, src, seg.src_port))
        if ep is not None:
            ep.conn.receive(seg, self.now())
            self.touch(ep)
            if getattr(ep.conn, "reopen_syn", None) is None:
                return
            self._reopen(ep, src, dst, seg)
            return
        self._to_listener(src, dst, seg)

    def _reopen(self, ep: TcpEndpoint, src: bytes, dst: bytes, seg: TcpSegment) -> None:
        """A SYN ended TIME-WAIT (RFC 6191, catalogue 42): deliver the old
        connection's events, forget it, and let the listener take the SYN."""
        self.touch(ep)
        self._flush()
        self._remove(ep)
        self._to_listener(src, dst, seg)

    def _to_listener(self, src: bytes, dst: bytes, seg: TcpSegment) -> None:
        """No connection: the listener on the port, else the reply for a
        segment with no connection (RFC 9293 3.10.7.1)."""
        listener = self._listeners.get(seg.dst_port)
        if listener is not None and not self._closed:
            action = listener_action(seg)
            if action == "syn":
                self._accept_syn(listener, src, dst, seg)
            elif isinstance(action, TcpSegment):
                self._send_reply(src, action)
            return
        reply = reply_to_unmatched(seg)
        if reply is not None:
            self.counters["tcp_rst_sent_unmatched"] += 1
            self._send_reply(src, reply)

    def _accept_syn(self, listener: Listener, src: bytes, dst: bytes, seg: TcpSegment) -> None:
        if listener.pending >= listener.backlog:
            listener.syn_dropped += 1
            self.counters["tcp_syn_dropped_backlog"] += 1
            return
        now = self.now()
        iss = self._isn.isn(self.local_addr, seg.dst_port, src, seg.src_port, now)
        conn = _connection_class().accept(
            seg, iss, now, self.config, mib=self.mib,
            trace=self._trace_hook(None, now, seg.dst_port, src, seg.src_port))
        ep = TcpEndpoint(self, conn, self.local_addr, seg.dst_port, src, seg.src_port)
        ep.listener = listener
        listener.half_open.add(ep)
        self._conns[ep.key] = ep
        self.counters["tcp_passive_opens"] += 1
        self.touch(ep)

    def _send_large(self, raddr: bytes, seg: TcpSegment) -> None:
        """A segment that may exceed the MTU: a GSO super-segment for the device
        to cut (checksum left to it), else MTU-sized pieces."""
        opt = seg.options.encode() if not seg.options.is_empty() else b""
        hlen = HEADER_LEN + len(opt)
        room = self._mtu_payload - hlen
        if len(seg.payload) <= room:
            self._ip_send(raddr, PROTO_TCP, seg.encode(self.local_addr, raddr))
            return
        if self._gso:
            header = TCP_HEADER.pack(
                seg.src_port, seg.dst_port, seg.seq, seg.ack, (hlen // 4) << 4, seg.flags,
                seg.window, 0, seg.urgent) + opt
            if self.stack.ip.send_gso(raddr, PROTO_TCP, header + seg.payload, room):
                self.counters["tcp_gso_out"] += 1
                return
        payload = seg.payload
        last = len(payload) - room
        for off in range(0, len(payload), room):
            flags = seg.flags if off >= last else seg.flags & ~(FIN | PSH)
            piece = TcpSegment(seg.src_port, seg.dst_port, (seg.seq + off) & 0xFFFFFFFF,
                               seg.ack, flags, seg.window, seg.urgent, seg.options,
                               payload[off : off + room])
            self._ip_send(raddr, PROTO_TCP, piece.encode(self.local_addr, raddr))

    def _send_tcp_encoded(self, dst: bytes, segs: list[TcpSegment],
                          encoder: SegmentEncoder) -> None:
        """Fallback for IP layers without ``send_tcp_many``."""
        if len(segs) == 1:
            self._ip_send(dst, PROTO_TCP, encoder.encode(segs[0]))
        else:
            self._ip_send_many(dst, PROTO_TCP, [encoder.encode(seg) for seg in segs])

    def _send_each(self, dst: bytes, protocol: int, payloads: list[bytes]) -> None:
        for payload in payloads:
            self._ip_send(dst, protocol, payload)

    def _send_reply(self, dst: bytes, seg: TcpSegment) -> None:
        self.counters["tcp_segs_out"] += 1
        self._ip_send(dst, PROTO_TCP, seg.encode(self.local_addr, dst))

    def ip_error(self, error: Any) -> None:
        """IP error handler (:class:`ustack.net.icmp.IpError`): an ICMP error
        quoting one of our segments, or ARP resolution that failed.  The TCP
        core decides what it means (RFC 9293 3.10.7.x, RFC 5927); a connection
        still opening fails with the errno (EHOSTUNREACH for ARP failure)."""
        key = (error.local_port, error.remote_addr, error.remote_port)
        ep = self._conns.get(key)
        if ep is None:
            return
        quoted = error.transport
        if len(quoted) < 8:
            return
        ep.conn.icmp_error(error.errno, int.from_bytes(quoted[4:8], "big"), self.now(),
                           mtu=getattr(error, "mtu", 0))
        self.touch(ep)

    # ----------------------------------------------------------------- drain

    def _flush(self) -> None:
        self._flush_handle = None
        dirty = self._dirty
        now = self.now()
        send_tcp = self._ip_send_tcp
        new_encoder = self._new_encoder
        small = self._small_payload
        mtu_payload = self._mtu_payload
        mtu_room = mtu_payload - HEADER_LEN
        guard = 0
        while dirty:
            ep = next(iter(dirty))
            del dirty[ep]
            if ep.removed:
                continue
            conn = ep.conn
            closed = False
            event = conn.next_event()
            while event is not None:
                if self._dispatch(ep, event):
                    closed = True
                event = conn.next_event()
            segs = conn.segments_to_send(now)
            if segs:
                raddr = ep.remote_addr
                self.counters["tcp_segs_out"] += len(segs)
                # one encoder per batch: the burst shares its options block
                encoder = new_encoder(raddr)
                header_len = encoder.header_len
                batch = []
                for seg in segs:
                    n = len(seg.payload)
                    if n <= small:
                        batch.append(seg)
                    elif n > mtu_room:  # a GSO super-segment
                        self._send_large(raddr, seg)
                    elif n + header_len(seg) <= mtu_payload:  # MSS-sized
                        batch.append(seg)
                    else:  # SACK blocks made the header too long
                        self._send_large(raddr, seg)
                if batch:
                    send_tcp(raddr, batch, encoder)
            if closed:
                self._remove(ep)
            else:
                self._schedule(ep, conn.next_deadline())
            guard += 1
            if guard > 100_000:  # a callback that keeps re-dirtying: finish next iteration
                if dirty and self._flush_handle is None:
                    self._flush_handle = self.loop.call_soon(self._flush)
                break
        self._arm()

    def _dispatch(self, ep: TcpEndpoint, event: events.Event) -> bool:
        """Deliver one event; True when the connection is finished."""
        kind = type(event)
        listener = ep.listener
        if listener is not None:
            if kind is events.Connected:
                listener._established(ep)
            elif kind is events.ConnectionFailed or kind is events.Closed:
                listener._child_gone(ep)
                ep.listener = None
        owner = ep.owner
        if owner is not None:
            try:
                owner.tcp_event(event)
            except Exception as exc:  # a user callback failed: report, keep draining
                self.loop.call_exception_handler({
                    "message": f"ustack: error handling {kind.__name__} on {ep!r}",
                    "exception": exc,
                })
        return kind is events.Closed

    def _trace_hook(self, trace: Any, now: float, lport: int, raddr: bytes,
                    rport: int) -> Any:
        spec = trace if trace is not None else self.tracer
        if spec is None:
            return None
        from ustack.trace.attach import connection_hook

        return connection_hook(spec, now, self.local_addr, lport, raddr, rport)

    def _remove(self, ep: TcpEndpoint) -> None:
        hook = ep.conn.trace
        if hook is not None and not ep.removed:
            (la, lp), (ra, rp) = ep.sockname, ep.peername
            hook(self.now(), "close", {"local": f"{la}:{lp}", "remote": f"{ra}:{rp}",
                                       "errno": ep.conn.error})
        ep.removed = True
        ep.heap_deadline = None
        self._dirty.pop(ep, None)
        if self._conns.get(ep.key) is ep:
            del self._conns[ep.key]
        if ep.listener is not None:
            ep.listener._child_gone(ep)
            ep.listener = None

    # ---------------------------------------------------------------- timers

    def _schedule(self, ep: TcpEndpoint, deadline: float | None) -> None:
        """Lazy heap: push only when the deadline moved earlier than the entry
        already in the heap (or there is none)."""
        if deadline is None:
            return  # a stale entry may stay; it will find nothing due
        hd = ep.heap_deadline
        if hd is None or deadline < hd:
            ep.heap_deadline = deadline
            heapq.heappush(self._heap, (deadline, next(self._heap_counter), ep))
            if len(self._heap) > _HEAP_SLACK * (len(self._conns) + 16):
                self._compact()

    def _compact(self) -> None:
        self._heap = [e for e in self._heap if e[2].heap_deadline == e[0] and not e[2].removed]
        heapq.heapify(self._heap)

    def _arm(self) -> None:
        heap = self._heap
        while heap and (heap[0][2].removed or heap[0][2].heap_deadline != heap[0][0]):
            heapq.heappop(heap)
        if not heap:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            return
        when = heap[0][0]
        if self._timer is not None:
            if self._timer_when <= when:
                return  # fires earlier (or on time); it re-arms itself
            self._timer.cancel()
        self._timer_when = when
        self._timer = self.loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        now = self.now()
        heap = self._heap
        self.counters["tcp_timer_fires"] += 1
        while heap and heap[0][0] <= now:
            deadline, _, ep = heapq.heappop(heap)
            if ep.removed or ep.heap_deadline != deadline:
                continue  # stale
            ep.heap_deadline = None
            real = ep.conn.next_deadline()
            if real is None:
                continue
            if real <= now:
                ep.conn.handle_timer(now)
                self._dirty[ep] = None
            else:
                self._schedule(ep, real)
        if self._dirty:
            self._flush()  # re-arms
        else:
            self._arm()

    # ------------------------------------------------------------------ close

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the stack is closed")

    def close(self) -> None:
        """Stop: reset every connection, drop every listener, cancel the timer."""
        if self._closed:
            return
        for listener in list(self._listeners.values()):
            listener.close()
        now = self.now()
        for ep in list(self._conns.values()):
            with contextlib.suppress(Exception):  # closing must not fail half-way
                ep.conn.abort(now)
            self._dirty[ep] = None
        self._flush()
        self._closed = True
        for ep in list(self._conns.values()):
            if ep.owner is not None and not ep.removed:
                ep.owner.tcp_event(events.ConnectionFailed(errno.ECONNABORTED))
            self._remove(ep)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._heap.clear()


class _PortsInUse:
    """``in`` test for RFC 6056 port selection: a local port is in use for
    this destination when the 4-tuple exists or a listener holds the port."""

    def __init__(self, table: TcpTable, remote_addr: bytes, remote_port: int) -> None:
        self.table = table
        self.remote_addr = remote_addr
        self.remote_port = remote_port

    def __contains__(self, port: object) -> bool:
        return (
            (port, self.remote_addr, self.remote_port) in self.table._conns
            or port in self.table._listeners
        )


__all__ = ["TcpTable", "TcpEndpoint", "Listener", "EndpointOwner", "ConnKey", "RST"]
