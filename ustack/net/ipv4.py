"""The IPv4 layer of one stack: frame input, checks, ARP, ICMP, protocol
demultiplexing and output (RFC 791, RFC 1122 s.3.2).

Receive path (:meth:`IpLayer.receive`, the device's receiver): every frame is
either handled or counted as a drop under a reason; nothing raises out of it.
IPv4 input checks version, IHL, total length against the frame, the header
checksum and the destination (ours or broadcast), drops fragments, then
verifies the transport checksum over the pseudo-header unless the device
marked the frame ``trusted`` (the kernel vouched for it, DESIGN.md trap 2),
and hands the payload to the handler registered for the protocol.

Send path (:meth:`IpLayer.send`): route, prepend a cached Ethernet header and
a freshly built IPv4 header, transmit.  Packets to a neighbour not yet
resolved wait in the ARP cache's bounded queue; when resolution fails they are
reported to the protocol's error handler as :class:`~ustack.net.icmp.IpError`.

The layer does no I/O of its own: it transmits through a callable, reads time
through ``clock`` and tells its owner (the Stack) when its next deadline moves.
"""

from __future__ import annotations

import errno
import itertools
import logging
import struct
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, NamedTuple

from ustack.link.rxtime import CURRENT as _ARRIVAL
from ustack.link.rxtime import StampedBatch
from ustack.net.arp import ArpCache
from ustack.net.icmp import (
    ORIGIN_ARP,
    ORIGIN_ICMP,
    ORIGIN_ROUTE,
    IpError,
    RateLimiter,
    errno_for,
)
from ustack.net.routing import LIMITED_BROADCAST, Routes
from ustack.wire import arp as warp
from ustack.wire import icmp as wicmp
from ustack.wire.checksum import payload_sum
from ustack.wire.checksum import sum16 as _sum16
from ustack.wire.errors import ParseError
from ustack.wire.ethernet import BROADCAST, ETHERTYPE_ARP, ETHERTYPE_IPV4, MIN_FRAME_LEN
from ustack.wire.ethernet import header as eth_header
from ustack.wire.ipv4 import (
    DEFAULT_TTL,
    FLAG_DF,
    PROTO_ICMP,
    PROTO_TCP,
    PROTO_UDP,
    build_header,
)
from ustack.wire.tcp import SegmentEncoder, TcpSegment

log = logging.getLogger("ustack.net")

Buffer = bytes | memoryview
#: a TCP super-segment for :meth:`IpLayer.send_tcp_round`: the TCP header
#: (checksum field 0: the device fills it in), the payload, the gso_size
GsoSegment = tuple[bytes, Buffer, int]
#: ``handler(src_ip, dst_ip, payload, trusted)``: ``payload`` is the transport
#: segment (a memoryview into the frame, valid only during the call: copy what
#: you keep); its checksum has been verified unless ``trusted`` is True.  A
#: handler that drops the payload returns the reason (counted under ``drops``,
#: e.g. ``"tcp-bad-offset"``); None means accepted.
IpHandler = Callable[[bytes, bytes, Buffer, bool], str | None]
ErrorHandler = Callable[[IpError], None]

_IP_HEADER: Final = struct.Struct("!BBHHHBBH4s4s")
#: the receive fast path's view of a frame: destination MAC, EtherType, and
#: of the IPv4 header version/IHL, total length, flags/fragment offset,
#: protocol and both addresses (the rest skipped: no object made for them)
_ETH_IP_FAST: Final = struct.Struct("!6s6x2sBxH2xHxB2x4s4s")
_ETH_IPV4: Final = ETHERTYPE_IPV4.to_bytes(2, "big")
_ETH_ARP: Final = ETHERTYPE_ARP.to_bytes(2, "big")
_ZERO_IP: Final = b"\x00\x00\x00\x00"
#: routed destinations with their own Ethernet-header cache entry, at most
_PREFIX_CACHE_MAX: Final = 4096
#: destinations with a cached TCP encoder, at most (then the cache restarts)
_ENCODER_CACHE_MAX: Final = 1024
_PROTO_NAMES: Final = {PROTO_TCP: "tcp", PROTO_UDP: "udp", PROTO_ICMP: "icmp"}


def _transport_sum_ok(src: bytes, dst: bytes, proto: int, segment: memoryview) -> bool:
    """The TCP/UDP checksum check (RFC 9293 3.1, RFC 768) of a received segment.

    The ones' complement sum of the pseudo-header and the whole segment, its
    checksum field included, must be 0 modulo 0xFFFF (RFC 1071 4.1).  The fast
    path: the segment is summed in place (no copy), read little-endian and
    folded before the one modulo (:func:`payload_sum`), and the pseudo-header
    is added as small integers.
    """
    s = (int.from_bytes(src, "big") + int.from_bytes(dst, "big") + proto + len(segment)
         + payload_sum(segment))
    return not s % 0xFFFF


