# mypy: disable-error-code="comparison-overlap"
# (mypy narrows conn.state after one assert and cannot see that the next call
#  changes it, so every later state assert looks like a dead comparison)
"""The TCP core's building blocks one by one, and the timelines of a single
connection (retransmission, TIME-WAIT) with an explicit clock."""

from __future__ import annotations

import errno
import random

import pytest

from ustack.tcp import (
    IsnGenerator,
    PortAllocator,
    TcpConfig,
    TcpConnection,
    TcpState,
    choose_ephemeral_port,
)
from ustack.tcp import events as ev
from ustack.tcp.congestion import (
    CaState,
    CongestionController,
    RateSample,
    available,
    create,
    register,
)
from ustack.tcp.reassembly import Reassembly
from ustack.tcp.rtt import RttEstimator
from ustack.tcp.send_buffer import SendBuffer
from ustack.tcp.testing import Script
from ustack.wire.tcp import SYN, TcpOptions, TcpSegment

ISS = 10_000
PEER = 0


def established(cfg: TcpConfig | None = None) -> Script:
    syn = TcpSegment(40000, 80, PEER, 0, SYN, 65535, 0, TcpOptions(mss=1460))
    s = Script(TcpConnection.accept(syn, ISS, 0.0, cfg), ISS, PEER)
    s.drain()
    s.inject(s.seg(".", 1, 1))
    s.events.clear()
    return s


# ------------------------------------------------------------ send buffer
def test_send_buffer_bounds_peek_and_ack() -> None:
    b = SendBuffer(10)
    assert b.write(b"abcdef") == 6
    assert b.write(b"ghijkl") == 4  # only 4 fit
    assert b.space == 0 and len(b) == 10
    assert b.peek(2, 3) == b"cde"
    b.acknowledge(4)
    assert b.peek(0, 2) == b"ef" and b.space == 4
    assert b.write(memoryview(b"XYZ")) == 3
    assert b.peek(0, 100) == b"efghijXYZ"


# ------------------------------------------------------------- reassembly
def test_reassembly_merges_overlaps_first_copy_wins() -> None:
    r = Reassembly()
    assert r.add(10, b"AAAAA")  # [10, 15)
    assert r.add(20, b"CCCCC")  # [20, 25)
    assert r.add(13, b"bbbbbbbbb")  # [13, 22) overlaps both
    assert r.blocks() == [(10, 25)]
    assert r.nbytes == 15
    assert not r.add(11, b"zz")  # nothing new
    assert r.pop_ready(5) is None
    # merged block is AAAAA + bbbbb (new bytes 15..20 only) + CCCCC; read from 12
    assert r.pop_ready(12) == b"AAAbbbbbCCCCC"
    assert r.nbytes == 0


def test_reassembly_pop_ready_trims_and_orders_recent_block_first() -> None:
    r = Reassembly()
    r.add(100, b"x" * 10)
    r.add(200, b"y" * 10)
    r.add(150, b"z" * 10)
    assert r.blocks() == [(150, 160), (100, 110), (200, 210)]
    assert r.pop_ready(105) == b"x" * 5
    assert r.blocks()[0] == (150, 160)


def test_reassembly_random_against_model() -> None:
    rng = random.Random(5)
    stream = bytes(rng.randrange(256) for _ in range(5000))
    r = Reassembly()
    pos = 0
    out = bytearray()
    for _ in range(2000):
        start = rng.randrange(0, 5000)
        n = rng.randrange(1, 300)
        piece = stream[start:start + n]
        if start + len(piece) <= pos or not piece:
            continue
        if start <= pos:
            piece = piece[pos - start:]
            out += piece
            pos += len(piece)
            while True:
                more = r.pop_ready(pos)
                if more is None:
                    break
                out += more
                pos += len(more)
        else:
            r.add(start, piece)
        assert bytes(out) == stream[:pos]
    assert r.nbytes == sum(e - s for s, e in r.blocks())


