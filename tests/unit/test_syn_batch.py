"""The SYN channel's batch path (ustack.driver.syn_batch) against the plain
receive path, byte for byte: the same SYN-ACK frames (cookies, TSvals, IP
identifications, checksums), the same counters, and every frame it does not
answer handed back to go the plain way."""

from __future__ import annotations

import asyncio
import itertools
import random
import socket
from typing import Any

import numpy as np
import pytest

from ustack.driver.syn_batch import FRAME_LEN, CpuShare, ProvenPeers, RetransmitFilter, SynBatch
from ustack.link.memory import MemoryPair
from ustack.stack import Stack
from ustack.tcp import syncookies as sc
from ustack.tcp.config import TcpConfig
from ustack.tcp.isn import IsnGenerator
from ustack.wire.checksum import refresh_frame_checksums
from ustack.wire.ethernet import header as eth_header
from ustack.wire.ipv4 import Ipv4Packet
from ustack.wire.tcp import ACK, SYN, TcpOptions, TcpSegment

#: the C steps when built, whatever USTACK_NO_ACCEL says (it only picks the default)
_C_STEPS: Any
try:
    from ustack.driver import _synbatch as _C_STEPS
except ImportError:
    _C_STEPS = None

#: the batch path's steps in C (ustack/driver/_synbatch.c) or numpy, for
#: the test being run (the ``steps`` fixture)
_STEPS: list[str] = ["c"]


@pytest.fixture(autouse=True, params=["c", "numpy"])
def steps(request: pytest.FixtureRequest) -> str:
    """Every test runs with the C steps and with numpy's."""
    mode: str = request.param
    # (the C module itself, not _ACCEL: USTACK_NO_ACCEL=1 only changes the
    # default, the C steps are still tested against numpy in the pure run)
    if mode == "c" and _C_STEPS is None:
        pytest.skip("ustack.driver._synbatch is not built (setup.py build_ext)")
    _STEPS[0] = mode
    return mode


def new_batch(stack: Stack, transmit: Any) -> SynBatch:
    batch = SynBatch(stack.ip, stack.tcp, transmit)
    batch.accel = None if _STEPS[0] == "numpy" else _C_STEPS
    return batch


LOCAL = socket.inet_aton("10.77.0.2")
GATEWAY = "10.77.0.1"
NOW = 123_456.789


def flood_syn(rnd: random.Random, stack_mac: bytes, peer_mac: bytes, *,
              src: bytes | None = None, dport: int = 80, sport: int | None = None) -> bytes:
    """A SYN in Linux's option layout from a routed source (198.18.0.0/15)."""
    src = src or bytes([198, 18 + rnd.randrange(2), rnd.randrange(256), rnd.randrange(256)])
    seg = TcpSegment(sport or rnd.randrange(1, 65536), dport, rnd.getrandbits(32), 0, SYN,
                     64240, 0, TcpOptions(mss=rnd.choice([88, 536, 1299, 1300, 1440, 1460, 9000]),
                                          sack_permitted=True, wscale=rnd.randrange(16),
                                          timestamp=(rnd.getrandbits(32), 0)))
    packet = Ipv4Packet(src, LOCAL, 6, seg.encode(src, LOCAL), ttl=64,
                        ident=rnd.randrange(65536)).encode()
    frame = eth_header(stack_mac, peer_mac, 0x0800) + packet
    assert len(frame) == FRAME_LEN
    return frame


async def make_stack(config: TcpConfig, backlog: int = 16) -> tuple[Stack, Stack, list[bytes]]:
    """A stack (10.77.0.2, gateway 10.77.0.1) with a listener on port 80,
    its gateway resolved, its transmissions recorded."""
    pair = MemoryPair()
    stack = await Stack.start(device=pair.a, address="10.77.0.2/24", gateway=GATEWAY,
                              tcp_config=config, diagnostics=False)
    peer = await Stack.start(device=pair.b, address="10.77.0.1/24", tcp=False,
                             diagnostics=False)
    await stack.resolve(GATEWAY, timeout=2)
    stack.tcp._cookies = sc.CookieJar(b"s" * 32)
    stack.tcp._isn = IsnGenerator(b"i" * 16)
    stack.tcp._clock = lambda: NOW
    stack.ip._ident = itertools.count(4242)
    await stack.start_server(lambda r, w: None, port=80, backlog=backlog)
    # the gateway's Ethernet header reaches the IP layer's cache with the
    # first packet routed through it (here a SYN-ACK to a routed SYN)
    warm = flood_syn(random.Random(-1), pair.a.mac, pair.b.mac, dport=81)
    stack.ip.receive([(warm, True)])
    assert stack.ip._prefix
    sent: list[bytes] = []
    pair.a.record_sent = True
    pair.a.sent = sent
    return stack, peer, sent


