"""ARP cache (sans-I/O): expiry, pending resolution, retries, bounded queues."""

from __future__ import annotations

import pytest

from ustack.net.arp import ArpCache

IP1, IP2 = b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x03"
MAC1, MAC2 = b"\x02\x00\x00\x00\x00\x01", b"\x02\x00\x00\x00\x00\x09"


def test_learn_lookup_expire() -> None:
    cache: ArpCache[str] = ArpCache(ttl=60.0)
    assert cache.lookup(IP1, 0.0) is None
    assert cache.learn(IP1, MAC1, 0.0) == []
    assert cache.lookup(IP1, 59.9) == MAC1
    assert cache.lookup(IP1, 60.0) is None
    assert len(cache) == 0


def test_refresh_requested_once_before_expiry() -> None:
    cache: ArpCache[str] = ArpCache(ttl=60.0, refresh_before=10.0)
    cache.learn(IP1, MAC1, 0.0)
    assert cache.valid_until(IP1) == 50.0
    assert not cache.needs_refresh(IP1, 49.0)
    assert cache.needs_refresh(IP1, 50.0)
    assert not cache.needs_refresh(IP1, 51.0)  # one request per refresh
    cache.learn(IP1, MAC1, 52.0)
    assert cache.lookup(IP1, 100.0) == MAC1


def test_update_only_known_addresses() -> None:
    cache: ArpCache[str] = ArpCache()
    assert cache.update(IP1, MAC1, 0.0) is None
    assert cache.lookup(IP1, 0.0) is None
    cache.learn(IP1, MAC1, 0.0)
    assert cache.update(IP1, MAC2, 1.0) == []
    assert cache.lookup(IP1, 1.0) == MAC2


def test_resolution_retries_then_fails_with_queued_packets() -> None:
    cache: ArpCache[str] = ArpCache(retry_interval=1.0, requests=3)
    assert cache.enqueue(IP1, "p1", 0.0) is True  # first request now
    assert cache.enqueue(IP1, "p2", 0.1) is False
    assert cache.next_deadline() == 1.0
    assert cache.poll(0.5).retry == []
    r = cache.poll(1.0)
    assert r.retry == [IP1] and r.failed == []
    r = cache.poll(2.0)
    assert r.retry == [IP1] and r.failed == []
    r = cache.poll(3.0)
    assert r.retry == [] and r.failed == [(IP1, ["p1", "p2"])]
    assert cache.next_deadline() is None
    assert cache.timeout == 3.0
    # a later send starts a new resolution
    assert cache.enqueue(IP1, "p3", 4.0) is True


def test_reply_releases_queue_in_order() -> None:
    cache: ArpCache[str] = ArpCache()
    cache.enqueue(IP1, "a", 0.0)
    cache.enqueue(IP1, "b", 0.0)
    cache.enqueue(IP2, "x", 0.0)
    assert cache.is_pending(IP1)
    assert cache.update(IP1, MAC1, 0.2) == ["a", "b"]
    assert not cache.is_pending(IP1) and cache.is_pending(IP2)
    assert cache.lookup(IP1, 0.2) == MAC1


def test_queue_is_bounded_oldest_dropped() -> None:
    cache: ArpCache[int] = ArpCache(max_queue=3)
    for i in range(5):
        cache.enqueue(IP1, i, 0.0)
    assert cache.queue_drops == 2
    assert cache.learn(IP1, MAC1, 0.1) == [2, 3, 4]


def test_entries_bounded() -> None:
    cache: ArpCache[int] = ArpCache(max_entries=4)
    for i in range(10):
        cache.learn(bytes([10, 0, 1, i]), MAC1, float(i))
    assert len(cache) == 4
    assert cache.lookup(bytes([10, 0, 1, 9]), 9.0) == MAC1


def test_invalid_config() -> None:
    with pytest.raises(ValueError):
        ArpCache(requests=0)


def test_start_without_queue() -> None:
    cache: ArpCache[str] = ArpCache(retry_interval=1.0, requests=1)
    assert cache.start(IP1, 0.0) is True
    assert cache.start(IP1, 0.5) is False
    assert cache.enqueue(IP1, "p", 0.6) is False  # joins the resolution under way
    assert cache.poll(1.0).failed == [(IP1, ["p"])]
