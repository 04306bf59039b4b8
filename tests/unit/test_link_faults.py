"""FaultDevice: seeded, per-direction loss/duplication/reordering/corruption/delay."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ustack.link.base import ReceivedFrame
from ustack.link.faults import FaultDevice
from ustack.link.memory import MemoryPair

N = 400


def frame(i: int, mac_dst: bytes, mac_src: bytes) -> bytes:
    return mac_dst + mac_src + b"\x08\x00" + i.to_bytes(4, "big") + bytes(60)


def seq(frames: list[ReceivedFrame]) -> list[int]:
    return [int.from_bytes(f[14:18], "big") for f, _ in frames]


async def run_tx(seed: int | str, **kw: Any) -> tuple[list[ReceivedFrame], dict[str, int]]:
    pair = MemoryPair()
    dev = FaultDevice(pair.a, seed, **kw)
    got: list[ReceivedFrame] = []
    pair.b.attach(asyncio.get_running_loop(), got.extend)
    dev.attach(asyncio.get_running_loop(), lambda frames: None)
    for i in range(N):
        dev.send(frame(i, pair.b.mac, pair.a.mac))
    await asyncio.sleep(0.02)
    counters = dev.counters()
    dev.close()
    return got, counters


async def run_rx(seed: int | str, **kw: Any) -> tuple[list[ReceivedFrame], dict[str, int]]:
    pair = MemoryPair()
    dev = FaultDevice(pair.a, seed, **kw)
    got: list[ReceivedFrame] = []
    dev.attach(asyncio.get_running_loop(), got.extend)
    for i in range(N):
        pair.b.send(frame(i, pair.a.mac, pair.b.mac))
    await asyncio.sleep(0.02)
    counters = dev.counters()
    dev.close()
    return got, counters


FAULTS = {"loss": 0.1, "duplicate": 0.1, "reorder": 0.1, "corrupt": 0.1}


@pytest.mark.parametrize("runner", [run_tx, run_rx])
async def test_same_seed_same_faults(runner) -> None:  # type: ignore[no-untyped-def]
    one, c1 = await runner(7, **FAULTS)
    two, c2 = await runner(7, **FAULTS)
    other, _ = await runner(8, **FAULTS)
    assert one == two and c1 == c2
    assert one != other


async def test_no_faults_is_transparent() -> None:
    got, counters = await run_tx(1)
    assert seq(got) == list(range(N))
    assert all(v == 0 for k, v in counters.items() if k.startswith("fault_"))
    got, _ = await run_rx(1)
    assert seq(got) == list(range(N))


async def test_loss_rate_and_counts() -> None:
    got, c = await run_tx(3, loss=0.25)
    lost = c["fault_tx_lost"]
    assert len(got) == N - lost and 60 <= lost <= 140
    assert seq(got) == sorted(seq(got))  # loss alone never reorders
    assert c["fault_rx_lost"] == 0


async def test_duplicate() -> None:
    got, c = await run_rx(4, duplicate=0.2)
    assert len(got) == N + c["fault_rx_duplicated"] and c["fault_rx_duplicated"] > 40
    assert sorted(set(seq(got))) == list(range(N))


async def test_reorder_swaps_with_next_and_loses_nothing() -> None:
    got, c = await run_tx(5, reorder=0.2)
    s = seq(got)
    assert sorted(s) == list(range(N)) and s != list(range(N))
    inversions = sum(1 for x, y in zip(s, s[1:], strict=False) if x > y)
    assert inversions == c["fault_tx_reordered"]
    assert max(abs(pos - i) for pos, i in enumerate(s)) == 1  # held for one frame only


async def test_reorder_of_last_frame_released_by_timer() -> None:
    pair = MemoryPair()
    dev = FaultDevice(pair.a, 0, reorder=1.0, reorder_timeout=0.001)
    got: list[ReceivedFrame] = []
    pair.b.attach(asyncio.get_running_loop(), got.extend)
    dev.send(frame(1, pair.b.mac, pair.a.mac))
    await asyncio.sleep(0)
    assert got == []
    await asyncio.sleep(0.02)
    assert seq(got) == [1]


async def test_corrupt_flips_one_bit_after_ethernet_and_untrusts() -> None:
    pair = MemoryPair(trusted=True)
    dev = FaultDevice(pair.a, 9, corrupt=0.5)
    got: list[ReceivedFrame] = []
    dev.attach(asyncio.get_running_loop(), got.extend)
    sent = [frame(i, pair.a.mac, pair.b.mac) for i in range(N)]
    pair.b.send_many(sent)
    await asyncio.sleep(0.01)
    assert len(got) == N
    changed = 0
    for (f, trusted), orig in zip(got, sent, strict=True):
        diff = [i for i in range(len(f)) if f[i] != orig[i]]
        if diff:
            changed += 1
            assert len(diff) == 1 and diff[0] >= 14
            assert bin(f[diff[0]] ^ orig[diff[0]]).count("1") == 1
            assert trusted is False
        else:
            assert trusted is True
    assert changed == dev.counters()["fault_rx_corrupted"] and 150 <= changed <= 250


async def test_delay() -> None:
    pair = MemoryPair()
    dev = FaultDevice(pair.a, 0, delay=0.05)
    got: list[ReceivedFrame] = []
    pair.b.attach(asyncio.get_running_loop(), got.extend)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    dev.send(frame(1, pair.b.mac, pair.a.mac))
    await asyncio.sleep(0.02)
    assert got == []
    while not got:
        await asyncio.sleep(0.005)
    assert loop.time() - t0 >= 0.05


async def test_directions_only_tx() -> None:
    pair = MemoryPair()
    dev = FaultDevice(pair.a, 0, loss=1.0, directions="tx")
    got_a: list[ReceivedFrame] = []
    got_b: list[ReceivedFrame] = []
    dev.attach(asyncio.get_running_loop(), got_a.extend)
    pair.b.attach(asyncio.get_running_loop(), got_b.extend)
    dev.send(frame(1, pair.b.mac, pair.a.mac))
    pair.b.send(frame(2, pair.a.mac, pair.b.mac))
    await asyncio.sleep(0)
    assert got_b == [] and seq(got_a) == [2]


def test_rejects_bad_parameters() -> None:
    pair = MemoryPair()
    with pytest.raises(ValueError):
        FaultDevice(pair.a, 0, loss=1.5)
    with pytest.raises(ValueError):
        FaultDevice(pair.a, 0, delay=-1)
    with pytest.raises(ValueError):
        FaultDevice(pair.a, 0, directions="up")


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32), loss=st.floats(0, 1), duplicate=st.floats(0, 1),
       reorder=st.floats(0, 1), n=st.integers(0, 60))
def test_faults_never_invent_frames(seed: int, loss: float, duplicate: float, reorder: float,
                                    n: int) -> None:
    """Whatever the probabilities: every frame out is a frame that went in,
    at most twice, and lost + duplicated counts account for the difference."""

    async def run() -> tuple[list[ReceivedFrame], dict[str, int]]:
        pair = MemoryPair()
        dev = FaultDevice(pair.a, seed, loss=loss, duplicate=duplicate, reorder=reorder,
                          reorder_timeout=0.001)
        got: list[ReceivedFrame] = []
        pair.b.attach(asyncio.get_running_loop(), got.extend)
        dev.send_many([frame(i, pair.b.mac, pair.a.mac) for i in range(n)])
        await asyncio.sleep(0.01)
        return got, dev.counters()

    got, c = asyncio.run(run())
    s = seq(got)
    assert all(0 <= i < n for i in s)
    assert all(s.count(i) <= 2 for i in set(s))
    assert len(s) == n - c["fault_tx_lost"] + c["fault_tx_duplicated"]
    assert c["fault_rx_lost"] == c["fault_rx_duplicated"] == 0
