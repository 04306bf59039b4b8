"""TcpTable keeps one SegmentEncoder per destination across sends
(TcpTable._encoders) instead of building one per send.  A kept encoder must
give the bytes a fresh one gives:

* core level: one encoder fed a random sequence of segments with changing
  option objects (timestamps, SACK blocks, none) encodes each exactly as a
  new encoder per segment does (Ethernet+IPv4 fast path and plain TCP);
* stack level: two stacks on the in-memory link exchange requests and
  responses of many sizes (timestamps moving with the clock); every TCP
  segment either side put on the wire re-encodes byte for byte with a fresh
  encoder, and the cache holds one encoder per destination.
"""

from __future__ import annotations

import asyncio
import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from ustack.link.memory import MemoryPair
from ustack.stack import Stack
from ustack.wire.tcp import ACK, FIN, PSH, SegmentEncoder, TcpOptions, TcpSegment

SRC, DST = bytes([10, 79, 0, 1]), bytes([10, 79, 0, 2])
PREFIX = bytes(range(14))

u32 = st.integers(0, 0xFFFFFFFF)
options = st.one_of(
    st.just(TcpOptions()),
    st.builds(lambda a, b: TcpOptions(timestamp=(a, b)), u32, u32),
    st.builds(lambda a, b, blocks: TcpOptions(timestamp=(a, b), sack_blocks=blocks), u32, u32,
              st.lists(st.tuples(u32, u32), min_size=1, max_size=3)),
)
segment = st.builds(
    lambda sp, dp, seq, ack, flags, win, opts, payload: TcpSegment(
        sp, dp, seq, ack, flags, win, 0, opts, payload),
    st.integers(1, 65535), st.integers(1, 65535), u32, u32,
    st.sampled_from([ACK, ACK | PSH, ACK | FIN]), st.integers(0, 65535), options,
    st.binary(max_size=64))


@settings(max_examples=200)
@given(st.lists(st.tuples(segment, st.booleans()), min_size=1, max_size=12))
def test_a_kept_encoder_encodes_as_a_fresh_one(steps: list[tuple[TcpSegment, bool]]) -> None:
    kept = SegmentEncoder(SRC, DST)
    ident = itertools.count(1)
    for seg, reuse_previous in steps:
        if reuse_previous:  # the same options object again (the core's TS cache)
            seg = TcpSegment(seg.src_port, seg.dst_port, seg.seq, seg.ack, seg.flags,
                             seg.window, 0, steps[0][0].options, seg.payload)
        assert kept.encode(seg) == SegmentEncoder(SRC, DST).encode(seg)
        assert kept.header_len(seg) == SegmentEncoder(SRC, DST).header_len(seg)
        i = next(ident)
        assert kept.encode_ipv4_many([seg], itertools.count(i), PREFIX) == \
            SegmentEncoder(SRC, DST).encode_ipv4_many([seg], itertools.count(i), PREFIX)


A, B = "10.79.0.1", "10.79.0.2"


def _tcp_frames(frames: list[bytes]) -> list[tuple[bytes, bytes, bytes]]:
    """(source address, destination address, TCP bytes) of each IPv4/TCP frame."""
    out = []
    for frame in frames:
        if frame[12:14] != b"\x08\x00" or frame[23] != 6:
            continue
        ihl = (frame[14] & 0x0F) * 4
        total = int.from_bytes(frame[16:18], "big")
        out.append((frame[26:30], frame[30:34], bytes(frame[14 + ihl:14 + total])))
    return out


def test_the_stacks_segments_reencode_identically_with_fresh_encoders() -> None:
    sizes = [1, 1, 7, 100, 1460, 3000, 1, 5000, 1, 2]

    async def main() -> tuple[list[bytes], list[bytes], int, int]:
        a_dev, b_dev = MemoryPair()
        a_dev.record_sent = b_dev.record_sent = True
        a = await Stack.start(address=f"{A}/24", device=a_dev, diagnostics=False)
        b = await Stack.start(address=f"{B}/24", device=b_dev, diagnostics=False)
        try:
            async def serve(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
                while data := await r.read(65536):
                    w.write(data)
                w.close()

            await b.start_server(serve, port=7200)
            conns = [await a.open_connection(B, 7200) for _ in range(3)]
            for round_ in range(4):
                for reader, writer in conns:
                    for n in sizes:
                        writer.write(bytes([round_]) * n)
                        assert await reader.readexactly(n) == bytes([round_]) * n
                await asyncio.sleep(0.003)  # a new millisecond: new TSvals
            for _, writer in conns:
                writer.close()
                await writer.wait_closed()
            for _ in range(50):
                await asyncio.sleep(0)
            return (list(a_dev.sent), list(b_dev.sent), len(a.tcp._encoders),
                    len(b.tcp._encoders))
        finally:
            await a.close()
            await b.close()

    sent_a, sent_b, cached_a, cached_b = asyncio.run(asyncio.wait_for(main(), 60))
    checked = 0
    for frames in (sent_a, sent_b):
        for src, dst, tcp in _tcp_frames(frames):
            seg = TcpSegment.decode(tcp)
            assert SegmentEncoder(src, dst).encode(seg) == tcp
            checked += 1
    assert checked > 200
    assert cached_a == 1 and cached_b == 1  # one destination each way
