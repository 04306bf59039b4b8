"""The ARP neighbour cache (RFC 826, RFC 1122 s.2.3.2), sans-I/O.

Every method takes ``now``; nothing here sends.  The IPv4 layer asks
:meth:`ArpCache.lookup`; on a miss it queues the packet with
:meth:`ArpCache.enqueue` (bounded per destination, oldest dropped: RFC 1122
s.2.3.2.2 asks for at least one) and sends a request when told to.  Replies
feed :meth:`learn`, which hands back the queued packets; :meth:`poll` at the
deadline yields the retransmissions to send and the resolutions that failed.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(slots=True)
class _Entry:
    mac: bytes
    expires: float
    refresh_at: float
    refreshing: bool = False


# The generic records are plain classes with __slots__, not dataclasses:
# mypyc cannot import a compiled dataclass that is also Generic ("attribute
# '__dict__' of 'type' objects is not writable").
class _Pending(Generic[T]):
    """A resolution in progress: requests sent, next retry, waiting packets."""

    __slots__ = ("requests_sent", "next_retry", "queue")

    def __init__(self, requests_sent: int, next_retry: float) -> None:
        self.requests_sent = requests_sent
        self.next_retry = next_retry
        self.queue: deque[T] = deque()


class PollResult(Generic[T]):
    """What :meth:`ArpCache.poll` found due."""

    __slots__ = ("retry", "failed")

    def __init__(self, retry: list[bytes], failed: list[tuple[bytes, list[T]]]) -> None:
        #: addresses to send (another) request for
        self.retry = retry
        #: resolutions given up, with the packets that were waiting
        self.failed = failed

    def __repr__(self) -> str:
        return f"PollResult(retry={self.retry!r}, failed={self.failed!r})"


class ArpCache(Generic[T]):
    """Neighbour cache with expiry, pending resolutions and bounded queues."""

    def __init__(
        self,
        *,
        ttl: float = 60.0,
        refresh_before: float = 10.0,
        retry_interval: float = 1.0,
        requests: int = 3,
        max_queue: int = 64,
        max_entries: int = 4096,
    ) -> None:
        if requests < 1 or retry_interval <= 0:
            raise ValueError("ARP needs at least one request and a positive retry interval")
        self.ttl = ttl
        self.refresh_before = min(refresh_before, ttl / 2)
        self.retry_interval = retry_interval
        self.requests = requests
        self.max_queue = max_queue
        self.max_entries = max_entries
        self._entries: dict[bytes, _Entry] = {}
        self._pending: dict[bytes, _Pending[T]] = {}
        #: neighbours whose last resolution failed -> until when we remember it
        #: (Linux's NUD_FAILED); bounded like the entries
        self._failed: dict[bytes, float] = {}
        #: packets dropped because a destination's queue was full
        self.queue_drops = 0

    @property
    def timeout(self) -> float:
        """Seconds from the first request until a resolution fails."""
        return self.retry_interval * self.requests

    def __len__(self) -> int:
        return len(self._entries)

    def entries(self, now: float) -> dict[bytes, bytes]:
        """Live entries, IP → MAC."""
        return {ip: e.mac for ip, e in self._entries.items() if e.expires > now}

    def lookup(self, ip: bytes, now: float) -> bytes | None:
        entry = self._entries.get(ip)
        if entry is None:
            return None
        if entry.expires <= now:
            del self._entries[ip]
            return None
        return entry.mac

    def valid_until(self, ip: bytes) -> float:
        """When a cached answer for ``ip`` should be looked up again (its refresh time)."""
        entry = self._entries.get(ip)
        return entry.refresh_at if entry is not None else 0.0

    def needs_refresh(self, ip: bytes, now: float) -> bool:
        """True once per entry when it is close to expiry and still in use:
        the caller sends a request so traffic never stalls on re-resolution."""
        entry = self._entries.get(ip)
        if entry is None or entry.refreshing or now < entry.refresh_at:
            return False
        entry.refreshing = True
        return True

    def learn(self, ip: bytes, mac: bytes, now: float) -> list[T]:
        """Record ``ip`` at ``mac``; returns the packets that waited for it."""
        if ip not in self._entries and len(self._entries) >= self.max_entries:
            self._evict(now)
        self._entries[ip] = _Entry(mac, now + self.ttl, now + self.ttl - self.refresh_before)
        if self._failed:
            self._failed.pop(ip, None)
        pending = self._pending.pop(ip, None)
        return list(pending.queue) if pending is not None else []

    def update(self, ip: bytes, mac: bytes, now: float) -> list[T] | None:
        """RFC 826 merge: refresh ``ip`` only if it is cached or being
        resolved.  Returns the released packets, or None if ``ip`` is unknown."""
        if ip in self._entries or ip in self._pending:
            return self.learn(ip, mac, now)
        return None

    def forget(self, ip: bytes) -> None:
        self._entries.pop(ip, None)

    def is_pending(self, ip: bytes) -> bool:
        return ip in self._pending

    def recently_failed(self, ip: bytes, now: float) -> bool:
        """True while ``ip``'s last resolution failed less than :attr:`timeout`
        ago and nothing was learned since (Linux NUD_FAILED): callers need not
        keep state for such a neighbour (a SYN from it gets no request sock)."""
        until = self._failed.get(ip)
        if until is None:
            return False
        if until <= now:
            del self._failed[ip]
            return False
        return True

    def enqueue(self, ip: bytes, item: T, now: float) -> bool:
        """Queue ``item`` until ``ip`` resolves.  Returns True when the caller
        must send the first request now (a new resolution)."""
        pending = self._pending.get(ip)
        if pending is None:
            pending = _Pending(1, now + self.retry_interval)
            pending.queue.append(item)
            self._pending[ip] = pending
            return True
        if len(pending.queue) >= self.max_queue:
            pending.queue.popleft()
            self.queue_drops += 1
        pending.queue.append(item)
        return False

    def start(self, ip: bytes, now: float) -> bool:
        """Begin resolving ``ip`` with nothing queued.  True when the caller
        must send the first request now (no resolution was under way)."""
        if ip in self._pending:
            return False
        self._pending[ip] = _Pending(1, now + self.retry_interval)
        return True

    def next_deadline(self) -> float | None:
        if not self._pending:
            return None
        return min(p.next_retry for p in self._pending.values())

    def poll(self, now: float) -> PollResult[T]:
        """Advance to ``now``: which requests to repeat, which resolutions failed."""
        retry: list[bytes] = []
        failed: list[tuple[bytes, list[T]]] = []
        for ip, pending in list(self._pending.items()):
            if pending.next_retry > now:
                continue
            if pending.requests_sent >= self.requests:
                del self._pending[ip]
                failed.append((ip, list(pending.queue)))
                if len(self._failed) >= self.max_entries:
                    del self._failed[next(iter(self._failed))]
                self._failed[ip] = now + self.timeout
            else:
                pending.requests_sent += 1
                pending.next_retry = now + self.retry_interval
                retry.append(ip)
        return PollResult(retry, failed)

    def _evict(self, now: float) -> None:
        for ip in [ip for ip, e in self._entries.items() if e.expires <= now]:
            del self._entries[ip]
        while len(self._entries) >= self.max_entries:
            del self._entries[next(iter(self._entries))]  # oldest inserted
