"""Deterministic in-memory harness: two :class:`TcpConnection` objects joined
by a seeded simulated wire with delay, loss, reordering and duplication.

Used by the unit tests and ``bench/tcp_core.py``; handy for anyone who wants
to drive the core without a network.  Time is simulated: the loop jumps to the
next delivery, timer deadline or application wake-up.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from ustack.tcp import events as ev
from ustack.tcp.config import TcpConfig
from ustack.tcp.connection import TcpConnection
from ustack.tcp.listener import listener_action
from ustack.tcp.mib import TcpMib
from ustack.wire.tcp import TcpSegment

SRC_IP = b"\x0a\x00\x00\x01"
DST_IP = b"\x0a\x00\x00\x02"


@dataclass
class WireProfile:
    """Impairments of one direction of the simulated wire."""

    delay: float = 0.0005
    loss: float = 0.0
    reorder: float = 0.0  # probability a segment gets extra delay
    reorder_delay: float = 0.002
    duplicate: float = 0.0
    #: round-trip every segment through encode/decode (checks the wire format)
    encode: bool = False


@dataclass
class Endpoint:
    conn: TcpConnection | None
    events: list[ev.Event] = field(default_factory=list)
    log: list[tuple[float, TcpSegment]] = field(default_factory=list)  # segments sent


class MemoryPair:
    """A client connection (active open) and a server accepting its SYN."""

    def __init__(self, client_config: TcpConfig | None = None,
                 server_config: TcpConfig | None = None, *, seed: int = 0,
                 iss_client: int = 1000, iss_server: int = 5000,
                 client_port: int = 40000, server_port: int = 80,
                 profile: WireProfile | None = None,
                 reverse_profile: WireProfile | None = None,
                 keep_log: bool = False, start: float = 0.0,
                 mib: TcpMib | None = None) -> None:
        self.now = start
        self.rng = random.Random(seed)
        self.to_server = profile or WireProfile()
        self.to_client = reverse_profile or self.to_server
        self.server_config = server_config
        self.iss_server = iss_server
        self.keep_log = keep_log
        #: one MIB for both ends when given (like one stack), else private ones
        self.mib = mib
        self._heap: list[tuple[float, int, int, TcpSegment]] = []
        self._counter = 0
        self.dropped = 0
        self.client = Endpoint(TcpConnection.connect(client_port, server_port, iss_client,
                                                     start, client_config, mib=mib))
        self.server = Endpoint(None)

    @property
    def a(self) -> TcpConnection:
        assert self.client.conn is not None
        return self.client.conn

    @property
    def b(self) -> TcpConnection:
        assert self.server.conn is not None, "server not accepted yet"
        return self.server.conn

    # ---------------------------------------------------------------- wiring
    def _flush(self, ep: Endpoint, to_server: bool) -> None:
        conn = ep.conn
        if conn is None:
            return
        prof = self.to_server if to_server else self.to_client
        rng = self.rng
        for seg in conn.segments_to_send(self.now):
            if self.keep_log:
                ep.log.append((self.now, seg))
            if prof.loss and rng.random() < prof.loss:
                self.dropped += 1
                continue
            if prof.encode:
                seg = TcpSegment.decode(seg.encode(SRC_IP, DST_IP))
            copies = 2 if prof.duplicate and rng.random() < prof.duplicate else 1
            for _ in range(copies):
                t = self.now + prof.delay
                if prof.reorder and rng.random() < prof.reorder:
                    t += rng.random() * prof.reorder_delay
                self._counter += 1
                heapq.heappush(self._heap, (t, self._counter, 1 if to_server else 0, seg))
        while True:
            e = conn.next_event()
            if e is None:
                break
            ep.events.append(e)

    def inject(self, seg: TcpSegment, to_server: bool) -> None:
        """Deliver ``seg`` now (bypassing the impairments)."""
        self._deliver(seg, to_server)

    def _deliver(self, seg: TcpSegment, to_server: bool) -> None:
        ep = self.server if to_server else self.client
        if ep.conn is None:
            action = listener_action(seg)
            if action == "syn":
                ep.conn = TcpConnection.accept(seg, self.iss_server, self.now,
                                               self.server_config, mib=self.mib)
            return
        ep.conn.receive(seg, self.now)

    def flush(self) -> None:
        self._flush(self.client, True)
        self._flush(self.server, False)

    def step(self, app_wakeup: float | None = None) -> bool:
        """Advance to the next thing that happens; False if nothing will."""
        self.flush()
        candidates = []
        if self._heap:
            candidates.append(self._heap[0][0])
        for ep in (self.client, self.server):
            if ep.conn is not None:
                d = ep.conn.next_deadline()
                if d is not None:
                    candidates.append(d)
        if app_wakeup is not None:
            candidates.append(app_wakeup)
        if not candidates:
            return False
        t = min(candidates)
        if t > self.now:
            self.now = t
        heap = self._heap
        while heap and heap[0][0] <= self.now:
            _, _, to_server, seg = heapq.heappop(heap)
            self._deliver(seg, bool(to_server))
        for ep in (self.client, self.server):
            conn = ep.conn
            if conn is not None:
                d = conn.next_deadline()
                if d is not None and d <= self.now:
                    conn.handle_timer(self.now)
        self.flush()
        return True

    def run(self, until: Callable[[], bool], max_time: float = 1e6,
            app: Callable[[float], float | None] | None = None,
            max_steps: int = 10_000_000) -> None:
        """Step until ``until()`` is true; ``app(now)`` runs each step and
        returns its next wake-up time (or None)."""
        wake: float | None = None
        for _ in range(max_steps):
            if app is not None:
                wake = app(self.now)
                self.flush()
            if until():
                return
            if self.now > max_time:
                raise TimeoutError(f"simulated time passed {max_time}")
            if not self.step(wake):
                if until():
                    return
                raise RuntimeError("simulation stalled: nothing scheduled")
        raise RuntimeError("too many steps")

    def handshake(self) -> None:
        self.run(lambda: self.server.conn is not None and self.b.state.name == "ESTABLISHED"
                 and self.a.state.name == "ESTABLISHED", max_time=self.now + 300)


class BulkApp:
    """Writes ``data`` in random-size chunks and reads the peer's bytes with
    random pacing; shuts down writing when all is written."""

    def __init__(self, conn_getter: Callable[[], TcpConnection | None], data: bytes,
                 rng: random.Random, *, max_write: int = 65536, max_read: int = 65536,
                 read_interval: float = 0.001, close_when_done: bool = True) -> None:
        self._conn = conn_getter
        self.data = data
        self.sent = 0
        self.received = bytearray()
        self.rng = rng
        self.max_write = max_write
        self.max_read = max_read
        self.read_interval = read_interval
        self.next_read = 0.0
        self.shut = False
        self.close_when_done = close_when_done
        self.eof = False

    def __call__(self, now: float) -> float | None:
        conn = self._conn()
        if conn is None:
            return None
        st = conn.state.name
        if st in ("SYN_SENT", "SYN_RECEIVED"):
            return None
        rng = self.rng
        while self.sent < len(self.data) and not self.shut:
            n = rng.randint(1, self.max_write)
            k = conn.send(self.data[self.sent:self.sent + n], now)
            self.sent += k
            if k < n:
                break
        if self.sent >= len(self.data) and not self.shut and self.close_when_done:
            self.shut = True
            conn.shutdown(now)
        if now >= self.next_read:
            while True:
                chunk = conn.recv(rng.randint(1, self.max_read), now)
                if not chunk:
                    break
                self.received += chunk
                if rng.random() < 0.3:
                    break
            if conn.eof_received and conn.readable() == 0:
                self.eof = True
            self.next_read = now + rng.random() * self.read_interval
        return self.next_read if not self.eof else None


def fmt(seg: TcpSegment, seq_base: int = 0, ack_base: int = 0, *, options: bool = False) -> str:
    """packetdrill-like ``flags seq:end(len) ack N win W`` with relative numbers
    (ports omitted, options only if asked)."""
    from ustack.wire.tcp import ACK, flags_to_str, format_options

    seq = (seg.seq - seq_base) & 0xFFFFFFFF
    end = (seq + len(seg.payload)) & 0xFFFFFFFF
    text = f"{flags_to_str(seg.flags)} {seq}:{end}({len(seg.payload)})"
    if seg.flags & ACK:
        text += f" ack {(seg.ack - ack_base) & 0xFFFFFFFF}"
    text += f" win {seg.window}"
    if options:
        o = format_options(seg.options)
        if o:
            text += " " + o
    return text


class Script:
    """Drive one connection with hand-made segments, packetdrill style.

    ``iss`` is our ISS and ``peer_iss`` the peer's; :meth:`seg` takes sequence
    numbers relative to the peer's ISN and acks relative to ours, and
    :meth:`out` formats what we sent relative to the same bases, so tests read
    like tcp-edge-cases.md (``<`` = :meth:`inject`, ``>`` = returned lines).
    """

    def __init__(self, conn: TcpConnection, iss: int, peer_iss: int, now: float = 0.0) -> None:
        self.conn = conn
        self.iss = iss
        self.peer_iss = peer_iss
        self.now = now
        self.events: list[ev.Event] = []
        self.sent: list[tuple[float, TcpSegment]] = []

    @classmethod
    def passive_open(cls, cfg: TcpConfig | None = None, options: object = None, *,
                     syn_window: int = 65535, ack_window: int = 65535, iss: int = 10_000,
                     peer_iss: int = 0, rtt: float = 0.0) -> Script:
        """A connection accepted from the peer's SYN (port 40000 to 80, with
        ``options``, default MSS 1460, and ``syn_window``): our SYN-ACK is
        drained at 0.0, the peer's ACK (window ``ack_window``) arrives at
        ``rtt``; ESTABLISHED, with the handshake's events cleared."""
        from ustack.tcp.state import TcpState
        from ustack.wire.tcp import SYN, TcpOptions

        opts = options if isinstance(options, TcpOptions) else TcpOptions(mss=1460)
        syn = TcpSegment(40000, 80, peer_iss, 0, SYN, syn_window, 0, opts)
        s = cls(TcpConnection.accept(syn, iss, 0.0, cfg), iss, peer_iss)
        s.drain()
        s.now = rtt
        s.inject(s.seg(".", 1, 1, win=ack_window))
        assert s.conn.state is TcpState.ESTABLISHED
        s.events.clear()
        return s

    def seg(self, flags: str, seq: int, ack: int = 0, *, win: int = 65535, payload: bytes = b"",
            options: object = None) -> TcpSegment:
        from ustack.wire.tcp import TcpOptions, str_to_flags

        opts = options if isinstance(options, TcpOptions) else TcpOptions()
        return TcpSegment(self.conn.remote_port, self.conn.local_port,
                          (self.peer_iss + seq) & 0xFFFFFFFF, (self.iss + ack) & 0xFFFFFFFF,
                          str_to_flags(flags), win, 0, opts, payload)

    def drain(self) -> list[TcpSegment]:
        out = self.conn.segments_to_send(self.now)
        for s in out:
            self.sent.append((self.now, s))
        while True:
            e = self.conn.next_event()
            if e is None:
                break
            self.events.append(e)
        return out

    def inject(self, seg: TcpSegment) -> list[str]:
        """Deliver ``seg`` now; the formatted segments we answer with."""
        self.conn.receive(seg, self.now)
        return self.lines(self.drain())

    def lines(self, segs: list[TcpSegment], options: bool = False) -> list[str]:
        return [fmt(s, self.iss, self.peer_iss, options=options) for s in segs]

    def at(self, t: float) -> list[str]:
        """Advance the clock to ``t`` (running due timers) and drain."""
        self.now = t
        d = self.conn.next_deadline()
        if d is not None and d <= t:
            self.conn.handle_timer(t)
        return self.lines(self.drain())

    def run_timers(self, until: float) -> list[tuple[float, str]]:
        """Jump from deadline to deadline up to ``until``; (time, line) of every
        segment sent meanwhile."""
        out: list[tuple[float, str]] = []
        while True:
            d = self.conn.next_deadline()
            if d is None or d > until:
                break
            for line in self.at(d):
                out.append((round(d, 6), line))
        return out

    def event_types(self) -> list[str]:
        return [type(e).__name__ for e in self.events]


