"""The receive ring's slot loop in C (``ustack.link._batch.ring_read``)
equals AfPacketDevice's Python loop: the same batches (frames, trusted
flags, arrival stamps), the same slots handed back, the same head and
counters, over random rings: slots not ready, outgoing frames, frames
bigger than their slot (read from the socket when TP_STATUS_COPY says so,
else counted truncated), headers pointing past their slot, budgets that end
part way, wrapping heads.  An anonymous mmap stands in for the
PACKET_RX_RING and a datagram socketpair for the packet socket (no root)."""

from __future__ import annotations

import mmap
import socket
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ustack.link import af_packet
from ustack.link.af_packet import AfPacketDevice
from ustack.link.rxtime import StampedBatch

try:
    from ustack.link import _batch
except ImportError:  # pragma: no cover - the C helper is optional
    _batch = None  # type: ignore[assignment]

needs_c = pytest.mark.skipif(_batch is None or not hasattr(_batch, "ring_read"),
                             reason="the optional C helper ustack.link._batch is not built")

_HDR = struct.Struct("<IIIHHII")
SLOT = 256

# one slot: (status, tp_len delta, snaplen, mac offset, pkttype, sec, nsec, fill byte)
_slot = st.tuples(
    st.sampled_from([0, 1, 1, 1, 1 | 0x8, 1 | 0x80, 1 | 0x2, 1 | 0x88, 0x8, 1 | 0x40]),
    st.sampled_from([0, 0, 0, 0, 1, 500]),
    st.integers(0, 200),
    st.sampled_from([66, 80, 96, 250]),
    st.sampled_from([0, 0, 0, 4, 3]),
    st.integers(0, 0xFFFFFFFF),
    st.integers(0, 999_999_999),
    st.integers(0, 255),
)


def _ring(slots: list[tuple[int, int, int, int, int, int, int, int]]) -> mmap.mmap:
    mm = mmap.mmap(-1, SLOT * len(slots))
    for i, (status, extra, snap, mac, pkttype, sec, nsec, fill) in enumerate(slots):
        off = i * SLOT
        mm[off:off + SLOT] = bytes([fill]) * SLOT
        mm[off:off + _HDR.size] = _HDR.pack(status, snap + extra, snap, mac, mac, sec, nsec)
        mm[off + 42] = pkttype
    return mm


def _device(mm: mmap.mmap, nslots: int, c: bool) -> tuple[AfPacketDevice, socket.socket,
                                                         list[Any]]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    ours.setblocking(False)
    dev = AfPacketDevice(ours, "test0", 1, b"\x02" * 6, 1500, ring=(mm, SLOT, nslots))
    if not c:
        dev.ring_reader = None
    got: list[Any] = []
    dev._receiver = lambda frames: got.append(
        (list(frames), list(frames.times) if isinstance(frames, StampedBatch) else None))
    return dev, theirs, got


def _run(slots: list[Any], head: int, budgets: list[int], copies: list[bytes], c: bool,
         now: float, offset: float, stamps: bool) -> tuple[Any, ...]:
    mm = _ring(slots)
    dev, peer, got = _device(mm, len(slots), c)
    try:
        dev._ring_head = head
        dev.rx_timestamps = stamps
        for data in copies:
            peer.send(data)
        heads = []
        for budget in budgets:
            dev.rx_budget = budget
            dev._read_ring(now, offset)
            heads.append(dev._ring_head)
        counters = dev.counters()
        counters.pop("rx_kernel_drops", None)  # (getsockopt on a unix socket)
        return got, heads, counters, bytes(mm)
    finally:
        dev.close()
        peer.close()


@needs_c
@settings(max_examples=400, deadline=None)
@given(st.lists(_slot, min_size=1, max_size=24), st.data(),
       st.lists(st.integers(1, 30), min_size=1, max_size=4),
       st.lists(st.binary(min_size=1, max_size=300), max_size=6),
       st.floats(1e3, 5e9), st.floats(-1e9, 5e9), st.booleans())
def test_ring_read_in_c_equals_the_python_loop(slots: list[Any], data: st.DataObject,
                                               budgets: list[int], copies: list[bytes],
                                               now: float, offset: float,
                                               stamps: bool) -> None:
    head = data.draw(st.integers(0, len(slots) - 1))
    fast = _run(slots, head, budgets, copies, True, now, offset, stamps)
    plain = _run(slots, head, budgets, copies, False, now, offset, stamps)
    assert fast[0] == plain[0]  # batches: frames, trusted flags, stamps
    # (the same floats, bit for bit: the same double arithmetic)
    assert [t for _, ts in fast[0] if ts for t in ts] == [t for _, ts in plain[0] if ts
                                                         for t in ts]
    assert fast[1:] == plain[1:]  # heads, counters, the ring (slots handed back)


@needs_c
def test_ring_read_stops_before_a_big_frame_and_the_python_loop_takes_it() -> None:
    # slot 0: ordinary; slot 1: bigger than its slot, copy queued on the socket;
    # slot 2: ordinary; slot 3: not ready
    slots = [(1, 0, 60, 66, 0, 10, 5, 7), (1 | 0x2, 500, 100, 66, 0, 11, 0, 8),
             (1 | 0x8, 0, 70, 80, 0, 12, 0, 9), (0, 0, 60, 66, 0, 13, 0, 1)]
    got, heads, counters, ring = _run(slots, 0, [10], [b"BIG" * 200], True, 1e9, 0.0, True)
    (frames, times), = got
    assert frames == [(bytes([7]) * 60, False), (b"BIG" * 200, False),
                      (bytes([9]) * 70, True)]
    assert times is not None and times[0] == 10 + 5e-9 and times[2] == 12.0
    assert heads == [3]
    assert counters["rx_frames"] == 3 and counters["rx_bytes"] == 60 + 600 + 70
    statuses = [struct.unpack_from("<I", ring, i * SLOT)[0] for i in range(4)]
    assert statuses == [0, 0, 0, 0]


def test_without_the_helper_the_device_reads_in_python(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USTACK_NO_ACCEL", "1")
    assert af_packet._load_ring_read() is None