def snapshot(stack: Stack) -> dict[str, Any]:
    c = stack.counters()
    return {k: v for k, v in c.items() if not k.startswith("dev.") and v}


async def both_ways(config: TcpConfig, frames: list[bytes], trusted: list[bool],
                    prepare: Any = None) -> tuple[Any, Any, SynBatch]:
    results = []
    batch = None
    for use_batch in (True, False):
        stack, peer, sent = await make_stack(config)
        if prepare is not None:
            await prepare(stack)
            sent.clear()
        if use_batch:
            out: list[bytes] = []

            def capture(rows: Any, out: list[bytes] = out) -> None:
                out.extend(bytes(r) for r in rows)

            batch = new_batch(stack, capture)
            rows = np.frombuffer(b"".join(frames), dtype=np.uint8).reshape(-1, FRAME_LEN)
            rest = batch.process(rows, np.array(trusted, dtype=bool), NOW)
            stack.ip.receive(rest)  # the rows handed back take the plain path
            replies = out + list(sent)
        else:
            stack.ip.receive(list(zip(frames, trusted, strict=True)))
            replies = list(sent)
        results.append((replies, snapshot(stack)))
        await stack.close()
        await peer.close()
    assert batch is not None
    return results[0], results[1], batch


@pytest.mark.parametrize("seed", range(8))
async def test_batch_sends_the_plain_paths_bytes(seed: int) -> None:
    rnd = random.Random(seed)
    pair_macs = (bytes.fromhex("020000000001"), bytes.fromhex("020000000002"))
    n = rnd.choice([1, 7, 64, 300])
    frames = [flood_syn(rnd, *pair_macs) for _ in range(n)]
    trusted = [rnd.random() < 0.5 for _ in range(n)]
    (fast, fast_counters), (plain, plain_counters), batch = await both_ways(
        TcpConfig(syncookies=2), frames, trusted)
    assert len(plain) == n and batch.answered == n and batch.handed_back == 0
    assert fast == plain
    assert fast_counters == plain_counters
    assert plain_counters["TcpExtSyncookiesSent"] == n


def corrupt(frames: list[bytes], rnd: random.Random) -> list[bytes]:
    """Every kind of row the batch must hand back (the plain path decides)."""
    out = []
    for i, f in enumerate(frames):
        b = bytearray(f)
        kind = i % 12
        if kind == 0:
            b[47] = SYN | ACK          # not a pure SYN
        elif kind == 1:
            b[50] ^= 0x55              # bad TCP checksum (frame untrusted)
        elif kind == 2:
            b[24] ^= 0x11              # bad IP header checksum
        elif kind == 3:
            b[70] = 0                  # not nop, wscale
        elif kind == 4:
            b[26:30] = bytes([10, 77, 0, 9])   # an on-link source
        elif kind == 5:
            b[36:38] = (81).to_bytes(2, "big")  # no listener there
        elif kind == 6:
            b[0:6] = bytes.fromhex("ffffffffffff")  # broadcast
        elif kind == 7:
            b[26:30] = bytes([224, 0, 0, 1])  # multicast source
        elif kind == 8:
            b[20] |= 0x20              # more fragments
        elif kind == 9:
            b[30:34] = bytes([10, 77, 0, 3])  # not our address
        elif kind == 10:
            b[26:30] = bytes([10, 77, 0, 255])  # the subnet's broadcast as source
        else:
            pass                        # a good one
        if kind not in (1, 2):
            refresh_frame_checksums(b)
        out.append(bytes(b))
    rnd.shuffle(out)
    return out


@pytest.mark.parametrize("seed", range(4))
async def test_unusual_rows_are_handed_back_and_end_like_the_plain_path(seed: int) -> None:
    rnd = random.Random(100 + seed)
    macs = (bytes.fromhex("020000000001"), bytes.fromhex("020000000002"))
    frames = corrupt([flood_syn(rnd, *macs) for _ in range(48)], rnd)
    trusted = [False] * len(frames)
    (fast, fast_counters), (plain, plain_counters), batch = await both_ways(
        TcpConfig(syncookies=2), frames, trusted)
    assert batch.answered == 4 and batch.handed_back == 44  # 11 kinds handed back, 4 each
    # the same replies (the handed-back ones after the batch: compare as sets of
    # frames without the IP identification and header checksum)
    def norm(frame: bytes) -> bytes:
        return frame[:18] + frame[20:24] + frame[26:]

    assert sorted(map(norm, fast)) == sorted(map(norm, plain))
    assert fast_counters == plain_counters