# -------------------------------------------------------------------- rtt
def test_rtt_estimator_rfc6298_and_linux_floor() -> None:
    r = RttEstimator(1.0, 0.2, 120.0, linux=True)
    assert r.rto == 1.0
    r.sample(0.1)
    assert (r.srtt, r.rttvar) == (0.1, 0.05)
    assert r.rto == pytest.approx(0.1 + 0.2)  # 4*RTTVAR = 0.2 = floor
    r.sample(0.3)
    assert r.rttvar == pytest.approx(0.75 * 0.05 + 0.25 * 0.2)
    assert r.srtt == pytest.approx(0.875 * 0.1 + 0.125 * 0.3)
    r.backoff = 3
    assert r.rto == pytest.approx(min(r.base_rto * 8, 120))
    r.backoff = 40
    assert r.rto == 120.0
    rfc = RttEstimator(1.0, 1.0, 60.0, linux=False)
    rfc.sample(0.01)
    assert rfc.rto == 1.0


# ---------------------------------------------------------------- congestion
def test_reno_slow_start_avoidance_and_loss_response() -> None:
    """Reno on the rate-sample hooks: slow start grows by the bytes
    acknowledged (Linux tcp_slow_start, not RFC 3465's L = 2 SMSS), up to
    ssthresh, then one SMSS per cwnd acknowledged; a loss halves cwnd
    (Linux tcp_reno_ssthresh) and undo restores it."""
    cc = create("reno", 1000, 10)
    assert cc.cwnd == 10_000
    cc.on_ack(RateSample(acked_sacked=1000), 0.0)
    assert cc.cwnd == 11_000  # slow start
    cc.on_ack(RateSample(acked_sacked=5000), 0.0)
    assert cc.cwnd == 16_000  # a stretch ACK counts whole
    cc.on_ack(RateSample(acked_sacked=5000, is_cwnd_limited=False), 0.0)
    assert cc.cwnd == 16_000  # not cwnd-limited: no growth
    cc.ssthresh = cc.ssthresh_on_loss(0.0, 16_000)
    assert cc.ssthresh == 8000 and cc.prior_cwnd == 16_000
    cc.cwnd = cc.ssthresh  # the connection ends the PRR reduction at ssthresh
    for _ in range(8):
        cc.on_ack(RateSample(acked_sacked=1000), 0.0)
    assert cc.cwnd == 9000  # congestion avoidance: +1 SMSS per cwnd acked
    assert cc.undo_cwnd() == 16_000  # max(cwnd, prior_cwnd)


def test_congestion_registry() -> None:
    class Fixed(CongestionController):
        name = "ht-fixed"

    register(Fixed)
    assert "reno" in available() and "ht-fixed" in available()
    assert isinstance(create("ht-fixed", 1000, 4), Fixed)
    with pytest.raises(ValueError, match="unknown congestion control"):
        create("nope", 1000, 4)
    conn = TcpConnection.connect(1, 2, 3, 0.0, TcpConfig(congestion="ht-fixed"))
    assert conn.cc.name == "ht-fixed"


# ------------------------------------------------------------- isn, ports
def test_isn_rfc6528_keyed_and_clock_driven() -> None:
    g = IsnGenerator(b"k" * 16)
    a = g.isn(b"\x0a\0\0\x01", 1000, b"\x0a\0\0\x02", 80, 0.0)
    assert g.isn(b"\x0a\0\0\x01", 1000, b"\x0a\0\0\x02", 80, 1.0) == (a + 250_000) & 0xFFFFFFFF
    assert g.isn(b"\x0a\0\0\x01", 1001, b"\x0a\0\0\x02", 80, 0.0) != a
    assert IsnGenerator(b"j" * 16).isn(b"\x0a\0\0\x01", 1000, b"\x0a\0\0\x02", 80, 0.0) != a


def test_ephemeral_ports_rfc6056() -> None:
    alloc = PortAllocator(secret=b"s")
    used: set[int] = set()
    for _ in range(200):
        p = alloc.choose(b"\x0a\0\0\x01", b"\x0a\0\0\x02", 80, used)
        assert 32768 <= p <= 60999 and p not in used
        used.add(p)
    small = PortAllocator(40000, 40003, secret=b"s")
    taken = {40000, 40001, 40002}
    assert small.choose(b"a" * 4, b"b" * 4, 80, taken) == 40003
    with pytest.raises(OSError) as exc:
        small.choose(b"a" * 4, b"b" * 4, 80, lambda p: True)
    assert exc.value.errno == errno.EADDRNOTAVAIL
    assert 32768 <= choose_ephemeral_port(b"a" * 4, b"b" * 4, 80, set()) <= 60999


