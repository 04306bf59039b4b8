"""The compiled receive batch (issue 14, request/response latency).

* ``IpLayer.receive`` sets ``rxtime.CURRENT`` for each frame of a
  :class:`StampedBatch` itself, by index, instead of through the batch's
  interpreted ``__iter__``: every handler call sees exactly the stamp that
  iterating the batch gives its frame (differential, random batches, with
  drops, a handler that raises, and fewer stamps than frames), and the
  stamp is clear afterwards.
* The ring device builds that batch with ``list.__new__`` (no ``__init__``)
  and sets ``times`` after: the same object as ``StampedBatch(frames, times)``.
* ``BatchReceiver.receive`` is ``Stack._receive`` (begin_batch, the IP
  layer, the observer, end_batch, in that order, end_batch also after an
  error), and ``Stack.rx_observer`` reaches it whenever it is set.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ustack.driver.rx_batch import BatchReceiver
from ustack.link.rxtime import CURRENT, StampedBatch
from ustack.net.ipv4 import IpLayer
from ustack.wire import checksum
from ustack.wire.checksum import partial_sum

US_MAC, PEER_MAC = bytes.fromhex("020000000002"), bytes.fromhex("020000000001")
US, PEER = bytes([10, 77, 0, 2]), bytes([10, 77, 0, 1])


def _frame(body: bytes, *, good_ip: bool = True, dst_mac: bytes = US_MAC) -> bytes:
    hdr = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 7, 0x4000, 64, 6,
                                0, PEER, US))
    if good_ip:
        hdr[10:12] = checksum.fold(partial_sum(bytes(hdr))).to_bytes(2, "big")
    return dst_mac + PEER_MAC + b"\x08\x00" + bytes(hdr) + body


def _layer(seen: list[tuple[bytes, float | None]]) -> IpLayer:
    def take(src: bytes, dst: bytes, payload: bytes | memoryview, trusted: bool) -> str | None:
        data = bytes(payload)
        seen.append((data, CURRENT.t))
        if data[:1] == b"\xef":
            raise ValueError("a bug in a handler")
        return None

    ip = IpLayer(address=US, prefixlen=24, mac=US_MAC, transmit=lambda f: None,
                 transmit_many=lambda fs: None, clock=lambda: 1.0)
    ip.register(6, take, verify_checksum=False)
    return ip


#: a frame the handler takes, one it raises in, two the IP layer drops
KINDS = ["ok", "raise", "bad-ip", "not-ours"]


def _make(kind: str, i: int) -> bytes:
    body = bytes([0xEF if kind == "raise" else 0x10, i]) + b"\x00" * 18
    return _frame(body, good_ip=kind != "bad-ip",
                  dst_mac=bytes.fromhex("020000000009") if kind == "not-ours" else US_MAC)


def _device_batch(frames: list[tuple[bytes, bool]], times: list[float]) -> StampedBatch:
    """As AfPacketDevice._on_readable_ring builds it."""
    batch = list.__new__(StampedBatch)
    for f in frames:
        batch.append(f)
    batch.times = times
    return batch


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(KINDS), max_size=8), st.integers(0, 3), st.booleans())
def test_the_ip_layer_sets_each_frames_stamp_as_iterating_the_batch_does(
        kinds: list[str], fewer: int, device_built: bool) -> None:
    frames = [(_make(k, i), i % 2 == 0) for i, k in enumerate(kinds)]
    times = [100.0 + i for i in range(max(0, len(frames) - fewer))]
    batch = (_device_batch(frames, times) if device_built
             else StampedBatch(frames, times))
    # the reference: what the handler saw when the IP layer iterated the batch
    expected: list[tuple[bytes, float | None]] = []
    ref = _layer(expected)
    for frame in StampedBatch(frames, times):  # its __iter__ sets CURRENT
        ref.receive([frame])  # a plain list: the layer leaves CURRENT alone
    assert CURRENT.t is None
    seen: list[tuple[bytes, float | None]] = []
    ip = _layer(seen)
    ip.receive(batch)
    assert seen == expected
    assert CURRENT.t is None
    assert (ip.frames_in, ip.accepted, dict(ip.drops)) == (
        ref.frames_in, ref.accepted, dict(ref.drops))
    # and it is the list the old iteration walked
    assert [f for f in batch] == frames[:len(times)]
    assert CURRENT.t is None


def test_a_plain_list_or_iterable_has_no_stamp() -> None:
    seen: list[tuple[bytes, float | None]] = []
    ip = _layer(seen)
    frames = [(_make("ok", i), True) for i in range(3)]
    ip.receive(frames)
    ip.receive(iter(frames))
    ip.receive(tuple(frames))
    assert [t for _, t in seen] == [None] * 9
    assert ip.accepted == 9


def test_the_device_built_batch_equals_the_constructed_one() -> None:
    frames = [(b"a", False), (b"b", True)]
    a = _device_batch(frames, [1.0, 2.0])
    b = StampedBatch(frames, [1.0, 2.0])
    assert type(a) is type(b) and a == b and a.times == b.times
    assert [(f, CURRENT.t) for f in a] == [(f, CURRENT.t) for f in b] == [
        ((b"a", False), 1.0), ((b"b", True), 2.0)]


@pytest.mark.parametrize("fail", [False, True])
@pytest.mark.parametrize("observe", [False, True])
def test_batch_receiver_does_what_stack_receive_did(fail: bool, observe: bool) -> None:
    """Inside one TCP batch: the IP layer's handler and the observer run
    with the batch open, end_batch closes it, also when the observer fails
    (real objects: the compiled BatchReceiver checks its types)."""
    import asyncio

    from table_fakes import FakeStack

    from ustack.driver.tcp_table import TcpTable

    loop = asyncio.new_event_loop()
    try:
        table = TcpTable(FakeStack(), loop=loop)
        calls: list[Any] = []
        seen: list[tuple[bytes, float | None]] = []
        ip = _layer(seen)
        ip.register(6, lambda src, dst, payload, trusted: calls.append(("ip", table._batch)),
                    verify_checksum=False)
        rx = BatchReceiver(ip, table)
        frames = [(_make("ok", 0), True)]

        def observer(got: Any) -> None:
            calls.append(("obs", table._batch, got is frames))
            if fail:
                raise RuntimeError("boom")

        if observe:
            rx.observer = observer
        if fail and observe:
            with pytest.raises(RuntimeError):
                rx.receive(frames)
        else:
            rx.receive(frames)
        assert calls == [("ip", 1), *([("obs", 1, True)] if observe else [])]
        assert table._batch == 0
    finally:
        loop.close()


def test_stack_rx_observer_reaches_the_device_callback() -> None:
    from ustack.link.memory import MemoryPair
    from ustack.sim import run
    from ustack.stack import Stack

    async def main() -> list[int]:
        a_dev, b_dev = MemoryPair(US_MAC, PEER_MAC)
        got: list[int] = []
        a = await Stack.start(address="10.77.0.2/24", device=a_dev)
        b = await Stack.start(address="10.77.0.1/24", device=b_dev)
        async with a, b:
            assert a._rx_batch is not None
            assert a._device_receiver() == a._rx_batch.receive
            a.rx_observer = lambda frames: got.append(len(frames))
            await b.ping("10.77.0.2", timeout=1.0)
            n = len(got)
            assert n > 0
            a.rx_observer = None
            assert a._rx_batch.observer is None
            await b.ping("10.77.0.2", timeout=1.0)
            assert len(got) == n
            a.rx_observer = lambda frames: got.append(-len(frames))
            await b.ping("10.77.0.2", timeout=1.0)
        return got

    got = run(main())
    assert any(n > 0 for n in got) and any(n < 0 for n in got)
