"""Two TCP cores wired in memory: handshake, 10 MB each way with random write
sizes and random read pacing, close; every combination of the options, with
and without seeded loss/reordering/duplication; ISNs near 2**32."""

from __future__ import annotations

import itertools
import random

import pytest

from ustack.tcp import TcpConfig, TcpState
from ustack.tcp import events as ev
from ustack.tcp.testing import BulkApp, MemoryPair, WireProfile

MB = 1_000_000


def _transfer(pair: MemoryPair, size: int, seed: int, max_time: float = 10_000) -> None:
    rng = random.Random(seed)
    data_a = rng.randbytes(size)
    data_b = rng.randbytes(size)
    app_a = BulkApp(lambda: pair.client.conn, data_a, random.Random(seed + 1))
    app_b = BulkApp(lambda: pair.server.conn, data_b, random.Random(seed + 2))

    def app(now: float) -> float | None:
        wakes = [w for w in (app_a(now), app_b(now)) if w is not None]
        return min(wakes) if wakes else None

    def done() -> bool:
        return (app_a.eof and app_b.eof and pair.server.conn is not None
                and pair.a.state in (TcpState.TIME_WAIT, TcpState.CLOSED)
                and pair.b.state in (TcpState.TIME_WAIT, TcpState.CLOSED))

    pair.run(done, app=app, max_time=max_time)
    assert bytes(app_a.received) == data_b
    assert bytes(app_b.received) == data_a
    for conn in (pair.a, pair.b):
        assert conn.send_queue == 0
        assert conn.readable() == 0
    # both sides closed cleanly: no failure events
    for ep in (pair.client, pair.server):
        assert not [e for e in ep.events if isinstance(e, ev.ConnectionFailed)]
        assert any(isinstance(e, ev.Connected) for e in ep.events)
        assert any(isinstance(e, ev.EofReceived) for e in ep.events)
    # the simultaneous-ish close ends with one side in TIME-WAIT; let it expire
    pair.run(lambda: pair.a.state is TcpState.CLOSED and pair.b.state is TcpState.CLOSED,
             max_time=pair.now + 200)
    assert any(isinstance(e, ev.Closed) for e in pair.client.events)
    assert any(isinstance(e, ev.Closed) for e in pair.server.events)


COMBOS = list(itertools.product([False, True], repeat=4))


def _cfg(wscale: bool, sack: bool, ts: bool, nodelay: bool, **kw: object) -> TcpConfig:
    return TcpConfig(window_scaling=wscale, sack=sack, timestamps=ts, nodelay=nodelay,
                     **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("wscale,sack,ts,nodelay", COMBOS,
                         ids=[f"ws{int(a)}-sack{int(b)}-ts{int(c)}-nd{int(d)}"
                              for a, b, c, d in COMBOS])
def test_bulk_10mb_each_way_clean_wire(wscale: bool, sack: bool, ts: bool,
                                       nodelay: bool) -> None:
    cfg = _cfg(wscale, sack, ts, nodelay)
    pair = MemoryPair(cfg, cfg, seed=7, profile=WireProfile(delay=0.0005))
    _transfer(pair, 10 * MB, seed=11)
    assert pair.a.total_retrans == 0 and pair.b.total_retrans == 0
    assert pair.a.ts_ok is ts and pair.a.sack_ok is sack and pair.a.wscale_ok is wscale


@pytest.mark.parametrize("wscale,sack,ts,nodelay", COMBOS,
                         ids=[f"ws{int(a)}-sack{int(b)}-ts{int(c)}-nd{int(d)}"
                              for a, b, c, d in COMBOS])
def test_bulk_lossy_reordering_wire(wscale: bool, sack: bool, ts: bool, nodelay: bool) -> None:
    cfg = _cfg(wscale, sack, ts, nodelay)
    prof = WireProfile(delay=0.002, loss=0.01, reorder=0.02, reorder_delay=0.003,
                       duplicate=0.005)
    pair = MemoryPair(cfg, cfg, seed=3, profile=prof)
    _transfer(pair, 10 * MB, seed=5)
    assert pair.dropped > 0
    assert pair.a.total_retrans > 0 or pair.b.total_retrans > 0


def test_bulk_through_encode_decode() -> None:
    """Every segment round-trips through the wire codec."""
    prof = WireProfile(delay=0.001, loss=0.005, reorder=0.01, encode=True)
    pair = MemoryPair(seed=9, profile=prof)
    _transfer(pair, 1 * MB, seed=2)


@pytest.mark.parametrize("iss_client,iss_server", [
    (0xFFFFFFFF - 100_000, 0xFFFFFFFF - 3), (0xFFFFFFFF, 0xFFFF0000), (0x7FFFFFF0, 0xFFFFFFFE),
])
def test_sequence_wrap(iss_client: int, iss_server: int) -> None:
    """ISNs just below 2**32: both sequence spaces wrap mid-transfer, with loss."""
    prof = WireProfile(delay=0.001, loss=0.01, reorder=0.02)
    pair = MemoryPair(seed=4, iss_client=iss_client, iss_server=iss_server, profile=prof)
    _transfer(pair, 1 * MB, seed=8)
    assert pair.a.snd_una < 0x10000000 or iss_client == 0x7FFFFFF0  # wrapped past zero


def test_gso_super_segments_and_gro() -> None:
    """max_segment lets the sender emit payloads of whole MSS multiples and the
    receiver accepts segments larger than its MSS."""
    cfg = TcpConfig(max_segment=65_000)
    pair = MemoryPair(cfg, TcpConfig(), seed=1, keep_log=True)
    _transfer(pair, 2 * MB, seed=3)
    sizes = [len(s.payload) for _, s in pair.client.log if s.payload]
    mss = pair.a.send_mss
    assert max(sizes) > mss
    assert all(n % mss == 0 for n in sizes if n > mss)
    assert max(sizes) <= 65_000


def test_slow_reader_closes_window_and_reading_reopens_it() -> None:
    cfg = TcpConfig(recv_buffer=64 * 1024, window_scaling=False)
    pair = MemoryPair(cfg, cfg, seed=1, keep_log=True)
    pair.handshake()
    a, b = pair.a, pair.b
    data = bytes(300_000)
    sent = a.send(data, pair.now)
    pair.run(lambda: b.readable() >= 64 * 1024 - 2000 and a.snd_wnd == 0,
             max_time=pair.now + 5)
    # the receiver advertised a zero window
    assert any(s.window == 0 for _, s in pair.server.log)
    got = b.recv(1 << 20, pair.now)
    assert len(got) >= 60_000
    pair.flush()
    # a window update went out right after the read
    assert pair.server.log[-1][1].window > 0
    total = len(got)
    pos = sent

    def app(now: float) -> float:
        nonlocal total, pos
        total += len(b.recv(1 << 20, now))
        if pos < len(data):
            pos += a.send(data[pos:], now)
        return now + 0.01

    pair.run(lambda: total == len(data), app=app, max_time=pair.now + 60)