async def test_syn_for_a_request_sock_or_connection_goes_the_plain_path() -> None:
    rnd = random.Random(7)
    macs = (bytes.fromhex("020000000001"), bytes.fromhex("020000000002"))
    src = bytes([198, 18, 1, 1])
    frames = [flood_syn(rnd, *macs, src=src, sport=5555), flood_syn(rnd, *macs)]

    async def fill_queue(stack: Stack) -> None:
        # syncookies 1: the first SYN makes a request sock, so the queue
        # (backlog 1) is full; its retransmission must find that request
        stack.tcp._listeners[80].backlog = 1
        stack.ip.receive([(frames[0], True)])

    (fast, fast_counters), (plain, plain_counters), batch = await both_ways(
        TcpConfig(syncookies=1), frames, [True, True], prepare=fill_queue)
    assert batch.answered == 1 and batch.handed_back == 1
    assert sorted(f[26:] for f in fast) == sorted(f[26:] for f in plain)
    assert fast_counters == plain_counters


async def test_queue_not_full_with_syncookies_1_hands_everything_back() -> None:
    rnd = random.Random(9)
    macs = (bytes.fromhex("020000000001"), bytes.fromhex("020000000002"))
    frames = [flood_syn(rnd, *macs) for _ in range(4)]
    (fast, _), (plain, _), batch = await both_ways(TcpConfig(syncookies=1), frames,
                                                    [True] * 4)
    assert batch.answered == 0 and batch.handed_back == 4
    assert [f[26:] for f in fast] == [f[26:] for f in plain]  # request socks, in order


async def test_over_budget_syns_are_dropped_counted_and_their_retransmission_goes_first() -> None:
    rnd = random.Random(11)
    macs = (bytes.fromhex("020000000001"), bytes.fromhex("020000000002"))
    stack, peer, _ = await make_stack(TcpConfig(syncookies=2))
    out: list[bytes] = []
    batch = new_batch(stack, lambda rows: out.extend(bytes(r) for r in rows))

    def as_rows(frames: list[bytes]) -> Any:
        return np.frombuffer(b"".join(frames), dtype=np.uint8).reshape(-1, FRAME_LEN)

    legit = flood_syn(rnd, *macs, src=bytes([198, 19, 7, 7]), sport=40404)
    first = [legit] + [flood_syn(rnd, *macs) for _ in range(99)]
    before = stack.ip.frames_in
    assert batch.process(as_rows(first), np.ones(100, dtype=bool), NOW, budget=10) == []
    # the newest 10 answered; 90 dropped, counted once each, the legit SYN among them
    assert len(out) == 10 and batch.shed == 90
    assert stack.ip.frames_in - before == 100
    assert stack.ip.drops["tcp-syn-overload"] == 90
    assert stack.tcp.mib["TcpExtListenDrops"] == 90
    assert all(f[30:34] != legit[26:30] for f in out)
    # one second later the client resends the same SYN amid a new wave: it is answered
    out.clear()
    second = [flood_syn(rnd, *macs) for _ in range(50)] + [legit] + [
        flood_syn(rnd, *macs) for _ in range(49)]
    batch.process(as_rows(second), np.ones(100, dtype=bool), NOW + 1.0, budget=10)
    assert len(out) == 10 and batch.resent_kept == 1
    assert sum(f[30:34] == legit[26:30] and f[36:38] == legit[34:36] for f in out) == 1
    # four seconds on the filter has forgotten it (two 2 s generations)
    out.clear()
    batch.process(as_rows(second), np.ones(100, dtype=bool), NOW + 5.5, budget=10)
    assert batch.resent_kept == 1
    await stack.close()
    await peer.close()


async def test_plain_path_frames_over_budget_wait_for_the_next_wakeup() -> None:
    """SynBatch.limit: the frames over a wakeup's plain-path budget are out
    of the ring already, so they wait (held, first in line next time);
    only those beyond hold_limit are dropped and counted."""
    stack, peer, _ = await make_stack(TcpConfig(syncookies=2))
    batch = new_batch(stack, lambda rows: None)
    frames = [(bytes([i]) * 60, False) for i in range(10)]
    assert batch.limit(frames, 64) == frames and batch.held == []
    before = stack.ip.frames_in
    assert batch.limit(frames, 3) == frames[:3]
    assert batch.held == frames[3:] and batch.shed == 0
    assert stack.ip.frames_in == before and "tcp-syn-overload" not in stack.ip.drops
    more = [(bytes([100 + i]) * 60, False) for i in range(5)]
    assert batch.limit(more, 4) == frames[3:7]  # the held ones first
    assert batch.held == frames[7:] + more
    batch.hold_limit = 2
    assert batch.limit([], 1) == frames[7:8]
    assert batch.held == frames[8:10]  # 5 over hold_limit: dropped, counted
    assert stack.ip.frames_in - before == 5 and stack.ip.drops["tcp-syn-overload"] == 5
    assert stack.tcp.mib["TcpExtListenDrops"] == 5 and batch.shed == 5
    assert batch.limit([], 8) == frames[8:10] and batch.held == []
    # under pressure the new frames go first, the oldest are shed first,
    # and at most pressed_hold wait
    batch.hold_limit, batch.pressed_hold = 512, 3
    assert batch.limit(frames[:4], 1, newest_first=True) == frames[:1]
    assert batch.held == frames[1:4]
    assert batch.limit(more, 2, newest_first=True) == more[:2]
    assert batch.held == more[2:5] and batch.shed == 8  # frames[1:4] shed
    await stack.close()
    await peer.close()