# -------------------------------------------------------------- timelines
def test_retransmission_timeline_until_etimedout() -> None:
    """Counted retries2 (``retries_timed=False``): 15 retransmissions."""
    s = established(TcpConfig(retries_timed=False))
    base = s.conn.rtt.rto
    assert base == pytest.approx(0.2, abs=1e-5)  # SRTT ~0 (1 us floor) + 200 ms floor
    s.conn.send(b"r" * 100, 0.0)
    assert s.lines(s.drain()) == ["P. 1:101(100) ack 1 win 65535"]
    sent = s.run_timers(10_000)
    expected = []
    t = 0.0
    for k in range(15):
        t += min(base * 2 ** k, 120.0)
        expected.append(pytest.approx(t))
    assert [tt for tt, _ in sent] == expected
    assert all(line == "P. 1:101(100) ack 1 win 65535" for _, line in sent)
    failed_at = t + 120.0
    assert s.now == pytest.approx(failed_at)
    assert s.conn.state is TcpState.CLOSED
    assert s.events == [ev.ConnectionFailed(errno.ETIMEDOUT), ev.CLOSED]
    with pytest.raises(TimeoutError):
        s.conn.send(b"x", s.now)


def test_retransmission_timeline_until_etimedout_time_budget() -> None:
    """Linux (the default): tcp_retries2=15 is the 924.6 s that 15 backed-off
    retransmissions from 200 ms take (tcp_model_timeout), counted from the
    first retransmission; with an RTO of exactly ~200 ms the 16th RTO, at
    924.6 s, is 924.4 s after the first, so it still retransmits once more
    and the connection fails at the 17th."""
    s = established()
    base = s.conn.rtt.rto
    s.conn.send(b"r" * 100, 0.0)
    s.drain()
    sent = s.run_timers(10_000)
    expected = []
    t = 0.0
    for k in range(16):
        t += min(base * 2 ** k, 120.0)
        expected.append(pytest.approx(t))
    assert [tt for tt, _ in sent] == expected
    assert s.now == pytest.approx(t + 120.0)
    assert s.events == [ev.ConnectionFailed(errno.ETIMEDOUT), ev.CLOSED]


def test_ack_after_retransmission_keeps_backoff_without_rtt_sample() -> None:
    """No timestamps: the ACK of a retransmitted segment is no RTT sample
    (Karn, RFC 6298 3), so the backoff stays until one (RFC 6298 5, Linux
    tcp_ack_update_rtt "only reset backoff on valid RTT measurement")."""
    s = established()
    s.conn.send(b"r" * 100, 0.0)
    s.drain()
    base = s.conn.rtt.rto
    s.at(base)
    s.at(3 * base)
    assert s.conn.rtt.backoff == 2
    s.now = 0.7
    s.inject(s.seg(".", 1, 101))
    assert s.conn.rtt.backoff == 2 and s.conn.next_deadline() is None
    assert s.conn.info(0.7).total_retrans == 2


def test_fast_retransmit_on_three_dup_acks() -> None:
    s = established()
    s.conn.send(b"a" * 5 * 1460, 0.0)
    out = s.drain()
    assert len(out) == 5
    assert s.inject(s.seg(".", 1, 1461)) == []
    assert s.inject(s.seg(".", 1, 1461)) == []
    assert s.inject(s.seg(".", 1, 1461)) == []
    assert s.inject(s.seg(".", 1, 1461)) == [". 1461:2921(1460) ack 1 win 65535"]
    assert s.conn.rec is not None and s.conn.rec.state is CaState.RECOVERY
    # partial ACK: NewReno retransmits the next hole
    assert s.inject(s.seg(".", 1, 2921)) == [". 2921:4381(1460) ack 1 win 65535"]
    s.inject(s.seg(".", 1, 7301))
    # NewReno holds the state until an ACK above the recovery point (RFC 6582
    # 3.2 step 5, Linux tcp_try_undo_recovery), then opens
    assert s.conn.rec is not None and s.conn.rec.state is CaState.RECOVERY
    s.conn.send(b"b" * 100, s.now)
    assert len(s.drain()) == 1
    s.inject(s.seg(".", 1, 7401))
    assert s.conn.rec.state is CaState.OPEN