#: IP option types with a pointer octet, and the smallest valid pointer
#: (RFC 791 3.1: record route 7, loose/strict source route 131/137: 4;
#: Internet timestamp 68: 5)
_POINTER_OPTIONS: Final = {7: 4, 131: 4, 137: 4, 68: 5}
#: source routing: Linux drops it (accept_source_route 0, RFC 7126 4.3/4.4)
_SOURCE_ROUTE = (131, 137)


def ip_options_error(options: bytes | memoryview) -> str | None:
    """The drop reason for a malformed IPv4 options area, else None.

    As Linux ``ip_options_compile``: walk the type-length-value list (RFC
    791 3.1); end-of-list (0) stops, no-operation (1) is one octet; any other
    option needs a length octet of at least 2 that stays inside the header;
    record route, source routes and timestamps need a sane pointer.  A
    source-routed packet is dropped too (Linux ``accept_source_route`` 0).
    Unknown option types are skipped, as Linux does.
    """
    i, n = 0, len(options)
    while i < n:
        kind = options[i]
        if kind == 0:
            return None
        if kind == 1:
            i += 1
            continue
        if i + 1 >= n:
            return "ip-bad-options"
        length = options[i + 1]
        if length < 2 or i + length > n:
            return "ip-bad-options"
        least = _POINTER_OPTIONS.get(kind)
        if least is not None and (length < least - 1 or options[i + 2] < least):
            return "ip-bad-options"
        if kind in _SOURCE_ROUTE:
            return "ip-source-route"
        i += length
    return None


#: a cork sends what it holds once this many frames wait (sendmmsg takes up
#: to 64 per system call, ustack/link/_batch.c: waiting longer saves nothing)
CORK_MAX: Final = 64


def _one_by_one(transmit: Callable[[bytes], None]) -> Callable[[Sequence[bytes]], None]:
    def transmit_many(frames: Sequence[bytes]) -> None:
        for frame in frames:
            transmit(frame)
    return transmit_many


class _Queued(NamedTuple):
    """An IPv4 packet waiting for its next hop to resolve."""

    dst: bytes
    protocol: int
    packet: bytes  # IPv4 header + payload