async def test_pressure_is_a_shed_syn_or_a_cookie_lately() -> None:
    """SynBatch.pressured: a shed SYN, a batch cookie or a listener's cookie
    in the last PRESSURE_WINDOW seconds; then it fades."""
    from ustack.driver.syn_batch import PRESSURE_WINDOW

    stack, peer, _ = await make_stack(TcpConfig(syncookies=1))
    try:
        batch = new_batch(stack, lambda rows: None)
        assert not batch.pressured(NOW)
        assert batch.room() == 16  # the listener's backlog, nothing queued
        batch._count_shed(1)  # at the table's clock, NOW
        assert batch.pressured(NOW) and batch.pressured(NOW + PRESSURE_WINDOW)
        assert not batch.pressured(NOW + PRESSURE_WINDOW + 0.01)
        stack.tcp._listeners[80].cookie_sent_at = NOW + 5
        assert batch.pressured(NOW + 5.5) and not batch.pressured(NOW + 7)
        rnd = random.Random(5)
        macs = (stack.ip.mac, peer.ip.mac)
        rows = np.frombuffer(b"".join(flood_syn(rnd, *macs) for _ in range(3)),
                             dtype=np.uint8).reshape(-1, FRAME_LEN)
        batch.table.config.syncookies = 2  # every SYN a cookie, in the batch
        assert batch.process(rows, np.ones(3, dtype=bool), NOW + 20) == []
        assert batch.answered == 3 and batch.pressured(NOW + 20.5)
    finally:
        await stack.close()
        await peer.close()


class FakeSynDevice:
    """The SYN channel's device for Stack._on_syn_readable: a ring holding
    ``frames`` until read, a real fd for the pause."""

    def __init__(self, frames: list[bytes]) -> None:
        self.frames = frames
        self.reads = 0
        self.sock, self._other = socket.socketpair()

    def read_fixed(self, size: int, limit: int) -> tuple[Any, Any, list[Any]]:
        taken, self.frames = self.frames[:limit], self.frames[limit:]
        self.reads += bool(taken)
        rows = np.frombuffer(b"".join(taken), dtype=np.uint8).reshape(-1, size)
        return rows, np.ones(len(taken), dtype=bool), []

    def fileno(self) -> int:
        return self.sock.fileno()

    def counters(self) -> dict[str, int]:
        return {}

    def close(self) -> None:
        self.sock.close()
        self._other.close()


async def _channel(stack: Stack, frames: list[bytes]) -> tuple[FakeSynDevice, SynBatch]:
    fake = FakeSynDevice(frames)
    batch = new_batch(stack, lambda rows: None)
    stack.syn_device = fake  # type: ignore[assignment]
    stack.syn_batch = batch
    return fake, batch


async def test_a_connect_burst_to_a_listener_with_room_is_taken_in_one_wakeup() -> None:
    """32 connects at once (bench/cps.py's burst) while handshake ACKs keep
    the loop busy: no flood pressure, so the wakeup takes every SYN the
    SYN queue has room for, each a request sock; none is shed.  (It used to
    be held to the CPU share: 4-5 went on, the rest were dropped, and the
    clients' 1 s retransmissions came back in the same burst.)"""
    stack, peer, sent = await make_stack(TcpConfig(syncookies=1), backlog=64)
    try:
        rnd = random.Random(32)
        burst = [flood_syn(rnd, stack.ip.mac, peer.ip.mac) for _ in range(32)]
        fake, batch = await _channel(stack, burst)
        stack._syn_seen_rx = -1  # main-device frames arrived since the last wakeup
        stack._on_syn_readable()
        listener = stack.tcp._listeners[80]
        assert len(listener.requests) == 32 and fake.reads == 1
        assert batch.shed == 0 and batch.held == []
        assert "tcp-syn-overload" not in stack.ip.drops
        assert stack.tcp.mib["TcpExtListenDrops"] == 0
        assert sum(f[47] == 0x12 for f in sent) == 32  # 32 SYN-ACKs
        assert not batch.pressured(NOW)
    finally:
        await stack.close()
        await peer.close()


