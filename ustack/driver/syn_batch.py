"""The SYN channel's batch path: a whole ring's worth of flood SYNs answered
with cookie SYN-ACKs by array arithmetic (numpy), Python touching each SYN
only for one hash call and one table lookup (issue 13).

Under a SYN flood nearly every frame on the SYN channel is a 74-byte
Ethernet + IPv4 + TCP SYN in Linux's option layout (``mss, sackOK, TS, nop,
wscale``) from a routed source, to a listener whose SYN queue is full.  For
rows of that shape :meth:`SynBatch.process` does at once, over the array,
what the plain path does per frame (``IpLayer.receive`` -> ``_ip_input`` ->
``TcpTable.ip_input`` -> ``_syn_flood_path`` -> ``IpLayer.send``): the same
checks (Ethernet destination and type; IPv4 version, length, fragment,
protocol, header checksum, destination and source address rules; the TCP
checksum of untrusted frames; flags, data offset and option layout), the
same cookie (:mod:`ustack.tcp.syncookies`: :func:`hash_input`,
:meth:`CookieJar.digest`, :func:`cookie_of`, :func:`encode_timestamp` and
``ts_val``, spelled over arrays), the same counters, and the same SYN-ACK
bytes (IP identification from the IP layer's counter, in order).
tests/unit/test_syn_batch.py compares both paths byte for byte.

Every row that is not of that shape, or whose answer needs anything but the
gateway's cached Ethernet header (an on-link source, an unresolved
gateway), or whose listener is not answering with cookies, or that matches
a connection or request sock, is handed back to go the plain path.

What a wakeup may spend: :class:`CpuShare` (SYN work gets at most a share
of the stack thread's CPU while other work is waiting, all of it otherwise).
Which SYNs go on when there are more: :meth:`SynBatch.process` (a client's
retransmission, then a source with a connection lately, :class:`ProvenPeers`,
then the newest).
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable, Iterable
from itertools import islice
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from ustack.tcp.listener import syn_window
from ustack.tcp.syncookies import COOKIE_BITS, COOKIE_MASK, TS_MASK, TS_SACK, minute

if TYPE_CHECKING:
    from ustack.driver.tcp_table import TcpTable
    from ustack.net.ipv4 import IpLayer

#: Ethernet (14) + IPv4 without options (20) + TCP with Linux's SYN options (40)
FRAME_LEN: Final = 74
#: seconds a shed SYN or a cookie keeps the SYN channel under pressure
#: (SynBatch.pressured)
PRESSURE_WINDOW: Final = 1.0


# The optional C steps (ustack/driver/_synbatch.c, built by setup.py when a
# compiler is there), else None: then numpy does them (same rows, bytes and
# counters; USTACK_NO_ACCEL=1 forces numpy).
try:
    from ustack.driver import _synbatch as _c_steps
except ImportError:
    _c_steps = None  # type: ignore[assignment]
_ACCEL: Any = None if os.environ.get("USTACK_NO_ACCEL", "") not in ("", "0") else _c_steps
_U32: Final = 0xFFFFFFFF
#: the SYN's option bytes at 54.. that are fixed (kind, length), by offset
_OPTION_BYTES = ((54, 2), (55, 4), (58, 4), (59, 2), (60, 8), (61, 10), (70, 1), (71, 3),
                 (72, 3))
#: constant option words of our SYN-ACK (as tcp_table's fast path)
_SYNACK_OPT_CONST: Final = 0x0204 + 0x0402080A + 0x01030300
_PSEUDO_TCP_SYNACK: Final = 6 + 40


def _fixed_bytes(mac: bytes, address: bytes) -> tuple[Any, Any]:
    """(values, mask) over the 74 bytes: the bytes a flood SYN to
    ``mac``/``address`` must have, and 0xFF where they matter: Ethernet
    destination and type; IPv4 version/IHL, total length 60, no fragment
    offset's low byte, protocol 6, destination; TCP data offset 10 words and
    flags SYN only; the option kinds and lengths."""
    fixed = {i: b for i, b in enumerate(mac)}
    fixed.update({12: 0x08, 13: 0x00, 14: 0x45, 16: 0, 17: 60, 21: 0, 23: 6, 46: 0xA0,
                  47: 0x02})
    fixed.update({30 + i: b for i, b in enumerate(address)})
    fixed.update(dict(_OPTION_BYTES))
    values = np.zeros(FRAME_LEN, dtype=np.uint8)
    care = np.zeros(FRAME_LEN, dtype=np.uint8)
    for i, b in fixed.items():
        values[i] = b
        care[i] = 0xFF
    return values, care


def _distinct(values: Any) -> list[int]:
    """The distinct values of a non-empty array (a flood hits one port)."""
    low, high = int(values.min()), int(values.max())
    return [low] if low == high else [int(v) for v in np.unique(values)]


def _be16(rows: Any, at: int) -> Any:
    return (rows[:, at].astype(np.uint64) << 8) | rows[:, at + 1]


def _be32(rows: Any, at: int) -> Any:
    return np.ascontiguousarray(rows[:, at:at + 4]).view(">u4")[:, 0].astype(np.uint64)


def _word_sum(rows: Any, start: int, stop: int) -> Any:
    """Sum of the big-endian 16-bit words of ``rows[:, start:stop]``."""
    return rows[:, start:stop].view(">u2").sum(axis=1, dtype=np.uint64)


def _put32(out: Any, at: int, values: Any) -> None:
    out[:, at:at + 4] = values.astype(">u4").view(np.uint8).reshape(-1, 4)


def _put16(out: Any, at: int, values: Any) -> None:
    out[:, at:at + 2] = values.astype(">u2").view(np.uint8).reshape(-1, 2)


class RetransmitFilter:
    """Which SYNs were dropped here lately: two generations of a
    ``2**bits``-slot table indexed by a multiplicative hash of (source,
    ports, sequence number), each generation ``period`` seconds.  A slot
    holds a 16-bit fingerprint of the SYN it saw last (from other bits of
    the hash), so a table filled by a big flood still says "no" to a new
    SYN but for 1 in 65535 of the filled slots (a plain bit said "yes" to a
    third of a 100k/s flood, and the flood crowded the retransmissions out;
    8-bit fingerprints still let ~130 flood SYNs a second through as
    "retransmissions", each costing a wakeup over its CPU share a batch
    call); a false positive only moves a SYN up the queue, a later SYN in
    the same slot makes a retransmission look new.  Memory is fixed
    (2 x 2 x 2**bits bytes)."""

    def __init__(self, bits: int = 20, period: float = 2.0) -> None:
        self.bits = bits
        self.period = period
        self._tables = [np.zeros(1 << bits, dtype=np.uint16),
                        np.zeros(1 << bits, dtype=np.uint16)]
        self._since = 0.0

    def keys(self, src: Any, sport: Any, dport: Any, seq: Any) -> Any:
        """Per SYN: its slot times 65536 plus its fingerprint (1..65535)."""
        # Fibonacci hashing of a 64-bit mix of the fields (Knuth 6.4)
        mixed = ((src << np.uint64(32)) | seq) ^ ((sport << np.uint64(16) | dport)
                                                  * np.uint64(0x9E3779B97F4A7C15))
        mixed *= np.uint64(0xBF58476D1CE4E5B9)
        slot = mixed >> np.uint64(64 - self.bits)
        tag = (mixed >> np.uint64(48 - self.bits)) & np.uint64(0xFFFF)
        tag |= tag == 0  # 0 marks an empty slot
        result: Any = (slot << np.uint64(16)) | tag
        return result

    def _rotate(self, now: float) -> None:
        elapsed = now - self._since
        if elapsed >= self.period:
            old, new = self._tables
            old.fill(0)
            if elapsed >= 2 * self.period:  # both generations are too old
                new.fill(0)
            self._tables = [new, old]  # the older generation is reused as the new one
            self._since = now

    def seen(self, keys: Any, now: float) -> Any:
        self._rotate(now)
        a, b = self._tables
        slot = keys >> np.uint64(16)
        tag = (keys & np.uint64(0xFFFF)).astype(np.uint16)
        result: Any = (a[slot] == tag) | (b[slot] == tag)
        return result

    def add(self, keys: Any, now: float) -> None:
        self._rotate(now)
        self._tables[1][keys >> np.uint64(16)] = (keys & np.uint64(0xFFFF)).astype(np.uint16)


class ProvenPeers:
    """Source addresses we had a connection with lately: those that
    completed a handshake with one of our listeners (:meth:`note`, from
    ``TcpTable.on_passive_open``) and the remote addresses of the
    connection table, sampled at most every ``refresh`` seconds (which also
    makes the noted ones count); remembered for ``ttl`` seconds, at most
    ``limit`` of them (the oldest forgotten first).

    Under a SYN flood their SYNs go before those of unknown sources, as
    Linux's ``tcp_conn_request`` keeps SYNs from peers ``tcp_peer_is_proven``
    (a cached RTT from an earlier connection) when its SYN queue is nearly
    full.  A spoofed source cannot get here: it would have to complete a
    handshake, which needs our SYN-ACK."""

    def __init__(self, ttl: float = 600.0, refresh: float = 0.25, limit: int = 16384) -> None:
        self.ttl = ttl
        self.refresh = refresh
        self.limit = limit
        self._seen: dict[bytes, float] = {}
        self._array: Any = np.zeros(0, dtype=np.uint64)
        self._sampled = -float("inf")

    def update(self, addresses: Iterable[bytes], now: float) -> None:
        """Note ``addresses`` (4-byte IPv4) as seen at ``now``; forget the stale."""
        seen = self._seen
        for addr in addresses:
            seen.pop(addr, None)  # re-inserted last: dict order is age order
            seen[addr] = now
        horizon = now - self.ttl
        excess = len(seen) - self.limit
        drop: list[bytes] = []
        for addr, at in seen.items():  # oldest first
            if len(drop) >= excess and at >= horizon:
                break
            drop.append(addr)
        for addr in drop:
            del seen[addr]
        self._array = np.sort(np.frombuffer(b"".join(seen), dtype=">u4").astype(np.uint64))

    def note(self, addr: bytes, now: float) -> None:
        """``addr`` completed a handshake at ``now`` (counts from the next
        :meth:`sample`: a short connection is proven all the same)."""
        seen = self._seen
        seen.pop(addr, None)
        seen[addr] = now

    def sample(self, conns: Iterable[tuple[int, bytes, int]], now: float) -> None:
        """:meth:`update` from a connection table's keys (local port,
        remote address, remote port), at most every ``refresh`` seconds and
        from at most ``limit`` of them (a big table costs no more)."""
        if now - self._sampled >= self.refresh:
            self._sampled = now
            self.update({k[1] for k in islice(conns, self.limit)}, now)

    def mask(self, src: Any) -> Any:
        """Which of ``src`` (uint64 addresses) are proven."""
        arr = self._array
        if not len(arr):
            return np.zeros(len(src), dtype=bool)
        pos = np.minimum(np.searchsorted(arr, src), len(arr) - 1)
        result: Any = arr[pos] == src
        return result

    def __len__(self) -> int:
        return len(self._seen)


class CpuShare:
    """How many SYNs a wakeup of the SYN channel may take on, by CPU time
    (the thread's: ``time.thread_time``), not by count.

    While other work waits (``busy``: established traffic arrived since the
    previous wakeup), a wakeup earns ``share / (1 - share)`` of the CPU the
    thread spent on everything else since then, less what earlier wakeups
    spent beyond what they earned (a debt of at most ``max_debt`` seconds);
    with less than half a ``quantum`` to spend it reads no SYN at all (the
    ring holds them).  So SYNs get about ``share`` of the CPU while the loop
    has other work.  With nothing else to do a wakeup spends ``quantum``,
    owes nothing, and the wakeups follow each other: SYNs get all of it.
    Rows are turned into seconds by the cost per row measured over earlier
    wakeups of at least ``min_rows`` rows (fixed and shedding costs
    included, so the estimate settles where a wakeup costs its allowance)."""

    def __init__(self, share: float = 0.3, quantum: float = 0.001, *, min_rows: int = 32,
                 max_rows: int = 4096, cost: float = 3e-6, max_debt: float = 0.02,
                 clock: Callable[[], float] = time.thread_time) -> None:
        if not 0 < share < 1:
            raise ValueError(f"share must be between 0 and 1, not {share}")
        self.share = share
        self.quantum = quantum
        self.min_rows = min_rows
        self.max_rows = max_rows
        #: CPU seconds per row taken on (EWMA over wakeups of >= min_rows rows)
        self.cost = cost
        self.max_debt = max_debt
        self.clock = clock
        self._last_end: float | None = None
        self._mark = 0.0
        self._earned = 0.0
        self._busy = False
        self.debt = 0.0
        self.allowance = quantum
        #: CPU seconds spent in SYN work and in the rest, since creation;
        #: wakeups that read no SYN to repay the debt
        self.spent = 0.0
        self.other = 0.0
        self.skipped = 0

    def start(self, busy: bool = True) -> int:
        """A wakeup's SYN work begins now: the rows it may take on (0: read
        none this time; then no :meth:`stop`)."""
        now = self.clock()
        other = now - self._last_end if self._last_end is not None else 0.0
        self.other += other
        earned = other * self.share / (1.0 - self.share)
        self._busy = busy
        if busy:
            credit = earned - self.debt
            if credit < 0.5 * self.quantum:
                self.debt = max(0.0, self.debt - earned)
                self._last_end = now
                self.skipped += 1
                return 0
            self.allowance = credit
        else:
            self.allowance = max(self.quantum, earned - self.debt)
        self._earned = earned
        self._mark = now
        return max(self.min_rows, min(self.max_rows, int(self.allowance / self.cost)))

    def aside(self) -> None:
        """SYN work done after a :meth:`start` that returned 0 (the lanes a
        wakeup over its share still answers): counted as spent, not as
        the other work that earns the share."""
        now = self.clock()
        if self._last_end is not None:
            self.spent += now - self._last_end
        self._last_end = now

    def left(self) -> float:
        """CPU seconds of this wakeup's allowance not spent yet."""
        return self.allowance - (self.clock() - self._mark)

    def stop(self, rows: int) -> None:
        """The wakeup's SYN work is done; it took on ``rows`` rows."""
        now = self.clock()
        spent = now - self._mark
        self.spent += spent
        if self._busy:
            self.debt = min(self.max_debt, max(0.0, self.debt + spent - self._earned))
        self._last_end = now
        if rows >= self.min_rows and spent > 0:
            self.cost += 0.25 * (spent / rows - self.cost)