def test_time_wait_expiry_after_configured_duration() -> None:
    s = established(TcpConfig(time_wait=2.5))
    s.conn.shutdown(0.0)
    s.drain()
    s.now = 0.1
    s.inject(s.seg("F.", 1, 2))
    assert s.conn.state is TcpState.TIME_WAIT
    info = s.conn.info(1.1)
    assert info.timer is not None and info.timer[0] == "timewait"
    assert info.timer[1] == pytest.approx(1.5)
    assert s.at(2.5) == []
    assert s.conn.state is TcpState.TIME_WAIT
    assert s.at(2.6) == []
    assert s.conn.state is TcpState.CLOSED


def test_info_fields_for_ss() -> None:
    s = established()
    s.conn.send(b"z" * 3000, 0.0)
    s.drain()
    info = s.conn.info(0.05)
    assert info.state == "ESTAB"
    assert info.send_q == 3000 and info.unacked == 3 and info.notsent == 0
    assert info.snd_nxt - info.snd_una == 3000
    assert info.timer is not None and info.timer[0] == "on"
    assert info.ca_name == "cubic" and info.cwnd == 10 and info.mss == 1460  # Linux default
    assert info.bytes_sent == 3000 and info.data_segs_out == 3


def test_state_names() -> None:
    assert TcpState.ESTABLISHED.ss_name == "ESTAB"
    assert TcpState.SYN_RECEIVED.ss_name == "SYN-RECV"
    assert TcpState.CLOSED.ss_name == "UNCONN"
    assert TcpState.FIN_WAIT_1.rfc_name == "FIN-WAIT-1"
    assert TcpState.TIME_WAIT.value == 6  # Linux TCP_TIME_WAIT


def _sack_established() -> Script:
    syn = TcpSegment(40000, 80, PEER, 0, SYN, 65535, 0, TcpOptions(mss=1460, sack_permitted=True))
    s = Script(TcpConnection.accept(syn, ISS, 0.0, TcpConfig()), ISS, PEER)
    s.drain()
    s.inject(s.seg(".", 1, 1))
    assert s.conn.sack_ok
    return s


def _sack(*blocks: tuple[int, int]) -> TcpOptions:
    return TcpOptions(sack_blocks=[(ISS + a, ISS + b) for a, b in blocks])


def test_sack_recovery_repairs_several_holes_in_one_round_trip() -> None:
    s = _sack_established()
    s.conn.send(b"s" * 10 * 1460, 0.0)
    assert len(s.drain()) == 10
    k = 1460
    # segments 0, 3 and 6 are lost; the others arrive and are SACKed
    assert s.inject(s.seg(".", 1, 1, options=_sack((1 + k, 1 + 2 * k)))) == []
    assert s.inject(s.seg(".", 1, 1, options=_sack((1 + k, 1 + 3 * k)))) == []
    out = s.inject(s.seg(".", 1, 1, options=_sack((1 + 4 * k, 1 + 5 * k), (1 + k, 1 + 3 * k))))
    assert out == ["P. 1:1461(1460) ack 1 win 65535"] or out == [". 1:1461(1460) ack 1 win 65535"]
    out = s.inject(s.seg(".", 1, 1, options=_sack((1 + 4 * k, 1 + 6 * k), (1 + k, 1 + 3 * k))))
    assert [line.split(" ack")[0] for line in out] == [". 4381:5841(1460)"]
    out = s.inject(s.seg(".", 1, 1, options=_sack((1 + 7 * k, 1 + 8 * k), (1 + 4 * k, 1 + 6 * k),
                                                  (1 + k, 1 + 3 * k))))
    assert [line.split(" ack")[0] for line in out] == [". 8761:10221(1460)"]
    # the retransmissions arrive: one cumulative ACK ends recovery, no RTO needed
    s.inject(s.seg(".", 1, 1 + 10 * k))
    assert s.conn.rec is not None and s.conn.rec.state is CaState.OPEN
    assert s.conn.snd_una == s.conn.snd_nxt
    assert s.conn.total_retrans == 3 and s.conn.rtt.backoff == 0


