"""Fuzz the whole receive path of a Stack (issue 13 item 7).

    python bench/fuzz.py --frames 1000000 [--seed N] [--json out.json]

Generated and mutated frames go into ``Stack.receive`` of a stack on an
in-memory device: IPv4/TCP segments with random flags, sequence numbers and
option lists (valid, truncated, unknown kinds, bad lengths) aimed at a
listener, at established connections and at closed ports; IP options;
ARP requests and replies; ICMP errors quoting our segments (every
destination-unreachable code, time exceeded, parameter problem,
fragmentation needed with odd MTUs, truncated quotes); echo requests; then
byte flips, truncation and extension on top, with the checksums fixed up
most of the time so the mutations reach the deeper checks.

Checked: nothing escapes (``Stack.receive`` never raises, no
``drop.internal-error``, no exception reaches the event loop's handler from
TCP's batched output or timers) and every frame is counted exactly once
(``frames_in == frames_accepted + drops``, checked every batch).  The stack
must still answer ping afterwards.  Prints a summary (and JSON with
``--json``); exits 1 on any escape.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import struct
import sys
import time
from collections.abc import Callable
from typing import Any

from ustack.link.memory import MemoryPair
from ustack.stack import Stack
from ustack.wire import arp as warp
from ustack.wire import ethernet as eth
from ustack.wire import icmp, ipv4
from ustack.wire.checksum import fold, partial_sum, pseudo_header_sum, refresh_frame_checksums
from ustack.wire.tcp import ACK, FIN, PSH, RST, SYN, URG

US_MAC, PEER_MAC, FUZZ_MAC = (bytes.fromhex(h) for h in ("020000000002", "020000000001",
                                                          "020000000003"))
US, PEER, FUZZ = bytes([10, 77, 0, 2]), bytes([10, 77, 0, 1]), bytes([10, 77, 0, 3])
LISTEN_PORT = 80
BATCH = 64

_FLAG_CHOICES = (SYN, SYN, SYN, ACK, ACK | PSH, ACK | FIN, RST, RST | ACK, SYN | ACK, FIN,
                 SYN | FIN, SYN | RST, 0, URG | ACK, 0xFF, ACK)


class Fuzzer:
    """Frame generator (deterministic for a seed)."""

    def __init__(self, seed: int, conns: list[tuple[int, int]]) -> None:
        self.rnd = random.Random(seed)
        #: (our port, peer port) of established connections with PEER
        self.conns = conns

    # ------------------------------------------------------------ pieces
    def tcp_options(self) -> bytes:
        r = self.rnd
        parts: list[bytes] = []
        for _ in range(r.randrange(0, 6)):
            kind = r.choice((0, 1, 2, 3, 4, 5, 8, 8, 19, 30, 34, 253, r.randrange(256)))
            if kind in (0, 1):
                parts.append(bytes([kind]))
            elif kind == 2:
                parts.append(struct.pack("!BBH", 2, r.choice((4, 4, 3, 5)), r.randrange(65536)))
            elif kind == 3:
                parts.append(bytes([3, r.choice((3, 3, 2, 4)), r.randrange(20)]))
            elif kind == 4:
                parts.append(bytes([4, r.choice((2, 2, 1, 3))]))
            elif kind == 5:
                n = r.randrange(0, 5)
                blocks = b"".join(struct.pack("!II", r.getrandbits(32), r.getrandbits(32))
                                  for _ in range(n))
                parts.append(bytes([5, r.choice((2 + 8 * n, 2 + 8 * n, 1, 7))]) + blocks)
            elif kind == 8:
                parts.append(struct.pack("!BBII", 8, r.choice((10, 10, 9, 11)), r.getrandbits(32),
                                         r.getrandbits(32)))
            else:
                n = r.randrange(0, 8)
                parts.append(bytes([kind, r.choice((n + 2, 1, 0, 40))]) + r.randbytes(n))
        opts = b"".join(parts)[:40]
        return opts + b"\x00" * (-len(opts) % 4)

    def tcp_segment(self, src: bytes, dst: bytes) -> bytes:
        r = self.rnd
        choice = r.random()
        if choice < 0.35 and self.conns:
            dport, sport = r.choice(self.conns)
        elif choice < 0.8:
            dport, sport = LISTEN_PORT, r.randrange(1, 65536)
        else:
            dport, sport = r.randrange(65536), r.randrange(65536)
        flags = r.choice(_FLAG_CHOICES)
        if r.random() < 0.5:  # Linux's SYN layout: the flood fast path
            opts = struct.pack("!BBHBBBBIIBBBB", 2, 4, r.choice((536, 1460, 9000)), 4, 2, 8, 10,
                               r.getrandbits(32), 0, 1, 3, 3, r.randrange(16))
        else:
            opts = self.tcp_options()
        payload = r.randbytes(r.choice((0, 0, 0, 1, 10, 100, 1000)))
        off = (20 + len(opts)) // 4
        if r.random() < 0.05:
            off = r.randrange(16)  # a bad data offset
        header = struct.pack("!HHIIBBHHH", sport, dport, r.getrandbits(32), r.getrandbits(32),
                             off << 4, flags & 0xFF, r.randrange(65536), 0, r.randrange(65536))
        seg = bytearray(header + opts + payload)
        s = pseudo_header_sum(src, dst, 6, len(seg)) + partial_sum(bytes(seg))
        seg[16:18] = fold(s).to_bytes(2, "big")
        return bytes(seg)

    def ip_options(self) -> bytes:
        r = self.rnd
        kind = r.choice((0x94, 7, 68, 131, 137, 1, 0, r.randrange(256)))
        n = r.randrange(0, 10)
        opts = bytes([kind, r.choice((n + 2, n + 3, 1, 0)), r.choice((4, 5, 3, 0))]) \
            + r.randbytes(n)
        return (opts + b"\x00" * (-len(opts) % 4))[:40]

    def ip_frame(self, payload: bytes, proto: int, src: bytes = FUZZ, dst: bytes = US,
                 dst_mac: bytes = US_MAC) -> bytes:
        r = self.rnd
        opts = self.ip_options() if r.random() < 0.1 else b""
        frag = 0x4000 if r.random() < 0.97 else r.randrange(65536)
        packet = ipv4.Ipv4Packet(src, dst, proto, payload, options=opts,
                                 flags_fragment=frag).encode()
        return eth.encode_frame(dst_mac, FUZZ_MAC, eth.ETHERTYPE_IPV4, packet)

    # ------------------------------------------------------------ frames
    def tcp(self) -> bytes:
        r = self.rnd
        dst, dst_mac = US, US_MAC
        roll = r.random()
        if roll < 0.03:
            dst, dst_mac = bytes([10, 77, 0, 255]), eth.BROADCAST
        elif roll < 0.05:
            dst = bytes([224, 0, 0, r.randrange(256)])
        src = PEER if r.random() < 0.5 else r.choice((FUZZ, bytes([192, 0, 2, r.randrange(256)]),
                                                      bytes([198, 18, r.randrange(256),
                                                             r.randrange(256)])))
        return self.ip_frame(self.tcp_segment(src, dst), 6, src=src, dst=dst, dst_mac=dst_mac)

    def arp(self) -> bytes:
        r = self.rnd
        op = r.choice((warp.OP_REQUEST, warp.OP_REPLY, 3))
        sender_ip = r.choice((FUZZ, PEER, US, bytes(4), r.randbytes(4)))
        target_ip = r.choice((US, US, FUZZ, r.randbytes(4)))
        sender_mac = r.choice((FUZZ_MAC, PEER_MAC, r.randbytes(6)))
        pkt = warp.ArpPacket(op, sender_mac, sender_ip, r.choice((bytes(6), US_MAC)), target_ip)
        return eth.encode_frame(r.choice((eth.BROADCAST, US_MAC)), FUZZ_MAC, eth.ETHERTYPE_ARP,
                                pkt.encode())

    def icmp_error(self) -> bytes:
        r = self.rnd
        typ, code = r.choice(((3, r.randrange(16)), (3, 4), (11, r.randrange(2)), (12, 0),
                              (4, 0), (5, r.randrange(4)), (r.randrange(256), r.randrange(256))))
        if r.random() < 0.4 and self.conns:
            sport, dport = r.choice(self.conns)  # our port first: we sent the quoted one
            quoted_dst = PEER
        else:
            sport, dport = LISTEN_PORT, r.randrange(65536)
            quoted_dst = r.choice((PEER, FUZZ, r.randbytes(4)))
        quoted_seg = struct.pack("!HHII", sport, dport, r.getrandbits(32), 0) + r.randbytes(12)
        quoted = ipv4.Ipv4Packet(r.choice((US, US, FUZZ)), quoted_dst, r.choice((6, 6, 17, 1)),
                                 quoted_seg).encode()
        quoted = quoted[:r.choice((len(quoted), 28, 20, 24, r.randrange(len(quoted) + 1)))]
        rest = r.randrange(65536) if typ != 3 or code != 4 else r.choice((0, 68, 576, 1280,
                                                                           1400, 65535))
        body = struct.pack("!BBHHH", typ, code, 0, 0, rest) + quoted
        msg = bytearray(body)
        msg[2:4] = fold(partial_sum(bytes(msg))).to_bytes(2, "big")
        return self.ip_frame(bytes(msg), 1)

    def echo(self) -> bytes:
        r = self.rnd
        return self.ip_frame(icmp.IcmpEcho(r.randrange(65536), r.randrange(65536),
                                           r.randbytes(r.randrange(64))).encode(), 1,
                             dst=r.choice((US, US, bytes([10, 77, 0, 255]))))

    def other(self) -> bytes:
        r = self.rnd
        return self.ip_frame(r.randbytes(r.randrange(40)), r.choice((17, 47, 253, 0)))

    def mutate(self, frame: bytes) -> bytes:
        r = self.rnd
        buf = bytearray(frame)
        for _ in range(r.randrange(1, 6)):
            i = r.randrange(6 if r.random() < 0.9 else 0, len(buf))
            buf[i] = r.randrange(256)
        if r.random() < 0.6:
            refresh_frame_checksums(buf)
        roll = r.random()
        if roll < 0.15:
            buf = buf[:r.randrange(len(buf) + 1)]
        elif roll < 0.25:
            buf += r.randbytes(r.randrange(1, 64))
        return bytes(buf)

    def frame(self) -> tuple[bytes, bool]:
        r = self.rnd
        roll = r.random()
        if roll < 0.02:
            return r.randbytes(r.randrange(100)), r.random() < 0.5
        make: Callable[[], bytes] = r.choices(
            (self.tcp, self.arp, self.icmp_error, self.echo, self.other),
            weights=(60, 10, 18, 6, 6))[0]
        frame = make()
        if roll < 0.45:
            frame = self.mutate(frame)
        return frame, r.random() < 0.1




async def fuzz(frames: int, seed: int = 1, progress: bool = False) -> dict[str, Any]:
    """Feed ``frames`` fuzzed frames; returns the report (``escapes`` must be 0)."""
    # fuzzed ARP claims our address all the time: keep the log quiet
    logging.getLogger("ustack").setLevel(logging.ERROR)
    loop = asyncio.get_running_loop()
    loop_errors: list[str] = []
    loop.set_exception_handler(lambda _loop, ctx: loop_errors.append(
        f"{ctx.get('message')}: {ctx.get('exception')!r}"))
    peer_dev, us_dev = MemoryPair(PEER_MAC, US_MAC)
    peer = await Stack.start(address="10.77.0.1/24", device=peer_dev, diagnostics=False)
    us = await Stack.start(address="10.77.0.2/24", device=us_dev, diagnostics=False)
    server = await us.start_server(_echo_handler, port=LISTEN_PORT, backlog=8)
    writers = []
    for _ in range(4):  # established connections the fuzzer aims at too
        _reader, writer = await peer.open_connection("10.77.0.2", LISTEN_PORT)
        writers.append(writer)
    conns = [(LISTEN_PORT, w.get_extra_info("sockname")[1]) for w in writers]
    fuzzer = Fuzzer(seed, conns)
    ip = us.ip
    base_in, base_acc, base_drops = ip.frames_in, ip.accepted, sum(ip.drops.values())
    escapes: list[str] = []
    miscounted = 0
    start = time.perf_counter()
    fed = 0
    while fed < frames:
        batch = [fuzzer.frame() for _ in range(min(BATCH, frames - fed))]
        before = ip.frames_in - ip.accepted - sum(ip.drops.values())
        try:
            us.receive(batch)
        except Exception as exc:  # an escape: the receive path must never raise
            escapes.append(repr(exc))
        fed += len(batch)
        if ip.frames_in - ip.accepted - sum(ip.drops.values()) != before:
            miscounted += 1
        await asyncio.sleep(0)  # TCP's batched output, timers, the peer
        if progress and fed % 100_000 < BATCH:
            rate = fed / (time.perf_counter() - start)
            print(f"  {fed:>9,} frames  {rate:,.0f}/s", file=sys.stderr)
    elapsed = time.perf_counter() - start
    await asyncio.sleep(0.05)
    peer.ip.announce()  # repair our ARP cache if a fuzzed ARP poisoned it
    await asyncio.sleep(0)
    ping_ok = True
    try:
        await us.ping("10.77.0.1", timeout=1.0)
        await peer.ping("10.77.0.2", timeout=1.0)
    except TimeoutError:
        ping_ok = False
    counters = us.counters()
    internal = counters.get("drop.internal-error", 0)
    drops = {k[5:]: v for k, v in counters.items() if k.startswith("drop.")}
    report = {
        "frames": fed,
        "seconds": round(elapsed, 2),
        "frames_per_second": round(fed / elapsed) if elapsed else 0,
        "seed": seed,
        "frames_in": ip.frames_in - base_in,
        "accepted": ip.accepted - base_acc,
        "dropped": sum(ip.drops.values()) - base_drops,
        "miscounted_batches": miscounted,
        "escapes": len(escapes) + internal + len(loop_errors),
        "escape_samples": (escapes + loop_errors)[:5],
        "ping_after": ping_ok,
        "drop_reasons": dict(sorted(drops.items(), key=lambda kv: -kv[1])),
        "tcp": {k: counters[k] for k in ("tcp_segs_in", "tcp_syn_requests",
                                         "TcpExtSyncookiesSent", "TcpExtSyncookiesFailed",
                                         "TcpExtListenDrops") if k in counters},
    }
    for w in writers:
        w.close()
    server.close()
    await us.close()
    await peer.close()
    return report


async def _echo_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


def ok(report: dict[str, Any]) -> bool:
    """Nothing escaped, every frame counted once (``frames_in`` also counts
    the real traffic of the established connections and pings), ping
    still works."""
    return bool(report["escapes"] == 0 and report["miscounted_batches"] == 0
            and report["frames_in"] >= report["frames"]
            and report["accepted"] + report["dropped"] == report["frames_in"]
            and report["ping_after"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", help="write the report here")
    args = parser.parse_args(argv)
    if args.frames <= 0:
        parser.error("--frames must be positive")
    report = asyncio.run(fuzz(args.frames, args.seed, progress=True))
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    return 0 if ok(report) else 1


if __name__ == "__main__":
    sys.exit(main())
