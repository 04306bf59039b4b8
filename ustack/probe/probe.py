"""The probe: send hand-built TCP segments to a peer and assert its answers.

A :class:`Probe` has no TCP state machine.  It only remembers what a script
needs to write numbers relative to each side's initial sequence number:

* ``isn``: its own ISN (random, fixed per connection; ``new_connection``),
* ``peer_isn``: the peer's ISN, learned from every SYN the peer sends (0 until
  then, so an absolute number like the ``ack 1000`` of a bare ACK to a closed
  port reads back as ``R 1000:1000(0)``, as in packetdrill),
* ``snd_nxt``/``rcv_nxt`` (relative), the defaults for ``seq``/``ack``,
* the peer's last TSval (echoed by a ``TS val N ecr *`` option).

Every sent and received segment goes into :attr:`Probe.timeline`;
:meth:`Probe.expect` fails with :class:`ExpectationFailed`, whose message has
the expected and the actual segment as one line each plus that timeline.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from ustack.probe.packet import (
    MASK32,
    IpFields,
    Opt,
    PacketSpec,
    encode_options,
    format_relative,
    format_spec,
    options_mismatch,
    options_of,
    parse_options,
)
from ustack.wire import icmp as wire_icmp
from ustack.wire.ipv4 import PROTO_ICMP, PROTO_TCP, Ipv4Packet
from ustack.wire.seq import seq_gt
from ustack.wire.tcp import ACK, SYN, TcpOptions, TcpSegment, str_to_flags

#: how long an expectation without ``within`` waits for its segment
DEFAULT_TIMEOUT = 3.0


class ExpectationFailed(AssertionError):
    """The peer did not send what was expected, when it was expected."""


#: called with (arrival time on the loop clock, decoded segment)
TcpHandler = Callable[[float, TcpSegment], None]


class Endpoint(Protocol):
    """What the probe needs from the link below it (see :mod:`.endpoint`)."""

    address: bytes
    peer_address: bytes

    def set_tcp_handler(self, handler: TcpHandler) -> None: ...

    def send_ip(self, protocol: int, payload: bytes, fields: IpFields) -> None: ...


@dataclass(slots=True)
class Received:
    """A segment from the peer, with its arrival time (loop clock) and its
    sequence numbers relative to the ISNs in force when it arrived."""

    when: float
    segment: TcpSegment
    seq: int
    ack: int | None
    options: list[Opt]
    line: str
    #: the IPv4 header's (TOS, DF) when the endpoint reports them
    ip: tuple[int, bool] | None = None

    @property
    def flags(self) -> int:
        return self.segment.flags

    @property
    def payload(self) -> bytes:
        got = self.segment.payload
        return got if type(got) is bytes else bytes(got)


@dataclass(slots=True)
class TimelineEntry:
    when: float
    direction: str  # "<" sent by the probe, ">" from the peer, "#" a note
    text: str


class Probe:
    """A scripted TCP endpoint on a raw link (see the module docstring)."""

    def __init__(self, endpoint: Endpoint, *, local_port: int | None = None,
                 remote_port: int | None = None, isn: int | None = None,
                 default_window: int = 65535) -> None:
        self.endpoint = endpoint
        self.loop = asyncio.get_running_loop()
        self.default_window = default_window
        self.timeline: list[TimelineEntry] = []
        self.start_time = self.loop.time()
        self.last_event = self.start_time
        self._queue: deque[Received] = deque()
        self._arrived = asyncio.Event()
        self.local_port = 0
        self.remote_port: int | None = None
        self.isn = 0
        self.peer_isn = 0
        self.snd_nxt = 0
        self.rcv_nxt = 0
        self.peer_tsval = 0
        #: frames sent (segments and ICMP): the peer settles on this count
        self.frames_sent = 0
        #: packetdrill TS mapping: script TS val -> actual, and the first pair
        self.ts_map: dict[int, int] = {}
        self.ts_first: tuple[int, int] | None = None
        self.new_connection(local_port=local_port, remote_port=remote_port, isn=isn)
        endpoint.set_tcp_handler(self._on_segment)

    # ------------------------------------------------------------ state
    def new_connection(self, *, local_port: int | None = None, remote_port: int | None = None,
                       isn: int | None = None) -> None:
        """Start a fresh connection: new ISN, optionally new ports."""
        self.local_port = local_port if local_port is not None else (
            self.local_port or 40000 + secrets.randbelow(20000))
        if remote_port is not None:
            self.remote_port = remote_port
        self.isn = isn if isn is not None else secrets.randbits(32)
        self.ts_map = {}
        self.ts_first = None
        self.peer_isn = 0
        self.snd_nxt = 0
        self.rcv_nxt = 0

    def now(self) -> float:
        """Seconds since the probe started."""
        return self.loop.time() - self.start_time

    def note(self, text: str) -> None:
        """Add a line to the timeline (peer actions, script directives)."""
        self.timeline.append(TimelineEntry(self.loop.time(), "#", text))

    def mark(self) -> None:
        """Make 'now' the reference point of the next ``within``."""
        self.last_event = self.loop.time()

    def format_timeline(self) -> str:
        return "\n".join(
            f"  {e.when - self.start_time:8.3f} {e.direction} {e.text}" for e in self.timeline)

    def map_ts(self, script_val: int, actual: int) -> None:
        """Remember that the script's TS val ``script_val`` is ``actual``
        on the wire (packetdrill's outbound TS val mapping)."""
        self.ts_map[script_val] = actual
        if self.ts_first is None:
            self.ts_first = (script_val, actual)

    def map_ecr(self, spec: PacketSpec) -> PacketSpec:
        """``spec`` with its TS ecr turned from the script's number into the
        peer's: the exact TS val mapped, else interpolated from the first
        mapping (packetdrill), else left as written."""
        if not spec.options:
            return spec
        opts = []
        changed = False
        for o in spec.options:
            if o.kind == "TS" and o.b is not None and o.b != 0:
                ecr = self.ts_map.get(o.b)
                if ecr is None and self.ts_first is not None:
                    ecr = (o.b - self.ts_first[0] + self.ts_first[1]) & MASK32
                if ecr is not None:
                    o = Opt("TS", o.a, ecr)
                    changed = True
            opts.append(o)
        if not changed:
            return spec
        return replace(spec, options=opts)

    # ------------------------------------------------------------ receive
    def _on_segment(self, when: float, seg: TcpSegment) -> None:
        if seg.dst_port != self.local_port:
            return
        if self.remote_port is None:
            self.remote_port = seg.src_port
        elif seg.src_port != self.remote_port:
            return
        if seg.flags & SYN:
            self.peer_isn = seg.seq
        rel_seq = (seg.seq - self.peer_isn) & MASK32
        rel_ack = (seg.ack - self.isn) & MASK32 if seg.flags & ACK else None
        end = (rel_seq + seg.seg_len) & MASK32
        if seq_gt(end, self.rcv_nxt) or (seg.flags & SYN):
            self.rcv_nxt = end
        if seg.options.timestamp is not None:
            self.peer_tsval = seg.options.timestamp[0]
        opts = options_of(seg.options, sack_base=self.isn)
        line = format_relative(seg.flags, rel_seq, len(seg.payload), rel_ack, seg.window,
                               seg.urgent, opts)
        self.timeline.append(TimelineEntry(when, ">", line))
        self._queue.append(Received(when, seg, rel_seq, rel_ack, opts, line,
                                    getattr(self.endpoint, "last_ip", None)))
        self._arrived.set()

    def pending(self) -> list[Received]:
        """Segments received and not yet consumed by an expectation."""
        return list(self._queue)

    def drain(self) -> list[Received]:
        """Consume and return every pending segment."""
        out = list(self._queue)
        self._queue.clear()
        return out

    async def _next(self, deadline: float) -> Received | None:
        while not self._queue:
            remaining = deadline - self.loop.time()
            if remaining <= 0:
                return None
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                return None
        return self._queue.popleft()

    # ------------------------------------------------------------ send
    async def send(self, flags: str, seq: int | None = None, ack: int | None = None, *,
                   payload: bytes | int = b"", win: int | None = None, urg: int = 0,
                   options: str | list[Opt] | None = None, bad_checksum: bool = False,
                   ttl: int | None = None, df: bool | None = None,
                   ip_id: int | None = None) -> TcpSegment:
        """Send one segment.  ``seq`` defaults to ``snd_nxt``, ``ack`` (when
        the flags carry ACK) to ``rcv_nxt``; both relative.  ``payload`` may
        be a byte count (filled with zeros)."""
        data = bytes(payload) if isinstance(payload, int) else payload
        spec = PacketSpec(flags=flags, seq=seq, length=len(data), ack=ack, win=win, urg=urg,
                          options=parse_options(options) if isinstance(options, str)
                          else options, payload=data, bad_checksum=bad_checksum,
                          ip=IpFields(ttl=ttl, df=df, ident=ip_id))
        return self.send_spec(spec)

    def send_spec(self, spec: PacketSpec) -> TcpSegment:
        """Send the segment a :class:`PacketSpec` describes (see :meth:`send`)."""
        if self.remote_port is None:
            raise RuntimeError("the probe does not know the peer's port yet")
        flags = str_to_flags(spec.flags or "")
        seq = self.snd_nxt if spec.seq is None else spec.seq
        payload = spec.payload if spec.payload is not None else bytes(spec.length or 0)
        ack = spec.ack if spec.ack is not None else (self.rcv_nxt if flags & ACK else 0)
        raw_opts = b""
        if spec.options:
            raw_opts = encode_options(spec.options, sack_base=self.peer_isn,
                                      ts_echo=self.peer_tsval)
        seg = TcpSegment(
            src_port=self.local_port, dst_port=self.remote_port,
            seq=(self.isn + seq) & MASK32,
            ack=(self.peer_isn + ack) & MASK32 if flags & ACK or spec.ack is not None else 0,
            flags=flags, window=self.default_window if spec.win is None else spec.win,
            urgent=spec.urg or 0,
            options=TcpOptions(raw=raw_opts) if raw_opts else TcpOptions(),
            payload=payload)
        wire = seg.encode(self.endpoint.address, self.endpoint.peer_address,
                          bad_checksum=spec.bad_checksum)
        self.endpoint.send_ip(PROTO_TCP, wire, spec.ip)
        self.frames_sent += 1
        end = (seq + seg.seg_len) & MASK32
        if seq_gt(end, self.snd_nxt):
            self.snd_nxt = end
        now = self.loop.time()
        self.last_event = now
        shown_opts = None if spec.options is None else [
            Opt("TS", o.a, self.peer_tsval) if o.kind == "TS" and o.b is None else o
            for o in spec.options]
        shown = PacketSpec(flags=spec.flags, seq=seq, length=len(payload),
                           ack=ack if flags & ACK or spec.ack is not None else None,
                           win=seg.window, urg=spec.urg or None, options=shown_opts,
                           bad_checksum=spec.bad_checksum)
        text = format_spec(shown)
        extras = [f"{k} {v}" for k, v in (("ttl", spec.ip.ttl), ("id", spec.ip.ident),
                                          ("tos", spec.ip.tos)) if v is not None]
        if spec.ip.df is not None:
            extras.append("df" if spec.ip.df else "nodf")
        self.timeline.append(TimelineEntry(now, "<", " ".join([text, *extras])))
        return seg

    def send_icmp(self, type: int, code: int, quote: PacketSpec, *, mtu: int = 0) -> None:
        """Send an ICMP error quoting a segment *the peer* sent to the probe
        (``quote``'s numbers relative as in an expectation: seq to the peer's
        ISN, ack to ours).  RFC 792; RFC 5927 says the peer should check the
        quoted seq against its send window."""
        if self.remote_port is None:
            raise RuntimeError("the probe does not know the peer's port yet")
        flags = str_to_flags(quote.flags or ".")
        seq = (self.peer_isn + (quote.seq or 0)) & MASK32
        ack = (self.isn + (quote.ack or 0)) & MASK32 if flags & ACK else 0
        quoted_tcp = TcpSegment(self.remote_port, self.local_port, seq, ack, flags,
                                quote.win or 0, 0, TcpOptions(),
                                bytes(quote.length or 0))
        tcp_bytes = quoted_tcp.encode(self.endpoint.peer_address, self.endpoint.address)
        original = Ipv4Packet(src=self.endpoint.peer_address, dst=self.endpoint.address,
                              protocol=PROTO_TCP, payload=tcp_bytes).encode()
        message = wire_icmp.build_error(type, code, original, mtu=mtu, quote_payload=20)
        self.endpoint.send_ip(PROTO_ICMP, message, IpFields())
        self.frames_sent += 1
        now = self.loop.time()
        self.last_event = now
        self.timeline.append(TimelineEntry(
            now, "<", f"icmp type {type} code {code} [{format_spec(quote)}]"))

    # ------------------------------------------------------------ expect
    async def expect(self, flags: str | None = None, seq: int | None = None,
                     ack: int | None = None, *, win: int | None = None,
                     options: str | list[Opt] | None = None,
                     payload: bytes | int | None = None, urg: int | None = None,
                     within: tuple[float, float] | None = None,
                     timeout: float | None = None) -> Received:
        """Wait for the next segment from the peer and check it.

        ``None`` fields are not checked.  ``payload`` is the exact bytes or a
        length.  ``within=(min_s, max_s)`` bounds its arrival relative to the
        last event (the last segment sent or matched, or :meth:`mark`);
        without it the segment may come any time within ``timeout`` (3 s).
        """
        spec = PacketSpec(
            flags=flags, seq=seq, ack=ack, win=win, urg=urg,
            options=parse_options(options) if isinstance(options, str) else options,
            length=payload if isinstance(payload, int) else (
                len(payload) if payload is not None else None),
            payload=payload if isinstance(payload, bytes) else None)
        return await self.expect_spec(spec, within=within, timeout=timeout)

    async def expect_spec(self, spec: PacketSpec, *, within: tuple[float, float] | None = None,
                          timeout: float | None = None, aggregate: bool = False) -> Received:
        """:meth:`expect` for a :class:`PacketSpec`.  ``aggregate``: like
        packetdrill without ``--strict_segments``, consecutive equal-sized
        segments (TSO/GSO pieces) may together make up the expected length;
        they are checked as one (headers of the last, seq of the first)."""
        ref = self.last_event
        lo, hi = within if within is not None else (0.0, timeout or DEFAULT_TIMEOUT)
        got = await self._next(ref + hi)
        window = f"within {lo:.3f}-{hi:.3f} s"
        if got is None:
            self._fail(spec, None, f"nothing arrived {window}")
        assert got is not None
        if aggregate and spec.length and 0 < len(got.payload) < spec.length and \
                (spec.seq is None or (spec.seq & MASK32) == got.seq):
            got = await self._aggregate(got, spec.length, ref + hi)
        delay = got.when - ref
        problem = self._mismatch(spec, got)
        if problem is None and delay < lo:
            problem = f"arrived too early: +{delay:.3f} s, expected {window}"
        if problem is not None:
            self._fail(spec, got, problem, window=window, delay=delay)
        self.last_event = got.when
        return got

    async def _aggregate(self, first: Received, length: int, deadline: float) -> Received:
        parts = [first]
        total = len(first.payload)
        while total < length:
            nxt = self._queue[0] if self._queue else None
            if nxt is None:
                nxt = await self._next(max(deadline, first.when + 0.05))
                if nxt is None:
                    break
                self._queue.appendleft(nxt)
            prev = parts[-1]
            n = len(nxt.payload)
            if nxt.seq != (prev.seq + len(prev.payload)) & MASK32 or n == 0 or \
                    (n < length - total and n != len(prev.payload)):
                break
            self._queue.popleft()
            parts.append(nxt)
            total += n
        if len(parts) == 1:
            return first
        last = parts[-1]
        seg = replace(last.segment, seq=first.segment.seq,
                      payload=b"".join(p.payload for p in parts))
        line = format_relative(seg.flags, first.seq, len(seg.payload), last.ack, seg.window,
                               seg.urgent, last.options) + f"   ({len(parts)} segments)"
        return Received(first.when, seg, first.seq, last.ack, last.options, line, last.ip)

    async def expect_nothing(self, for_s: float) -> None:
        """Assert that the peer sends nothing for ``for_s`` seconds (segments
        already pending count as a failure too)."""
        got = await self._next(self.loop.time() + for_s)
        if got is not None:
            self.timeline.append(TimelineEntry(self.loop.time(), "#", "(expected nothing)"))
            raise ExpectationFailed(
                f"expected: nothing for {for_s:.3f} s\n"
                f"actual:   > {got.line}   at +{got.when - self.last_event:.3f} s\n"
                f"timeline:\n{self.format_timeline()}")
        self.last_event = self.loop.time()

    def _mismatch(self, spec: PacketSpec, got: Received) -> str | None:
        seg = got.segment
        if spec.flags is not None and str_to_flags(spec.flags) != seg.flags:
            return "flags differ"
        if spec.seq is not None and (spec.seq & MASK32) != got.seq:
            return "seq differs"
        if spec.ack is not None and (got.ack is None or (spec.ack & MASK32) != got.ack):
            return "ack differs"
        if spec.length is not None and spec.length != len(seg.payload):
            return "payload length differs"
        if spec.payload is not None and spec.payload != seg.payload:
            return "payload bytes differ"
        if spec.win is not None and spec.win != seg.window:
            return "window differs"
        if spec.urg is not None and spec.urg != seg.urgent:
            return "urgent pointer differs"
        if spec.options is not None:
            why = options_mismatch(spec.options, got.options)
            if why:
                return "options differ: " + why
        if (spec.ip.tos is not None or spec.ip.df is not None) and got.ip is not None:
            tos, df = got.ip
            if spec.ip.tos is not None and spec.ip.tos != tos:
                return f"IPv4 TOS differs (got {tos:#x})"
            if spec.ip.df is not None and spec.ip.df != df:
                return "IPv4 DF bit differs (got " + ("df)" if df else "nodf)")
        return None

    def _fail(self, spec: PacketSpec, got: Received | None, problem: str, *,
              window: str = "", delay: float = 0.0) -> None:
        actual = "(nothing)" if got is None else f"> {got.line}   at +{delay:.3f} s"
        raise ExpectationFailed(
            f"{problem}\n"
            f"expected: > {format_spec(spec)}   {window}\n"
            f"actual:   {actual}\n"
            f"timeline:\n{self.format_timeline()}")

    # ------------------------------------------------------------ helpers
    async def handshake(self, *, options: str | None = "mss 1460", win: int = 65535,
                        synack_options: str | None = None,
                        timeout: float = DEFAULT_TIMEOUT) -> Received:
        """Active open against a listening peer: ``<S``, ``>S.``, ``<.``."""
        await self.send("S", 0, options=options, win=win)
        synack = await self.expect("S.", 0, 1, options=synack_options, timeout=timeout)
        await self.send(".", 1, 1, win=win)
        return synack

    async def accept_handshake(self, *, options: str | None = "mss 1460", win: int = 65535,
                               timeout: float = DEFAULT_TIMEOUT) -> Received:
        """Passive open for a connecting peer: ``>S``, ``<S.``, ``>.``."""
        syn = await self.expect("S", 0, timeout=timeout)
        await self.send("S.", 0, 1, options=options, win=win)
        await self.expect(".", 1, 1, timeout=timeout)
        return syn