async def test_frames_held_under_pressure_are_taken_by_later_wakeups() -> None:
    """Under pressure a wakeup takes only a few frames for the plain path;
    the rest wait in SynBatch.held and the channel wakes again without a new
    SYN making its socket readable, until every one is taken (none shed)."""
    stack, peer, _ = await make_stack(TcpConfig(syncookies=1), backlog=64)
    try:
        rnd = random.Random(40)
        burst = [flood_syn(rnd, stack.ip.mac, peer.ip.mac) for _ in range(40)]
        fake, batch = await _channel(stack, burst)
        batch.pressure_at = NOW  # as after a shed SYN
        # nothing else waits: a quantum's allowance (~0.5 ms, a few plain frames)
        stack._syn_seen_rx = stack.device.counters().get("rx_frames", 0)
        calls = 0

        def wakeup() -> None:
            nonlocal calls
            calls += 1
            stack._on_syn_readable()

        stack._syn_wakeup = wakeup
        stack._on_syn_readable()
        listener = stack.tcp._listeners[80]
        assert fake.reads == 1 and 0 < len(listener.requests) < 40
        assert len(batch.held) == 40 - len(listener.requests)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10.0
        while batch.held and loop.time() < deadline:
            await asyncio.sleep(0.005)
        assert len(listener.requests) == 40 and batch.shed == 0 and calls > 0
        assert fake.reads == 1  # no new SYN was read
    finally:
        await stack.close()
        await peer.close()


def test_retransmit_filter_stays_selective_when_a_flood_fills_it() -> None:
    """Fingerprints, not bits: after 400k shed SYNs (2 s of a 200k/s flood)
    a new SYN still looks new (a bit per slot said "seen" to a third of
    them, and those crowded the real retransmissions out)."""
    rng = np.random.default_rng(5)
    filt = RetransmitFilter()

    def random_keys(n: int) -> Any:
        return filt.keys(rng.integers(0, 1 << 32, n, dtype=np.uint64),
                         rng.integers(0, 1 << 16, n, dtype=np.uint64),
                         np.full(n, 80, dtype=np.uint64),
                         rng.integers(0, 1 << 32, n, dtype=np.uint64))

    shed = random_keys(400_000)
    filt.add(shed, NOW)
    assert filt.seen(random_keys(100_000), NOW + 1.0).mean() < 1e-4
    assert filt.seen(shed[-10_000:], NOW + 1.0).mean() > 0.95
    assert not filt.seen(shed[-10_000:], NOW + 4.5).any()  # both generations expired


def test_proven_peers_expire_and_stay_bounded() -> None:
    peers = ProvenPeers(ttl=10.0, refresh=1.0, limit=3)
    a, b, c, d = (bytes([10, 0, 0, i]) for i in range(1, 5))
    peers.update([a, b], NOW)
    src = np.array([int.from_bytes(x, "big") for x in (a, b, c)], dtype=np.uint64)
    assert peers.mask(src).tolist() == [True, True, False]
    peers.update([c, d], NOW + 5)  # over the limit: the oldest (a) goes
    assert len(peers) == 3 and peers.mask(src).tolist() == [False, True, True]
    peers.update([], NOW + 12)  # b is older than ttl
    assert peers.mask(src).tolist() == [False, False, True]
    # sampling a connection table: its remote addresses, at most every refresh
    peers.sample([(80, a, 1234)], NOW + 13)
    peers.sample([(80, b, 1234)], NOW + 13.5)
    assert peers.mask(src).tolist() == [True, False, True]
    assert not ProvenPeers().mask(src).any()


async def test_over_budget_syns_of_proven_peers_go_before_unknown_ones() -> None:
    """As Linux keeps SYNs of peers tcp_peer_is_proven when its SYN queue is
    nearly full: a source we had a connection with goes before the flood."""
    rnd = random.Random(12)
    macs = (bytes.fromhex("020000000001"), bytes.fromhex("020000000002"))
    stack, peer, _ = await make_stack(TcpConfig(syncookies=2))
    out: list[bytes] = []
    batch = new_batch(stack, lambda rows: out.extend(bytes(r) for r in rows))
    client = bytes([198, 19, 9, 9])
    batch.proven.update([client], NOW)
    batch.proven._sampled = NOW  # no sampling of the (empty) table in this wakeup
    frames = [flood_syn(rnd, *macs) for _ in range(30)] + [
        flood_syn(rnd, *macs, src=client, sport=5000 + i) for i in range(2)] + [
        flood_syn(rnd, *macs) for _ in range(68)]
    rows = np.frombuffer(b"".join(frames), dtype=np.uint8).reshape(-1, FRAME_LEN)
    batch.process(rows, np.ones(100, dtype=bool), NOW, budget=10)
    assert len(out) == 10 and batch.proven_kept == 2 and batch.shed == 90
    assert sum(f[30:34] == client for f in out) == 2
    await stack.close()
    await peer.close()


