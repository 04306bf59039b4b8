"""The listener's SYN queue with real connections: request socks, SYN cookies
(RFC 4987, Linux's encoding), the SYN-RECEIVED rules of the edge-case
catalogue (7-9) on request socks, and what a request costs."""

from __future__ import annotations

import asyncio
import socket
import tracemalloc

import pytest
from table_fakes import FakeIp, FakeStack

from ustack.driver import tcp_table as tt
from ustack.tcp import syncookies as sc
from ustack.tcp.config import TcpConfig
from ustack.tcp.connection import TcpConnection
from ustack.tcp.listener import RequestSock, request_synack, syn_window
from ustack.tcp.state import TcpState
from ustack.wire.tcp import ACK, FIN, RST, SYN, TcpOptions, TcpSegment

LOCAL = socket.inet_aton("10.77.0.2")
PEER = socket.inet_aton("10.77.0.1")
FULL = TcpOptions(mss=1460, sack_permitted=True, timestamp=(1000, 0), wscale=7)


def make_table(**cfg: object) -> tuple[tt.TcpTable, FakeIp, list[tt.TcpEndpoint]]:
    stack = FakeStack()
    table = tt.TcpTable(stack, config=TcpConfig().with_(**cfg))
    accepted: list[tt.TcpEndpoint] = []
    table.listen(80, 16, accepted.append)
    return table, stack.ip, accepted


def syn(sport: int = 40000, seq: int = 5000, opts: TcpOptions = FULL) -> TcpSegment:
    return TcpSegment(sport, 80, seq, 0, SYN, 64240, 0, opts)


def ack_for(synack: TcpSegment, sport: int = 40000, payload: bytes = b"",
            flags: int = ACK, tsval: int = 1001) -> TcpSegment:
    ts = synack.options.timestamp
    opts = TcpOptions(timestamp=(tsval, ts[0])) if ts is not None else TcpOptions()
    return TcpSegment(sport, 80, synack.ack, synack.seq + 1, flags, 502, 0, opts, payload)


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


# ------------------------------------------------------------- cookie codec

def test_cookie_round_trip_and_rejections() -> None:
    jar = sc.CookieJar(b"k" * 32)
    cookie, mss = jar.make(PEER, LOCAL, 40000, 80, 777, 1460, now=600.0)
    assert mss == 1460
    assert jar.check(PEER, LOCAL, 40000, 80, 777, cookie, now=600.0) == 1460
    assert jar.check(PEER, LOCAL, 40000, 80, 777, cookie, now=659.0) == 1460  # same minute
    assert jar.check(PEER, LOCAL, 40000, 80, 777, cookie, now=661.0) == 1460  # one later
    assert jar.check(PEER, LOCAL, 40000, 80, 777, cookie, now=721.0) is None  # too old
    assert jar.check(PEER, LOCAL, 40000, 80, 1777, cookie, now=600.0) is None  # other SYN
    assert jar.check(PEER, LOCAL, 40001, 80, 777, cookie, now=600.0) is None  # other port
    assert jar.check(PEER, LOCAL, 40000, 80, 777, cookie ^ 0x1000, now=600.0) is None
    other = sc.CookieJar(b"j" * 32)
    assert other.check(PEER, LOCAL, 40000, 80, 777, cookie, now=600.0) is None  # other secret
    # the MSS table: the largest entry not above the peer's MSS
    for offered, expect in ((1460, 1460), (1459, 1440), (1300, 1300), (1000, 536), (100, 536)):
        c, m = jar.make(PEER, LOCAL, 1, 80, 9, offered, now=0.0)
        assert m == expect and jar.check(PEER, LOCAL, 1, 80, 9, c, now=0.0) == expect


def test_cookie_timestamp_carries_options_and_never_exceeds_now() -> None:
    for ts_now in (0x12345678, 0x40, 0x3F, 5, 0xFFFFFFFF):
        for wscale, sack in ((7, True), (None, False), (14, False), (0, True)):
            ts = sc.encode_timestamp(ts_now, wscale, sack)
            assert sc.decode_timestamp(ts) == (wscale, sack, False)
            assert (ts_now - ts) & 0xFFFFFFFF < 64  # at most 63 ticks behind, never ahead


# -------------------------------------------------- the SYN-ACK, differential

