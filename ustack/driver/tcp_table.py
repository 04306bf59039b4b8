"""The TCP connection table: demultiplexing, listeners, ports, ISNs, timers.

The TCP transport driver (DESIGN.md, "Transport driver"): one
:class:`TcpTable` per stack, built on a typed
:class:`~ustack.driver.port.TcpPort` (local address, MTU, the IP layer's
send paths, clock, scheduler) rather than the whole Stack.  It owns every
sans-I/O :class:`~ustack.tcp.TcpConnection` of the stack and is the only
place where they meet the asyncio loop:

* **Demultiplexing** (RFC 9293 section 3.10.7): an arriving segment goes to the
  connection with its 4-tuple, else to the listener on its port, else it gets
  the reply the TCP core prescribes for a segment with no connection
  (:func:`ustack.tcp.reply_to_unmatched`, usually a RST).
* **Listeners** keep two queues, as Linux: the SYN queue of request socks
  (:class:`~ustack.tcp.listener.RequestSock`, a few hundred bytes each, no
  connection yet) and the accept queue of established connections nobody
  has accepted.  When the SYN queue holds ``backlog`` requests, SYNs are
  answered with SYN cookies (RFC 4987, ``TcpConfig.syncookies``) and cost
  no memory; a full accept queue drops SYNs and completing ACKs
  (ListenOverflows).  A SYN from a source we have no route to, or whose
  neighbour just failed ARP, gets no request sock.  Counters under Linux
  nstat names in :attr:`TcpTable.mib`.
* **Ports and ISNs**: ephemeral ports per RFC 6056 and initial sequence
  numbers per RFC 6528, both computed by the TCP core's helpers.
* **Output batching**: anything that may make a connection produce output
  (an input segment, a timer, an application call) only marks the connection
  *dirty*, and one drain delivers its events and ``segments_to_send``.  The
  segments of one receive batch (:meth:`TcpTable.begin_batch` /
  :meth:`TcpTable.end_batch`, around the device callback) are drained at
  the end of that callback, so a batch of 64 segments costs one drain and
  the protocol's ``data_received`` runs without another loop iteration; a
  ``write()`` outside a drain sends at once (:meth:`TcpTable.send_now`, as a
  kernel ``send()``); anything else gets one ``call_soon`` drain.
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
import copy
import errno
import heapq
import itertools
import os
import socket
import struct
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar, Final, Protocol, cast

from ustack.driver.port import TcpPort, port_of
from ustack.link.rxtime import CURRENT as _ARRIVAL
from ustack.link.rxtime import SENT as _SENT
from ustack.tcp import events
from ustack.tcp.config import TcpConfig
from ustack.tcp.connection import TcpConnection as _TcpConnection
from ustack.tcp.isn import IsnGenerator
from ustack.tcp.listener import (
    RequestSock,
    cookie_syn_options,
    listener_action,
    promote,
    reply_to_unmatched,
    request_synack,
    syn_window,
    synack,
    ts_val,
)
from ustack.tcp.memory import NORMAL, MemoryBudget
from ustack.tcp.mib import TcpMib
from ustack.tcp.ports import PortAllocator
from ustack.tcp.state import TcpState
from ustack.tcp.syncookies import VALID_PERIOD, CookieJar, decode_timestamp, encode_timestamp
from ustack.tcp.timewait import TimeWait, can_compact
from ustack.trace.attach import connection_hook
from ustack.wire.errors import ParseError
from ustack.wire.tcp import (
    ACK,
    FIN,
    HEADER_LEN,
    PROTO_TCP,
    PSH,
    RST,
    SYN,
    SegmentEncoder,
    TcpOptions,
    TcpSegment,
)
from ustack.wire.tcp import HEADER as TCP_HEADER

if TYPE_CHECKING:
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


def _sent_at() -> float | None:
    """``rxtime.SENT.t``, read where mypy has not narrowed it: right after
    ``_SENT.t = None`` mypy types ``_SENT.t`` as None, and the compiled code
    then rejects the float the device stored during the call (TypeError)."""
    return _SENT.t


def _buffered(conn: TcpConnection | TimeWait) -> int:
    """Bytes a connection holds: send queue, unread and out-of-order data
    (Linux charges an skb as it is queued, not the window ahead of it: a
    fresh connection costs nothing; ustack.tcp.memory).  A TIME-WAIT record
    holds nothing."""
    if isinstance(conn, TimeWait):
        return 0
    try:
        rcv = conn.rcv
        return len(conn.snd.buf) + len(rcv.buf) + rcv.ooo.nbytes
    except AttributeError:  # a connection class without the rooms (tests)
        return 0


def _connection_class() -> type[TcpConnection]:
    """The connection class (the unit tests put a fake here)."""
    return _TcpConnection

_TIME_WAIT: Final = TcpState.TIME_WAIT

#: one int object per port number, shared by every key of the connection
#: table that holds that port (not Final: compiled code inlines Final objects)
_PORT_BOXES: list[object] = [None] * 65536


def _insert(conns: dict[Any, TcpEndpoint], ep: TcpEndpoint) -> None:
    """``conns[ep.key] = ep`` with a key whose ports are the shared objects
    of ``_PORT_BOXES``.  Compiled, ``ep.key`` is an unboxed struct and every
    insert boxed both ports anew: two 32-byte ints per connection at rest
    (issue 14, memory per idle connection).  Lookups build their keys as
    before (equal ints, equal keys)."""
    lport, raddr, rport = ep.key
    boxes = _PORT_BOXES
    lbox = boxes[lport]
    if lbox is None:
        # boxed once, here: the key and the list hold this object (a plain
        # ``lbox = lport`` would narrow lbox to int, and compiled code would
        # box it again for the list)
        lbox = cast(object, lport)
        boxes[lport] = lbox
    rbox = boxes[rport]
    if rbox is None:
        rbox = cast(object, rport)
        boxes[rport] = rbox
    conns[(lbox, raddr, rbox)] = ep

#: (local port, remote address, remote port): the stack has one local address.
ConnKey = tuple[int, bytes, int]

#: largest GSO payload: IPv4 total length 65535 - 20 (IP) - 60 (TCP with options)
GSO_MAX_PAYLOAD: Final = 65535 - 20 - 60

#: destinations whose SegmentEncoder TcpTable keeps (TcpTable._encoders)
_ENCODER_CACHE: Final = 256
#: TcpTable.reread_rounds: at most this many re-reads of the receive ring
#: after a receive batch that sent data (then back to the loop)
REREAD_ROUNDS: Final = 8

#: how often the heap may hold stale entries before it is rebuilt
_HEAP_SLACK: Final = 4

#: A SYN as Linux sends it: 20-byte header plus ``mss, sackOK, TS, nop,
#: wscale`` (20 bytes); our cookie SYN-ACK to it has the same layout.
_LINUX_SYN: Final = struct.Struct("!HHIIBBHHH BBH BBBBII BBBB")
_LINUX_SYN_LEN: Final = 40
#: ``TcpEndpoint.held`` while the endpoint has a receive run open
#: (TcpTable._open_run): identity is what counts
_RUN: Final = TcpSegment(0, 0, 0, 0, 0, 0)
#: by TCP header length: ports, SEG.SEQ, SEG.ACK..window, urgent pointer and options
_RUN_FIELDS: Final[dict[int, struct.Struct]] = {20: struct.Struct("!4sI8s2x2s")}
#: pseudo-header protocol + TCP length of a 40-byte SYN-ACK
_PSEUDO_TCP_SYNACK: Final = 6 + 40
#: the constant option words of that SYN-ACK: 0x0204, 0x0402080a, 0x01030300
_SYNACK_OPT_CONST: Final = 0x0204 + 0x0402080A + 0x01030300


class EndpointOwner(Protocol):
    """Who consumes a connection's events (the streams transport)."""

    def tcp_event(self, event: events.Event) -> None: ...