def test_cpu_share_bounds_syn_work_by_the_other_work_of_the_loop() -> None:
    t = [0.0]
    cpu = CpuShare(share=0.25, quantum=0.001, min_rows=32, max_rows=4096, cost=10e-6,
                   max_debt=0.004, clock=lambda: t[0])
    # nothing else waits: the quantum (1 ms / 10 us a row), owing nothing
    assert cpu.start(busy=False) == 100
    t[0] += 0.001
    cpu.stop(100)
    assert cpu.debt == 0.0
    # the loop spent 9 ms on other work: a third of that (share 1/4 of the total)
    t[0] += 0.009
    assert cpu.start() in (299, 300) and cpu.allowance == pytest.approx(0.003)
    t[0] += 0.005  # overspent by 2 ms: owed
    cpu.stop(300)
    assert cpu.debt == pytest.approx(0.002)
    assert cpu.cost == pytest.approx(10e-6 + 0.25 * (0.005 / 300 - 10e-6))
    # 3 ms of other work earn 1 ms, less than owed: no SYN read, 1 ms repaid
    t[0] += 0.003
    assert cpu.start() == 0 and cpu.skipped == 1 and cpu.debt == pytest.approx(0.001)
    t[0] += 0.006  # 2 ms earned, 1 ms owed
    assert cpu.start() == int(0.001 / cpu.cost) and cpu.allowance == pytest.approx(0.001)
    t[0] += 0.001
    cpu.stop(64)
    assert cpu.debt == pytest.approx(0.0)
    # nothing else to do: wakeups follow each other, each gets the quantum
    for _ in range(50):
        t[0] += 1e-5
        assert cpu.start(busy=False) >= 32
        t[0] += 0.001
        cpu.stop(8)  # too few rows to measure the cost by
    assert cpu.debt == pytest.approx(0.0) and cpu.spent == pytest.approx(0.057)
    # a debt is bounded
    t[0] += 0.003
    assert cpu.start() > 0
    t[0] += 0.1
    cpu.stop(1000)
    assert cpu.debt == 0.004
    with pytest.raises(ValueError):
        CpuShare(share=1.0)


async def test_a_completed_handshake_makes_its_source_a_proven_peer() -> None:
    """TcpTable.on_passive_open: a client whose connection came and went
    between two samples of the table is proven all the same."""
    pair = MemoryPair()
    server = await Stack.start(device=pair.a, address="10.77.0.2/24", diagnostics=False)
    client = await Stack.start(device=pair.b, address="10.77.0.1/24", diagnostics=False)
    batch = new_batch(server, lambda rows: None)
    src = np.array([int.from_bytes(socket.inet_aton("10.77.0.1"), "big")], dtype=np.uint64)
    batch.proven.sample([], server.tcp.now())
    assert not batch.proven.mask(src).any()
    await server.start_server(lambda r, w: w.close(), port=80)
    _, writer = await client.open_connection("10.77.0.2", 80)
    for _ in range(100):  # the server's side completes with the client's ACK
        if server.tcp.counters["tcp_passive_opens"]:
            break
        await asyncio.sleep(0.01)
    writer.close()
    batch.proven.sample([], server.tcp.now() + 1.0)  # the table no longer has it
    assert batch.proven.mask(src).all()
    await client.close()
    await server.close()


async def test_syn_channel_with_pcap_is_refused(tmp_path: Any) -> None:
    """The channel's frames would bypass the capture: asking for both is an
    error (the default keeps one socket with ``pcap``), raised before any
    socket is opened."""
    with pytest.raises(ValueError, match="pcap"):
        await Stack.start(iface="nosuch0", address="10.77.0.2/24", pcap=tmp_path / "x.pcap",
                          syn_channel=True)


