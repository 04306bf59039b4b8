"""CPU per received segment of the whole receive path, without the kernel:
ring batch -> IPv4 -> TCP driver -> connection -> stream reader -> the
application's ``read()``, exact wire (1448-byte segments with timestamps).

A fake peer (this script) does the handshake with a ustack server on an
in-memory device, then hands the stack pre-encoded data frames in batches
of ``--batch`` (as one ring wakeup would) and lets the loop run until the
application has read them; the ACKs the stack sends are counted, not
answered.  Only the feeding and the reading are timed (process CPU time).

    python bench/rx_path.py [--mb 50] [--batch 64] [--rounds 3] [--profile F]
    python bench/rx_path.py --gso     # 64 KB GRO-style frames instead

Runs against any tree (``PYTHONPATH=<tree>``), pure or compiled; prints
JSON: ``ns_per_segment`` (min over rounds), ACKs sent per segment.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import hashlib
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from ustack.link.base import Device, Frame, Receiver
from ustack.link.rxtime import StampedBatch
from ustack.wire import ethernet as eth
from ustack.wire import ipv4
from ustack.wire.tcp import ACK, FIN, SYN, TcpOptions, TcpSegment

US_MAC, PEER_MAC = bytes.fromhex("020000000002"), bytes.fromhex("020000000001")
US, PEER = bytes([10, 77, 0, 2]), bytes([10, 77, 0, 1])
PORT, PEER_PORT = 5103, 40000
MSS = 1448


class FeedDevice(Device):
    """A device whose received frames come from the caller and whose sent
    frames are kept (the ACKs)."""

    def __init__(self, mtu: int = 1500) -> None:
        self.name = "feed0"
        self.mac = US_MAC
        self.mtu = mtu
        self.receiver: Receiver | None = None
        self.sent: list[Frame] = []

    def attach(self, loop: asyncio.AbstractEventLoop, receiver: Receiver) -> None:
        self.receiver = receiver

    def send(self, frame: Frame) -> None:
        self.sent.append(bytes(frame))

    def send_many(self, frames: Sequence[Frame]) -> None:
        self.sent.extend(bytes(f) for f in frames)

    def close(self) -> None:
        pass


def _frame(seg: TcpSegment) -> bytes:
    return eth.encode_frame(US_MAC, PEER_MAC, eth.ETHERTYPE_IPV4,
                            ipv4.Ipv4Packet(PEER, US, 6, seg.encode(PEER, US)).encode())


def _sent_tcp(dev: FeedDevice) -> list[TcpSegment]:
    out = []
    for f in dev.sent:
        if f[12:14] == b"\x08\x00" and f[23] == 6:
            out.append(TcpSegment.decode(memoryview(f)[34:]))
    return out


async def one_round(nbytes: int, batch: int, seg_size: int, profile: cProfile.Profile | None,
                    verify: bool, trusted: bool, ts_every: int = 100) -> dict[str, Any]:
    from ustack.stack import Stack

    dev = FeedDevice(mtu=1500 if seg_size <= MSS else 65535)
    stack = await Stack.start(device=dev, address="10.77.0.2/24", diagnostics=False)
    stack.ip.arp.learn(PEER, PEER_MAC, time.monotonic())
    done: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()
    consumed = [0]

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        h = hashlib.sha256()
        got = 0
        while True:
            data = await reader.read(1 << 16)
            if not data:
                break
            got += len(data)
            consumed[0] = got
            if verify:
                h.update(data)
        writer.close()
        done.set_result((got, h.hexdigest()))

    server = await stack.start_server(serve, port=PORT, limit=1 << 20)
    assert dev.receiver is not None
    rx = dev.receiver
    isn = 1000
    ts = 1
    syn = TcpSegment(PEER_PORT, PORT, isn, 0, SYN, 64240,
                     options=TcpOptions(mss=1460, wscale=7, sack_permitted=True,
                                        timestamp=(ts, 0)))
    rx([(_frame(syn), False)])
    await asyncio.sleep(0)
    synack = [s for s in _sent_tcp(dev) if s.flags & SYN][-1]
    iss = synack.seq
    ts_ecr = synack.options.timestamp[0] if synack.options.timestamp else 0
    seq = isn + 1
    ack = (iss + 1) & 0xFFFFFFFF
    rx([(_frame(TcpSegment(PEER_PORT, PORT, seq, ack, ACK, 502,
                           options=TcpOptions(timestamp=(ts, ts_ecr)))), False)])
    for _ in range(5):
        await asyncio.sleep(0)
    dev.sent.clear()
    # pre-encode the data frames (not timed)
    data = bytes(range(256)) * (seg_size // 256 + 2)
    frames: list[bytes] = []
    sent_bytes = 0
    while sent_bytes < nbytes:
        n = min(seg_size, nbytes - sent_bytes)
        if len(frames) % ts_every == 0:
            ts += 1  # Linux: TSval ticks once a millisecond
        payload = data[(sent_bytes % 256):(sent_bytes % 256) + n]
        frames.append(_frame(TcpSegment(PEER_PORT, PORT, seq, ack, ACK, 502,
                                        options=TcpOptions(timestamp=(ts, ts_ecr)),
                                        payload=payload)))
        seq = (seq + n) & 0xFFFFFFFF
        sent_bytes += n
    fin = _frame(TcpSegment(PEER_PORT, PORT, seq, ack, ACK | FIN, 502,
                            options=TcpOptions(timestamp=(ts + 1, ts_ecr))))
    expect = hashlib.sha256()
    if verify:
        pos = 0
        for f in frames:
            seg = TcpSegment.decode(memoryview(f)[34:])
            expect.update(seg.payload)
            pos += len(seg.payload)
    loop = asyncio.get_running_loop()
    ends = []  # sequence offset (from the first data byte) of each frame's end
    pos = 0
    for f in frames:
        pos += len(f) - 66  # 14 + 20 + 32 header bytes
        ends.append(pos)
    base = (isn + 1) & 0xFFFFFFFF
    wscale = synack.options.wscale or 0
    edge = [synack.window]  # the right edge the stack announced (offset from base)
    seen = [0]

    def read_acks() -> None:
        sent = dev.sent
        for f in sent[seen[0]:]:
            if f[12:14] == b"\x08\x00" and f[23] == 6:
                s = TcpSegment.decode(memoryview(f)[34:])
                e = ((s.ack - base) & 0xFFFFFFFF) + (s.window << wscale)
                if e > edge[0]:
                    edge[0] = e
        seen[0] = len(sent)

    if profile is not None:
        profile.enable()
    c0 = time.process_time()
    i = 0
    stalls = 0
    while i < len(frames):
        read_acks()
        j = i
        while j < len(frames) and j - i < batch and ends[j] <= edge[0]:
            j += 1
        if j == i:
            stalls += 1
            if stalls > 1000:
                raise RuntimeError(f"stalled at {i}: edge {edge[0]}, consumed {consumed[0]}")
            await asyncio.sleep(0)
            continue
        stalls = 0
        now = time.monotonic()
        rx(StampedBatch([(f, trusted) for f in frames[i:j]], [now] * (j - i)))
        i = j
        await asyncio.sleep(0)
    rx([(fin, trusted)])
    got, digest = await asyncio.wait_for(done, 10)
    cpu = time.process_time() - c0
    if profile is not None:
        profile.disable()
    acks = len(_sent_tcp(dev))
    read_acks()
    loop.call_soon(lambda: None)
    server.close()
    await stack.close()
    ok = got == nbytes and (not verify or digest == expect.hexdigest())
    return {"ns_per_segment": cpu / len(frames) * 1e9, "segments": len(frames),
            "acks_per_segment": acks / len(frames), "ok": ok}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mb", type=float, default=50)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--gso", action="store_true", help="43 KB frames (GRO)")
    p.add_argument("--trusted", action="store_true",
                   help="frames marked checksum-trusted (veth partial checksums)")
    p.add_argument("--verify", action="store_true", help="check the SHA-256 of what was read")
    p.add_argument("--profile", default=None)
    p.add_argument("--ts-every", type=int, default=100,
                   help="segments per TSval tick (Linux: one a millisecond, ~140 "
                   "segments at 200 MB/s)")
    p.add_argument("--uvloop", action="store_true")
    args = p.parse_args()
    prof = cProfile.Profile() if args.profile else None
    seg_size = 30 * MSS if args.gso else MSS  # (fits the 64240-byte SYN window)
    results = []
    for _ in range(args.rounds):
        coro = one_round(int(args.mb * 1e6), args.batch, seg_size, prof, args.verify,
                         args.trusted, args.ts_every)
        if args.uvloop:
            import uvloop

            results.append(uvloop.run(coro))
        else:
            results.append(asyncio.run(coro))
    if prof is not None:
        prof.dump_stats(args.profile)
    import ustack

    out = {"ns_per_segment": round(min(r["ns_per_segment"] for r in results)),
           "all": [round(r["ns_per_segment"]) for r in results],
           "acks_per_segment": results[-1]["acks_per_segment"],
           "segments": results[-1]["segments"], "ok": all(r["ok"] for r in results),
           "mode": ustack.accel_status()["mode"], "batch": args.batch, "gso": args.gso}
    print(json.dumps(out))
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
