"""MemoryPair: frames cross in memory, batched, from call_soon."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from ustack.link.base import Device, ReceivedFrame
from ustack.link.memory import MemoryPair


def frame(dst: bytes, src: bytes, tag: int, size: int = 60) -> bytes:
    return dst + src + b"\x08\x00" + bytes([tag]) * (size - 14)


async def test_frames_cross_batched_and_not_reentrant() -> None:
    a, b = MemoryPair()
    assert isinstance(a, Device) and a.mac != b.mac
    got: list[Sequence[ReceivedFrame]] = []
    b.attach(asyncio.get_running_loop(), got.append)
    a.attach(asyncio.get_running_loop(), lambda frames: None)
    a.send(frame(b.mac, a.mac, 1))
    a.send_many([frame(b.mac, a.mac, 2), frame(b.mac, a.mac, 3)])
    assert got == []  # nothing delivered from inside send()
    await asyncio.sleep(0)
    assert len(got) == 1
    assert [f[14] for f, _ in got[0]] == [1, 2, 3]
    assert all(t is False for _, t in got[0])
    assert a.counters()["tx_frames"] == 3 and b.counters()["rx_frames"] == 3
    assert b.counters()["rx_batches"] == 1


async def test_both_directions_and_trusted_flag() -> None:
    pair = MemoryPair(trusted=True)
    got_a: list[ReceivedFrame] = []
    got_b: list[ReceivedFrame] = []
    pair.a.attach(asyncio.get_running_loop(), got_a.extend)
    pair.b.attach(asyncio.get_running_loop(), got_b.extend)
    pair.a.send(frame(pair.b.mac, pair.a.mac, 7))
    pair.b.send(frame(pair.a.mac, pair.b.mac, 8))
    await asyncio.sleep(0)
    assert [(f[14], t) for f, t in got_b] == [(7, True)]
    assert [(f[14], t) for f, t in got_a] == [(8, True)]


async def test_frames_before_attach_are_kept() -> None:
    a, b = MemoryPair()
    a.send(frame(b.mac, a.mac, 1))
    got: list[ReceivedFrame] = []
    b.attach(asyncio.get_running_loop(), got.extend)
    await asyncio.sleep(0)
    assert [f[14] for f, _ in got] == [1]


async def test_oversize_and_closed_are_dropped_and_counted() -> None:
    a, b = MemoryPair(mtu=100)
    got: list[ReceivedFrame] = []
    b.attach(asyncio.get_running_loop(), got.extend)
    a.send(frame(b.mac, a.mac, 1, size=115))
    a.send(frame(b.mac, a.mac, 2, size=114))
    await asyncio.sleep(0)
    assert [f[14] for f, _ in got] == [2]
    assert a.counters()["tx_drops_oversize"] == 1
    b.close()
    a.send(frame(b.mac, a.mac, 3))
    await asyncio.sleep(0)
    assert len(got) == 1 and a.counters()["tx_drops_closed"] == 1
    b.close()  # idempotent


async def test_record_sent() -> None:
    a, b = MemoryPair()
    a.record_sent = True
    a.send(frame(b.mac, a.mac, 5))
    assert [f[14] for f in a.sent] == [5]