@pytest.mark.parametrize("opts", [
    FULL, TcpOptions(), TcpOptions(mss=1200), TcpOptions(mss=1460, wscale=14),
    TcpOptions(mss=1460, timestamp=(7, 0)), TcpOptions(sack_permitted=True, wscale=2),
])
def test_request_synack_equals_what_accept_sends(opts: TcpOptions) -> None:
    cfg = TcpConfig()
    seg = syn(opts=opts)
    req = RequestSock(seg, PEER, 123456789, 50.0)
    conn = TcpConnection.accept(seg, 123456789, 50.0, cfg)
    (expected,) = conn.segments_to_send(50.0)
    assert request_synack(cfg, req, 50.0) == expected
    assert expected.window == syn_window(cfg)


# ------------------------------------------------------ request socks, live

async def test_request_then_ack_establishes_a_real_connection() -> None:
    table, ip, accepted = make_table(syncookies=0)
    table.segment_received(PEER, LOCAL, syn())
    (synack,) = ip.take()
    assert synack.flags == SYN | ACK and synack.ack == 5001
    assert table.syn_queue_len() == 1 and len(table) == 0  # no connection yet
    (req,) = table.requests()
    assert (req.remote_addr, req.remote_port, req.local_port) == (PEER, 40000, 80)
    table.segment_received(PEER, LOCAL, ack_for(synack, payload=b"hello"))
    await settle()
    (ep,) = accepted
    conn = ep.live
    assert conn.state is TcpState.ESTABLISHED and conn.readable() == 5
    assert conn.wscale_ok and conn.sack_ok and conn.ts_ok and conn.snd_wscale == 7
    assert table.syn_queue_len() == 0 and table.mib["TcpPassiveOpens"] == 1
    acks = ip.take()
    assert acks and acks[-1].ack == 5006  # the data on the ACK was acknowledged
    table.close()


async def test_request_sock_edge_cases() -> None:
    table, ip, accepted = make_table(syncookies=0)
    table.segment_received(PEER, LOCAL, syn())
    (synack,) = ip.take()
    # catalogue 7: the same SYN again -> the SYN-ACK again
    table.segment_received(PEER, LOCAL, syn())
    (again,) = ip.take()
    assert again.flags == SYN | ACK and again.seq == synack.seq
    # catalogue 8: a bad ACK -> RST seq=SEG.ACK, the request survives
    table.segment_received(PEER, LOCAL, TcpSegment(40000, 80, 5001, 99, ACK, 100))
    (rst,) = ip.take()
    assert rst.flags == RST and rst.seq == 99 and table.syn_queue_len() == 1
    # no ACK flag: dropped and counted
    assert table.segment_received(PEER, LOCAL, TcpSegment(40000, 80, 5001, 0, FIN, 100)) \
        == "tcp-req-no-ack"
    # catalogue 9: an in-window RST drops the request, nothing sent
    table.segment_received(PEER, LOCAL, TcpSegment(40000, 80, 5001, 0, RST, 0))
    assert ip.take() == [] and table.syn_queue_len() == 0
    # catalogue 7: a different in-window SYN resets the request
    table.segment_received(PEER, LOCAL, syn(sport=40001))
    ip.take()
    table.segment_received(PEER, LOCAL, syn(sport=40001, seq=5100))
    (reset,) = ip.take()
    assert reset.flags & RST and table.syn_queue_len() == 0
    assert accepted == []
    table.close()


async def test_listener_drops_are_counted() -> None:
    table, ip, _ = make_table()
    assert table.segment_received(PEER, LOCAL, TcpSegment(1, 80, 1, 0, SYN | FIN, 100)) \
        == "tcp-listen-syn-fin"
    assert table.segment_received(PEER, LOCAL, TcpSegment(1, 80, 1, 0, RST, 100)) \
        == "tcp-listen-rst"
    assert table.segment_received(PEER, LOCAL, TcpSegment(1, 80, 1, 0, FIN, 100)) \
        == "tcp-listen-no-syn"
    assert table.segment_received(PEER, LOCAL, TcpSegment(1, 81, 1, 0, RST, 100)) \
        == "tcp-rst-no-connection"
    assert ip.take() == []
    # no route / failed neighbour: no request state, no SYN-ACK
    ip.unreachable.add(PEER)
    assert table.segment_received(PEER, LOCAL, syn()) == "tcp-syn-unreachable"
    assert ip.take() == [] and table.syn_queue_len() == 0
    table.close()


