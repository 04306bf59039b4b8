"""RTT samples from frame timestamps (issue 9, ``ss -tni`` rtt within 2x of
the kernel's): the kernel receive stamp on the driver's clock
(ustack.link.rxtime), the clamps, the core taking an ACK's arrival time for
its RTT samples only, the driver passing it, and send times moved to the
device's send call (Recovery.restamp)."""

from __future__ import annotations

import asyncio
import time

import pytest

from ustack.link import rxtime
from ustack.link.memory import MemoryPair
from ustack.link.rxtime import CURRENT, StampedBatch, realtime_offset, to_monotonic
from ustack.sim import run
from ustack.stack import Stack
from ustack.tcp.recovery import Recovery, ack_times
from ustack.tcp.rtt import RttEstimator

MAC_A, MAC_B = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")


# ------------------------------------------------------------ clock conversion


def test_realtime_offset_converts_a_kernel_stamp_onto_the_monotonic_clock() -> None:
    off = realtime_offset()
    real = time.time_ns()  # as the kernel stamps a frame (CLOCK_REALTIME)
    now = time.monotonic() + 1.0
    t = to_monotonic(real // 10**9, real % 10**9, off, now)
    assert abs(t - (real * 1e-9 - off)) < 1e-6
    assert abs(t - time.monotonic()) < 0.5  # the same clock, not the wall clock


def test_to_monotonic_never_later_than_now() -> None:
    # a stamp "from the future" (the wall clock stepped back after stamping)
    assert to_monotonic(2000, 500_000_000, 1000.0, now=900.0) == 900.0
    assert to_monotonic(1900, 250_000_000, 1000.0, now=901.0) == pytest.approx(900.25)


def test_ack_times_clamps_to_now_and_to_the_send_time() -> None:
    # believable stamps are used as they are
    assert ack_times(10.0, 9.5, 9.4, 9.0, 9.2) == (9.4, 9.5)
    # no first arrival: both samples end at the arrival
    assert ack_times(10.0, 9.5, None, 9.0, 9.2) == (9.5, 9.5)
    # later than now: not believed
    assert ack_times(10.0, 10.5, None, 9.0, 9.2) == (10.0, 10.0)
    # before the newest segment was sent: not believed, now
    assert ack_times(10.0, 9.1, None, 9.0, 9.2) == (10.0, 10.0)
    # a first arrival before the oldest send or after the arrival: the arrival
    assert ack_times(10.0, 9.5, 8.9, 9.0, 9.2) == (9.5, 9.5)
    assert ack_times(10.0, 9.5, 9.7, 9.0, 9.2) == (9.5, 9.5)


def test_stamped_batch_sets_the_current_arrival_per_frame_and_clears_it() -> None:
    frames = [(b"a", False), (b"b", True)]
    batch = StampedBatch(frames, [1.0, 2.0])
    seen = [(f, CURRENT.t) for f in batch]
    assert seen == [((b"a", False), 1.0), ((b"b", True), 2.0)]
    assert CURRENT.t is None
    assert list.__len__(batch) == 2 and batch[1] == (b"b", True)  # still a list


# ------------------------------------------------------------ the core


def _recovery() -> tuple[Recovery, RttEstimator]:
    rtt = RttEstimator(1.0, 0.2, 120.0, True)
    return Recovery(1000, 1000, rtt), rtt


@pytest.mark.parametrize("fast", [True, False])
def test_recovery_rtt_sample_ends_at_the_ack_arrival(fast: bool) -> None:
    rec, rtt = _recovery()
    rec.fast_path = fast
    rec.on_sent(1000, 1000, 5.0)
    rec.ack_time = 5.0001  # the frame reached us 100 us after the send...
    rec.on_ack(2000, (), 5.0500)  # ...we got to it 50 ms later
    assert rtt.srtt == pytest.approx(0.0001)
    assert rtt.min_rtt == pytest.approx(0.0001)


@pytest.mark.parametrize("fast", [True, False])
def test_recovery_rtt_without_a_stamp_uses_now(fast: bool) -> None:
    rec, rtt = _recovery()
    rec.fast_path = fast
    rec.on_sent(1000, 1000, 5.0)
    rec.on_ack(2000, (), 5.05)
    assert rtt.srtt == pytest.approx(0.05)


def test_restamp_moves_the_rounds_send_times_to_the_device_call() -> None:
    rec, rtt = _recovery()
    rec.on_sent(1000, 1000, 5.0)  # an earlier round
    rec.on_sent(2000, 1000, 6.0)
    rec.on_sent(3000, 1000, 6.0)
    rec.restamp(6.0, 6.00004)
    sent = [r.sent for r in rec.sb._q]
    assert sent == [5.0, 6.00004, 6.00004]
    assert rec.sb._q[1].first_sent == 6.00004
    rec.restamp(6.00004, 6.0)  # never earlier
    assert rec.sb._q[2].sent == 6.00004
    rec.on_ack(2000, (), 5.5)
    rec.on_ack(4000, (), 6.0001)
    assert rtt.min_rtt == pytest.approx(0.00006)


# ------------------------------------------------------------ the driver


async def _min_rtt_through_late_delivery(stamped: bool) -> tuple[float, float]:
    loop = asyncio.get_running_loop()
    a_dev, b_dev = MemoryPair(MAC_A, MAC_B)
    a_dev.deliver_delay = 0.05  # A handles every frame 50 ms after it arrived
    if stamped:
        a_dev.stamp = loop.time  # the in-memory "kernel" stamps the arrival
    a = await Stack.start(address="10.77.0.1/24", device=a_dev)
    b = await Stack.start(address="10.77.0.2/24", device=b_dev)

    async def echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(await r.readexactly(100))
        await w.drain()

    async with a, b:
        server = await b.start_server(echo, port=7)
        reader, writer = await a.open_connection("10.77.0.2", 7)
        writer.write(b"x" * 100)
        await reader.readexactly(100)
        info = writer.get_extra_info("tcp_info")
        writer.close()
        server.close()
    return info.min_rtt, info.srtt


def test_driver_takes_the_frames_stamp_as_the_acks_arrival() -> None:
    # virtual time: B answers at once, A sees every frame 50 ms late
    late_min, late_srtt = run(_min_rtt_through_late_delivery(stamped=False))
    min_rtt, srtt = run(_min_rtt_through_late_delivery(stamped=True))
    assert late_min >= 0.05  # without stamps: our own delay is in the sample
    assert min_rtt < 0.001  # the data ACK's stamp: the path's (zero) delay
    assert srtt < late_srtt
    assert rxtime.CURRENT.t is None