@dataclass
class SequenceReceiver:
    """A receiver reduced to sequence space, for driving the recovery room
    (:class:`ustack.tcp.recovery.Recovery`) without connections: what a
    receiver ACKs for each segment ``[start, end)`` it gets.  The block
    holding the newest segment goes first (RFC 2018 section 4), a duplicate
    is reported first as a D-SACK (RFC 2883 section 4), at most four blocks;
    ``sack=False``: cumulative ACKs only."""

    sack: bool = True
    nxt: int = 0
    #: out-of-order ranges [start, end), ascending
    ooo: list[list[int]] = field(default_factory=list)
    recent: list[tuple[int, int]] = field(default_factory=list)

    def receive(self, start: int, end: int) -> tuple[int, list[tuple[int, int]]]:
        """The cumulative ACK and the SACK blocks answering ``[start, end)``."""
        dsack: tuple[int, int] | None = None
        if end <= self.nxt or any(s <= start and end <= e for s, e in self.ooo):
            dsack = (start, end)
        elif start <= self.nxt:
            self.nxt = max(self.nxt, end)
            while self.ooo and self.ooo[0][0] <= self.nxt:
                self.nxt = max(self.nxt, self.ooo.pop(0)[1])
        else:
            self.ooo.append([start, end])
            self.ooo.sort()
            merged: list[list[int]] = []
            for s, e in self.ooo:
                if merged and s <= merged[-1][1]:
                    merged[-1][1] = max(merged[-1][1], e)
                else:
                    merged.append([s, e])
            self.ooo = merged
            for s, e in self.ooo:
                if s <= start < e:
                    self.recent = [(s, e)] + [b for b in self.recent if not (s <= b[0] < e)]
        if not self.sack:
            return self.nxt, []
        live = {(s, e) for s, e in self.ooo}
        self.recent = [b for b in self.recent if b in live]
        blocks = list(self.recent)
        for s, e in self.ooo:
            if (s, e) not in blocks:
                blocks.append((s, e))
        out = ([dsack] if dsack else []) + blocks
        return self.nxt, out[:4]