class IpLayer:
    """IPv4 + ARP + ICMP for one address on one Ethernet device."""

    def __init__(
        self,
        *,
        address: bytes,
        prefixlen: int,
        mac: bytes,
        transmit: Callable[[bytes], None],
        clock: Callable[[], float],
        gateway: bytes | None = None,
        transmit_many: Callable[[Sequence[bytes]], None] | None = None,
        defer: Callable[[Callable[[], None]], object] | None = None,
        on_deadline: Callable[[float | None], None] | None = None,
        arp_cache: ArpCache[_Queued] | None = None,
        mtu: int = 1500,
        ttl: int = DEFAULT_TTL,
        reply_to_ping: bool = True,
    ) -> None:
        self.address = address
        self.mac = mac
        self.routes = Routes(address, prefixlen, gateway)
        self.arp: ArpCache[_Queued] = arp_cache if arp_cache is not None else ArpCache()
        self.mtu = mtu
        self.ttl = ttl
        self.reply_to_ping = reply_to_ping
        self._transmit = transmit
        self._transmit_many = transmit_many or _one_by_one(transmit)
        #: the device's own send paths; ``_transmit``/``_transmit_many`` are
        #: these, or the cork's while :meth:`cork` holds frames
        self._device_one = self._transmit
        self._device_many = self._transmit_many
        self._corks = 0
        self._corked: list[bytes] = []
        #: ``device.send_gso`` when the device segments TCP for us (else None)
        self.transmit_gso: Callable[[bytes, int], None] | None = None
        #: ``device.send_gso_parts(head, segment, gso_size)``, the same
        #: without joining headers and segment (optional, with transmit_gso)
        self.transmit_gso_parts: Callable[[bytes, Buffer, int], None] | None = None
        #: ``device.send_round(frames) -> send times``: a connection's output
        #: round, whole frames and super-segments, in one device call
        #: (optional, with transmit_gso; :meth:`send_tcp_round`)
        self.transmit_round: Callable[[list[Any]], list[float]] | None = None
        self._clock = clock
        self._defer = defer or (lambda fn: fn())
        self._on_deadline = on_deadline or (lambda _deadline: None)
        self._handlers: dict[int, tuple[IpHandler, bool]] = {}
        self._error_handlers: dict[int, ErrorHandler] = {}
        self._echo_reply_handler: Callable[[bytes, wicmp.IcmpEcho], None] | None = None
        #: neighbour IP → callbacks waiting for :meth:`resolve`
        self._resolvers: dict[bytes, list[Callable[[bytes | None], None]]] = {}
        self._ident = itertools.count(1)
        self._icmp_limiter = RateLimiter()
        #: destination IP → (Ethernet header for its next hop, valid until)
        self._prefix: dict[bytes, tuple[bytes, float]] = {}
        #: destination IP → its TCP encoder (:meth:`tcp_encoder`)
        self._encoders: dict[bytes, SegmentEncoder] = {}
        self._broadcast_prefix = eth_header(BROADCAST, mac, ETHERTYPE_IPV4)
        self._ours = {address, LIMITED_BROADCAST}
        if self.routes.broadcast is not None:
            self._ours.add(self.routes.broadcast)
        #: take :meth:`receive`'s fast path (False: every frame takes the
        #: general one; the differential tests compare the two)
        self.fast_receive = True
        self.frames_in = 0
        self.frames_out = 0
        #: received frames fully handled (delivered to a protocol, ARP or ICMP
        #: processed): every frame is counted once, here or in ``drops``
        self.accepted = 0
        #: received frames dropped, by reason
        self.drops: dict[str, int] = {}
        #: packets we could not send, by reason
        self.tx_drops: dict[str, int] = {}
        #: events (ARP replies sent, echo replies, ICMP errors in/out, ...)
        self.stats: dict[str, int] = {}

    # ------------------------------------------------------------------ API

    def register(self, protocol: int, handler: IpHandler, *, verify_checksum: bool = True) -> None:
        """Deliver IPv4 payloads of ``protocol`` to ``handler(src, dst, payload,
        trusted)``.  With ``verify_checksum`` the layer first checks the
        transport checksum over the pseudo-header (TCP's and UDP's rule) for
        frames that are not ``trusted`` and drops failures as
        ``<proto>-bad-checksum``."""
        if protocol == PROTO_ICMP:
            raise ValueError("ICMP is handled by the IP layer; use register_error()")
        self._handlers[protocol] = (handler, verify_checksum)

    def unregister(self, protocol: int) -> None:
        self._handlers.pop(protocol, None)
        self._error_handlers.pop(protocol, None)

    def register_error(self, protocol: int, handler: ErrorHandler) -> None:
        """Report packets of ``protocol`` that did not arrive: ICMP errors
        quoting them and failed ARP resolutions, as :class:`IpError`."""
        self._error_handlers[protocol] = handler

    def on_echo_reply(self, handler: Callable[[bytes, wicmp.IcmpEcho], None] | None) -> None:
        """Receive ICMP echo replies (``handler(src, echo)``), e.g. for a ping client."""
        self._echo_reply_handler = handler

    def send(self, dst: bytes, protocol: int, payload: Buffer, *, tos: int = 0,
             df: bool = True) -> None:
        """Send one IPv4 packet carrying ``payload``; never raises for
        network conditions (unresolved → queued; no route or ARP failure →
        the protocol's error handler).  ``tos`` and ``df``: the header's TOS
        byte and DF bit (a socket's IP_TOS / IP_MTU_DISCOVER, RFC 791 3.1)."""
        entry = self._prefix.get(dst)
        if entry is None:  # a routed destination without its own entry
            gateway = self.routes.gateway
            if gateway is not None and not self.routes.on_link(dst):
                entry = self._prefix.get(gateway)
        now = self._clock()
        n = len(payload)
        if n > self.mtu - 20:
            self._tx_drop("too-big")
            return
        hdr = build_header(self.address, dst, protocol, n, next(self._ident), ttl=self.ttl,
                           tos=tos, dont_fragment=df)
        if entry is not None and now < entry[1]:
            self.frames_out += 1
            self._transmit(entry[0] + hdr + payload)
            return
        self._send_slow(dst, protocol, hdr + payload, now)

    def send_gso(self, dst: bytes, protocol: int, payload: Buffer, gso_size: int) -> bool:
        """Send one TCP super-segment (up to 64 KiB) that the device cuts into
        ``gso_size``-byte segments (DESIGN.md trap 3).  False, nothing sent,
        when the device cannot (``transmit_gso`` unset) or the next hop is not
        in the fast-path cache: the caller then sends MTU-sized segments."""
        transmit_gso = self.transmit_gso
        entry = self._prefix.get(dst)
        if transmit_gso is None or entry is None or self._clock() >= entry[1]:
            return False
        if self._corked:  # the wire order: what the cork holds goes first
            self._release_corked()
        hdr = build_header(self.address, dst, protocol, len(payload), next(self._ident),
                           ttl=self.ttl)
        self.frames_out += 1
        parts = self.transmit_gso_parts
        if parts is not None:  # no copy of the 64 KB payload
            parts(entry[0] + hdr, payload, gso_size)
        else:
            transmit_gso(entry[0] + hdr + payload, gso_size)
        return True

    def send_many(self, dst: bytes, protocol: int, payloads: Iterable[Buffer]) -> None:
        """Several payloads to one destination, handed to the device in one call."""
        entry = self._prefix.get(dst)
        now = self._clock()
        if entry is None or now >= entry[1]:
            for p in payloads:
                self.send(dst, protocol, p)
            return
        prefix, src, ttl, ident = entry[0], self.address, self.ttl, self._ident
        limit = self.mtu - 20
        # The headers differ only in total length and identification: sum the
        # constant words once, add those two per packet and fold (the header
        # checksum of RFC 791 3.1 is an RFC 1071 ones' complement sum, i.e. a
        # sum modulo 0xFFFF); the bytes equal build_header()'s.
        const = (0x4500 + FLAG_DF + (ttl << 8) + protocol + int.from_bytes(src, "big")
                 + int.from_bytes(dst, "big") + 20)
        pack = _IP_HEADER.pack
        frames = []
        for p in payloads:
            n = len(p)
            if n > limit:
                self._tx_drop("too-big")
                continue
            i = next(ident) & 0xFFFF
            s = (const + n + i) % 0xFFFF
            frames.append(b"".join((prefix, pack(0x45, 0, 20 + n, i, FLAG_DF, ttl, protocol,
                                                 0xFFFF - s if s else 0, src, dst), p)))
        self.frames_out += len(frames)
        self._transmit_many(frames)

    def cork(self) -> None:
        """Hold the frames sent from now on until the matching :meth:`uncork`
        (calls nest) and hand them to the device in one ``transmit_many``
        (one sendmmsg for the frames of every connection a receive batch or
        a drain touched; Linux's MSG_MORE / TCP_CORK idea at the link).  The
        frames, their order (a GSO send first releases what is held) and
        every counter are those of the uncorked path; only the device calls
        change.  At most :data:`CORK_MAX` frames wait.  A held frame is not
        stamped as sent (``rxtime.SENT``: only devices on the loop's clock
        stamp; the TCP driver then takes the time before its transmit)."""
        self._corks += 1
        if self._corks == 1:
            self._transmit = self._cork_one
            self._transmit_many = self._cork_many

    def uncork(self) -> None:
        """End one :meth:`cork`; the outermost sends what is held."""
        self._corks -= 1
        if self._corks > 0:
            return
        self._corks = 0
        self._transmit = self._device_one
        self._transmit_many = self._device_many
        if self._corked:
            self._release_corked()

    def _cork_one(self, frame: bytes) -> None:
        corked = self._corked
        corked.append(frame)
        if len(corked) >= CORK_MAX:
            self._release_corked()

    def _cork_many(self, frames: Sequence[bytes]) -> None:
        corked = self._corked
        corked.extend(frames)
        if len(corked) >= CORK_MAX:
            self._release_corked()

    def _release_corked(self) -> None:
        frames = self._corked
        self._corked = []
        if len(frames) == 1:
            self._device_one(frames[0])
        else:
            self._device_many(frames)

    def tcp_encoder(self, dst: bytes) -> SegmentEncoder:
        """A TCP segment encoder from our address to ``dst`` with our TTL,
        for :meth:`send_tcp_many` (one per batch of segments).  One encoder
        per destination is kept and handed out again, reset (it forgets the
        options objects it has seen, as a new one would): its per-address
        sums are computed once, not per batch."""
        enc = self._encoders.get(dst)
        if enc is None or enc.src_ip != self.address or enc.ttl != self.ttl:
            if len(self._encoders) >= _ENCODER_CACHE_MAX:
                self._encoders.clear()
            enc = self._encoders[dst] = SegmentEncoder(self.address, dst, ttl=self.ttl)
        else:
            enc.reset()
        return enc

    def send_tcp_many(self, dst: bytes, segments: Sequence[TcpSegment],
                      encoder: SegmentEncoder) -> None:
        """The TCP send fast path: several segments to ``dst``, each framed
        as Ethernet + IPv4 + TCP with one ``struct.pack`` per segment
        (:meth:`SegmentEncoder.encode_ipv4`), handed to the device in one
        call.  Same bytes and the same fallbacks (unresolved next hop, no
        route, too big) as :meth:`send` with ``encoder.encode(seg)``.
        ``encoder`` comes from :meth:`tcp_encoder`."""
        entry = self._prefix.get(dst)
        now = self._clock()
        if entry is None or now >= entry[1] or encoder.dst_ip != dst \
                or encoder.src_ip != self.address or encoder.ttl != self.ttl:
            for seg in segments:
                self.send(dst, PROTO_TCP, encoder.encode(seg))
            return
        prefix = entry[0]
        frames = encoder.encode_ipv4_many(segments, self._ident, prefix)
        limit = self.mtu + len(prefix)  # the largest frame: 14 + MTU bytes of IPv4
        if frames and (len(frames[0]) if len(frames) == 1
                       else max(map(len, frames))) > limit:  # (callers cut to the MTU)
            fit = [frame for frame in frames if len(frame) <= limit]
            self._tx_drop("too-big", len(frames) - len(fit))
            frames = fit
        self.frames_out += len(frames)
        self._transmit_many(frames)

    def send_tcp_round(self, dst: bytes, items: Sequence[TcpSegment | GsoSegment],
                       encoder: SegmentEncoder) -> list[float] | None:
        """One TCP output round to ``dst`` in one device call
        (``transmit_round``): each item a segment that fits the MTU (framed
        as :meth:`send_tcp_many` frames it) or a super-segment ``(tcp_header,
        payload, gso_size)`` (as :meth:`send_gso` frames ``tcp_header +
        payload``, the payload not copied), in order, identification numbers
        drawn in that order: the frames of those calls one after the other
        (tests/unit/test_tcp_send_round.py).  Returns the device's send time
        of each item; None, nothing sent, when the device has no round path,
        the next hop is not in the fast-path cache or a segment does not
        fit the MTU (the caller then takes those calls, which drop it)."""
        transmit = self.transmit_round
        entry = self._prefix.get(dst)
        if transmit is None or entry is None or self._clock() >= entry[1] \
                or encoder.dst_ip != dst or encoder.src_ip != self.address \
                or encoder.ttl != self.ttl:
            return None
        if self._corked:  # the wire order: what the cork holds goes first
            self._release_corked()
        prefix, src, ttl, ident = entry[0], self.address, self.ttl, self._ident
        frames: list[Any] = []
        start = 0
        n = len(items)
        for i in range(n):
            item = items[i]
            if not isinstance(item, tuple):
                continue
            if start < i:  # (a run of segments: no super-segment in it)
                frames.extend(encoder.encode_ipv4_many(
                    items[start:i], ident, prefix))  # type: ignore[arg-type]
            start = i + 1
            tcp, payload, gso_size = item
            frames.append((prefix + build_header(src, dst, PROTO_TCP, len(tcp) + len(payload),
                                                 next(ident), ttl=ttl), tcp, payload, gso_size))
        if start < n:
            frames.extend(encoder.encode_ipv4_many(
                items[start:], ident, prefix))  # type: ignore[arg-type]
        limit = self.mtu + len(prefix)
        for f in frames:
            if isinstance(f, bytes) and len(f) > limit:  # (callers cut to the MTU)
                return None  # nothing sent: the caller's plain path drops it as too big
        self.frames_out += n
        return transmit(frames)

    def resolve(self, dst: bytes, callback: Callable[[bytes | None], None]) -> None:
        """Find the MAC of ``dst``'s next hop: ``callback(mac)`` once known
        (at once when cached), ``callback(None)`` when ARP gives up or there
        is no route.  The callback never runs re-entrantly from this call
        except for a cache hit."""
        now = self._clock()
        hop = self.routes.next_hop(dst)
        if hop is None:
            self._defer(lambda: callback(None))
            return
        mac = self.arp.lookup(hop, now)
        if mac is not None:
            callback(mac)
            return
        self._resolvers.setdefault(hop, []).append(callback)
        if self.arp.start(hop, now):
            self._count("arp_requests")
            self._send_arp(BROADCAST, warp.request(self.mac, self.address, hop))
            self._on_deadline(self.arp.next_deadline())

    def _notify_resolvers(self, ip: bytes, mac: bytes | None) -> None:
        for callback in self._resolvers.pop(ip, ()):
            try:
                callback(mac)
            except Exception:
                log.exception("ustack: ARP resolution callback failed")

    def announce(self) -> None:
        """Gratuitous ARP announcement of our address (RFC 5227 s.2.3)."""
        self._send_arp(BROADCAST, warp.announcement(self.mac, self.address))

    def next_deadline(self) -> float | None:
        return self.arp.next_deadline()

    def handle_timer(self, now: float) -> None:
        """ARP retransmissions and resolution failures due at ``now``."""
        result = self.arp.poll(now)
        for ip in result.retry:
            self._send_arp(BROADCAST, warp.request(self.mac, self.address, ip))
        for failed_ip, queued in result.failed:
            self._notify_resolvers(failed_ip, None)
            self._count("arp_failed")
            self._tx_drop("arp-unresolved", len(queued))
            for item in queued:
                self._report(item, errno.EHOSTUNREACH, ORIGIN_ARP)
        if result.retry or result.failed:
            self._on_deadline(self.arp.next_deadline())

    def counters(self) -> dict[str, int]:
        """``frames_in``, ``frames_out``, ``drops`` (received frames dropped)
        with ``drop.<reason>`` each, ``tx_drops`` with ``tx_drop.<reason>``,
        ARP and ICMP event counts."""
        out = {"frames_in": self.frames_in, "frames_out": self.frames_out,
               "frames_accepted": self.accepted, "drops": sum(self.drops.values()),
               "tx_drops": sum(self.tx_drops.values()),
               "arp_entries": len(self.arp), "arp_queue_drops": self.arp.queue_drops}
        out.update(self.stats)
        for reason, n in self.drops.items():
            out["drop." + reason] = n
        for reason, n in self.tx_drops.items():
            out["tx_drop." + reason] = n
        return out

    # ---------------------------------------------------------------- receive

    def receive(self, frames: Iterable[tuple[bytes, bool]]) -> None:
        """The device's receiver: handle a batch of frames.

        Fast path: a frame to our MAC carrying an IPv4 packet without options
        to our address, unfragmented, from a valid source, of a registered
        protocol other than ICMP, whose checksums hold (or that is
        ``trusted``), goes to its handler after one ``struct`` unpack of the
        Ethernet and IPv4 headers (:data:`_ETH_IP_FAST`).  Those are exactly
        the frames the general path (:meth:`_receive_one`) accepts without an
        option, ICMP or broadcast branch, and the fast path hands the handler
        the same arguments; any other frame takes the general path from its
        first check, so drop reasons and counters do not change
        (tests/unit/test_net_ip_fast.py compares both on random frames).

        A :class:`~ustack.link.rxtime.StampedBatch` (``times``): while frame
        ``i`` is handled ``rxtime.CURRENT`` is its arrival time, cleared at
        the end, as iterating the batch would do (set here, by index: the
        batch's interpreted ``__iter__`` was a generator resumed per frame).
        """
        if not isinstance(frames, StampedBatch):
            self._receive_frames(frames if isinstance(frames, list) else list(frames), None)
            return
        try:
            self._receive_frames(frames, frames.times)
        finally:
            _ARRIVAL.t = None

    def _receive_frames(self, frames: list[tuple[bytes, bool]],
                        stamps: list[float] | None) -> None:
        """:meth:`receive`'s loop; ``stamps``: the arrival times to set."""
        # (our MAC is unicast: a broadcast one would make TCP "not unicast";
        # no 6-byte destination equals b"")
        mac = self.mac if self.fast_receive and self.mac != BROADCAST else b""
        address = self.address
        ours = self._ours
        handlers = self._handlers
        sum16 = _sum16
        unpack = _ETH_IP_FAST.unpack_from
        arrival = _ARRIVAL
        n = len(frames)
        if stamps is not None and len(stamps) < n:
            n = len(stamps)  # (zip's rule: the shorter one)
        # (the unpacked fields typed: compiled, the comparisons below are
        # native int and bytes operations instead of generic object ones)
        dst_mac: bytes
        ethertype: bytes
        vihl: int
        total: int
        frag: int
        proto: int
        src: bytes
        dst: bytes
        for i in range(n):
            frame, trusted = frames[i]
            if stamps is not None:
                arrival.t = stamps[i]
            self.frames_in += 1
            try:
                size = len(frame)
                if size >= 34:
                    dst_mac, ethertype, vihl, total, frag, proto, src, dst = unpack(frame)
                    if (dst_mac == mac and ethertype == _ETH_IPV4 and vihl == 0x45
                            and 20 <= total <= size - 14 and dst == address
                            and not frag & 0x3FFF and src[0] < 224 and src != _ZERO_IP
                            and src not in ours):
                        entry = handlers.get(proto)
                        if entry is not None:
                            view = memoryview(frame)
                            if sum16 is not None:
                                ip_ok = not sum16(view[14:34]) % 0xFFFF
                            else:
                                ip_ok = not int.from_bytes(frame[14:34], "big") % 0xFFFF
                            if ip_ok:
                                handler, verify = entry
                                if not verify or trusted:
                                    ok = True
                                elif sum16 is not None:
                                    # _ip_input's one-call check (no IP options)
                                    ok = not (sum16(view[26:14 + total]) + proto + total
                                              - 20) % 0xFFFF
                                else:
                                    ok = _transport_sum_ok(src, dst, proto,
                                                           view[34:14 + total])
                                if ok:
                                    dropped = handler(src, dst, view[34:14 + total], trusted)
                                    if dropped is None:
                                        self.accepted += 1
                                    else:
                                        self._drop(dropped)
                                    continue
                self._receive_one(frame, trusted)
            except ParseError as exc:
                self._drop(exc.reason)
            except Exception:  # a bug below must not take the receive path down
                self._drop("internal-error")
                log.exception("ustack: error handling a received frame (dropped)")

    def _receive_one(self, frame: bytes, trusted: bool) -> None:
        """The general receive path of one frame (raises ParseError to drop)."""
        dst_mac = frame[:6]
        if dst_mac != self.mac and dst_mac != BROADCAST:
            if len(frame) < 14:
                raise ParseError("eth-truncated")
            self._drop("eth-not-ours")
            return
        ethertype = frame[12:14]
        if ethertype == _ETH_IPV4:
            self._ip_input(frame, trusted)
        elif ethertype == _ETH_ARP:
            self._arp_input(frame)
        elif len(frame) < 14:
            raise ParseError("eth-truncated")
        else:
            self._drop("eth-unknown-type")

    def _ip_input(self, frame: bytes, trusted: bool) -> None:
        n = len(frame) - 14
        if n < 20:
            raise ParseError("ip-truncated")
        vihl, _tos, total, _ident, frag, _ttl, proto, _csum, src, dst = \
            _IP_HEADER.unpack_from(frame, 14)
        if vihl != 0x45:
            if vihl >> 4 != 4:
                raise ParseError("ip-bad-version")
            if vihl & 0x0F < 5:
                raise ParseError("ip-bad-ihl")
        hlen = (vihl & 0x0F) << 2
        if hlen > n:
            raise ParseError("ip-truncated")
        if total < hlen:
            raise ParseError("ip-bad-length")
        if total > n:
            raise ParseError("ip-truncated")
        if int.from_bytes(frame[14:14 + hlen], "big") % 0xFFFF:
            raise ParseError("ip-bad-checksum")
        if dst not in self._ours:
            raise ParseError("ip-not-ours")
        if hlen > 20:
            bad = ip_options_error(frame[34:14 + hlen])
            if bad is not None:
                raise ParseError(bad)  # dropped, never answered (Linux ip_rcv_options)
        if proto == PROTO_TCP and (dst != self.address or frame[:6] == BROADCAST):
            # TCP is unicast only: Linux tcp_v4_rcv discards pkt_type != PACKET_HOST
            # and ip_route_input refuses broadcast/multicast for TCP (RFC 1122 4.2.3.10)
            raise ParseError("tcp-not-unicast")
        if frag & 0x3FFF:
            raise ParseError("ip-fragment")  # no reassembly (yet)
        if src[0] >= 224 or src in self._ours or src == _ZERO_IP and proto != PROTO_UDP:
            raise ParseError("ip-bad-source")
        view = memoryview(frame)
        payload = view[14 + hlen:14 + total]
        if proto == PROTO_ICMP:
            self._icmp_input(src, dst, payload, frame, hlen, trusted)
            return
        entry = self._handlers.get(proto)
        if entry is None:
            self._drop("ip-unknown-protocol")
            if dst == self.address:
                self._send_icmp_error(src, wicmp.TYPE_DEST_UNREACH, wicmp.CODE_PROTO_UNREACH,
                                      frame[14:14 + total])
            return
        handler, verify = entry
        if verify and not trusted:
            if hlen == 20 and _sum16 is not None:
                # _transport_sum_ok() in one C call: without IP options the
                # pseudo-header's addresses (frame[26:34]) sit right before the
                # segment, so one sum covers both (RFC 1071: the words are
                # the same, only grouped differently)
                ok = not (_sum16(view[26:14 + total]) + proto + total - 20) % 0xFFFF
            else:
                ok = _transport_sum_ok(src, dst, proto, payload)
            if not ok:
                raise ParseError(_PROTO_NAMES.get(proto, f"proto{proto}") + "-bad-checksum")
        dropped = handler(src, dst, payload, trusted)
        if dropped is None:
            self.accepted += 1
        else:  # the protocol dropped it: one reason, like the checks above
            self._drop(dropped)

    # -------------------------------------------------------------------- ICMP

    def _icmp_input(self, src: bytes, dst: bytes, payload: memoryview, frame: bytes, hlen: int,
                    trusted: bool) -> None:
        msg = wicmp.IcmpMessage.decode(payload, verify_checksum=not trusted)
        typ = msg.type
        if typ == wicmp.TYPE_ECHO_REQUEST:
            if dst != self.address:
                self._drop("icmp-echo-broadcast")  # as Linux, icmp_echo_ignore_broadcasts
                return
            if self.reply_to_ping:
                self._count("icmp_echo_replies")
                self.send(src, PROTO_ICMP, wicmp.echo_reply_for(msg))
            self.accepted += 1
            return
        if typ == wicmp.TYPE_ECHO_REPLY:
            self._count("icmp_echo_replies_in")
            if self._echo_reply_handler is not None:
                self._echo_reply_handler(src, wicmp.IcmpEcho.from_message(msg))
            self.accepted += 1
            return
        if typ in wicmp.ERROR_TYPES:
            self._icmp_error_input(src, msg)
            return
        self._drop("icmp-unhandled-type")

    def _icmp_error_input(self, reporter: bytes, msg: wicmp.IcmpMessage) -> None:
        err = wicmp.IcmpError.from_message(msg)
        quoted = err.quoted
        if quoted.src != self.address:
            raise ParseError("icmp-error-not-ours")
        meaning = errno_for(err.type, err.code)
        if meaning is None:
            self._drop("icmp-error-ignored")
            return
        handler = self._error_handlers.get(quoted.protocol)
        if handler is None:
            self._drop("icmp-error-unhandled")
            return
        self._count("icmp_errors_in")
        handler(IpError(meaning[0], meaning[1], ORIGIN_ICMP, quoted.protocol, quoted.src,
                        quoted.dst, quoted.transport, err.type, err.code, reporter, err.mtu))
        self.accepted += 1

    def send_icmp_error(self, dst: bytes, typ: int, code: int, original: Buffer) -> None:
        """An ICMP error about ``original`` (its IPv4 header + at least 8
        bytes), rate-limited: for transports (UDP's port unreachable)."""
        self._send_icmp_error(dst, typ, code, original)

    def _send_icmp_error(self, dst: bytes, typ: int, code: int, original: Buffer) -> None:
        """An ICMP error about ``original`` (never about ICMP errors or
        broadcasts, RFC 1122 s.3.2.2), rate-limited."""
        if not self._icmp_limiter.allow(self._clock()):
            self._count("icmp_errors_ratelimited")
            return
        self._count("icmp_errors_out")
        self.send(dst, PROTO_ICMP, wicmp.build_error(typ, code, original))

    # --------------------------------------------------------------------- ARP

    def _arp_input(self, frame: bytes) -> None:
        pkt = warp.ArpPacket.decode(memoryview(frame)[14:])
        now = self._clock()
        sender_ip, sender_mac = pkt.sender_ip, pkt.sender_mac
        if sender_ip == self.address:
            if sender_mac != self.mac:
                self._count("arp_conflicts")
                log.warning("ustack: another host (%s) claims our address",
                            sender_mac.hex(":"))
            raise ParseError("arp-own-address")
        if sender_mac[0] & 1:
            raise ParseError("arp-bad-sender")
        for_us = pkt.target_ip == self.address
        released: list[_Queued] | None = None
        if sender_ip != _ZERO_IP:
            if for_us:
                released = self.arp.learn(sender_ip, sender_mac, now)
            else:
                released = self.arp.update(sender_ip, sender_mac, now)
            if released is not None:
                self._neighbour_changed(sender_ip)
                if self._resolvers:
                    self._notify_resolvers(sender_ip, sender_mac)
        if for_us and pkt.op == warp.OP_REQUEST:
            self._count("arp_replies")
            self._send_arp(sender_mac, warp.reply(self.mac, self.address, pkt))
        if not for_us and released is None:
            self._drop("arp-not-ours")
        else:
            self.accepted += 1
        if released:
            prefix = eth_header(sender_mac, self.mac, ETHERTYPE_IPV4)
            self.frames_out += len(released)
            self._transmit_many([prefix + q.packet for q in released])
            self._on_deadline(self.arp.next_deadline())

    def _send_arp(self, dst_mac: bytes, pkt: warp.ArpPacket) -> None:
        frame = eth_header(dst_mac, self.mac, ETHERTYPE_ARP) + pkt.encode()
        self.frames_out += 1
        self._transmit(frame + b"\x00" * (MIN_FRAME_LEN - len(frame)))

    def _neighbour_changed(self, ip: bytes) -> None:
        # the Ethernet header cache is keyed by destination; a neighbour that
        # moved invalidates every destination routed through it (rare: clear all)
        if self._prefix:
            self._prefix.clear()

    # ------------------------------------------------------------------- send

    def _send_slow(self, dst: bytes, protocol: int, packet: bytes, now: float) -> None:
        if dst in self._ours and dst != self.address:
            self.frames_out += 1
            self._transmit(self._broadcast_prefix + packet)
            return
        hop = self.routes.next_hop(dst)
        if hop is None:
            self._tx_drop("no-route")
            item = _Queued(dst, protocol, packet)
            self._defer(lambda: self._report(item, errno.ENETUNREACH, ORIGIN_ROUTE))
            return
        mac = self.arp.lookup(hop, now)
        if mac is not None:
            cached = self._prefix.get(hop)
            if cached is not None and now < cached[1]:
                prefix = cached[0]
            else:
                prefix = eth_header(mac, self.mac, ETHERTYPE_IPV4)
            until = self.arp.valid_until(hop)
            if hop != dst:
                self._prefix[hop] = (prefix, until)  # what every routed destination shares
            # bounded: a flood of SYNs from random routed sources must not grow
            # one entry per source (on-link ones are bounded by the subnet)
            if hop == dst or len(self._prefix) < _PREFIX_CACHE_MAX:
                self._prefix[dst] = (prefix, until)
            if self.arp.needs_refresh(hop, now):
                self._send_arp(mac, warp.request(self.mac, self.address, hop))
            self.frames_out += 1
            self._transmit(prefix + packet)
            return
        self._prefix.pop(dst, None)
        if self.arp.enqueue(hop, _Queued(dst, protocol, packet), now):
            self._count("arp_requests")
            self._send_arp(BROADCAST, warp.request(self.mac, self.address, hop))
            self._on_deadline(self.arp.next_deadline())

    def _report(self, item: _Queued, err: int, origin: str) -> None:
        handler = self._error_handlers.get(item.protocol)
        if handler is None:
            return
        hlen = (item.packet[0] & 0x0F) * 4
        try:
            handler(IpError(err, True, origin, item.protocol, self.address, item.dst,
                            bytes(item.packet[hlen:hlen + 8])))
        except Exception:
            log.exception("ustack: error handler for protocol %d failed", item.protocol)

    # --------------------------------------------------------------- counters

    def reachable(self, dst: bytes, now: float) -> bool:
        """Whether ``dst`` has a route and its next hop did not just fail ARP
        (a listener keeps no request state for a source it cannot answer)."""
        hop = self.routes.next_hop(dst)
        return hop is not None and not self.arp.recently_failed(hop, now)

    def _drop(self, reason: str, n: int = 1) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + n

    def _tx_drop(self, reason: str, n: int = 1) -> None:
        self.tx_drops[reason] = self.tx_drops.get(reason, 0) + n

    def _count(self, name: str) -> None:
        self.stats[name] = self.stats.get(name, 0) + 1