class TcpEndpoint:
    """One table entry: a TCP connection, its addresses, its owner."""

    __slots__ = (
        "conn", "table", "key",
        "owner", "listener", "heap_deadline", "removed", "accepted", "queued",
        "mem", "mem_epoch", "held", "held_at", "held_rx", "held_rx_first",
    )

    def __init__(
        self,
        table: TcpTable,
        conn: TcpConnection | TimeWait,
        local_addr: bytes,
        local_port: int,
        remote_addr: bytes,
        remote_port: int,
    ) -> None:
        #: the connection; an orphan quiet in TIME-WAIT becomes a compact
        #: TimeWait record (TcpTable._compact_time_wait); an owned endpoint
        #: always has the full connection (:attr:`live`)
        self.conn: TcpConnection | TimeWait = conn
        self.table = table
        # (the addresses and ports are read from the key and the table: the
        # local address is always the table's, issue 14)
        assert local_addr == table.local_addr
        self.key: ConnKey = (local_port, remote_addr, remote_port)
        self.owner: EndpointOwner | None = None
        self.listener: Listener | None = None
        #: deadline of this endpoint's earliest live heap entry (None: no entry)
        self.heap_deadline: float | None = None
        self.removed = False
        self.accepted = False
        #: in its listener's accept queue (from the handshake's ACK on)
        self.queued = False
        #: bytes charged to the stack's memory budget, and the budget epoch
        #: whose clamp the connection has
        self.mem = 0
        self.mem_epoch = 0
        #: a plain ACK of the current receive batch not yet given to the
        #: connection (a later one may supersede it), and when it arrived
        self.held: TcpSegment | None = None
        self.held_at = 0.0
        #: the kernel's receive time of the held ACK (ustack.link.rxtime),
        #: and of the first ACK it superseded (None: not stamped)
        self.held_rx: float | None = None
        self.held_rx_first: float | None = None

    def touch(self) -> None:
        """The application changed the connection: drain it this iteration."""
        self.table.touch(self)

    @property
    def local_addr(self) -> bytes:
        return self.table.local_addr

    @property
    def local_port(self) -> int:
        return self.key[0]

    @property
    def remote_addr(self) -> bytes:
        return self.key[1]

    @property
    def remote_port(self) -> int:
        return self.key[2]

    @property
    def live(self) -> TcpConnection:
        """:attr:`conn` as the full connection, which is what an owner (a
        transport) always finds: only orphans are compacted to TimeWait."""
        conn = self.conn
        if isinstance(conn, TimeWait):
            raise AssertionError(f"{self!r}: a TIME-WAIT record, not a connection")
        return conn

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
        #: the SYN queue: request socks (SYN-RECEIVED) by 4-tuple key
        self.requests: dict[ConnKey, RequestSock] = {}
        #: established children not yet handed to ``on_connection``
        self.accept_queue: deque[TcpEndpoint] = deque()
        self.accepting = True
        self.closed = False
        #: SYNs dropped (accept queue full, SYN queue full without cookies, no route)
        self.syn_dropped = 0
        #: when this listener last answered with a cookie (ACKs are checked
        #: as cookies for VALID_PERIOD afterwards: tcp_synq_no_recent_overflow)
        self.cookie_sent_at: float | None = None

    @property
    def pending(self) -> int:
        return len(self.requests) + len(self.accept_queue)

    @property
    def syn_queue_full(self) -> bool:
        """Linux inet_csk_reqsk_queue_is_full: as many requests as the backlog."""
        return len(self.requests) >= self.backlog

    @property
    def accept_queue_full(self) -> bool:
        """Linux sk_acceptq_is_full (one more than the backlog fits)."""
        return len(self.accept_queue) > self.backlog

    def set_accepting(self, accepting: bool) -> None:
        """Hand established connections to the server (True) or queue them."""
        self.accepting = accepting
        if accepting:
            self._drain_accept_queue()

    def _established(self, ep: TcpEndpoint) -> None:
        if not ep.queued:
            ep.queued = True
            self.accept_queue.append(ep)
        self._drain_accept_queue()

    def _child_gone(self, ep: TcpEndpoint) -> None:
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
        for req in self.requests.values():
            req.removed = True  # freed silently, as Linux inet_csk_listen_stop
        self.requests.clear()
        for ep in list(self.accept_queue):
            self.table.abort(ep)
        self.accept_queue.clear()