async def test_a_busy_wakeup_pauses_the_syn_socket_then_watches_it_again() -> None:
    """While established traffic waits, the SYN channel's socket is not
    watched for Stack.SYN_PAUSE after a wakeup (a flood keeps it readable:
    the loop would turn without sleeping); then it is, with the same
    callback.  Closing the stack during a pause cancels it."""
    pair = MemoryPair()
    stack = await Stack.start(device=pair.a, address="10.77.0.2/24", diagnostics=False)
    a, b = socket.socketpair()
    b.send(b"x")  # readable all the time, as a flooded ring

    class FakeSyn:
        def fileno(self) -> int:
            return a.fileno()

        def close(self) -> None:
            pass

    calls: list[float] = []
    loop = asyncio.get_running_loop()
    try:
        fake: Any = FakeSyn()
        stack.syn_device = fake
        stack._syn_wakeup = lambda: calls.append(loop.time())
        loop.add_reader(a.fileno(), stack._syn_wakeup)
        stack._pause_syn_channel(fake)
        paused_at = loop.time()
        assert not loop.remove_reader(a.fileno())  # not watched during the pause
        deadline = loop.time() + 5.0
        while not calls and loop.time() < deadline:  # a loaded machine may be slow
            await asyncio.sleep(Stack.SYN_PAUSE)
        assert calls and calls[0] >= paused_at + Stack.SYN_PAUSE * 0.9
        stack._pause_syn_channel(fake)
        assert stack._syn_pause is not None
    finally:
        await stack.close()
        assert stack._syn_pause is None
        n = len(calls)
        await asyncio.sleep(Stack.SYN_PAUSE * 3)
        assert len(calls) == n  # no callback after close
        a.close()
        b.close()


async def test_c_steps_shed_like_numpy_and_leave_the_same_filter() -> None:
    """The C shed (ustack/driver/_synbatch.c) keeps the same rows as numpy's
    (retransmissions, proven sources, the newest), counts the same and
    writes the same fingerprints, over random floods with repeats and
    proven sources, wakeup after wakeup."""
    if _C_STEPS is None:
        pytest.skip("ustack.driver._synbatch is not built (setup.py build_ext)")
    pair_macs = (bytes.fromhex("020000000001"), bytes.fromhex("020000000002"))
    stacks = []
    batches = []
    for mode in ("c", "numpy"):
        stack, peer, _ = await make_stack(TcpConfig(syncookies=2))
        stacks += [stack, peer]
        batch = SynBatch(stack.ip, stack.tcp, lambda rows: None)
        batch.accel = None if mode == "numpy" else _C_STEPS
        batch.proven.update([bytes([198, 18, 0, k]) for k in range(0, 256, 5)], NOW)
        batches.append(batch)
    rnd = random.Random(7)
    earlier: list[bytes] = []
    for wakeup in range(12):
        n = rnd.choice([0, 1, 5, 200, 1500])
        frames = [rnd.choice(earlier) if earlier and rnd.random() < 0.2 else
                  flood_syn(rnd, *pair_macs, src=bytes([198, 18, 0, rnd.randrange(256)])
                            if rnd.random() < 0.3 else None) for _ in range(n)]
        earlier = (earlier + frames)[-3000:]
        rows = np.frombuffer(b"".join(frames), dtype=np.uint8).reshape(-1, FRAME_LEN)
        trusted = np.array([rnd.random() < 0.5 for _ in range(n)], dtype=bool)
        budget = rnd.choice([0, 1, 10, 100, 5000])
        now = NOW + wakeup * 0.7
        kept = [b._shed(rows, trusted, min(budget, n), now) if n else (rows, trusted)
                for b in batches]
        assert kept[0][0].tobytes() == kept[1][0].tobytes(), wakeup
        assert kept[0][1].tolist() == kept[1][1].tolist(), wakeup
        c, py = batches
        assert (c.shed, c.resent_kept, c.proven_kept) == (py.shed, py.resent_kept,
                                                          py.proven_kept), wakeup
        for tc, tp in zip(c.retransmits._tables, py.retransmits._tables, strict=True):
            assert np.array_equal(tc, tp), wakeup
    assert batches[0].resent_kept > 0 and batches[0].proven_kept > 0
    for s in stacks:
        await s.close()


async def test_rows_handed_back_put_proven_sources_first() -> None:
    """The plain path may take only the first few rows handed back
    (SynBatch.limit): those from proven sources come first."""
    stack, peer, _ = await make_stack(TcpConfig(syncookies=1), backlog=4096)
    try:
        batch = new_batch(stack, lambda rows: None)
        rnd = random.Random(3)
        macs = (stack.ip.mac, peer.ip.mac)
        friend = bytes([198, 19, 7, 7])
        frames = [flood_syn(rnd, *macs) for _ in range(30)] + [flood_syn(rnd, *macs, src=friend)]
        rows = np.frombuffer(b"".join(frames), dtype=np.uint8).reshape(-1, FRAME_LEN)
        flags = np.ones(len(frames), dtype=bool)
        assert [f for f, _ in batch.process(rows, flags, NOW)] == frames  # nobody proven
        batch.proven.update([friend], NOW)
        back = [f for f, _ in batch.process(rows, flags, NOW)]
        assert back == [frames[-1]] + frames[:-1]  # the SYN queue has room: all go back
    finally:
        await stack.close()
        await peer.close()