async def test_synack_retransmitted_then_request_expires() -> None:
    table, ip, _ = make_table(syncookies=0, rto_initial=0.02, synack_retries=2)
    table.segment_received(PEER, LOCAL, syn())
    assert len(ip.take()) == 1
    await asyncio.sleep(0.25)  # 0.02 + 0.04 (+0.08 until forgotten)
    again = ip.take()
    assert [s.flags for s in again] == [SYN | ACK, SYN | ACK]
    assert table.syn_queue_len() == 0
    table.close()


# ------------------------------------------------------------ cookies, live

async def test_cookie_handshake_restores_options() -> None:
    table, ip, accepted = make_table(syncookies=2)
    table.segment_received(PEER, LOCAL, syn(opts=TcpOptions(
        mss=1400, sack_permitted=True, timestamp=(1000, 0), wscale=5)))
    (synack,) = ip.take()
    assert table.syn_queue_len() == 0 and table.mib["TcpExtSyncookiesSent"] == 1
    assert synack.options.wscale == 7 and synack.options.sack_permitted
    table.segment_received(PEER, LOCAL, ack_for(synack))
    await settle()
    (ep,) = accepted
    conn = ep.live
    assert conn.state is TcpState.ESTABLISHED
    assert conn.snd_wscale == 5 and conn.sack_ok and conn.ts_ok
    assert conn.send_mss == 1300 - 12  # the cookie's MSS (table entry), minus TS
    assert table.mib["TcpExtSyncookiesRecv"] == 1
    # later TSvals stay at or after the cookie's (the peer's PAWS)
    ip.take()
    conn.send(b"x", table.now())
    ep.touch()
    await settle()
    data = [s for s in ip.take() if s.payload]
    cookie_ts, data_ts = synack.options.timestamp, data[0].options.timestamp if data else None
    assert cookie_ts is not None and data_ts is not None
    assert (data_ts[0] - cookie_ts[0]) & 0xFFFFFFFF < 1 << 31
    table.close()


async def test_cookie_without_timestamps_has_no_wscale_or_sack() -> None:
    table, ip, accepted = make_table(syncookies=2)
    table.segment_received(PEER, LOCAL, syn(opts=TcpOptions(mss=1460, sack_permitted=True,
                                                          wscale=7)))
    (synack,) = ip.take()
    assert synack.options.wscale is None and not synack.options.sack_permitted
    table.segment_received(PEER, LOCAL, ack_for(synack))
    await settle()
    (ep,) = accepted
    assert not ep.live.wscale_ok and not ep.live.sack_ok and ep.live.send_mss == 1460
    table.close()


async def test_bad_cookie_gets_rst_and_counts_failed() -> None:
    table, ip, accepted = make_table(syncookies=2)
    table.segment_received(PEER, LOCAL, syn())
    (synack,) = ip.take()
    forged = ack_for(synack)
    forged = TcpSegment(forged.src_port, 80, forged.seq, forged.ack ^ 0x100, ACK, 502, 0,
                        forged.options)
    table.segment_received(PEER, LOCAL, forged)
    (rst,) = ip.take()
    assert rst.flags == RST and table.mib["TcpExtSyncookiesFailed"] == 1
    await settle()
    assert accepted == [] and len(table) == 0
    table.close()


async def test_full_accept_queue_drops_syn_and_ack() -> None:
    stack = FakeStack()
    table = tt.TcpTable(stack, config=TcpConfig())
    listener = table.listen(80, 1, lambda ep: None)
    listener.set_accepting(False)
    synacks = []
    for i in range(3):  # one request sock, then cookies (the SYN queue holds one)
        table.segment_received(PEER, LOCAL, syn(sport=41000 + i))
        synacks += stack.ip.take()
    assert len(synacks) == 3 and table.mib["TcpExtSyncookiesSent"] == 2
    for i, synack in enumerate(synacks):  # two fit (backlog + 1), the third ACK overflows
        table.segment_received(PEER, LOCAL, ack_for(synack, sport=41000 + i))
    assert len(listener.accept_queue) == 2
    assert table.mib["TcpExtListenOverflows"] == 1 and table.mib["TcpExtListenDrops"] == 1
    assert table.segment_received(PEER, LOCAL, syn(sport=42000)) == "tcp-accept-queue-full"
    table.close()