def _sack_at(cfg: TcpConfig) -> Script:
    """An established SACK connection whose handshake RTT was 10 ms."""
    syn = TcpSegment(40000, 80, PEER, 0, SYN, 65535, 0, TcpOptions(mss=1460, sack_permitted=True))
    s = Script(TcpConnection.accept(syn, ISS, 0.0, cfg), ISS, PEER)
    s.drain()
    s.now = 0.010
    s.inject(s.seg(".", 1, 1))
    return s


def test_timeout_retransmission_skips_sacked_ranges() -> None:
    """RTO recovery (RACK and TLP off: tcp_recovery=0, tcp_early_retrans=0):
    the timeout resends the head only (cwnd = pipe + 1 MSS, Linux
    tcp_enter_loss); once it is acknowledged the SACKed middle is skipped and
    the tail goes (RFC 6675 5.1)."""
    s = _sack_at(TcpConfig(tcp_recovery=0, tcp_early_retrans=0))
    s.conn.send(b"t" * 4 * 1460, s.now)
    assert len(s.drain()) == 4
    k = 1460
    s.now = 0.020
    assert s.inject(s.seg(".", 1, 1, options=_sack((1 + k, 1 + 3 * k)))) == []
    assert s.conn.timers.as_dict() == {"rto": pytest.approx(0.010 + s.conn.rtt.rto)}
    assert s.at(s.conn.next_deadline() or 0.0) == [". 1:1461(1460) ack 1 win 65535"]
    assert s.conn.rec is not None and s.conn.rec.state is CaState.LOSS
    # the head arrives: the receiver ACKs through the SACKed middle, the tail goes
    s.now += 0.010
    assert s.inject(s.seg(".", 1, 1 + 3 * k)) == ["P. 4381:5841(1460) ack 1 win 65535"]
    s.inject(s.seg(".", 1, 1 + 4 * k))
    assert s.conn.snd_una == s.conn.snd_nxt and s.conn.send_queue == 0


def test_rack_reorder_timer_repairs_a_hole_below_sacks_without_rto() -> None:
    """RFC 8985 6.2-6.3 (default tcp_recovery=1): a hole below SACKed
    segments sent at the same time is lost once RACK.rtt + reo_wnd
    (min_rtt / 4) have passed; the reorder timer fires then, long before the
    RTO, and the tail is repaired by RACK too."""
    s = _sack_at(TcpConfig())
    s.conn.send(b"t" * 4 * 1460, s.now)
    assert len(s.drain()) == 4
    k = 1460
    s.now = 0.020
    assert s.inject(s.seg(".", 1, 1, options=_sack((1 + k, 1 + 3 * k)))) == []
    reorder = s.conn.timers.reorder
    assert reorder is not None and s.conn.timers.rto is None
    # RACK.rtt 10 ms + reo_wnd 10/4 ms - 10 ms elapsed, + 2 ms timer slack
    assert reorder == pytest.approx(0.020 + 0.0025 + 0.002, abs=1e-4)
    assert s.at(reorder) == [". 1:1461(1460) ack 1 win 65535"]
    assert s.conn.rec is not None and s.conn.rec.state is CaState.RECOVERY
    s.now += 0.010
    assert s.inject(s.seg(".", 1, 1 + 3 * k)) == ["P. 4381:5841(1460) ack 1 win 65535"]
    s.inject(s.seg(".", 1, 1 + 4 * k))
    assert s.conn.snd_una == s.conn.snd_nxt and s.conn.rec.state is CaState.OPEN


def test_send_buffer_against_a_model() -> None:
    rng = random.Random(1)
    for _ in range(100):
        b = SendBuffer(rng.choice([10, 1000, 100_000]))
        model = bytearray()
        for _ in range(150):
            op = rng.random()
            if op < 0.4:
                d: bytes | bytearray = rng.randbytes(rng.choice([1, 5, 100, 3000, 70_000]))
                if rng.random() < 0.3:
                    d = bytearray(d)
                k = b.write(d)
                assert k == min(len(d), max(b.limit - len(model), 0))
                model += d[:k]
            elif op < 0.7 and model:
                off = rng.randrange(len(model))
                n = rng.randrange(1, 5000)
                assert b.peek(off, n) == bytes(model[off:off + n])
            elif model:
                n = rng.randrange(len(model) + 1)
                b.acknowledge(n)
                del model[:n]
            assert len(b) == len(model)