def _ring(frames: list[tuple[bytes, int, int]], nslots: int, head: int,
          slot: int = 256) -> bytearray:
    """A TPACKET_V2 receive ring: ``frames`` (bytes, tp_status, pkttype) in
    the slots from ``head`` on (wrapping), the others free (status 0)."""
    import struct

    ring = bytearray(slot * nslots)
    mac = 66  # as the kernel: after the header and sockaddr_ll, aligned
    for i, (frame, status, pkttype) in enumerate(frames):
        off = ((head + i) % nslots) * slot
        struct.pack_into("<IIIHH", ring, off, status, len(frame), len(frame), mac, mac + 14)
        ring[off + 42] = pkttype
        ring[off + mac:off + mac + len(frame)] = frame
    return ring


def test_ring_shed_is_read_fixed_then_shed_without_copying_the_shed_rows() -> None:
    """_synbatch.ring_shed on a ring in place: the same kept rows, trusted
    flags, counts and filter writes as shed() over the rows read_fixed
    would return (the ready whole 74-byte incoming frames from the head,
    wrapping at the ring's end), stopping before another kind of frame;
    the slots taken go back to the kernel, no other."""
    if _C_STEPS is None:
        pytest.skip("ustack.driver._synbatch is not built (setup.py build_ext)")
    rnd = random.Random(13)
    macs = (bytes.fromhex("020000000001"), bytes.fromhex("020000000002"))
    proven = np.sort(np.array([int.from_bytes(bytes([198, 18, 0, k]), "big")
                               for k in range(0, 256, 7)], dtype=np.uint64))
    earlier: list[bytes] = []
    table_a = np.zeros(1 << 12, dtype=np.uint16)
    table_b = np.zeros(1 << 12, dtype=np.uint16)
    for case in range(40):
        nslots = rnd.choice([8, 64, 512])
        head = rnd.randrange(nslots)
        ready = rnd.randrange(nslots + 1)
        frames = []
        for _ in range(ready):
            if earlier and rnd.random() < 0.15:
                frame = rnd.choice(earlier)
            else:
                frame = flood_syn(rnd, *macs, src=bytes([198, 18, 0, rnd.randrange(256)])
                                  if rnd.random() < 0.3 else None)
            earlier.append(frame)
            status = 1 | (rnd.choice([0, 0x8, 0x80]))
            kind = rnd.random()
            if kind < 0.03:
                frames.append((frame[:60], status, 0))  # another size
            elif kind < 0.05:
                frames.append((frame, status, 4))  # PACKET_OUTGOING
            else:
                frames.append((frame, status, 0))
        earlier = earlier[-2000:]
        ring = _ring(frames, nslots, head)
        limit = rnd.choice([1, 5, nslots, 10_000])
        budget = rnd.choice([0, 1, 3, 50, 10_000])
        # what read_fixed would take: the whole incoming 74-byte frames up to the first other
        expect_n = 0
        for frame, _, pkttype in frames[:min(limit, nslots)]:
            if len(frame) != FRAME_LEN or pkttype == 4:
                break
            expect_n += 1
        odd_expected = expect_n < min(limit, nslots, len(frames))
        rows = np.frombuffer(b"".join(f for f, _, _ in frames[:expect_n]),
                             dtype=np.uint8).reshape(-1, FRAME_LEN)
        flags = np.array([bool(st & 0x88) for _, st, _ in frames[:expect_n]], dtype=bool)
        ref_a, ref_b = table_a.copy(), table_b.copy()
        keep_b, ref_resent, ref_proven = _C_STEPS.shed(rows, min(budget, expect_n), ref_a, ref_b,
                                                       12, proven)
        keep = np.frombuffer(keep_b, dtype=np.int32)
        got = _C_STEPS.ring_shed(ring, 256, nslots, head, limit, budget, 42, 0x88, table_a,
                                 table_b, 12, proven)
        rows_b, flags_b, taken, odd, resent_kept, proven_kept = got
        assert taken == expect_n and bool(odd) == odd_expected, case
        assert rows_b == rows[keep].tobytes(), case
        assert list(flags_b) == flags[keep].astype(np.uint8).tolist(), case
        assert (resent_kept, proven_kept) == (ref_resent, ref_proven), case
        assert np.array_equal(table_a, ref_a) and np.array_equal(table_b, ref_b), case
        for i in range(len(frames)):
            status = int.from_bytes(ring[((head + i) % nslots) * 256:][:4], "little")
            assert (status == 0) is (i < taken), (case, i)
