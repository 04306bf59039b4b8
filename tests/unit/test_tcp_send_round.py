"""One output round in one device call (AfPacketDevice.send_round,
IpLayer.send_tcp_round, TcpTable._transmit_gathered) is a fast path: the
frames, their order, IP identification numbers, queueing and counters equal
those of the plain path (send / send_gso_parts per frame, send_tcp_many per
run of MSS-sized segments).  The send time per segment it returns moves each
segment's scoreboard records to its own frame's time (Recovery.restamp_each),
and equals restamp when every frame has the same time.

A datagram socketpair stands in for the packet socket (one sendmsg is one
datagram, read back whole): no root needed."""

from __future__ import annotations

import socket
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ustack.link.af_packet import AfPacketDevice
from ustack.net.ipv4 import IpLayer
from ustack.tcp.recovery import Recovery
from ustack.tcp.rtt import RttEstimator
from ustack.wire.tcp import ACK, PSH, TcpOptions, TcpSegment

US, PEER = b"\x0a\0\0\x02", b"\x0a\0\0\x01"


def _gather() -> Any:
    try:
        from ustack.link import _batch
    except ImportError:
        pytest.skip("the C accelerator ustack.link._batch is not built (no compiler at install)")
    return _batch.sendgather


def _head(n: int, ident: int = 7) -> bytes:
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + n, ident, 0x4000, 64, 6, 0, US, PEER)
    return b"\x04" * 6 + b"\x02" * 6 + b"\x08\x00" + ip