def test_send_buffer_keeps_bytes_objects_without_copying() -> None:
    b = SendBuffer(1 << 20)
    chunk = bytes(range(256)) * 20
    b.write(chunk)
    assert b.peek(0, len(chunk)) is chunk


def test_per_connection_options_do_not_leak_through_a_shared_config() -> None:
    cfg = TcpConfig()
    a = established(cfg)
    b = established(cfg)
    a.conn.set_nodelay(True)
    assert a.conn.config.nodelay and not b.conn.config.nodelay and not cfg.nodelay
    a.conn.set_keepalive(True, 5.0, idle=10, interval=1, count=2)
    assert a.conn.next_deadline() == 10.0  # idle since the last segment at t=0
    a.conn.set_keepalive(False, 6.0)
    assert a.conn.next_deadline() is None


def test_icmp_fragmentation_needed_lowers_mss_and_resends() -> None:
    s = established()
    s.conn.send(b"m" * 1760, 0.0)
    assert s.lines(s.drain()) == [". 1:1461(1460) ack 1 win 65535",
                                  "P. 1461:1761(300) ack 1 win 65535"]
    s.conn.icmp_error(errno.EMSGSIZE, ISS + 1, 0.01, mtu=1200)
    assert s.conn.send_mss == 1160 and s.conn.state is TcpState.ESTABLISHED
    assert s.lines(s.drain()) == [". 1:1161(1160) ack 1 win 65535",
                                  "P. 1161:1761(600) ack 1 win 65535"]
    # a quote outside SND.UNA..SND.NXT is ignored (RFC 5927 4.1)
    s.conn.icmp_error(errno.EMSGSIZE, ISS + 5000, 0.02, mtu=600)
    assert s.conn.send_mss == 1160


def test_cwnd_restart_after_idle() -> None:
    s = established()
    cc = s.conn.cc
    s.conn.send(b"i" * 1460 * 10, 0.0)
    s.drain()
    s.now = 0.01
    s.inject(s.seg(".", 1, 1 + 1460 * 10))
    assert cc.cwnd > 10 * 1460  # grew in slow start
    grown = cc.cwnd
    # idle for more than 4 RTOs: halved per RTO down to the initial window
    s.now = 0.01 + 5 * s.conn.rtt.rto
    s.conn.send(b"j" * 100, s.now)
    s.drain()
    assert cc.cwnd == max(grown >> 5, 10 * 1460) == 10 * 1460
    assert cc.ssthresh >= grown * 3 // 4