class SynBatch:
    """Answers flood SYNs in batches for one stack (its IP layer and TCP table)."""

    def __init__(self, ip: IpLayer, table: TcpTable,
                 transmit_rows: Callable[[Any], None]) -> None:
        self.ip = ip
        self.table = table
        #: sends the rows of an ``(n, 74)`` uint8 array as frames
        #: (``AfPacketDevice.send_fixed``)
        self.transmit_rows = transmit_rows
        self._template: tuple[Any, Any, Any] | None = None
        #: the SYNs dropped over budget, to tell their retransmissions
        self.retransmits = RetransmitFilter()
        #: sources we had connections with lately, to tell real clients
        self.proven = ProvenPeers()
        table.on_passive_open = self.proven.note
        #: what a wakeup may spend (Stack._on_syn_readable asks it)
        self.cpu = CpuShare()
        #: rows dropped over budget; rows kept because they were retransmissions
        self.shed = 0
        self.resent_kept = 0
        #: rows kept over budget because their source was proven
        self.proven_kept = 0
        #: rows answered here, and rows handed back to the plain path
        self.answered = 0
        self.handed_back = 0
        #: when this batch last shed a SYN or answered one with a cookie
        self.pressure_at = -float("inf")
        #: frames for the plain path a wakeup's allowance did not cover,
        #: first in line at the next wakeup (:meth:`limit`); at most
        #: ``hold_limit`` of them
        self.held: list[tuple[bytes, bool]] = []
        self.hold_limit = 512
        #: the most held under a flood's pressure
        self.pressed_hold = 64
        #: the C steps (ustack.driver._synbatch) or None (numpy)
        self.accel: Any = _ACCEL

    def process(self, rows: Any, trusted: Any, now: float,
                budget: int | None = None) -> list[tuple[bytes, bool]]:
        """Answer every row of ``rows`` (``(n, 74)`` uint8 frames, ``trusted``
        their checksum flags) that is a flood SYN; return the others as
        ReceivedFrames for ``IpLayer.receive``.

        ``budget``: go on with at most that many rows; the rest are dropped
        before any check and counted (``tcp-syn-overload``,
        TcpExtListenDrops).  Which ones go on: first those that repeat a
        SYN dropped here in the last few seconds (same source, ports and
        sequence number: a client's retransmission,
        :class:`RetransmitFilter`; spoofed flood SYNs are never resent),
        then those from a source we had a connection with lately
        (:class:`ProvenPeers`), then the newest of the others."""
        n = len(rows)
        if n == 0:
            return []
        if budget is not None and n > budget:
            rows, trusted = self._shed(rows, trusted, budget, now)
            n = len(rows)
        ip = self.ip
        table = self.table
        ok = self._shape_ok(rows, trusted)
        gateway = ip.routes.gateway
        entry = ip._prefix.get(gateway) if gateway is not None else None
        if entry is None or ip._clock() >= entry[1] or table._closed:  # as IpLayer.send
            ok[:] = False
        cfg = table.config
        mode = cfg.syncookies
        if not mode or not (cfg.timestamps and cfg.sack and cfg.window_scaling):
            ok[:] = False
        src = _be32(rows, 26)
        sport = _be16(rows, 34)
        dport = _be16(rows, 36)
        if ok.any():
            # routed sources only: on-link ones need their own neighbour entry
            mask = ip.routes._mask
            ok &= (src & mask) != ip.routes._net
        listeners = table._listeners
        if ok.any():
            for port in _distinct(dport[ok]):
                listener = listeners.get(port)
                if listener is None or listener.accept_queue_full or (
                        mode != 2 and not listener.syn_queue_full):
                    ok &= dport != port
        fast = np.flatnonzero(ok)
        if len(fast):
            fast = self._not_in_tables(rows, fast, src, sport, dport)
        back = np.ones(n, dtype=bool)
        if len(fast):
            back[fast] = False
            assert entry is not None
            self._answer(rows[fast], src[fast], sport[fast], dport[fast], entry[0], now)
        slow_rows = np.flatnonzero(back)
        if len(slow_rows) > 1 and len(self.proven):
            # proven sources first: the caller may take only the first few
            # of these (limit), and a legitimate on-link client's SYN is here
            first = self.proven.mask(src[slow_rows])
            if first.any() and not first.all():
                slow_rows = np.concatenate((slow_rows[first], slow_rows[~first]))
        slow = slow_rows.tolist()
        self.handed_back += len(slow)
        if not slow:
            return []
        flags = trusted.tolist()
        return [(rows[i].tobytes(), bool(flags[i])) for i in slow]

    def take_ring(self, device: Any, limit: int, budget: int, now: float,
                  lanes_only: bool = False) -> tuple[Any, Any, bool] | None:
        """Read up to ``limit`` SYNs straight off ``device``'s receive ring
        and shed all but ``budget`` of them there (the C step
        ``ring_shed``: :meth:`_shed`'s order, filter writes and counters,
        but only the kept rows are copied out of the ring); the kept rows
        and their trusted flags, and whether it stopped before a frame of
        another size or direction (read that one with ``read_fixed``).
        ``lanes_only``: keep only retransmissions and proven sources, shed
        all others (a wakeup over its CPU share: those two lanes are few
        and are not made to wait for the share).  None without the C steps
        or a ring: then ``read_fixed`` and :meth:`process` with the budget
        do the same (and a wakeup over its share reads nothing)."""
        accel = self.accel
        ring_state = getattr(device, "ring_state", None) if accel is not None else None
        state = ring_state() if ring_state is not None else None
        if state is None:
            return None
        ring, slot, nslots, head, pkttype_at, trusted_bits = state
        rf = self.retransmits
        rf._rotate(now)
        self.proven.sample(self.table._conns, now)
        rows_b, flags_b, taken, odd, resent_kept, proven_kept = accel.ring_shed(
            ring, slot, nslots, head, limit, budget, pkttype_at, trusted_bits, rf._tables[0],
            rf._tables[1], rf.bits, self.proven._array, lanes_only)
        device.ring_taken(taken, taken * FRAME_LEN)
        kept = len(flags_b)
        if taken > kept:
            self._count_shed(taken - kept)
        self.resent_kept += resent_kept
        self.proven_kept += proven_kept
        rows = np.frombuffer(bytearray(rows_b), dtype=np.uint8).reshape(kept, FRAME_LEN)
        return rows, np.frombuffer(flags_b, dtype=bool), bool(odd)

    def limit(self, frames: list[tuple[bytes, bool]], budget: int,
              newest_first: bool = False) -> list[tuple[bytes, bool]]:
        """The first ``budget`` of :attr:`held` then ``frames`` (those bound
        for the plain path, ~100 us each), so SYNs of another shape, from
        on-link sources or to a listener whose SYN queue has room cannot
        buy a long plain-path wakeup.  The next ``hold_limit`` wait in
        :attr:`held` for the next wakeup (they are out of the ring: a
        legitimate burst, e.g. 32 connects at once to a listener with room,
        must not lose SYNs the wakeup's allowance did not cover, or every
        one of them waits for the client's 1 s retransmission, which comes
        in the same burst); only those beyond are dropped and counted as
        :meth:`process` drops over-budget rows.  ``newest_first`` (under a
        flood's pressure): ``frames`` before the held ones, as the batch
        keeps the newest SYNs (a client's retransmission comes in new, and
        proven sources lead ``frames``), so the held ones cannot make it
        wait behind them; the oldest are shed first, and at most
        ``pressed_hold`` wait (SYNs a flood's first wakeup found the SYN
        queue open for would otherwise take the plain path's ~100 us each
        for many wakeups after the queue filled)."""
        held = self.held
        if held:
            frames = frames + held if newest_first else held + frames
        if len(frames) <= budget:
            self.held = []
            return frames
        rest = frames[budget:]
        hold = min(self.hold_limit, self.pressed_hold) if newest_first else self.hold_limit
        over = len(rest) - hold
        if over > 0:
            self._count_shed(over)
            del rest[hold:]
        self.held = rest
        return frames[:budget]

    def pressured(self, now: float) -> bool:
        """Whether the SYN channel is under pressure, as a flood puts it:
        within the last PRESSURE_WINDOW seconds a SYN was shed here or a
        listener answered with a cookie (its SYN queue was full, or
        syncookies is 2).  Only then is SYN work held to its CPU share
        (:class:`CpuShare`): without pressure every SYN is one a listener
        with room in its SYN queue keeps a request for, as Linux's
        ``tcp_conn_request`` does for each, and a burst of legitimate
        connects (32 at once, bench/cps.py) is answered at once rather
        than a few SYNs per wakeup while the handshakes' ACKs keep the
        loop busy."""
        horizon = now - PRESSURE_WINDOW
        if self.pressure_at >= horizon:
            return True
        for listener in self.table._listeners.values():
            sent = listener.cookie_sent_at
            if sent is not None and sent >= horizon:
                return True
        return False

    def room(self) -> int:
        """Free slots of the listeners' SYN queues: the SYNs a wakeup
        without pressure goes on with whatever its CPU allowance (each
        gets a request sock; the first that finds its queue full puts the
        channel under pressure)."""
        free = 0
        for listener in self.table._listeners.values():
            free += max(0, listener.backlog - len(listener.requests))
        return free

    def _count_shed(self, n: int) -> None:
        self.pressure_at = self.table.now()
        ip = self.ip
        table = self.table
        ip.frames_in += n
        ip._drop("tcp-syn-overload", n)
        table.counters["tcp_syn_overload"] = table.counters.get("tcp_syn_overload", 0) + n
        table.mib["TcpExtListenDrops"] += n
        self.shed += n

    def _shed(self, rows: Any, trusted: Any, budget: int, now: float) -> tuple[Any, Any]:
        """``budget`` of the rows to go on (retransmissions first, then
        those from proven peers, then the newest); the others are dropped
        unexamined, counted and remembered (load shedding: checking a row
        costs about what answering it does)."""
        accel = self.accel
        if accel is not None:  # the same order and filter writes in one C call
            rf = self.retransmits
            rf._rotate(now)
            self.proven.sample(self.table._conns, now)
            kept, resent_kept, proven_kept = accel.shed(rows, budget, rf._tables[0],
                                                        rf._tables[1], rf.bits,
                                                        self.proven._array)
            self._count_shed(len(rows) - budget)
            self.resent_kept += resent_kept
            self.proven_kept += proven_kept
            index = np.frombuffer(kept, dtype=np.int32)
            return rows[index], trusted[index]
        src = _be32(rows, 26)
        keys = self.retransmits.keys(src, _be16(rows, 34), _be16(rows, 36), _be32(rows, 38))
        resent = self.retransmits.seen(keys, now)
        self.proven.sample(self.table._conns, now)
        proven = self.proven.mask(src) & ~resent
        rest = ~(resent | proven)
        order = np.concatenate((np.flatnonzero(resent)[::-1], np.flatnonzero(proven)[::-1],
                                np.flatnonzero(rest)[::-1]))
        keep = np.sort(order[:budget])
        shed = order[budget:]
        self.retransmits.add(keys[shed], now)
        self._count_shed(len(shed))
        self.resent_kept += int(resent[keep].sum())
        self.proven_kept += int(proven[keep].sum())
        return rows[keep], trusted[keep]

    def _shape_ok(self, rows: Any, trusted: Any) -> Any:
        """The checks of ``IpLayer.receive``/``_ip_input`` and of
        ``TcpTable._syn_flood_path``'s layout test, per row."""
        ip = self.ip
        template = self._template
        if template is None or template[0] != (ip.mac, ip.address):
            template = self._template = ((ip.mac, ip.address), *_fixed_bytes(ip.mac, ip.address))
        _, expect, care = template
        accel = self.accel
        if accel is not None:
            flags = accel.shape_ok(rows, trusted, expect, care, b"".join(ip._ours))
            return np.frombuffer(bytearray(flags), dtype=bool)
        ok = ~((rows ^ expect) & care).any(axis=1)
        ok &= (rows[:, 20] & 0x3F) == 0  # no fragment offset, no MF
        ok &= _word_sum(rows, 14, 34) % 0xFFFF == 0  # RFC 791 header checksum
        src = _be32(rows, 26)
        ok &= (rows[:, 26] < 224) & (src != 0)
        for ours in ip._ours:
            ok &= src != int.from_bytes(ours, "big")
        # RFC 9293 3.1: pseudo-header + segment sums to 0 mod 0xFFFF
        if not trusted.all():
            pseudo = (src >> 16) + (src & 0xFFFF) + (_word_sum(rows, 30, 34) + 6 + 40)
            ok &= trusted | ((pseudo + _word_sum(rows, 34, 74)) % 0xFFFF == 0)
        result: Any = ok
        return result

    def _not_in_tables(self, rows: Any, fast: Any, src: Any, sport: Any, dport: Any) -> Any:
        """``fast`` without the rows whose 4-tuple has a connection or a
        request sock (those take the plain path, as ``_syn_flood_path``).
        The rows whose source address has any are looked up one by one."""
        table = self.table
        conns = table._conns
        listeners = table._listeners
        ports = _distinct(dport[fast])
        if len(conns) + sum(len(listeners[p].requests) for p in ports) > 4 * len(fast):
            suspects = np.arange(len(fast))  # big tables: look every row up
        else:
            known = {k[1] for k in conns}
            for port in ports:
                known.update(k[1] for k in listeners[port].requests)
            if not known:
                return fast
            known_src = np.sort(np.frombuffer(b"".join(known), dtype=">u4").astype(np.uint64))
            candidates = src[fast]
            at = np.minimum(np.searchsorted(known_src, candidates), len(known_src) - 1)
            suspects = np.flatnonzero(known_src[at] == candidates)
        if not len(suspects):
            return fast
        drop = []
        for j in suspects.tolist():
            i = int(fast[j])
            key = (int(dport[i]), rows[i, 26:30].tobytes(), int(sport[i]))
            if key in conns or key in listeners[key[0]].requests:
                drop.append(j)
        result: Any = np.delete(fast, drop) if drop else fast
        return result

    def _answer(self, rows: Any, src: Any, sport: Any, dport: Any, prefix: bytes,
                now: float) -> None:
        ip = self.ip
        table = self.table
        cfg = table.config
        m = len(rows)
        count = minute(now)
        window = syn_window(cfg)
        ws = cfg.offered_wscale
        accel = self.accel
        if accel is not None:  # the same frames in C (ustack/driver/_synbatch.c)
            hashes_c = table._cookies.digests(accel.cookie_inputs(rows, count))
            idents_c = struct.pack(f">{m}H", *[i & 0xFFFF for i in islice(ip._ident, m)])
            out = np.frombuffer(accel.answer(rows, hashes_c, idents_c, prefix, ip.address,
                                             count, int(now * 1000), table._local_sum, ip.ttl,
                                             window, cfg.mss, ws),
                                dtype=np.uint8).reshape(m, FRAME_LEN)
        else:
            out = self._answer_arrays(rows, src, sport, dport, prefix, now, count, window, ws)
        # the counters of the plain path, m times
        ip.frames_in += m
        ip.accepted += m
        ip.frames_out += m
        counters = table.counters
        counters["tcp_segs_in"] += m
        counters["tcp_segs_out"] += m
        mib = table.mib
        mib["TcpExtTCPReqQFullDoCookies"] += m
        mib["TcpExtSyncookiesSent"] += m
        listeners = table._listeners
        for port in _distinct(dport):
            listeners[port].cookie_sent_at = now
        self.pressure_at = now
        self.answered += m
        self.transmit_rows(out)

    def _answer_arrays(self, rows: Any, src: Any, sport: Any, dport: Any, prefix: bytes,
                       now: float, count: int, window: int, ws: int) -> Any:
        """:meth:`_answer`'s SYN-ACK rows with numpy."""
        ip = self.ip
        table = self.table
        cfg = table.config
        m = len(rows)
        # the cookie: H of hash_input(saddr, daddr, sport, dport, count), one
        # hashlib call per SYN (CookieJar.digests), the arithmetic over the array
        inputs = np.empty((m, 16), dtype=np.uint8)
        inputs[:, 0:4] = rows[:, 26:30]
        inputs[:, 4:8] = rows[:, 30:34]
        inputs[:, 8:10] = rows[:, 34:36]
        inputs[:, 10:12] = rows[:, 36:38]
        inputs[:, 12:16] = np.frombuffer(count.to_bytes(4, "big"), dtype=np.uint8)
        hashes = np.frombuffer(table._cookies.digests(inputs.tobytes()),
                               dtype=">u8").astype(np.uint64)
        h1 = hashes >> np.uint64(32)
        h2 = hashes & np.uint64(_U32)
        seq = _be32(rows, 38)
        mss = _be16(rows, 56)
        index = ((mss >= 1300).astype(np.uint64) + (mss >= 1440) + (mss >= 1460))
        cookie = (h1 + seq + np.uint64(count << COOKIE_BITS)
                  + ((h2 + index) & np.uint64(COOKIE_MASK))) & np.uint64(_U32)
        # the TSval carrying wscale and SACK (encode_timestamp of ts_val(cookie, now))
        ts_now = (np.uint64(int(now * 1000)) + ((cookie * np.uint64(2654435761))
                                                 & np.uint64(_U32))) & np.uint64(_U32)
        options = np.minimum(rows[:, 73], 14).astype(np.uint64) | np.uint64(TS_SACK)
        ts = (ts_now & np.uint64(~TS_MASK & _U32)) | options
        ts = np.where(ts > ts_now, (ts - np.uint64(1 << 6)) & np.uint64(_U32), ts)
        peer_tsval = _be32(rows, 62)
        ack = (seq + np.uint64(1)) & np.uint64(_U32)
        tcp_total = (np.uint64(table._local_sum + _PSEUDO_TCP_SYNACK + (0xA012 << 16 | window)
                               + _SYNACK_OPT_CONST + cfg.mss + ws)
                     + src + (dport << np.uint64(16) | sport) + cookie + ack + ts + peer_tsval)
        s = tcp_total % np.uint64(0xFFFF)
        tcp_csum = np.where(s != 0, np.uint64(0xFFFF) - s, np.uint64(0))
        # IPv4: identification from the IP layer's counter, in order (as send)
        idents = np.fromiter(islice(ip._ident, m), dtype=np.uint64, count=m) & np.uint64(0xFFFF)
        ttl = ip.ttl
        our = int.from_bytes(ip.address, "big")
        ip_const = 0x4500 + 60 + 0x4000 + (ttl << 8) + 6 + (our >> 16) + (our & 0xFFFF)
        s = (np.uint64(ip_const) + (src >> np.uint64(16)) + (src & np.uint64(0xFFFF))
             + idents) % np.uint64(0xFFFF)
        ip_csum = np.where(s != 0, np.uint64(0xFFFF) - s, np.uint64(0))
        out = np.empty((m, FRAME_LEN), dtype=np.uint8)
        out[:, 0:14] = np.frombuffer(prefix, dtype=np.uint8)
        out[:, 14:24] = np.frombuffer(bytes((0x45, 0, 0, 60, 0, 0, 0x40, 0, ttl, 6)),
                                      dtype=np.uint8)
        _put16(out, 18, idents)
        _put16(out, 24, ip_csum)
        out[:, 26:30] = np.frombuffer(ip.address, dtype=np.uint8)
        out[:, 30:34] = rows[:, 26:30]
        out[:, 34:36] = rows[:, 36:38]
        out[:, 36:38] = rows[:, 34:36]
        _put32(out, 38, cookie)
        _put32(out, 42, ack)
        out[:, 46] = 0xA0
        out[:, 47] = 0x12
        out[:, 48:50] = np.frombuffer(window.to_bytes(2, "big"), dtype=np.uint8)
        _put16(out, 50, tcp_csum)
        out[:, 52:54] = 0
        out[:, 54:58] = np.frombuffer(bytes((2, 4)) + cfg.mss.to_bytes(2, "big"),
                                      dtype=np.uint8)
        out[:, 58:62] = np.frombuffer(bytes((4, 2, 8, 10)), dtype=np.uint8)
        _put32(out, 62, ts)
        out[:, 66:70] = rows[:, 62:66]
        out[:, 70:74] = np.frombuffer(bytes((1, 3, 3, ws)), dtype=np.uint8)
        return out