def _tcp(opt_words: int, seq: int = 1) -> bytes:
    hlen = 20 + 4 * opt_words
    return struct.pack("!HHIIBBHHH", 40000, 80, seq, 2, (hlen // 4) << 4, 0x18, 500, 0,
                       0) + b"\x01" * (4 * opt_words)


def _gso(payload: bytes, opt_words: int, gso: int) -> tuple[bytes, bytes, bytes, int]:
    tcp = _tcp(opt_words)
    return (_head(len(tcp) + len(payload)), tcp, payload, gso)


_Frame = bytes | tuple[bytes, bytes, bytes, int]


def _sendround() -> Any:
    _gather()
    from ustack.link import _batch

    if not hasattr(_batch, "sendround"):
        pytest.skip("ustack.link._batch predates sendround (rebuild the C helpers)")
    return _batch.sendround


def _run(frames: list[_Frame], fast: bool, queued: bool, sndbuf: int,
         pieces: bool = False) -> tuple[Any, ...]:
    """``fast``: send_round (with ``pieces``: its sendgather path, the
    pieces of each frame built in Python; else its loop in C, sendround)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    ours.setblocking(False)
    theirs.setblocking(False)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    dev = AfPacketDevice(ours, "test0", 1, b"\x02" * 6, 1500, vnet_hdr=True)
    try:
        if queued:
            dev._txq.append(b"first")
        if fast:
            dev.gather = _gather()
            dev.round_send = None if pieces else _sendround()
            stamps = dev.send_round(frames)
        else:  # the calls the round replaces, one by one
            stamps = []
            for f in frames:
                if isinstance(f, bytes):
                    dev.send(f)
                else:
                    head, tcp, payload, gso = f
                    dev.send_gso_parts(head, tcp + payload, gso)
                stamps.append(0.0)
        got = []
        while True:
            try:
                got.append(theirs.recv(1 << 17))
            except BlockingIOError:
                break
        c = dev.counters()
        counters = {k: c[k] for k in ("tx_frames", "tx_bytes", "tx_errors", "tx_queued",
                                      "tx_gso_frames", "tx_drops_queue_full")}
        assert len(stamps) == len(frames)
        assert stamps == sorted(stamps)
        return got, list(dev._txq), counters
    finally:
        dev._txq.clear()
        dev.close()
        theirs.close()


_frames = st.lists(
    st.one_of(
        # (no 200000-byte frames here: with the 1 MiB buffer they are really
        # allocated, and an allocation failing under memory pressure, ENOBUFS,
        # would differ between the two runs; the EMSGSIZE case is below)
        st.sampled_from([60, 1514, 70000]).flatmap(
            lambda n: st.binary(min_size=n, max_size=n)),
        st.tuples(st.binary(max_size=30000), st.integers(0, 10), st.integers(1, 9000)).map(
            lambda t: _gso(*t)),
    ),
    max_size=12)


@settings(max_examples=150, deadline=None)
@given(_frames, st.booleans(), st.sampled_from([1 << 20, 40000]))
def test_send_round_equals_the_calls_one_by_one(frames: list[_Frame], queued: bool,
                                                sndbuf: int) -> None:
    """Same datagrams, queue (EAGAIN part-way with a 40 KB send buffer nobody
    reads) and counters, both ways of the round (sendround, sendgather)."""
    plain = _run(frames, False, queued, sndbuf)
    assert _run(frames, True, queued, sndbuf) == plain
    assert _run(frames, True, queued, sndbuf, pieces=True) == plain


@pytest.mark.parametrize("frames", [
    [b"a" * 60, _gso(b"p" * 20000, 3, 1448), b"E" * 200000, _gso(b"q" * 5000, 0, 1448)],
    [_gso(b"p" * 60000, 3, 1448)] * 3 + [b"b" * 1514],          # EAGAIN inside the round
    [_gso(b"", 3, 1448), _gso(b"x" * 100, 3, 1448)],             # no split
    [],
])
def test_send_round_cases(frames: list[_Frame]) -> None:
    fast = _run(frames, True, False, 100000)
    assert fast == _run(frames, False, False, 100000)
    assert _run(frames, True, False, 100000, pieces=True) == fast
    if frames and frames[0] == b"a" * 60:
        assert len(fast[0]) == 3 and fast[2]["tx_errors"] == 1 and fast[2]["tx_gso_frames"] == 2


def test_send_round_unusual_input_raises_as_send_gso_parts() -> None:
    frames: list[_Frame] = [b"a" * 60, (b"short head", _tcp(3), b"x" * 3000, 1448)]
    for fast, pieces in ((True, False), (True, True), (False, False)):
        with pytest.raises(ValueError, match="Ethernet . IPv4 . TCP frame"):
            _run(frames, fast, False, 100000, pieces)


def test_sendround_declines_unusual_items_before_sending() -> None:
    """None, nothing sent, for an item send_round's C loop does not take
    (send_round then builds the pieces itself or goes frame by frame)."""
    rnd = _sendround()
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    theirs.setblocking(False)
    try:
        good = _gso(b"p" * 3000, 3, 1448)
        tcp = _tcp(3)
        for bad in [bytearray(b"a" * 60), (b"short head", tcp, b"x", 1448),
                    (good[0], tcp[:-1], b"x", 1448), (good[0], tcp, b"x", 0),
                    (good[0], tcp, b"x", 70000), (good[0], tcp, b"x"), (good[0], tcp, 5, 1448)]:
            assert rnd(ours.fileno(), [b"a" * 60, good, bad], 0) is None
            with pytest.raises(BlockingIOError):
                theirs.recv(1 << 17)
        sent, nbytes, err, stamps, gso = rnd(ours.fileno(), [b"a" * 60, good], 0)
        assert (sent, nbytes, err, len(stamps), gso) == (2, 60 + len(good[0]) + len(tcp) + 3000,
                                                         0, 2, 1)
    finally:
        ours.close()
        theirs.close()


def test_send_round_stamps_each_frame_before_its_call() -> None:
    import time

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    dev = AfPacketDevice(ours, "test0", 1, b"\x02" * 6, 1500, vnet_hdr=True)
    dev.gather = _gather()
    try:
        before = time.monotonic()
        stamps = dev.send_round([b"a" * 100, _gso(b"p" * 60000, 3, 1448), b"b" * 100])
        after = time.monotonic()
        assert before <= stamps[0] <= stamps[1] <= stamps[2] <= after
        assert stamps[0] < stamps[2]
    finally:
        dev.close()
        theirs.close()


# ----------------------------------------------------------------- IP layer

def _layer(record: list[Any]) -> IpLayer:
    ip = IpLayer(address=US, prefixlen=24, mac=b"\x02" * 6, transmit=record.append,
                 transmit_many=lambda fs: record.extend(fs), clock=lambda: 1.0)
    ip.arp.learn(PEER, b"\x04" * 6, 0.5)
    ip.send(PEER, 6, b"warm the prefix cache")
    record.clear()
    ip.transmit_gso = lambda frame, gso: pytest.fail("the joined path was taken")
    ip.transmit_gso_parts = lambda head, seg, gso: record.append((head + bytes(seg), gso))

    def transmit_round(frames: list[Any]) -> list[float]:
        for f in frames:
            record.append(f if isinstance(f, bytes) else (f[0] + f[1] + bytes(f[2]), f[3]))
        return [1.0] * len(frames)

    ip.transmit_round = transmit_round
    return ip


def _segment(seq: int, n: int, sack: bool) -> TcpSegment:
    opts = TcpOptions(timestamp=(seq, 9), sack_blocks=[(5, 9)] if sack else [])
    return TcpSegment(40000, 80, seq, 77, ACK | PSH, 500, 0, opts, bytes([seq % 251]) * n)


def _gso_item(seg: TcpSegment) -> tuple[bytes, bytes | memoryview, int]:
    opt = seg.options.encode()
    hlen = 20 + len(opt)
    tcp = struct.pack("!HHIIBBHHH", seg.src_port, seg.dst_port, seg.seq, seg.ack,
                      (hlen // 4) << 4, seg.flags, seg.window, 0, seg.urgent) + opt
    return (tcp, seg.payload, 1480 - hlen)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0, 100, 1448, 3000, 40000]), st.booleans()),
                max_size=8))
def test_ip_send_tcp_round_equals_send_tcp_many_and_send_gso(spec: list[tuple[int, bool]]) -> None:
    """The frames (and identification numbers) of send_tcp_many for each run
    of segments and send_gso for each super-segment, in order."""
    seq = 1000
    items: list[Any] = []
    for n, sack in spec:
        seg = _segment(seq, n, sack)
        items.append(seg if n <= 1400 else _gso_item(seg))
        seq += n
    plain: list[Any] = []
    ip = _layer(plain)
    run: list[TcpSegment] = []
    for item in items:
        if isinstance(item, TcpSegment):
            run.append(item)
            continue
        if run:
            ip.send_tcp_many(PEER, run, ip.tcp_encoder(PEER))
            run = []
        assert ip.send_gso(PEER, 6, item[0] + item[1], item[2])
    if run:
        ip.send_tcp_many(PEER, run, ip.tcp_encoder(PEER))
    fast: list[Any] = []
    ip2 = _layer(fast)
    stamps = ip2.send_tcp_round(PEER, items, ip2.tcp_encoder(PEER))
    assert stamps == [1.0] * len(items)
    assert fast == plain
    assert ip.frames_out == ip2.frames_out


def test_ip_send_tcp_round_declines_without_sending() -> None:
    record: list[Any] = []
    ip = _layer(record)
    big = _segment(1, 1460, True)  # with SACK blocks the header makes it too long
    assert ip.send_tcp_round(PEER, [_segment(1, 10, False), big], ip.tcp_encoder(PEER)) is None
    assert ip.send_tcp_round(b"\x0a\0\0\x09", [_segment(1, 10, False)],
                             ip.tcp_encoder(b"\x0a\0\0\x09")) is None  # not resolved
    ip.transmit_round = None
    assert ip.send_tcp_round(PEER, [_segment(1, 10, False)], ip.tcp_encoder(PEER)) is None
    assert record == []


# ----------------------------------------------------------------- the driver

class _Port:
    """Enough of a Stack for TcpTable: an IpLayer recording what reaches the device."""

    def __init__(self, record: list[Any], gathered: bool) -> None:
        self.address = "10.0.0.2"
        self.ip = _layer(record)
        if not gathered:
            self.ip.transmit_round = None

        class _Dev:
            mtu = 1500

        self.device = _Dev()


@pytest.mark.parametrize("shape", [
    [(1448, False), (40000, False), (40000, False), (700, False)],
    [(1448, True), (1448, True), (60000, True)],
    [(60000, False)],
    [(1448, False), (1448, False)],  # no super-segment: the usual burst
])
def test_driver_round_equals_the_plain_transmit(shape: list[tuple[int, bool]]) -> None:
    import asyncio

    from ustack.driver.tcp_table import TcpEndpoint, TcpTable
    from ustack.tcp.config import TcpConfig
    from ustack.tcp.connection import TcpConnection

    loop = asyncio.new_event_loop()
    try:
        out: dict[bool, list[Any]] = {}
        for gathered in (False, True):
            record: list[Any] = []
            table = TcpTable(_Port(record, gathered), loop=loop)
            assert (table._ip_send_round is not None) is gathered
            seq = 5000
            segs = []
            for n, sack in shape:
                segs.append(_segment(seq, n, sack))
                seq += n

            # a real endpoint (compiled, _transmit takes only a TcpEndpoint)
            conn = TcpConnection.connect(40000, 80, 1, 0.0, TcpConfig())
            ep = TcpEndpoint(table, conn, table.local_addr, 40000, PEER, 80)
            stamps = table._transmit(ep, segs)
            big = any(len(s.payload) > 1448 for s in segs)
            assert (stamps is not None) is (gathered and big)
            out[gathered] = record
        assert out[True] == out[False]
    finally:
        loop.close()


# ----------------------------------------------------------------- the core

def _recovery() -> Recovery:
    return Recovery(0, 1000, RttEstimator(1.0, 0.2, 120.0, True))


def _sent_round(rec: Recovery, now: float) -> None:
    rec.on_sent(0, 1000, now)        # an MSS segment
    rec.on_sent(1000, 8000, now)     # a super-segment
    rec.on_sent(9000, 8000, now)     # another
    rec.on_sent(17000, 500, now)     # the tail


def _times(rec: Recovery) -> list[tuple[int, float, float, float]]:
    out = []
    r = rec.sb._ts_head
    while r is not None:
        out.append((r.start, r.sent, r.first_sent, r.tx_first_tx_time))
        r = r.ts_next
    return out


def test_restamp_each_with_one_time_is_restamp() -> None:
    a, b = _recovery(), _recovery()
    _sent_round(a, 1.0)
    _sent_round(b, 1.0)
    a.restamp(1.0, 1.5)
    b.restamp_each(1.0, [0, 1000, 9000, 17000], [1000, 8000, 8000, 500], [1.5] * 4)
    assert _times(a) == _times(b)
    assert (a.rate.first_tx_time, a.rate.delivered_time) == (b.rate.first_tx_time,
                                                               b.rate.delivered_time)


def test_restamp_each_gives_each_record_its_frames_time() -> None:
    rec = _recovery()
    _sent_round(rec, 1.0)
    rec.restamp_each(1.0, [0, 1000, 9000, 17000], [1000, 8000, 8000, 500],
                     [1.5, 1.6, 1.7, 1.8])
    assert [(s, t) for s, t, _f, _x in _times(rec)] == [(0, 1.5), (1000, 1.6), (9000, 1.7),
                                                        (17000, 1.8)]
    # the flight's start is the first frame's time
    assert {x for *_r, x in _times(rec)} == {1.5}
    assert rec.rate.first_tx_time == 1.5
    # an earlier round's records are not touched
    rec.on_sent(17500, 1000, 2.0)
    rec.restamp_each(2.0, [17500], [1000], [2.25])
    assert _times(rec)[0][1] == 1.5 and _times(rec)[-1][1] == 2.25


def test_restamp_each_splits_the_rounds_record_at_the_frames() -> None:
    """Sender.push reports a round's new data in one on_sent: one record.
    Sent as three super-segments, it becomes three records (Linux: one skb
    per TSO packet), each with its frame's time; the packet count stays."""
    rec = _recovery()
    rec.on_sent(0, 1000, 0.5)           # an earlier round
    rec.on_sent(1000, 20000, 1.0)       # this round: one record
    packets = rec.sb.packets_out
    rec.restamp_each(1.0, [1000, 9000, 17000], [8000, 8000, 4000], [1.5, 1.6, 1.7])
    assert [(s, t) for s, t, _f, _x in _times(rec)] == [(0, 0.5), (1000, 1.5), (9000, 1.6),
                                                        (17000, 1.7)]
    assert [(r.start, r.end) for r in rec.sb] == [(0, 1000), (1000, 9000), (9000, 17000),
                                                  (17000, 21000)]
    assert rec.sb.packets_out == packets
    assert {x for _s, _t, _f, x in _times(rec)} == {0.5}  # the flight began at 0.5