def test_cubic_grows_towards_w_max_and_reduces_by_beta() -> None:
    """CUBIC on the rate-sample hooks, driven as the connection drives it:
    ssthresh_on_loss and on_state at a loss, cwnd = ssthresh when PRR ends."""
    cc = create("cubic", 1000, 10)
    cc.ssthresh = 10_000  # start in congestion avoidance
    cc.on_ack(RateSample(acked_sacked=1000, rtt=0.01, min_rtt=0.01), 0.0)
    cc.ssthresh = cc.ssthresh_on_loss(1.0, cc.cwnd)  # at cwnd ~ 10 segments: W_max = 10
    cc.on_state(CaState.RECOVERY, 1.0)
    cc.cwnd = cc.ssthresh
    cc.on_state(CaState.OPEN, 1.0)
    assert cc.cwnd == cc.ssthresh == 7_000  # beta = 0.7
    now = 1.0
    sizes = []
    for _ in range(400):
        now += 0.01
        cc.on_ack(RateSample(acked_sacked=1000, rtt=0.01, min_rtt=0.01), now)
        sizes.append(cc.cwnd)
    assert sizes == sorted(sizes)  # monotone growth
    assert sizes[-1] > 10_000  # passed the old maximum (convex region)
    grown = cc.cwnd
    assert cc.ssthresh_on_loss(now, grown) == int(grown // 1000 * 0.7) * 1000  # in segments


@pytest.mark.parametrize("ca", ["reno", "cubic"])
def test_bulk_transfer_with_each_congestion_control(ca: str) -> None:
    from ustack.tcp.testing import BulkApp, MemoryPair, WireProfile

    cfg = TcpConfig(congestion=ca)
    pair = MemoryPair(cfg, cfg, seed=2, profile=WireProfile(delay=0.002, loss=0.01))
    rng = random.Random(3)
    data = rng.randbytes(500_000)
    app_a = BulkApp(lambda: pair.client.conn, data, random.Random(4))
    app_b = BulkApp(lambda: pair.server.conn, b"", random.Random(5))

    def app(now: float) -> float | None:
        wakes = [w for w in (app_a(now), app_b(now)) if w is not None]
        return min(wakes) if wakes else None

    pair.run(lambda: app_b.eof, app=app, max_time=1000)
    assert bytes(app_b.received) == data
    assert pair.a.cc.name == ca


def test_out_of_order_queue_is_bounded_in_blocks() -> None:
    r = Reassembly()
    for k in range(10):
        r.add(10 * k, b"x", max_blocks=4)
    assert len(r.blocks()) == 4
    assert r.add(1, b"y", max_blocks=4)  # extending an existing block is fine
    s = established(TcpConfig(ooo_max_blocks=8))
    for k in range(100):
        s.conn.receive(s.seg(".", 3 + 2 * k, 1, payload=b"z"), s.now)
    assert len(s.conn._ooo.blocks()) == 8
    s.conn.receive(s.seg(".", 1, 1, payload=b"a" * 300), s.now)
    assert s.conn.readable() == 300


def test_stretch_dup_acks_enter_recovery_by_sacked_bytes() -> None:
    """One stretch ACK SACKing five segments above two holes enters recovery
    at once (the first duplicate ACK; Linux RACK with DupThresh: reordering
    window 0 once >= 3 segments are SACKed), and PRR's slow-start reduction
    bound (RFC 6937) lets both holes go in the same round trip."""
    s = _sack_established()
    s.conn.send(b"g" * 10 * 1460, 0.0)
    assert len(s.drain()) == 10
    k = 1460
    s.now = 0.010  # one round trip later
    out = s.inject(s.seg(".", 1, 1, options=_sack((1 + 3 * k, 1 + 7 * k), (1 + k, 1 + 2 * k))))
    assert [line.split(" ack")[0] for line in out] == [". 1:1461(1460)", ". 2921:4381(1460)"]
    assert s.conn.rec is not None and s.conn.rec.state is CaState.RECOVERY
    info = s.conn.info(s.now)
    assert (info.lost, info.sacked) == (2, 5 * k)
    # more SACKs: both holes already resent, nothing new to send
    s.now = 0.011
    out = s.inject(s.seg(".", 1, 1, options=_sack((1 + 3 * k, 1 + 10 * k), (1 + k, 1 + 2 * k))))
    assert out == []
    s.inject(s.seg(".", 1, 1 + 10 * k))
    assert s.conn.rec is not None and s.conn.rec.state is CaState.OPEN and s.conn.total_retrans == 2


def test_data_segments_carrying_sack_blocks_still_fit_the_mtu() -> None:
    """With holes in what we receive, our data segments carry SACK blocks;
    the payload shrinks so header + options + payload stays within the MTU."""
    syn = TcpSegment(40000, 80, PEER, 0, SYN, 65535, 0,
                     TcpOptions(mss=1460, sack_permitted=True, timestamp=(1, 0)))
    s = Script(TcpConnection.accept(syn, ISS, 0.0, TcpConfig(max_segment=65_000)), ISS, PEER)
    s.drain()
    ts = TcpOptions(timestamp=(2, s.conn._ts_val(0.0)))
    s.inject(s.seg(".", 1, 1, options=ts))
    # two holes in the peer's data: our next segments carry two SACK blocks
    for start in (1001, 3001):
        s.conn.receive(s.seg(".", start, 1, payload=b"h" * 500, options=ts), s.now)
    s.drain()
    s.conn.send(b"d" * 20_000, s.now)
    out = s.drain()
    assert out
    for seg in out:
        wire = seg.encode(b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02")
        assert len(wire) <= 1480, len(wire)  # TCP header + options + payload <= MTU - 20
        assert len(seg.options.sack_blocks) == 2
