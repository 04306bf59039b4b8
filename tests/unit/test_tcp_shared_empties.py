"""Shared resting structures of a connection (issue 14, memory): an idle
connection keeps no chunk list in its send buffer, no MSG_EOR list, no
Chrono stat list and no timestamp-options cache of its own.  Each shared
object is only read while shared; these tests check that the structures
behave as private ones would (a model of the send buffer's bytes, a model of
the record ends, the options every segment must carry) and that the shared
objects stay empty."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ustack.tcp import chrono as chrono_mod
from ustack.tcp import connection as connection_mod
from ustack.tcp import receiver as receiver_mod
from ustack.tcp import send_buffer as send_buffer_mod
from ustack.tcp import sender as sender_mod
from ustack.tcp.chrono import BUSY, RWND_LIMITED, Chrono
from ustack.tcp.config import TcpConfig
from ustack.tcp.connection import TcpConnection
from ustack.tcp.reassembly import Reassembly
from ustack.tcp.receiver import Receiver
from ustack.tcp.send_buffer import SendBuffer
from ustack.tcp.sender import Sender
from ustack.tcp.testing import MemoryPair
from ustack.tcp.timers import Timers
from ustack.wire.tcp import TcpOptions, TcpSegment

_OPS = st.lists(st.one_of(
    st.tuples(st.just("write"), st.sampled_from(["bytes", "bytearray", "memoryview"]),
              st.integers(0, 5000), st.one_of(st.none(), st.integers(0, 6000))),
    st.tuples(st.just("ack"), st.integers(-5, 7000)),
    st.tuples(st.just("peek"), st.integers(0, 7000), st.integers(0, 3000)),
    st.tuples(st.just("clear"), st.integers(0, 1)),
), max_size=40)


@settings(max_examples=300, deadline=None)
@given(_OPS, st.integers(1, 20000))
def test_send_buffer_with_the_shared_empty_list_is_a_byte_queue(
        ops: list[tuple[object, ...]], limit: int) -> None:
    """Every write/acknowledge/peek/clear against a bytearray model; the
    shared list stays empty and an empty buffer (new or cleared) uses it."""
    buf = SendBuffer(limit)
    other = SendBuffer(limit)  # a second buffer sharing the empty list
    model = bytearray()
    counter = 0
    for op in ops:
        if op[0] == "write":
            _, kind, n, room = op
            assert isinstance(n, int) and (room is None or isinstance(room, int))
            raw = bytes((counter + i) % 251 for i in range(n))
            counter += n
            data: bytes | bytearray | memoryview = (
                raw if kind == "bytes" else bytearray(raw) if kind == "bytearray"
                else memoryview(raw))
            free = limit - len(model) if room is None else room
            took = buf.write(data, room)
            assert took == (0 if free <= 0 or n == 0 else min(n, free))
            model += raw[:took]
        elif op[0] == "ack":
            n = op[1]
            assert isinstance(n, int)
            buf.acknowledge(n)
            if n > 0:
                del model[:n]
        elif op[0] == "peek":
            _, off, length = op
            assert isinstance(off, int) and isinstance(length, int)
            assert buf.peek(off, length) == bytes(model[off:off + length])
        else:
            buf.clear()
            model.clear()
        assert len(buf) == len(model)
        assert send_buffer_mod._NO_CHUNKS == []
        assert len(other) == 0 and other.peek(0, 10) == b""
    assert buf.peek(0, len(model) + 1) == bytes(model)


def test_an_empty_send_buffer_holds_no_list_of_its_own() -> None:
    a, b = SendBuffer(1000), SendBuffer(1000)
    assert a._chunks is b._chunks is send_buffer_mod._NO_CHUNKS
    a.write(b"x" * 10)
    assert a._chunks is not send_buffer_mod._NO_CHUNKS and b._chunks == []
    a.acknowledge(10)  # all acknowledged: back to the shared empty list
    assert a._chunks is send_buffer_mod._NO_CHUNKS and send_buffer_mod._NO_CHUNKS == []
    a.write(b"yz")
    assert a.peek(0, 5) == b"yz" and send_buffer_mod._NO_CHUNKS == []


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.tuples(st.just("mark"), st.integers(0, 60)),
                          st.tuples(st.just("next"), st.integers(0, 60), st.integers(0, 60))),
                max_size=30))
def test_record_ends_with_the_shared_empty_list_match_a_model(
        ops: list[tuple[str, int] | tuple[str, int, int]]) -> None:
    """Sender.mark_eor / _next_eor against a plain list of record ends
    (sequence numbers near 0, no wrap); the shared list stays empty."""
    snd, idle = Sender(0, 1000, 0.0), Sender(0, 1000, 0.0)
    ends: list[int] = []
    for op in ops:
        if op[0] == "mark":
            if not ends or ends[-1] != op[1]:
                ends.append(op[1])
            snd.mark_eor(op[1])
        else:
            _, seq, una = op  # type: ignore[misc]
            while ends and not ends[0] > una:
                ends.pop(0)
            want = next((e - seq for e in ends if e > seq), 0)
            assert snd._next_eor(seq, una) == want
        assert list(snd.eor) == ends
        assert sender_mod._NO_EOR == [] and idle.eor is sender_mod._NO_EOR


def test_chrono_stat_is_one_shared_zero_until_a_kind_ends() -> None:
    a, b = Chrono(), Chrono()
    assert a.stat is b.stat is chrono_mod._ZERO
    a.start(BUSY, 1.0)
    a.start(RWND_LIMITED, 2.0)  # BUSY ended: a gets its own stat
    assert a.stat is not chrono_mod._ZERO and b.stat is chrono_mod._ZERO
    assert chrono_mod._ZERO == (0.0, 0.0, 0.0)
    assert a.totals(3.0) == (2.0, 1.0, 0.0)


def _idle_pairs(n: int, ts: bool) -> list[MemoryPair]:
    cfg = TcpConfig(timestamps=ts)
    pairs = []
    for i in range(n):
        p = MemoryPair(cfg, cfg, seed=i, client_port=41000 + i, iss_client=1000 + 7919 * i,
                       iss_server=5000 + 104729 * i)
        p.handshake()
        pairs.append(p)
    return pairs


def _check_options(conn: TcpConnection, segs: list[object], now: float) -> None:
    for seg in segs:
        opts = seg.options  # type: ignore[attr-defined]
        assert isinstance(opts, TcpOptions)
        if conn.ts_ok and not conn.rcv.has_blocks():
            assert opts == TcpOptions(timestamp=(conn._ts_val(now), conn._ts_recent))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2000), st.integers(0, 3)),
                min_size=1, max_size=40))
def test_timestamp_options_shared_by_the_stack_are_each_segments_own(
        steps: list[tuple[int, int, int]]) -> None:
    """Four connections (timestamps on) send data in interleaved bursts at
    chosen times: every segment carries exactly TSval(now) and TS.Recent
    (RFC 7323 3), as with a per-connection cache; segments one connection
    builds in one millisecond share one options object."""
    pairs = _idle_pairs(4, ts=True)
    now = max(p.now for p in pairs)
    for which, size, dt in steps:
        now += dt * 0.0004  # sometimes the same millisecond, sometimes not
        conn = pairs[which].a
        if size:
            conn.send(b"d" * size, now)
        segs = conn.segments_to_send(now)
        _check_options(conn, list(segs), now)
        if len(segs) > 1 and not conn.rcv.has_blocks():
            assert len({id(s.options) for s in segs}) == 1  # one ms, one object
        # the peer's clock runs half a millisecond ahead, so TS.Recent also
        # changes while our TSval stays
        peer_now = now + 0.0005
        for s in segs:
            pairs[which].b.receive(s, peer_now)
        back = pairs[which].b.segments_to_send(peer_now)
        _check_options(pairs[which].b, list(back), peer_now)
        for s in back:
            conn.receive(s, now)
    assert not hasattr(pairs[0].a, "_ts_cache")


def test_connections_without_timestamps_send_empty_options() -> None:
    pairs = _idle_pairs(2, ts=False)
    for p in pairs:
        p.a.send(b"x" * 100, p.now)
        for s in p.a.segments_to_send(p.now):
            assert s.options.is_empty()
    cache = connection_mod._TS_OPTIONS
    assert cache.opts == TcpOptions(timestamp=(cache.tsval, cache.recent)) or cache.tsval == -1


def test_a_new_ts_recent_within_one_millisecond_gets_new_options() -> None:
    """The shared cache is keyed by TSval *and* TS.Recent: a segment from the
    peer with a newer TSval arriving within our millisecond changes the TSecr
    of what we send next (RFC 7323 4.3), with nothing built in between."""
    (p,) = _idle_pairs(1, ts=True)
    a, b = p.a, p.b
    a.set_nodelay(True)  # (the small segments go out while others are in flight)
    now = p.now + 0.01
    a.send(b"x" * 10, now)
    (first,) = a.segments_to_send(now)
    b.receive(first, now)
    (ack,) = b.segments_to_send(now)
    assert ack.options.timestamp is not None
    tsval, ecr = ack.options.timestamp
    newer = TcpSegment(ack.src_port, ack.dst_port, ack.seq, ack.ack, ack.flags, ack.window,
                       0, TcpOptions(timestamp=((tsval + 7) & 0xFFFFFFFF, ecr)))
    a.receive(ack, now)
    a.send(b"z" * 10, now)  # fills the cache with our TSval and the older TS.Recent
    (between,) = a.segments_to_send(now)
    assert between.options == TcpOptions(timestamp=(a._ts_val(now), tsval))
    a.receive(newer, now)
    assert a._ts_recent == (tsval + 7) & 0xFFFFFFFF
    a.send(b"y" * 10, now)
    (second,) = a.segments_to_send(now)
    assert second.options == TcpOptions(timestamp=(a._ts_val(now), (tsval + 7) & 0xFFFFFFFF))
    assert first.options.timestamp is not None and first.options.timestamp[0] == a._ts_val(now)


def _receivers() -> tuple[Receiver, Receiver]:
    lazy = Receiver(Timers(), 20000, 1000, 0.04, 2, 8)
    eager = Receiver(Timers(), 20000, 1000, 0.04, 2, 8)
    eager.ooo = Reassembly()  # a private queue from the start, as before
    for r in (lazy, eager):
        r.nxt = r.acked = 0xFFFFF000  # near the wrap
        r.sack_ok = True
    return lazy, eager


def _rcv_state(r: Receiver) -> tuple[object, ...]:
    return (r.nxt, r.pos, bytes(r.buf), r.ack_now, r.has_blocks(), r.sack_blocks(),
            r.window(), r.wnd, r.sack_option_len(True), r.ooo.nbytes, r.ooo.fin_pos,
            r.bytes_received, r.timers.delack)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(
    st.tuples(st.just("accept"), st.integers(0, 1500)),
    st.tuples(st.just("queue"), st.integers(1, 6000), st.integers(0, 1500), st.booleans()),
    st.tuples(st.just("fin"), st.just(0)),
    st.tuples(st.just("read"), st.integers(0, 3000)),
    st.tuples(st.just("sent_ack"), st.just(0)),
    st.tuples(st.just("clear"), st.just(0)),
), max_size=40))
def test_the_lazy_reassembly_queue_is_the_eager_one(ops: list[tuple[object, ...]]) -> None:
    """Receivers with the shared empty reassembly queue and with a private
    one from the start see the same segments (in order, above RCV.NXT with
    or without FIN, reads, ACKs sent, clears) and agree on everything they
    report; the shared queue stays empty."""
    lazy, eager = _receivers()
    now = 0.0
    for op in ops:
        now += 0.001
        for r in (lazy, eager):
            if op[0] == "accept":
                n = op[1]
                assert isinstance(n, int)
                if r.accept(bytes(n % 256 for n in range(n)), now):
                    r.take_fin()
            elif op[0] == "queue":
                _, off, n, fin = op
                assert isinstance(off, int) and isinstance(n, int) and isinstance(fin, bool)
                if n or fin:
                    r.queue((r.nxt + off) & 0xFFFFFFFF, b"q" * n, fin)
            elif op[0] == "fin":
                r.take_fin()
            elif op[0] == "read":
                n = op[1]
                assert isinstance(n, int)
                r.read(n)
            elif op[0] == "sent_ack":
                r.sent_ack()
            else:
                r.clear()
        assert _rcv_state(lazy) == _rcv_state(eager)
        assert not receiver_mod._NO_OOO and receiver_mod._NO_OOO.nbytes == 0
        assert receiver_mod._NO_OOO.fin_pos is None


def test_a_receiver_gets_its_own_reassembly_queue_at_the_first_gap() -> None:
    a, b = _receivers()[0], Receiver(Timers(), 20000, 1000, 0.04, 2, 8)
    assert a.ooo is b.ooo is receiver_mod._NO_OOO
    a.queue((a.nxt + 100) & 0xFFFFFFFF, b"x" * 10, False)
    assert a.ooo is not receiver_mod._NO_OOO and a.has_blocks() and not b.has_blocks()