# ------------------------------------------------------------- what it costs

async def test_request_socks_are_cheap() -> None:
    """10,000 half-open requests: bytes per request (the issue saw 3.8 KB
    with a whole connection per SYN)."""
    stack = FakeStack()
    stack.ip.send = lambda dst, protocol, payload: None  # type: ignore[method-assign]
    table = tt.TcpTable(stack, config=TcpConfig(syncookies=0, max_syn_backlog=1 << 20))
    table.listen(80, 1 << 20, lambda ep: None)
    segs = [syn(sport=1024 + i % 60000, seq=i, opts=FULL) for i in range(10_000)]
    srcs = [bytes([10, 77, 1 + i // 60000, 0]) for i in range(10_000)]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for src, seg in zip(srcs, segs, strict=True):
        table.segment_received(src, LOCAL, seg)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert table.syn_queue_len() == 10_000
    per_request = (after - before) / 10_000
    print(f"bytes per request sock: {per_request:.0f}")
    assert per_request < 1000, per_request
    table.close()


# ----------------------------------------------- the flood fast path, differential

class RawIp(FakeIp):
    def __init__(self) -> None:
        super().__init__()
        self.raw: list[bytes] = []

    def send(self, dst: bytes, protocol: int, payload: bytes) -> None:
        self.raw.append(bytes(payload))
        super().send(dst, protocol, payload)


@pytest.mark.parametrize("seed", range(20))
async def test_flood_fast_path_sends_the_general_paths_bytes(
        seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    import random
    rnd = random.Random(seed)
    results = []
    seg = TcpSegment(rnd.randrange(1, 65536), 80, rnd.getrandbits(32), 0, SYN, 64240, 0,
                     TcpOptions(mss=rnd.choice([536, 1200, 1300, 1440, 1460, 9000]),
                                sack_permitted=True, wscale=rnd.randrange(16),
                                timestamp=(rnd.getrandbits(32), 0)))
    src = bytes([198, 18, rnd.randrange(256), rnd.randrange(256)])
    wire = seg.encode(src, LOCAL)
    assert len(wire) == 40  # Linux's SYN layout
    now = rnd.uniform(0, 1e6)
    for fast in (True, False):
        stack = FakeStack()
        stack.ip = RawIp()
        table = tt.TcpTable(stack, config=TcpConfig(syncookies=2))
        table._cookies = sc.CookieJar(b"s" * 32)
        monkeypatch.setattr(table, "_clock", lambda: now)
        table.listen(80, 16, lambda ep: None)
        if fast:
            assert table._syn_flood_path(src, LOCAL, wire)
        else:
            assert table._accept_syn(table._listeners[80], src, LOCAL, seg) is None
        results.append((stack.ip.raw, table.mib.nonzero(), table.counters["tcp_segs_out"]))
        monkeypatch.undo()
        table.close()
    assert results[0][0] == results[1][0] and len(results[0][0]) == 1
    assert results[0][1] == results[1][1]
    assert results[0][2] == results[1][2]


async def test_flood_fast_path_leaves_unusual_syns_to_the_general_path() -> None:
    table, ip, _ = make_table(syncookies=1)
    wire = syn().encode(PEER, LOCAL)
    assert not table._syn_flood_path(PEER, LOCAL, wire)  # the SYN queue is not full
    other = TcpSegment(40000, 80, 1, 0, SYN, 100, 0, TcpOptions(mss=1460, wscale=7,
                                                               sack_permitted=True))
    table2, ip2, _ = make_table(syncookies=2)
    assert table2.ip_input(PEER, LOCAL, other.encode(PEER, LOCAL)) is None  # no TS: general
    (reply,) = ip2.take()
    assert reply.flags == SYN | ACK and reply.options.timestamp is None
    assert reply.options.wscale is None  # a cookie without timestamps carries no wscale
    assert not table2._syn_flood_path(PEER, LOCAL, syn(opts=FULL).encode(PEER, LOCAL)
                                      [:36] + b"\x01" * 4)  # not nop, wscale
    table.close()
    table2.close()
