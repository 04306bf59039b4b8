"""Opt-in busy polling (Stack.set_busy_poll, issue 14): off by default and
then nothing is wrapped; on, a loop iteration that sent frames spins on
the receive ring's next slot and reads the ring when a frame is there, or
gives up after the time; off again restores the IP layer's send paths."""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import pytest

from ustack.link.memory import MemoryPair
from ustack.sim import run
from ustack.stack import Stack

MAC_A, MAC_B = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")


class Ringed:
    """A device's ring as Stack._busy_poll sees it (ring_state, poll)."""

    def __init__(self) -> None:
        self.ring = bytearray(4 * 64)
        self.head = 2
        self.polls = 0

    def ring_state(self) -> tuple[Any, int, int, int, int, int]:
        return (self.ring, 64, 4, self.head, 0, 0)

    def poll(self) -> None:
        self.polls += 1
        struct.pack_into("<I", self.ring, self.head * 64, 0)  # the slot is read


def _with_ring(dev: Any, ring: Ringed) -> Any:
    dev.ring_state = ring.ring_state  # (a MemoryDevice is a plain object)
    dev.poll = ring.poll
    return dev


def test_off_by_default_and_refused_without_a_ring() -> None:
    async def main() -> None:
        a_dev, b_dev = MemoryPair(MAC_A, MAC_B)
        a = await Stack.start(address="10.77.0.1/24", device=a_dev, busy_poll=None)
        async with a:
            assert a.busy_poll == 0.0
            with pytest.raises(ValueError):
                a.set_busy_poll(50e-6)
            with pytest.raises(ValueError):
                a.set_busy_poll(-1.0)
    run(main())


def test_a_send_spins_and_reads_the_frame_that_arrives() -> None:
    async def main() -> tuple[int, int]:
        a_dev, b_dev = MemoryPair(MAC_A, MAC_B)
        ring = Ringed()
        a = await Stack.start(address="10.77.0.1/24", device=_with_ring(a_dev, ring))
        b = await Stack.start(address="10.77.0.2/24", device=b_dev)
        async with a, b:
            ip = a.ip
            plain = (ip._device_one, ip._device_many)
            a.set_busy_poll(2e-3)
            assert ip._device_many is not plain[1]
            # nothing arrives in the ring: the spin gives up after its time
            await a.ping("10.77.0.2", timeout=1.0)
            await asyncio.sleep(0)
            quiet = ring.polls
            # a frame is in the next slot: the spin reads the ring at once
            struct.pack_into("<I", ring.ring, ring.head * 64, 1)
            await a.ping("10.77.0.2", timeout=1.0)
            await asyncio.sleep(0)
            read = ring.polls
            a.set_busy_poll(0)
            assert (ip._device_one, ip._device_many) == plain
            assert (ip._transmit, ip._transmit_many) == plain
            struct.pack_into("<I", ring.ring, ring.head * 64, 1)
            await a.ping("10.77.0.2", timeout=1.0)
            await asyncio.sleep(0)
            assert ring.polls == read  # off: no spin
        return quiet, read

    quiet, read = asyncio.run(main())
    assert quiet == 0
    assert read >= 1