class TcpTable:
    """All TCP connections and listeners of one stack, on one asyncio loop."""

    EPHEMERAL_RANGE = (32768, 60999)  # Linux's net.ipv4.ip_local_port_range
    #: coalesce the plain ACKs of one receive batch per connection
    #: (TcpConnection.ack_supersedes; docs/tcp-core.md "ACK coalescing")
    coalesce_acks: ClassVar[bool] = True
    #: orphans in TIME-WAIT become compact records (ustack.tcp.timewait)
    compact_time_wait: ClassVar[bool] = True
    #: the frames of one receive batch or drain (every connection) leave in
    #: one device burst (TcpPort.cork; docs/tcp-core.md "Output batching")
    cork_output: ClassVar[bool] = True
    #: a connection's output round that holds a GSO super-segment goes to
    #: the device in one call, with a send time per frame (IpLayer.
    #: send_tcp_round; False: one device call per super-segment, the
    #: round's first call the send time of all; for A/B measurements)
    gather_rounds: ClassVar[bool] = True
    #: each segment of such a round gets its own frame's send time
    #: (TcpConnection.segments_sent_each: the round's record is split per
    #: super-segment); False: the first frame's time for all, one record
    stamp_each: ClassVar[bool] = True

    def __init__(
        self,
        port: TcpPort | Any,  # (| Any: compiled code would refuse a Stack-shaped fake)
        *,
        config: TcpConfig | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        """``port``: what the table may use of the layers under it
        (``Stack.tcp_port()``).  An object shaped like a Stack (the unit
        tests' fakes) is made into a port (:func:`~ustack.driver.port.port_of`)."""
        if not isinstance(port, TcpPort):
            port = port_of(port, loop)
        self.port = port
        #: the port's owner (the Stack): what transports report as "stack"
        self.stack: object = port.owner
        self.loop = port.loop
        self._clock = _fine_clock(self.loop)
        mtu = port.mtu
        #: IPv4 payload room per frame; and the largest TCP payload that
        #: always fits (40 bytes of options at most)
        self._mtu_payload = mtu - 20
        self._small_payload = mtu - 20 - 60
        #: the device segments TCP for us (PACKET_VNET_HDR): let the core emit
        #: super-segments of whole MSS multiples up to 64 KiB
        self._gso = port.send_gso is not None
        if config is None:
            config = TcpConfig()
            if self._gso:
                config.max_segment = GSO_MAX_PAYLOAD
        self.config = config
        #: the snapshot of ``config`` connections share, and what it was taken of
        self._cfg_snap: TcpConfig | None = None
        self._cfg_src: TcpConfig | None = None
        self._ip_send: Callable[[bytes, int, bytes], Any] = port.send
        #: connections whose IPv4 headers differ from the default (TOS 0, DF
        #: set): endpoint -> (tos, df); empty, the send path never looks
        self._ip_opts: dict[TcpEndpoint, tuple[int, bool]] = {}
        #: the IP layer's cork (None: off or not offered)
        self._cork: Callable[[], None] | None = None
        self._uncork: Callable[[], None] | None = None
        if self.cork_output and port.cork is not None and port.uncork is not None:
            self._cork, self._uncork = port.cork, port.uncork
        self._ip_send_many: Callable[[bytes, int, list[bytes]], Any] = \
            port.send_many or self._send_each
        self.local_addr: bytes = port.local_addr
        self._local_sum = int.from_bytes(self.local_addr, "big")
        # the IP layer's TCP fast path (Ethernet + IPv4 + TCP in one pack),
        # else encode here and use send_many / send
        self._ip_send_tcp: Callable[[bytes, list[TcpSegment], SegmentEncoder], Any] = \
            port.send_tcp_many or self._send_tcp_encoded
        self._new_encoder: Callable[[bytes], SegmentEncoder] = \
            port.tcp_encoder or (lambda dst: SegmentEncoder(self.local_addr, dst))
        #: the IP layer's one-call round (GSO devices: segments and
        #: super-segments of one output in one device call, a send time each)
        self._ip_send_round: Callable[[bytes, list[Any], SegmentEncoder],
                                      list[float] | None] | None = \
            port.send_tcp_round if self._gso and self.gather_rounds else None
        #: one SegmentEncoder per destination, kept across sends (building one
        #: per send cost ~170 bytecodes of a request/response exchange).  An
        #: encoder caches the bytes of the last TcpOptions object it saw, by
        #: identity; the TCP core never mutates an options object after it
        #: made it (it builds a new one when a TSval, TSecr or SACK block
        #: changes), so a kept encoder gives the bytes a fresh one would
        #: (tests/unit/test_tcp_encoder_cache.py).  Cleared past
        #: _ENCODER_CACHE destinations.
        self._encoders: dict[bytes, SegmentEncoder] = {}
        #: trace every new connection (ustack.trace.StackTracer, a path or a
        #: hook; ``Stack.start(trace_dir=...)``); None = off
        self.tracer: Any = None
        self._isn = IsnGenerator(os.urandom(16))
        #: the per-stack SYN cookie secret (RFC 4987 3.6)
        self._cookies = CookieJar(os.urandom(32))
        #: called with (remote address, now) when a passive open completes
        #: its handshake (the SYN channel's proven peers); None = nobody
        self.on_passive_open: Callable[[bytes, float], None] | None = None
        #: read the frames already received (the device's ``poll``; set by the
        #: Stack): the timer runs it first, so an ACK waiting in the receive
        #: ring is seen before a loss probe or RTO it makes moot (the loop
        #: runs due timers before it polls; the drain of a receive batch
        #: sends inside the device callback, so ACKs to what it sent can be
        #: waiting when the next timer is due).  None: nothing to poll
        self.poll_input: Callable[[], None] | None = None
        #: the device's receive ring (``AfPacketDevice.ring_state``; set by
        #: the Stack with ``poll_input``): :meth:`end_batch` looks at its next
        #: slot to see whether input is waiting.  None: no ring, no re-read
        self.ring_state: Callable[[], tuple[Any, int, int, int, int, int] | None] | None = None
        #: after a receive batch that sent data, read the ring again (at most
        #: this many times) while frames wait in it, before going back to the
        #: loop (:meth:`_reread`); 0 = off (for A/B measurements)
        self.reread_rounds = REREAD_ROUNDS
        #: inside :meth:`_reread` (the batches it reads do not re-read)
        self._rereading = False
        #: data segments sent (new + retransmitted) when the outermost batch began
        self._sent_mark = 0
        #: the stack-wide TCP MIB (nstat names), shared by every connection
        self.mib = TcpMib()
        #: the stack-wide buffer budget (Linux tcp_mem)
        self.memory = MemoryBudget(config.tcp_mem, self.mib)
        #: connections clamped while the budget was not NORMAL: given their
        #: configured limits back when it is again (_release_clamps)
        self._clamped: set[TcpEndpoint] = set()
        #: request socks of every listener by SYN-ACK deadline (lazy: removed
        #: or rescheduled ones are skipped), with their own timer handle
        self._req_heap: list[tuple[float, int, RequestSock]] = []
        self._req_timer: asyncio.TimerHandle | None = None
        self._req_timer_when = 0.0
        self._ports = PortAllocator(*self.EPHEMERAL_RANGE)
        self._conns: dict[ConnKey, TcpEndpoint] = {}
        self._listeners: dict[int, Listener] = {}
        #: called once, before the first listener is made (the Stack builds
        #: its SYN channel's batch path then, not at start)
        self.on_first_listen: Callable[[], None] | None = None
        self._dirty: dict[TcpEndpoint, None] = {}
        #: endpoints holding a plain ACK of the current receive batch
        self._holding: dict[TcpEndpoint, None] = {}
        #: connections whose owner let go (Linux orphans), for tcp_max_orphans
        self._orphans: set[TcpEndpoint] = set()
        self._flush_handle: asyncio.Handle | None = None
        #: inside a receive batch (:meth:`begin_batch`): inputs only mark
        #: connections dirty, :meth:`end_batch` drains them in the same callback
        self._batch = 0
        #: inside :meth:`_flush` (an application call from an event callback
        #: joins the running drain)
        self._flushing = False
        self._heap: list[tuple[float, int, TcpEndpoint]] = []
        #: the 2MSL entries of TIME-WAIT records, in (deadline, counter)
        #: order: a record's deadline is its making time plus the one
        #: ``time_wait``, so they arrive in order and a FIFO takes them in
        #: O(1) each way (out of order, an entry goes to the heap); the heap
        #: keeps the short timers of live connections.  The timer takes both
        #: in the one order a single heap gave (_on_timer).
        self._tw_fifo: deque[tuple[float, int, TcpEndpoint]] = deque()
        self._heap_counter = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = 0.0
        self._closed = False
        #: coalesce in-order text of one receive batch into runs
        #: (TcpConnection.receive_run; docs/tcp-core.md "Receive runs")
        self.merge_runs = True
        #: the open receive run (at most one: any other segment closes it)
        self._run_ep: TcpEndpoint | None = None
        #: inside a batch, the segment a run would start with, not opened
        #: yet (_open_run when the batch's next segment is from the same
        #: address): a request/response batch of one segment opens none
        self._cand_ep: TcpEndpoint | None = None
        self._cand_conn: TcpConnection | None = None
        self._cand_seg: TcpSegment | None = None
        self._cand_src = b""
        self._cand_payload: bytes | memoryview = b""
        self._run_seg: TcpSegment | None = None
        self._run_src = b""
        self._run_ports = b""
        #: unpacks a run member's header (_RUN_FIELDS)
        self._run_fields = _RUN_FIELDS[20]
        #: the next SEG.SEQ
        self._run_next = 0
        self._run_last = 0
        self._run_hdr = b""  # SEG.ACK, data offset, flags, window ...
        self._run_hdr_psh = b""  # ... the same with PSH toggled
        self._run_tail = b""  # urgent pointer and options
        self._run_hl = 0
        self._run_room = 0
        #: SEG.SEQ from which Receiver.stretch_due may hold (its limit at the start)
        self._run_ack_at = 0
        #: RCV.MSS can grow to this (a larger text is never wire-sized)
        self._run_small = 0
        self._run_rx: float | None = None
        self._run_views: list[bytes | memoryview] = []
        self.counters: dict[str, int] = {
            "tcp_segs_in": 0,
            "tcp_segs_out": 0,
            "tcp_rst_sent_unmatched": 0,
            "tcp_syn_dropped_backlog": 0,
            "tcp_timer_fires": 0,
            "tcp_active_opens": 0,
            "tcp_passive_opens": 0,
            "tcp_syn_requests": 0,
            "tcp_gso_out": 0,
            "tcp_acks_coalesced": 0,
            "tcp_segs_merged": 0,
            "tcp_acks_in_batch": 0,
        }

    # ------------------------------------------------------------------ queries

    def endpoints(self) -> Iterator[TcpEndpoint]:
        """Every connection in the table (for ``ss``)."""
        return iter(list(self._conns.values()))

    def listeners(self) -> Iterator[Listener]:
        return iter(list(self._listeners.values()))

    def requests(self) -> Iterator[RequestSock]:
        """Every request sock (SYN-RECEIVED, ss's SYN-RECV rows) of every
        listener; SYN cookies leave none."""
        return iter([req for lst in self._listeners.values() for req in lst.requests.values()])

    def __len__(self) -> int:
        return len(self._conns)

    @property
    def orphans(self) -> int:
        """Connections still finishing after their owner let go."""
        return len(self._orphans)

    def set_isn_secret(self, secret: bytes) -> None:
        """Key the RFC 6528 ISN function (section 3) with ``secret`` instead
        of the random key chosen at start: the same secret, 4-tuple and
        clock then give the same ISN (``ustack.sim`` seeds it so that runs
        repeat to the byte).  A known secret makes ISNs predictable: only
        for simulations and tests."""
        if len(secret) < 16:
            raise ValueError("the ISN secret needs at least 16 bytes")
        self._isn = IsnGenerator(bytes(secret))

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
        hook = self._trace_hook(trace, now, local_port, remote_addr, remote_port)
        cls = _connection_class()
        if cls is _TcpConnection:  # (compiled: a direct call, no argument parsing)
            conn = _TcpConnection.connect(local_port, remote_port, iss, now,
                                          self._shared_config(), mib=self.mib, trace=hook,
                                          shared_config=True)
        else:
            conn = cls.connect(local_port, remote_port, iss, now, self._shared_config(),
                               mib=self.mib, trace=hook, shared_config=True)
        ep = TcpEndpoint(self, conn, self.local_addr, local_port, remote_addr, remote_port)
        ep.owner = owner
        ep.accepted = True
        _insert(self._conns, ep)
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
        hook = self.on_first_listen
        if hook is not None:
            self.on_first_listen = None
            hook()
        listener = Listener(self, port, backlog, on_connection)
        self._listeners[port] = listener
        return listener

    def _shared_config(self) -> TcpConfig:
        """The config new connections share (``shared_config``): a private
        snapshot of :attr:`config`, taken again when ``config`` is replaced
        or changed in place.  A connection copies it before it changes an
        option of its own, so sharing costs neither memory nor a copy per
        connection and behaves as the copy per connection did."""
        cfg = self.config
        snap = self._cfg_snap
        if snap is None or self._cfg_src is not cfg or snap != cfg:
            snap = self._cfg_snap = copy.copy(cfg)
            self._cfg_src = cfg
        return snap

    def _ephemeral_port(self, remote_addr: bytes, remote_port: int) -> int:
        try:
            return self._ports.choose_free(self.local_addr, remote_addr, remote_port,
                                           self._conns, self._listeners)
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
        if self._cand_ep is ep:
            self._drop_candidate()
        if ep.held is not None:
            self._release(ep)
        ep.conn.abort(self.now())
        self.touch(ep)

    def detach(self, ep: TcpEndpoint) -> None:
        """The owner is gone; the connection finishes (FIN-WAIT, TIME-WAIT)
        orphaned.  Beyond ``TcpConfig.max_orphans`` orphans it is reset at
        once instead (Linux tcp_too_many_orphans: TcpExtTCPAbortOnMemory)."""
        ep.owner = None
        if ep.removed or ep in self._orphans:
            return
        if len(self._orphans) >= self.config.max_orphans:
            self.mib["TcpExtTCPAbortOnMemory"] += 1
            self.abort(ep)
            return
        self._orphans.add(ep)

    def touch(self, ep: TcpEndpoint) -> None:
        """Drain ``ep`` (events, segments, deadline) later in this loop iteration."""
        if ep.removed:
            return
        self._dirty[ep] = None
        if self._flush_handle is None and not self._batch and not self._flushing:
            self._flush_handle = self.loop.call_soon(self._flush)

    def send_now(self, ep: TcpEndpoint) -> None:
        """The application queued data on ``ep``: put what the core lets
        go on the wire in this call, as a kernel ``send()`` does (no loop
        iteration between ``write()`` and the frame).  Events the core
        raised meanwhile are delivered by the usual drain, never from
        inside this call (protocol callbacks are not re-entered).  Inside
        a receive batch or a drain the connection joins that drain instead
        (its ACK then rides on this data)."""
        if ep.removed:
            return
        if self._batch or self._flushing or ep.held is not None or self._closed:
            self.touch(ep)
            return
        conn = ep.conn
        now = self._clock()
        memory = self.memory
        if ep.mem_epoch != memory.epoch:
            self._clamp(ep, conn)
        self._output(ep, conn, now)
        deadline = conn.next_deadline()
        hd = ep.heap_deadline
        if deadline is not None and (hd is None or deadline < hd):
            # (else the heap and so the armed timer stay as they were: a
            # later deadline is found by the entry already there)
            self._schedule(ep, deadline)
            self._arm()
        if isinstance(conn, _TcpConnection):  # (compiled: a native call)
            if conn.has_events():
                self.touch(ep)
            return
        pending = getattr(conn, "has_events", None)
        if pending is None or pending():
            self.touch(ep)  # (a connection class without has_events: always)

    def _output(self, ep: TcpEndpoint, conn: TcpConnection | TimeWait, now: float) -> None:
        """Put what ``conn`` lets go at ``now`` on the wire, then charge the
        memory budget with what its buffers hold now; under a new pressure
        epoch the next window and send space obey it (:meth:`_clamp`)."""
        segs = conn.segments_to_send(now)
        if segs:
            self._transmit_round(ep, conn, segs, now)
        used = _buffered(conn)
        memory = self.memory
        if used != ep.mem:
            self._charge(used - ep.mem, now)
            ep.mem = used
        if ep.mem_epoch != memory.epoch:
            self._clamp(ep, conn)

    def flush_now(self) -> None:
        """Drain every dirty connection now (the stack may call this at the end
        of a receive batch instead of waiting for the ``call_soon``)."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        self._flush()

    def begin_batch(self) -> None:
        """A receive batch starts: segments only mark their connections
        dirty (no ``call_soon``); :meth:`end_batch` drains them.  What the
        batch sends (SYN-ACKs, RSTs, the drain's output) is corked until
        its end: one device burst for every connection."""
        self._batch += 1
        if self._batch == 1 and self.reread_rounds:
            mib = self.mib
            self._sent_mark = mib["TcpExtTCPOrigDataSent"] + mib["TcpRetransSegs"]
        if self._cork is not None:
            self._cork()

    def end_batch(self) -> None:
        """The receive batch is over: release held ACKs and drain every
        dirty connection now, in the device's callback, so the application
        sees the data (and the wire our answer) without another loop
        iteration."""
        self._batch -= 1
        try:
            if self._batch:
                return
            if self._cand_ep is not None:
                self._drop_candidate()
            if self._flushing:
                return
            if self._dirty or self._holding:
                if self._flush_handle is not None:
                    self._flush_handle.cancel()
                # (the batch's cork is held: the drain's output joins it
                # without a nested cork/uncork of its own)
                self._flush(self._cork is not None)
        finally:
            if self._uncork is not None and self._cork is not None:
                self._uncork()
        if not self._batch and self.reread_rounds and not self._rereading:
            mib = self.mib
            if mib["TcpExtTCPOrigDataSent"] + mib["TcpRetransSegs"] != self._sent_mark:
                self._reread()

    def _input_waiting(self) -> bool:
        """A frame waits in the device's receive ring (its next slot's
        tp_status says TP_STATUS_USER, the low bit of its first byte)."""
        ring_state = self.ring_state
        if ring_state is None:
            return False
        state = ring_state()
        if state is None:
            return False
        ring: Any = state[0]
        return bool(ring[state[3] * state[1]] & 1)

    def _reread(self) -> None:
        """The batch sent data: read the ring again while frames wait in it
        (at most :attr:`reread_rounds` times) instead of going back to the
        loop first.  On a veth the peer's receive and its ACKs run in our own
        send call (softirq), so the ACKs to what the drain just sent are
        usually there already; Linux processes them in the same softirq run
        (net_rx_action polls the backlog until it is empty) and transmits
        what they allow at once.  Each read is a receive batch of its own
        (input, then one drain and one device burst); those batches do not
        re-read.  Bounded, so timers and other callbacks wait at most that
        many rounds."""
        poll = self.poll_input
        if poll is None:
            return
        self._rereading = True
        try:
            for _ in range(self.reread_rounds):
                if self._closed or not self._input_waiting():
                    break
                poll()
        finally:
            self._rereading = False

    # ----------------------------------------------------------------- input

    def ip_input(self, src: bytes, dst: bytes, payload: bytes | memoryview,
                 _trusted: bool = False) -> str | None:
        """IP protocol handler for protocol 6: decode and demultiplex.  Returns
        the reason when the segment is dropped (the IP layer counts it under
        ``drops``), None when a connection or listener took it."""
        cand = self._cand_ep
        if cand is not None:
            # the previous segment could start a run: open it now that one
            # more segment came from its address (any other: it stays shut,
            # as the open run would be shut by this segment)
            cand_conn = self._cand_conn
            cand_seg = self._cand_seg
            cand_payload = self._cand_payload
            self._drop_candidate()
            if src == self._cand_src and cand_conn is not None and cand_seg is not None:
                self._open_run(cand, cand_conn, src, cand_seg, cand_payload)
        run_ep = self._run_ep
        if run_ep is not None:
            # the next segment of the open receive run: same flow, next
            # SEG.SEQ, the header of the run's first but for the checksum
            # (and PSH), text within the window: kept for one
            # TcpConnection.receive_run, neither decoded nor received alone
            plen = len(payload) - self._run_hl
            if 0 < plen <= self._run_room and src == self._run_src:
                # ports, SEG.SEQ, SEG.ACK to the window, urgent pointer and
                # options (skipping the checksum), in one unpack
                ports, seq, hdr, tail = self._run_fields.unpack_from(payload)
                if (seq == self._run_next and ports == self._run_ports
                        and (hdr == self._run_hdr or hdr == self._run_hdr_psh)
                        and tail == self._run_tail):
                    self._run_views.append(payload)
                    self._run_room -= plen
                    self._run_last = seq
                    seq = self._run_next = (seq + plen) & 0xFFFFFFFF
                    self._run_rx = _ARRIVAL.t
                    if (plen <= self._run_small and self._batch
                            and ((seq - self._run_ack_at) & 0xFFFFFFFF) < 0x80000000):
                        # a wire-sized segment past the stretch limit of the
                        # run's start (RCV.MSS and the limit only grow):
                        # ip_input's own rule decides, on the run received
                        self._release(run_ep)
                        conn = run_ep.conn
                        if not isinstance(conn, TimeWait):  # (a run is a connection's)
                            rcv = conn.rcv
                            if plen <= rcv.mss and rcv.stretch_due():
                                self._ack_in_batch(run_ep, conn)
                    return None
            self._release(run_ep)
        if len(payload) == _LINUX_SYN_LEN and payload[13] == SYN and self._syn_flood_path(
                src, dst, payload):
            return None
        try:
            seg = TcpSegment.decode(payload)
        except ParseError as exc:  # never raised out of the receive path
            self.counters["tcp_decode_errors"] = self.counters.get("tcp_decode_errors", 0) + 1
            self.mib["TcpInErrs"] += 1
            return exc.reason if exc.reason.startswith("tcp-") else "tcp-" + exc.reason
        # fast path (every segment of a running transfer): the connection
        # exists, stays, and only needs draining; else the full demultiplexer
        ep = self._conns.get((seg.dst_port, src, seg.src_port))
        if ep is None or ep.removed:
            return self.segment_received(src, dst, seg)
        self.counters["tcp_segs_in"] += 1
        conn = ep.conn
        held = ep.held
        if held is not None:
            if conn.ack_supersedes(held, seg):
                # a later plain ACK of the same batch covers the held one
                # (the RTT of its oldest bytes is the first one's: held_rx_first)
                conn.absorb_ack(held)
                ep.held = seg
                ep.held_at = self._clock()
                ep.held_rx = _ARRIVAL.t
                self.counters["tcp_acks_coalesced"] += 1
                return None
            ep.held = None
            if ep.held_rx is None:
                conn.receive(held, ep.held_at)
            else:
                conn.receive(held, ep.held_at, ep.held_rx, ep.held_rx_first)
        if self.coalesce_acks and conn.coalescible_ack(seg):
            # hold it until the batch ends (_flush) or another segment for
            # this connection arrives: the next plain ACK may supersede it
            ep.held = seg
            ep.held_at = self._clock()
            ep.held_rx = ep.held_rx_first = _ARRIVAL.t
            self._holding[ep] = None
            self._dirty[ep] = None
            if self._flush_handle is None and not self._batch:
                self._flush_handle = self.loop.call_soon(self._flush)
            return None
        arrival = _ARRIVAL.t  # the kernel's receive time of this frame (rxtime)
        if arrival is None:
            conn.receive(seg, self._clock())
        else:  # RTT samples from the arrival, not from our wake-up
            conn.receive(seg, self._clock(), arrival)
        if isinstance(conn, _TcpConnection):
            # (compiled: a native field read; the getattr below is for the
            # TIME-WAIT record and the unit tests' fake connections)
            if conn.reopen_syn is not None:
                return self._reopen(ep, src, dst, seg)
        elif getattr(conn, "reopen_syn", None) is not None:
            return self._reopen(ep, src, dst, seg)
        self._dirty[ep] = None
        if self._flush_handle is None and not self._batch:
            self._flush_handle = self.loop.call_soon(self._flush)
        if isinstance(conn, TimeWait):  # a TIME-WAIT record: no window, no runs
            return None
        rcv = conn.rcv
        if self._batch and len(seg.payload) <= rcv.mss and rcv.stretch_due():
            self._ack_in_batch(ep, conn)
        if self.merge_runs and seg.payload and conn.run_ok(seg):
            if self._batch:  # opened by the batch's next segment, if any
                self._cand_ep = ep
                self._cand_conn = conn
                self._cand_seg = seg
                self._cand_src = src
                self._cand_payload = payload
            else:
                self._open_run(ep, conn, src, seg, payload)
        return None

    def _drop_candidate(self) -> None:
        """No run starts with the candidate segment (the batch ended, or
        held segments are released: the run would be released with them)."""
        self._cand_ep = None
        self._cand_conn = None
        self._cand_seg = None
        self._cand_payload = b""

    def _ack_in_batch(self, ep: TcpEndpoint, conn: TcpConnection) -> None:
        """Inside a receive batch ``conn`` got a quarter of its window
        unacknowledged (Receiver.stretch_due) with a wire-sized segment:
        its output round (the ACK) goes on the wire now, not at the batch's
        end, so a window-limited sender keeps sending while we read the
        rest of the batch.  Events and the deadline still wait for the
        batch's drain.  Not for coalesced (GRO) frames: a batch holds few
        of them, and ACKing inside it doubled the wakeups and cost 40 % more
        CPU per byte in the default mode (bench/throughput.py --gso)."""
        self.counters["tcp_acks_in_batch"] += 1
        self._output(ep, conn, self._clock())
        uncork = self._uncork
        cork = self._cork
        if uncork is not None and cork is not None:  # out of the batch's burst
            uncork()
            cork()

    def _open_run(self, ep: TcpEndpoint, conn: TcpConnection, src: bytes, seg: TcpSegment,
                  payload: bytes | memoryview) -> None:
        """``seg`` (its wire bytes ``payload``) went in whole and in order:
        segments of this batch that continue it exactly
        (TcpConnection.run_ok) are collected (:meth:`ip_input`) and
        received as one run when anything else happens: another segment,
        the batch's end, a timer or application call on the connection
        (``ep.held`` is :data:`_RUN` meanwhile, so every path that releases
        a held ACK releases the run)."""
        rcv = conn.rcv
        room = (rcv.adv - rcv.nxt) & 0xFFFFFFFF
        if not room or room >= 0x80000000:
            return
        hl = (payload[12] >> 4) << 2
        hdr = bytes(payload[8:16])
        self._run_ep = ep
        self._run_seg = seg
        self._run_src = src
        self._run_ports = bytes(payload[:4])
        self._run_next = rcv.nxt
        fields = _RUN_FIELDS.get(hl)
        if fields is None:
            fields = _RUN_FIELDS[hl] = struct.Struct(f"!4sI8s2x{hl - 18}s")
        self._run_fields = fields
        self._run_hdr = hdr
        self._run_hdr_psh = hdr[:5] + bytes((hdr[5] ^ PSH,)) + hdr[6:]
        self._run_tail = bytes(payload[18:hl])
        self._run_hl = hl
        self._run_room = room
        self._run_ack_at = (rcv.acked + rcv.stretch_limit()) & 0xFFFFFFFF
        self._run_small = rcv.advmss
        self._run_views = []
        ep.held = _RUN
        self._holding[ep] = None

    def _release_run(self, ep: TcpEndpoint) -> None:
        """Give ``ep`` the segments of its receive run (now)."""
        views = self._run_views
        seg = self._run_seg
        self._run_ep = None
        self._run_seg = None
        self._run_views = []
        conn = ep.conn
        if views and seg is not None and not ep.removed and not isinstance(conn, TimeWait):
            n = len(views)
            self.counters["tcp_segs_in"] += n
            self.counters["tcp_segs_merged"] += n
            conn.receive_run(seg, views, self._run_hl, self._run_last, self._clock(),
                             self._run_rx)
            self._dirty[ep] = None

    def segment_received(self, src: bytes, dst: bytes, seg: TcpSegment) -> str | None:
        """Demultiplex one decoded segment (RFC 9293 section 3.10.7).  Returns
        the drop reason when the segment was dropped without any effect."""
        self.counters["tcp_segs_in"] += 1
        ep = self._conns.get((seg.dst_port, src, seg.src_port))
        if ep is not None:
            if ep.held is not None:
                self._release(ep)
            ep.conn.receive(seg, self.now())
            self.touch(ep)
            if getattr(ep.conn, "reopen_syn", None) is None:
                return None
            return self._reopen(ep, src, dst, seg)
        return self._to_listener(src, dst, seg)

    def _reopen(self, ep: TcpEndpoint, src: bytes, dst: bytes, seg: TcpSegment) -> str | None:
        """A SYN ended TIME-WAIT (RFC 6191, catalogue 42): deliver the old
        connection's events, forget it, and let the listener take the SYN."""
        self.touch(ep)
        self._flush()
        self._remove(ep)
        return self._to_listener(src, dst, seg)

    def _to_listener(self, src: bytes, dst: bytes, seg: TcpSegment) -> str | None:
        """No connection: the listener on the port (its SYN queue first),
        else the reply for a segment with no connection (RFC 9293 3.10.7.1)."""
        listener = self._listeners.get(seg.dst_port)
        if listener is not None and not self._closed:
            req = listener.requests.get((seg.dst_port, src, seg.src_port))
            if req is not None:
                return self._request_input(listener, req, src, seg)
            flags = seg.flags
            if flags & (ACK | SYN | RST) == ACK and self._cookies_active(listener):
                return self._cookie_ack(listener, src, dst, seg)
            action = listener_action(seg)
            if action == "syn":
                return self._accept_syn(listener, src, dst, seg)
            if isinstance(action, TcpSegment):
                self._send_reply(src, action)
                return None
            if flags & RST:
                return "tcp-listen-rst"
            if flags & SYN:
                return "tcp-listen-syn-fin"  # Linux drops SYN+FIN (catalogue 5)
            return "tcp-listen-no-syn"
        reply = reply_to_unmatched(seg)
        if reply is None:
            return "tcp-rst-no-connection"  # never answer a RST
        self.counters["tcp_rst_sent_unmatched"] += 1
        self._send_reply(src, reply)
        return None

    # ------------------------------------------------------ the SYN queue

    def _accept_syn(self, listener: Listener, src: bytes, dst: bytes,
                    seg: TcpSegment) -> str | None:
        """A SYN to a listener, as Linux ``tcp_conn_request``: a cookie when
        the SYN queue is full (or always, syncookies 2), a drop when the
        accept queue is full, else a request sock and its SYN-ACK."""
        mib = self.mib
        cfg = self.config
        mode = cfg.syncookies
        want_cookie = False
        if mode == 2 or listener.syn_queue_full:
            if mode:
                want_cookie = True
                mib["TcpExtTCPReqQFullDoCookies"] += 1
            else:
                mib["TcpExtTCPReqQFullDrop"] += 1
                return self._listen_drop(listener, "tcp-syn-queue-full")
        if listener.accept_queue_full:
            mib["TcpExtListenOverflows"] += 1
            return self._listen_drop(listener, "tcp-accept-queue-full")
        now = self.now()
        if not want_cookie and not mode and \
                cfg.max_syn_backlog - len(listener.requests) < cfg.max_syn_backlog >> 2:
            return self._listen_drop(listener, "tcp-syn-backlog")
        reachable = self.port.reachable
        if reachable is not None and not reachable(src, now):
            return self._listen_drop(listener, "tcp-syn-unreachable")
        if want_cookie:
            self._send_cookie(listener, src, dst, seg, now)
            return None
        iss = self._isn.isn(self.local_addr, seg.dst_port, src, seg.src_port, now)
        req = RequestSock(seg, src, iss, now)
        listener.requests[req.key] = req
        self.counters["tcp_syn_requests"] += 1
        self._send_reply(src, request_synack(cfg, req, now))
        self._schedule_request(req, now + cfg.rto_initial)
        return None

    def _syn_flood_path(self, src: bytes, dst: bytes, payload: bytes | memoryview) -> bool:
        """The cookie answer to a SYN in Linux's option layout, straight from
        and to bytes (no TcpSegment, no TcpOptions): under a SYN flood every
        SYN takes this path, so it must cost as little as possible.  Same
        checks, counters and bytes as :meth:`_accept_syn` + :meth:`_send_cookie`
        (tests/unit/test_net_syn_queue.py compares them); anything unusual
        returns False and takes the general path."""
        (sport, dport, seq, _ack, off, _flags, _win, _csum, _urg, k_mss, l_mss, mss,
         k_sack, l_sack, k_ts, l_ts, tsval, _tsecr, nop, k_ws, l_ws, wscale) = \
            _LINUX_SYN.unpack_from(payload)
        if off != 0xA0 or (k_mss, l_mss, k_sack, l_sack, k_ts, l_ts, nop, k_ws, l_ws) != (
                2, 4, 4, 2, 8, 10, 1, 3, 3):
            return False
        listener = self._listeners.get(dport)
        cfg = self.config
        mode = cfg.syncookies
        if listener is None or self._closed or not mode or not (
                cfg.timestamps and cfg.sack and cfg.window_scaling):
            return False
        key = (dport, src, sport)
        if key in self._conns or key in listener.requests or listener.accept_queue_full:
            return False
        if mode != 2 and not listener.syn_queue_full:
            return False
        now = self._clock()
        reachable = self.port.reachable
        if reachable is not None and not reachable(src, now):
            return False
        counters = self.counters
        counters["tcp_segs_in"] += 1
        mib = self.mib
        mib["TcpExtTCPReqQFullDoCookies"] += 1
        cookie, our_mss = self._cookies.make(src, dst, sport, dport, seq, mss, now)
        ts = encode_timestamp(ts_val(cookie, now), wscale, True)
        window = syn_window(cfg)
        ack = (seq + 1) & 0xFFFFFFFF
        ws = cfg.offered_wscale
        # RFC 9293 3.1 checksum over pseudo-header + header + options, the
        # header read as one big number (2**16 is 1 modulo 0xFFFF)
        total = (self._local_sum + int.from_bytes(src, "big") + _PSEUDO_TCP_SYNACK
                 + (dport << 16 | sport) + cookie + ack + (0xA012 << 16 | window)
                 + _SYNACK_OPT_CONST + (cfg.mss << 0) + ts + tsval + ws)
        s = total % 0xFFFF
        segment = _LINUX_SYN.pack(dport, sport, cookie, ack, 0xA0, SYN | ACK, window,
                                  0xFFFF - s if s else 0, 0, 2, 4, cfg.mss, 4, 2, 8, 10, ts,
                                  tsval, 1, 3, 3, ws)
        listener.cookie_sent_at = now
        mib["TcpExtSyncookiesSent"] += 1
        counters["tcp_segs_out"] += 1
        self._ip_send(src, PROTO_TCP, segment)
        return True

    def _listen_drop(self, listener: Listener, reason: str) -> str:
        listener.syn_dropped += 1
        self.counters["tcp_syn_dropped_backlog"] += 1
        self.mib["TcpExtListenDrops"] += 1
        return reason

    def _cookies_active(self, listener: Listener) -> bool:
        mode = self.config.syncookies
        if mode == 2:
            return True
        sent = listener.cookie_sent_at
        return bool(mode) and sent is not None and self.now() - sent < VALID_PERIOD

    def _send_cookie(self, listener: Listener, src: bytes, dst: bytes, seg: TcpSegment,
                     now: float) -> None:
        """A SYN-ACK whose ISS is the cookie; options that do not fit it ride
        in the TSval (Linux cookie_v4_init_sequence, cookie_init_timestamp)."""
        cfg = self.config
        opts = seg.options
        cookie, mss = self._cookies.make(src, dst, seg.src_port, seg.dst_port, seg.seq,
                                         opts.mss or 536, now)
        timestamps = cfg.timestamps and opts.timestamp is not None
        tsval = 0
        if timestamps:
            wscale = opts.wscale if cfg.window_scaling else None
            tsval = encode_timestamp(ts_val(cookie, now), wscale, cfg.sack and opts.sack_permitted)
        reply = synack(cfg, cookie_syn_options(seg, cfg.mss, timestamps), seg.dst_port,
                       seg.src_port, cookie, seg.seq, tsval)
        listener.cookie_sent_at = now
        self.mib["TcpExtSyncookiesSent"] += 1
        self._send_reply(src, reply)

    def _cookie_ack(self, listener: Listener, src: bytes, dst: bytes,
                    seg: TcpSegment) -> str | None:
        """An ACK with no request sock while cookies are in use: a valid
        cookie builds the connection (Linux cookie_v4_check), anything else
        gets the listener's RST."""
        now = self.now()
        seq = (seg.seq - 1) & 0xFFFFFFFF
        iss = (seg.ack - 1) & 0xFFFFFFFF
        mss = self._cookies.check(src, dst, seg.src_port, seg.dst_port, seq, iss, now)
        cfg = self.config
        ts = seg.options.timestamp if cfg.timestamps else None
        wscale: int | None = None
        sack = False
        if mss is not None and ts is not None and ts[1]:
            wscale, sack, _ecn = decode_timestamp(ts[1])
            if wscale is not None and not cfg.window_scaling or sack and not cfg.sack:
                mss = None  # options we never offered: not our cookie
        else:
            ts = None
        if mss is None:
            self.mib["TcpExtSyncookiesFailed"] += 1
            self._send_reply(src, TcpSegment(seg.dst_port, seg.src_port, seg.ack, 0, RST, 0))
            return None
        self.mib["TcpExtSyncookiesRecv"] += 1
        if listener.accept_queue_full:
            self.mib["TcpExtListenOverflows"] += 1
            return self._listen_drop(listener, "tcp-accept-queue-full")
        syn = TcpSegment(seg.src_port, seg.dst_port, seq, 0, SYN, 0, 0, TcpOptions(
            mss=mss, wscale=wscale, sack_permitted=sack,
            timestamp=(ts[0], 0) if ts is not None else None))
        self._establish_child(listener, src, syn, iss, now, seg, now)
        return None

    def _request_input(self, listener: Listener, req: RequestSock, src: bytes,
                       seg: TcpSegment) -> str | None:
        """A segment for a request sock (RFC 9293 3.10.7.4 in SYN-RECEIVED, as
        Linux tcp_check_req; catalogue 7-9)."""
        flags = seg.flags
        cfg = self.config
        now = self.now()
        if flags & RST:
            if req.in_window(seg.seq, cfg):
                self._drop_request(listener, req)  # catalogue 9
                return None
            return "tcp-req-rst-out-of-window"
        if flags & ACK and seg.ack != (req.iss + 1) & 0xFFFFFFFF:
            # catalogue 8: reset the bad ACK, the request survives
            self._send_reply(src, TcpSegment(seg.dst_port, seg.src_port, seg.ack, 0, RST, 0))
            return None
        if flags & SYN:
            if seg.seq == req.irs and not flags & ACK:
                self._send_reply(src, request_synack(cfg, req, now))  # a retransmitted SYN
                return None
            if req.in_window(seg.seq, cfg):  # catalogue 7: another SYN resets it
                self._drop_request(listener, req)
                reply = reply_to_unmatched(seg)
                if reply is not None:
                    self._send_reply(src, reply)
                return None
            return "tcp-req-syn-out-of-window"
        if not flags & ACK:
            return "tcp-req-no-ack"
        if not req.in_window(seg.seq, cfg):
            return "tcp-req-out-of-window"
        if listener.accept_queue_full:
            self.mib["TcpExtListenOverflows"] += 1
            return self._listen_drop(listener, "tcp-accept-queue-full")  # the peer retries
        self._drop_request(listener, req)
        self._establish_child(listener, src, req.syn(), req.iss, req.created, seg, now)
        return None

    def _establish_child(self, listener: Listener, src: bytes, syn: TcpSegment, iss: int,
                         created: float, ack: TcpSegment, now: float) -> None:
        hook = self._trace_hook(None, created, syn.dst_port, src, syn.src_port)
        cls = _connection_class()
        conn: TcpConnection | Any
        if cls is _TcpConnection:
            # promote()'s steps with the class known (compiled: direct calls)
            # (the SYN-ACK went out from the request sock: not built again)
            child = _TcpConnection.accept(syn, iss, created, self._shared_config(),
                                          mib=self.mib, trace=hook, shared_config=True,
                                          synack_sent=True)
            child.segments_to_send(created)  # (a traced one has the SYN-ACK queued)
            child.receive(ack, now)
            conn = child
        else:
            conn = promote(cls, self._shared_config(), syn, iss, created, ack, now,
                           mib=self.mib, shared_config=True, trace=hook)
        ep = TcpEndpoint(self, conn, self.local_addr, syn.dst_port, src, syn.src_port)
        ep.listener = listener
        # queued now, so the next ACK of the same receive batch sees a full
        # queue; handed to on_connection when its Connected event is drained
        ep.queued = True
        listener.accept_queue.append(ep)
        _insert(self._conns, ep)
        self.counters["tcp_passive_opens"] += 1  # (TcpPassiveOpens: the connection)
        self.touch(ep)
        if self.on_passive_open is not None:
            self.on_passive_open(src, now)

    def _drop_request(self, listener: Listener, req: RequestSock) -> None:
        req.removed = True
        if listener.requests.get(req.key) is req:
            del listener.requests[req.key]

    def _schedule_request(self, req: RequestSock, deadline: float) -> None:
        req.deadline = deadline
        heap = self._req_heap
        heapq.heappush(heap, (deadline, next(self._heap_counter), req))
        if len(heap) > _HEAP_SLACK * (self.syn_queue_len() + 16):
            self._req_heap = heap = [e for e in heap if not e[2].removed]
            heapq.heapify(heap)
        if self._req_timer is None or deadline < self._req_timer_when:
            if self._req_timer is not None:
                self._req_timer.cancel()
            self._req_timer_when = deadline
            self._req_timer = self.loop.call_at(deadline, self._on_request_timer)

    def _on_request_timer(self) -> None:
        """SYN-ACK retransmissions at 1, 2, 4, 8, 16 s (synack_retries), then
        the request is forgotten (Linux reqsk_timer_handler)."""
        self._disarm_request_timer()
        now = self.now()
        heap = self._req_heap
        cfg = self.config
        due: list[RequestSock] = []
        while heap and heap[0][0] <= now:
            _, _, req = heapq.heappop(heap)
            if not req.removed and req.deadline <= now:
                due.append(req)
        for req in due:
            listener = self._listeners.get(req.local_port)
            if listener is None or listener.requests.get(req.key) is not req:
                req.removed = True
                continue
            if req.retries >= cfg.synack_retries:
                self._drop_request(listener, req)
                continue
            req.retries += 1
            self.mib["TcpRetransSegs"] += 1
            self._send_reply(req.remote_addr, request_synack(cfg, req, now))
            self._schedule_request(req, now + cfg.rto_initial * (1 << req.retries))
        while heap and heap[0][2].removed:
            heapq.heappop(heap)
        if heap and self._req_timer is None:
            self._req_timer_when = heap[0][0]
            self._req_timer = self.loop.call_at(heap[0][0], self._on_request_timer)

    def _disarm_request_timer(self) -> None:
        """The request timer fired.  (A method, not ``self._req_timer = None``
        in :meth:`_on_request_timer`: mypy would keep that None narrowing
        across the :meth:`_schedule_request` calls that re-arm it, and the
        compiled code then rejects the TimerHandle it finds: TypeError.)"""
        self._req_timer = None

    def syn_queue_len(self) -> int:
        """Request socks of every listener."""
        return sum(len(lst.requests) for lst in self._listeners.values())

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
            send_gso = self.port.send_gso
            if send_gso is not None and send_gso(raddr, PROTO_TCP, header + seg.payload, room):
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
        if seg.flags & RST:
            self.mib["TcpOutRsts"] += 1
        self._ip_send(dst, PROTO_TCP, seg.encode(self.local_addr, dst))

    def ip_error(self, error: Any) -> None:
        """IP error handler (:class:`ustack.net.icmp.IpError`): an ICMP error
        quoting one of our segments, or ARP resolution that failed.  The TCP
        core decides what it means (RFC 9293 3.10.7.x, RFC 5927); a connection
        still opening fails with the errno (EHOSTUNREACH for ARP failure)."""
        key = (error.local_port, error.remote_addr, error.remote_port)
        ep = self._conns.get(key)
        quoted = error.transport
        if ep is None:
            # a request sock's SYN-ACK that cannot arrive: forget the request
            # (Linux tcp_req_err; ARP failure: the neighbour is unreachable)
            listener = self._listeners.get(error.local_port)
            req = listener.requests.get(key) if listener is not None else None
            if req is not None and listener is not None and error.fatal and len(quoted) >= 8 \
                    and int.from_bytes(quoted[4:8], "big") == req.iss:
                self._drop_request(listener, req)
            return
        if len(quoted) < 8:
            return
        ep.conn.icmp_error(error.errno, int.from_bytes(quoted[4:8], "big"), self.now(),
                           mtu=getattr(error, "mtu", 0))
        self.touch(ep)

    # ----------------------------------------------------------------- drain

    def _release(self, ep: TcpEndpoint) -> None:
        """Give ``ep`` its held ACK (at the time it arrived)."""
        seg = ep.held
        if seg is not None:
            ep.held = None
            if seg is _RUN:
                self._release_run(ep)
                return
            if not ep.removed:
                if ep.held_rx is None:
                    ep.conn.receive(seg, ep.held_at)
                else:  # RTT samples from the kernel's receive times (rxtime)
                    ep.conn.receive(seg, ep.held_at, ep.held_rx, ep.held_rx_first)
                self._dirty[ep] = None

    def release_held(self) -> None:
        """The receive batch is over: every held ACK goes to its connection
        (before anything else reads or drives those connections)."""
        if self._cand_ep is not None:
            self._drop_candidate()
        holding = self._holding
        if holding:
            for ep in holding:
                self._release(ep)
            holding.clear()

    def set_ip_options(self, ep: TcpEndpoint, tos: int = 0, df: bool = True) -> None:
        """The TOS byte and DF bit of ``ep``'s IPv4 headers from now on
        (IP_TOS, IP_MTU_DISCOVER; Linux ip_queue_xmit takes both from the
        socket).  ValueError when the IP layer cannot set them."""
        if not 0 <= tos <= 0xFF:
            raise ValueError(f"TOS must be 0..255, not {tos}")
        if tos == 0 and df:
            self._ip_opts.pop(ep, None)
            return
        if self.port.send_ip_opts is None:
            raise ValueError("this IP layer cannot set TOS/DF per connection")
        self._ip_opts[ep] = (tos, df)

    def ip_options(self, ep: TcpEndpoint) -> tuple[int, bool]:
        """(tos, df) of ``ep``'s IPv4 headers."""
        return self._ip_opts.get(ep, (0, True))

    def _transmit_ip_opts(self, ep: TcpEndpoint, segs: list[TcpSegment], tos: int,
                          df: bool) -> None:
        """The output of a connection with its own TOS/DF: one packet per
        MTU-sized piece through the IP layer's general send (no GSO, no
        fused fast path)."""
        send = self.port.send_ip_opts
        assert send is not None
        raddr, laddr = ep.remote_addr, self.local_addr
        for seg in segs:
            opt = seg.options.encode() if not seg.options.is_empty() else b""
            room = self._mtu_payload - HEADER_LEN - len(opt)
            payload = seg.payload
            if len(payload) <= room:
                send(raddr, PROTO_TCP, seg.encode(laddr, raddr), tos=tos, df=df)
                continue
            last = len(payload) - room
            for off in range(0, len(payload), room):
                flags = seg.flags if off >= last else seg.flags & ~(FIN | PSH)
                piece = TcpSegment(seg.src_port, seg.dst_port, (seg.seq + off) & 0xFFFFFFFF,
                                   seg.ack, flags, seg.window, seg.urgent, seg.options,
                                   payload[off : off + room])
                send(raddr, PROTO_TCP, piece.encode(laddr, raddr), tos=tos, df=df)

    def _transmit_round(self, ep: TcpEndpoint, conn: TcpConnection | TimeWait,
                        segs: list[TcpSegment], now: float) -> None:
        """:meth:`_transmit` the output of ``conn.segments_to_send(now)`` and
        tell the core when it went to the device: the send time of its RTT
        samples (``segments_sent``) is the device's first send call of this
        round (rxtime.SENT), else the time just before :meth:`_transmit`, not
        ``now`` (after the events and the core's work: ~40 us earlier per
        64-byte ping-pong round at load 5)."""
        left = self._clock()
        _SENT.t = None
        stamps = self._transmit(ep, segs)
        if stamps is not None:  # the round went out in one call: a time per segment
            each = getattr(conn, "segments_sent_each", None) if self.stamp_each else None
            if each is not None:
                each(now, segs, stamps)
                return
            conn.segments_sent(now, stamps[0])
            return
        sent_at = _sent_at()  # set by the device during _transmit
        conn.segments_sent(now, sent_at if sent_at is not None and sent_at > left else left)

    def _transmit(self, ep: TcpEndpoint, segs: list[TcpSegment]) -> list[float] | None:
        """Put a connection's output on the wire: small and MSS-sized
        segments in one burst (one encoder: they share the options block),
        super-segments and over-long headers through :meth:`_send_large`;
        a round with a super-segment, when the IP layer offers it, in one
        device call (:meth:`_transmit_gathered`: then the device's send
        time of each segment is returned, else None)."""
        if self._ip_opts:
            opts = self._ip_opts.get(ep)
            if opts is not None:
                self.counters["tcp_segs_out"] += len(segs)
                self._transmit_ip_opts(ep, segs, *opts)
                return None
        raddr = ep.remote_addr
        self.counters["tcp_segs_out"] += len(segs)
        encoder = self._encoders.get(raddr)
        if encoder is None:
            if len(self._encoders) >= _ENCODER_CACHE:
                self._encoders.clear()
            encoder = self._encoders[raddr] = self._new_encoder(raddr)
        small = self._small_payload
        if len(segs) == 1 and len(segs[0].payload) <= small:
            self._ip_send_tcp(raddr, segs, encoder)  # (every request/response)
            return None
        mtu_payload = self._mtu_payload
        mtu_room = mtu_payload - HEADER_LEN
        header_len = encoder.header_len
        send_tcp = self._ip_send_tcp
        send_round = self._ip_send_round
        batch = []
        for seg in segs:
            n = len(seg.payload)
            if n <= small or (n <= mtu_room and n + header_len(seg) <= mtu_payload):
                batch.append(seg)  # small or MSS-sized
            else:  # a GSO super-segment, or SACK blocks made the header too long
                if send_round is not None:  # the whole round in one device call
                    stamps = self._transmit_gathered(raddr, segs, len(batch), encoder)
                    if stamps is not None:
                        return stamps
                    send_round = None  # (declined, nothing sent: piece by piece)
                if batch:
                    # keep the wire order of the output (a retransmission
                    # queued before new data must not arrive after it:
                    # RACK would take it for lost again)
                    send_tcp(raddr, batch, encoder)
                    batch = []
                self._send_large(raddr, seg)
        if batch:
            send_tcp(raddr, batch, encoder)
        return None

    def _transmit_gathered(self, raddr: bytes, segs: list[TcpSegment], first: int,
                           encoder: SegmentEncoder) -> list[float] | None:
        """:meth:`_transmit`'s loop as one IP-layer round
        (``send_tcp_round``) from the first super-segment, ``segs[first]``
        (the segments before it fit a frame each): the same frames in the
        same order (the differential tests/unit/test_tcp_send_round.py), one
        device call instead of one per super-segment plus one per run of
        MSS-sized segments.  None, nothing sent, when the IP layer declines."""
        small = self._small_payload
        mtu_payload = self._mtu_payload
        mtu_room = mtu_payload - HEADER_LEN
        header_len = encoder.header_len
        items: list[Any] = segs[:first]
        gso = 0
        pack = TCP_HEADER.pack
        for i in range(first, len(segs)):
            seg = segs[i]
            payload = seg.payload
            n = len(payload)
            if n <= small or (n <= mtu_room and n + header_len(seg) <= mtu_payload):
                items.append(seg)
                continue
            opt = encoder.options_bytes(seg)  # (cached per options object: one per round)
            hlen = HEADER_LEN + len(opt)
            if n + hlen <= mtu_payload:  # (as _send_large: it fits one frame)
                items.append(seg)
                continue
            header = pack(seg.src_port, seg.dst_port, seg.seq, seg.ack, hlen << 2, seg.flags,
                          seg.window, 0, seg.urgent)
            items.append((header + opt if opt else header, payload, mtu_payload - hlen))
            gso += 1
        send_round = self._ip_send_round
        assert send_round is not None
        stamps = send_round(raddr, items, encoder)
        if stamps is not None:
            self.counters["tcp_gso_out"] += gso
        return stamps

    def _flush(self, corked: bool = False) -> None:
        """Drain the dirty connections; their output leaves in one device
        burst (corked: the caller already holds the IP layer's cork)."""
        self._flush_handle = None
        if self._flushing:
            return  # (a callback asked for a drain: the running one goes on)
        self._flushing = True
        cork = None if corked else self._cork
        if cork is not None:  # the drain's output: one burst (send_now stays direct)
            cork()
        try:
            self._drain()
        finally:
            self._flushing = False
            if cork is not None and self._uncork is not None:
                self._uncork()

    def _drain(self) -> None:
        if self._holding:
            self.release_held()
        dirty = self._dirty
        now = self.now()
        memory = self.memory
        guard = 0
        while dirty:
            # in insertion order, as ``next(iter(dirty))`` one at a time did,
            # but one scan of the dict per round: each next(iter()) walked
            # every deleted slot before the first live one (the dict keeps
            # them until it is resized), ~17 % of a connect + close client's
            # CPU (perf, issue 14).  An endpoint touched meanwhile that is
            # still waiting keeps its place; one done already, or new, comes
            # in the next round; one that _remove took out is skipped.
            for ep in list(dirty):
                if ep not in dirty:
                    continue
                del dirty[ep]
                if ep.removed:
                    continue
                conn = ep.conn
                if ep.mem_epoch != memory.epoch:
                    self._clamp(ep, conn)  # before this drain's window goes out
                closed = False
                event = conn.next_event()
                if event is not None:
                    while event is not None:
                        if self._dispatch(ep, event):
                            closed = True
                        event = conn.next_event()
                    # the callbacks may have called into the connection with the
                    # clock's present (write, close): never hand it an older one
                    now = self.now()
                self._output(ep, conn, now)
                if closed:
                    self._remove(ep)
                else:
                    if ep.owner is None and getattr(conn, "state", None) is _TIME_WAIT:
                        record = self._compact_time_wait(ep, conn)
                        if record is not conn:
                            # the record's 2MSL deadline replaces the connection's
                            # entry (an RTO armed for the FIN): that one goes stale,
                            # no timer fires for it
                            ep.heap_deadline = None
                            conn = record
                    self._schedule(ep, conn.next_deadline())
                guard += 1
                if guard > 100_000:
                    break
            if guard > 100_000:  # a callback that keeps re-dirtying: finish next iteration
                if dirty and self._flush_handle is None:
                    self._flush_handle = self.loop.call_soon(self._flush)
                break
        self._arm()

    def _compact_time_wait(self, ep: TcpEndpoint,
                           conn: TcpConnection | TimeWait) -> TcpConnection | TimeWait:
        """An orphan that is quiet in TIME-WAIT keeps only a
        :class:`~ustack.tcp.timewait.TimeWait` record for its 2MSL (Linux
        tcp_time_wait swaps the socket for an inet_timewait_sock)."""
        if (type(conn) is _TcpConnection and ep in self._orphans and self.compact_time_wait
                and can_compact(conn)):
            record = TimeWait(conn)
            ep.conn = record
            if ep.mem:  # the record holds no buffers: give the charge back
                self._charge(-ep.mem, self.now())
                ep.mem = 0
            return record
        return conn

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
        return connection_hook(spec, now, self.local_addr, lport, raddr, rport)

    def _clamp(self, ep: TcpEndpoint, conn: TcpConnection | TimeWait) -> None:
        """Give the connection the limits of the budget's state
        (ustack.tcp.memory): under pressure its receive window shrinks to a
        few segments and its sends block; back to the configured sizes after.
        (A TIME-WAIT record has no buffers to limit.)"""
        memory = self.memory
        ep.mem_epoch = memory.epoch
        if isinstance(conn, TimeWait):
            self._clamped.discard(ep)
            return
        if memory.state != NORMAL:
            self._clamped.add(ep)
        else:
            self._clamped.discard(ep)
        cfg = conn.config
        try:
            snd_buf, rcv = conn.snd.buf, conn.rcv
            clamp = memory.clamp(cfg.send_buffer, cfg.recv_buffer, len(snd_buf),
                                 len(rcv.buf) + rcv.ooo.nbytes, conn.advmss)
            rcv.size = clamp.recv_size
            rcv.clamp_window()
            if snd_buf.limit != clamp.send_limit:
                conn.set_send_limit(clamp.send_limit)
        except AttributeError:  # a connection class without the rooms (tests)
            pass

    def _charge(self, delta: int, now: float) -> None:
        """Charge the memory budget; when that starts a pressure (or goes
        over the limit) every connection gets its clamp at once, so that no
        window advertised before it keeps inviting data (the budget charges
        what is held, not the windows ahead: ustack.tcp.memory); when that
        ends a pressure, the connections clamped under it get their limits
        back (:meth:`_release_clamps`)."""
        memory = self.memory
        epoch = memory.epoch
        memory.charge(delta, now)
        if memory.epoch != epoch and memory.state != NORMAL:
            for ep in list(self._conns.values()):
                if ep.mem_epoch != memory.epoch:
                    self._clamp(ep, ep.conn)
        elif self._clamped and memory.state == NORMAL:
            self._release_clamps()

    def _release_clamps(self) -> None:
        """The budget is NORMAL again: every connection clamped under the
        pressure gets its configured limits now and is drained, not at its
        next segment.  An idle one (an echo server whose answer waits for
        send space, its peer waiting for that answer) would otherwise keep
        a send limit of what it had queued, and nothing would ever arrive
        to lift it (Linux wakes such writers from sk_leave_memory_pressure
        and the tcp_wmem[0] guarantee, ustack.tcp.memory)."""
        clamped = list(self._clamped)
        self._clamped.clear()
        for ep in clamped:
            if not ep.removed:
                self._clamp(ep, ep.conn)
                self.touch(ep)

    def _remove(self, ep: TcpEndpoint) -> None:
        if self._ip_opts:
            self._ip_opts.pop(ep, None)
        hook = getattr(ep.conn, "trace", None)
        if hook is not None and not ep.removed:
            (la, lp), (ra, rp) = ep.sockname, ep.peername
            hook(self.now(), "close", {"local": f"{la}:{lp}", "remote": f"{ra}:{rp}",
                                       "errno": ep.conn.error})
        self._clamped.discard(ep)
        if ep.mem:
            self._charge(-ep.mem, self.now())
            ep.mem = 0
        ep.removed = True
        ep.heap_deadline = None
        if self._cand_ep is ep:
            self._drop_candidate()
        self._dirty.pop(ep, None)
        self._orphans.discard(ep)
        if self._conns.get(ep.key) is ep:
            del self._conns[ep.key]
        if ep.listener is not None:
            ep.listener._child_gone(ep)
            ep.listener = None

    # ---------------------------------------------------------------- timers

    def _schedule(self, ep: TcpEndpoint, deadline: float | None) -> None:
        """Lazy heap: push only when the deadline moved earlier than the entry
        already in the heap (or there is none).  A connection with no
        deadline at all (every timer stopped: the handshake's RTO once the
        SYN-ACK came) makes its entry stale: it is dropped when it reaches
        the heap's head, without a timer firing for it (a connect + close
        client had one wake-up per connection, 1 s after its SYN)."""
        if deadline is None:
            ep.heap_deadline = None
            return
        hd = ep.heap_deadline
        if hd is None or deadline < hd:
            ep.heap_deadline = deadline
            entry = (deadline, next(self._heap_counter), ep)
            fifo = self._tw_fifo
            if type(ep.conn) is TimeWait and (not fifo or fifo[-1][0] <= deadline):
                fifo.append(entry)
                return
            heapq.heappush(self._heap, entry)
            if len(self._heap) > _HEAP_SLACK * (len(self._conns) + 16):
                self._compact()

    def _compact(self) -> None:
        self._heap = [e for e in self._heap if e[2].heap_deadline == e[0] and not e[2].removed]
        heapq.heapify(self._heap)

    def _arm(self) -> None:
        heap = self._heap
        when = 0.0
        while heap:
            when, _, head = heap[0]
            if not head.removed and head.heap_deadline == when:
                break
            heapq.heappop(heap)  # stale
        fifo = self._tw_fifo
        while fifo:
            tw_when, _, head = fifo[0]
            if not head.removed and head.heap_deadline == tw_when:
                if not heap or tw_when < when:
                    when = tw_when
                break
            fifo.popleft()  # stale
        if not heap and not fifo:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            return
        timer = self._timer
        if timer is not None:
            if self._timer_when <= when:
                return  # fires earlier (or on time); it re-arms itself
            timer.cancel()
        self._timer_when = when
        self._timer = self.loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        poll = self.poll_input
        if poll is not None and not self._batch and not self._flushing:
            poll()  # input first: its ACKs may move the deadlines (see poll_input)
        if self._holding:
            self.release_held()
        now = self.now()
        heap = self._heap
        self.counters["tcp_timer_fires"] += 1
        fifo = self._tw_fifo
        while True:
            # the earlier (deadline, counter) of the two heads, if due
            if heap and heap[0][0] <= now:
                entry = heap[0]
                if fifo:
                    first = fifo[0]
                    if first[0] < entry[0] or (first[0] == entry[0] and first[1] < entry[1]):
                        entry = fifo.popleft()
                    else:
                        heapq.heappop(heap)
                else:
                    heapq.heappop(heap)
            elif fifo and fifo[0][0] <= now:
                entry = fifo.popleft()
            else:
                break
            deadline, _, ep = entry
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
        self.release_held()
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
        if self._req_timer is not None:
            self._req_timer.cancel()
            self._req_timer = None
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._heap.clear()
        self._tw_fifo.clear()
        self._req_heap.clear()


__all__ = ["TcpTable", "TcpEndpoint", "Listener", "EndpointOwner", "ConnKey", "RST"]
