# mypy: disable-error-code="comparison-overlap"
# (mypy narrows conn.state after one assert and cannot see that the next call
#  changes it, so every later state assert looks like a dead comparison)
"""Every single-connection scenario of /work/shared/tcp-edge-cases.md, with the
exact segments sent and the state reached.  Test names start with the
catalogue item number (``test_07_...``).

Notation as the catalogue: sequence numbers are relative to the sender's ISN;
``Script.inject`` is ``<``, the returned lines are ``>``.
"""

from __future__ import annotations

import errno

import pytest

from ustack.tcp import TcpConfig, TcpConnection, TcpState, listener_action, reply_to_unmatched
from ustack.tcp import events as ev
from ustack.tcp.testing import Script, fmt
from ustack.wire.tcp import SYN, TcpOptions, TcpSegment, str_to_flags

ISS = 10_000  # ours
PEER = 0  # the peer's ISN: peer sequence numbers read as in the catalogue
LINUX_SYN = TcpOptions(mss=1460, sack_permitted=True, timestamp=(100, 0), wscale=7)


#: the window field of a connection with the default receive buffer, our
#: shift 7 (TcpConfig.window_scale)
_WIN = TcpConfig().recv_buffer >> 7

def raw(flags: str, seq: int, ack: int = 0, payload: bytes = b"", win: int = 65535) -> TcpSegment:
    return TcpSegment(40000, 80, seq, ack, str_to_flags(flags), win, 0, TcpOptions(), payload)


def passive(cfg: TcpConfig | None = None, opts: TcpOptions | None = None,
            payload: bytes = b"") -> Script:
    syn = TcpSegment(40000, 80, PEER, 0, SYN, 65535, 0, opts or TcpOptions(mss=1460), payload)
    return Script(TcpConnection.accept(syn, ISS, 0.0, cfg), ISS, PEER)


def established(cfg: TcpConfig | None = None, opts: TcpOptions | None = None) -> Script:
    s = passive(cfg, opts)
    s.drain()
    ts = TcpOptions(timestamp=(101, s.conn._ts_val(0.0))) if s.conn.ts_ok else None
    assert s.inject(s.seg(".", 1, 1, options=ts)) == []
    assert s.conn.state is TcpState.ESTABLISHED
    s.events.clear()
    return s


def active(cfg: TcpConfig | None = None) -> Script:
    s = Script(TcpConnection.connect(40000, 80, ISS, 0.0, cfg), ISS, PEER)
    assert s.lines(s.drain()) == ["S 0:0(0) win 64240"]
    return s


def active_established(cfg: TcpConfig | None = None) -> Script:
    s = active(cfg)
    assert s.inject(s.seg("S.", 0, 1, options=TcpOptions(mss=1460))) == [". 1:1(0) ack 1 win 65535"]
    s.events.clear()
    return s


# ----------------------------------------------------------- CLOSED / LISTEN
def test_01_syn_to_closed_port() -> None:
    rst = reply_to_unmatched(raw("S", 0))
    assert rst is not None and fmt(rst) == "R. 0:0(0) ack 1 win 0"
    assert (rst.src_port, rst.dst_port) == (80, 40000)


def test_02_syn_with_data_to_closed_port_counts_syn_fin_and_data() -> None:
    rst = reply_to_unmatched(raw("S", 0, payload=b"x" * 10))
    assert rst is not None and fmt(rst) == "R. 0:0(0) ack 11 win 0"
    rst = reply_to_unmatched(raw("SF", 0, payload=b"x" * 10))
    assert rst is not None and fmt(rst) == "R. 0:0(0) ack 12 win 0"


def test_03_ack_to_closed_port_and_rst_gets_nothing() -> None:
    rst = reply_to_unmatched(raw(".", 1, 1000))
    assert rst is not None and fmt(rst) == "R 1000:1000(0) win 0"
    assert reply_to_unmatched(raw("R", 1)) is None
    assert reply_to_unmatched(raw("R.", 1, 5)) is None


def test_04_ack_to_listener_gets_rst_seq_seg_ack() -> None:
    action = listener_action(raw(".", 1, 1000))
    assert isinstance(action, TcpSegment) and fmt(action) == "R 1000:1000(0) win 0"
    action = listener_action(raw("S.", 1, 77))
    assert isinstance(action, TcpSegment) and fmt(action) == "R 77:77(0) win 0"


@pytest.mark.parametrize("flags", ["R", "F", "SR", "SF", "FP", ""])
def test_05_listener_drops_rst_fin_synrst_synfin(flags: str) -> None:
    assert listener_action(raw(flags, 0)) is None


def test_05_listener_accepts_plain_syn() -> None:
    assert listener_action(raw("S", 0)) == "syn"


def test_06_passive_open_echoes_offered_options_and_synack_timeline() -> None:
    s = passive(opts=LINUX_SYN)
    out = s.drain()
    assert len(out) == 1
    opts = out[0].options
    assert fmt(out[0], ISS, PEER) == "S. 0:0(0) ack 1 win 64240"
    assert (opts.mss, opts.sack_permitted, opts.wscale) == (1460, True, 7)
    assert opts.timestamp is not None and opts.timestamp[1] == 100
    # a SYN offering nothing gets only the MSS back
    s2 = passive(opts=TcpOptions())
    o2 = s2.drain()[0].options
    assert (o2.mss, o2.sack_permitted, o2.wscale, o2.timestamp) == (1460, False, None, None)
    assert s2.conn.send_mss == 536
    # SYN-ACK retransmitted 1, 2, 4, 8, 16 s apart, then the request is dropped
    times = [t for t, line in s2.run_timers(200) if line.startswith("S.")]
    assert times == [1, 3, 7, 15, 31]
    assert s2.conn.state is TcpState.CLOSED
    assert s2.now == 63
    assert s2.event_types() == ["Closed"]  # no error: nobody accepted it yet


def test_07_duplicate_syn_in_syn_recv_gets_synack_again() -> None:
    s = passive()
    s.drain()
    assert s.inject(s.seg("S", 0)) == ["S. 0:0(0) ack 1 win 64240"]
    assert s.conn.state is TcpState.SYN_RECEIVED


def test_07_different_in_window_syn_in_syn_recv_resets() -> None:
    s = passive()
    s.drain()
    s.conn.receive(s.seg("S", 5), s.now)
    rst, = s.drain()
    assert fmt(rst) == "R. 0:0(0) ack 6 win 0"
    assert s.conn.state is TcpState.CLOSED


def test_08_bad_ack_in_syn_recv_gets_rst_and_half_open_survives() -> None:
    s = passive()
    s.drain()
    assert s.inject(s.seg(".", 1, 5)) == ["R 5:5(0) win 0"]
    assert s.conn.state is TcpState.SYN_RECEIVED
    assert s.inject(s.seg(".", 1, 1)) == []
    assert s.conn.state is TcpState.ESTABLISHED
    assert s.event_types() == ["Connected"]


def test_09_in_window_rst_in_syn_recv_drops_the_request() -> None:
    s = passive()
    s.drain()
    assert s.inject(s.seg("R", 100)) == []  # in window, not exact: Linux accepts
    assert s.conn.state is TcpState.CLOSED
    assert s.event_types() == ["Closed"]


def test_09_out_of_window_rst_in_syn_recv_ignored() -> None:
    s = passive()
    s.drain()
    assert s.inject(s.seg("R", 1_000_000)) == []
    assert s.conn.state is TcpState.SYN_RECEIVED


# ------------------------------------------------------------- SYN-SENT
def test_10_syn_retransmission_timeline_linux_65() -> None:
    s = active()
    sent = s.run_timers(1000)
    assert [t for t, _ in sent] == [1, 2, 3, 4, 5, 7, 11, 19, 35, 67]
    assert all(line == "S 0:0(0) win 64240" for _, line in sent)
    assert s.conn.state is TcpState.CLOSED
    assert s.now == 131
    assert s.events == [ev.ConnectionFailed(errno.ETIMEDOUT), ev.CLOSED]


def test_10_rfc_timeline_without_linear_timeouts() -> None:
    s = active(TcpConfig(syn_linear_timeouts=0))
    assert [t for t, _ in s.run_timers(1000)] == [1, 3, 7, 15, 31, 63]
    assert s.now == 127


@pytest.mark.parametrize("ack", [0, 2, 100])  # <= ISS or > SND.NXT
def test_11_synack_with_bad_ack(ack: int) -> None:
    s = active()
    assert s.inject(s.seg("S.", 0, ack)) == [f"R {ack}:{ack}(0) win 0"]
    assert s.conn.state is TcpState.SYN_SENT
    # Linux re-sends the SYN after TCP_TIMEOUT_MIN instead of waiting 1 s
    assert s.conn.next_deadline() == pytest.approx(0.002)
    assert s.at(0.002) == ["S 0:0(0) win 64240"]
    assert s.conn.next_deadline() == pytest.approx(1.002)


def test_12_bare_ack_in_syn_sent() -> None:
    s = active()
    assert s.inject(s.seg(".", 0, 1)) == []
    assert s.inject(s.seg(".", 0, 7)) == ["R 7:7(0) win 0"]
    assert s.conn.state is TcpState.SYN_SENT


def test_13_rst_ack_with_acceptable_ack_is_refused() -> None:
    s = active()
    assert s.inject(s.seg("R.", 0, 1)) == []
    assert s.conn.state is TcpState.CLOSED
    assert s.events == [ev.ConnectionFailed(errno.ECONNREFUSED), ev.CLOSED]
    assert isinstance(s.events[0], ev.ConnectionFailed)
    assert isinstance(s.events[0].exception(), ConnectionRefusedError)


def test_14_rst_without_ack_ignored_syn_retransmits_continue() -> None:
    s = active()
    assert s.inject(s.seg("R", 0)) == []
    assert s.conn.state is TcpState.SYN_SENT
    assert s.conn.next_deadline() == 1.0
    assert s.at(1.0) == ["S 0:0(0) win 64240"]


def test_15_rst_ack_with_unacceptable_ack_dropped() -> None:
    s = active()
    assert s.inject(s.seg("R.", 0, 5)) == []
    assert s.conn.state is TcpState.SYN_SENT
    assert s.at(0.002) == ["S 0:0(0) win 64240"]  # Linux: quick SYN re-send


def test_16_simultaneous_open() -> None:
    a = TcpConnection.connect(40000, 80, 1000, 0.0)
    b = TcpConnection.connect(80, 40000, 5000, 0.0)
    syn_a, = a.segments_to_send(0.0)
    syn_b, = b.segments_to_send(0.0)
    a.receive(syn_b, 0.01)
    b.receive(syn_a, 0.01)
    assert a.state is TcpState.SYN_RECEIVED and b.state is TcpState.SYN_RECEIVED
    sa, = a.segments_to_send(0.01)
    sb, = b.segments_to_send(0.01)
    assert fmt(sa, 1000, 5000) == "S. 0:0(0) ack 1 win 64240"
    assert fmt(sb, 5000, 1000) == "S. 0:0(0) ack 1 win 64240"
    a.receive(sb, 0.02)
    b.receive(sa, 0.02)
    assert a.state is TcpState.ESTABLISHED and b.state is TcpState.ESTABLISHED
    ack_a, = a.segments_to_send(0.02)  # Linux ACKs the crossing SYN-ACK
    assert fmt(ack_a, 1000, 5000) == f". 1:1(0) ack 1 win {_WIN}"
    assert isinstance(a.next_event(), ev.Connected)
    assert a.snd_wnd == 64240 and a.snd_wscale == 7  # the SYN-ACK window is unscaled
    # and data flows
    a.send(b"hello", 0.03)
    for seg in a.segments_to_send(0.03):
        b.receive(seg, 0.03)
    assert b.recv(100, 0.03) == b"hello"


def test_17_synack_carrying_data_linux_acks_only_the_syn() -> None:
    s = active()
    out = s.inject(s.seg("S.", 0, 1, payload=b"0123456789", options=TcpOptions(mss=1460)))
    assert out == [". 1:1(0) ack 1 win 65535"]  # Linux: text on a SYN-ACK is discarded
    assert s.conn.readable() == 0
    assert s.event_types() == ["Connected"]


def test_17_synack_carrying_data_rfc_mode_acks_the_data() -> None:
    s = active(TcpConfig(accept_synack_data=True))
    out = s.inject(s.seg("S.", 0, 1, payload=b"0123456789", options=TcpOptions(mss=1460)))
    assert out == [". 1:1(0) ack 11 win 65535"]
    assert s.conn.recv(100, s.now) == b"0123456789"
    assert s.event_types() == ["Connected", "DataAvailable"]


def test_18_syn_with_data_to_listener_acks_only_the_syn() -> None:
    s = passive(payload=b"x" * 10)
    assert s.lines(s.drain()) == ["S. 0:0(0) ack 1 win 64240"]
    assert s.conn.readable() == 0


def test_19_no_mss_option_means_536() -> None:
    s = active()
    s.inject(s.seg("S.", 0, 1))  # no options at all
    assert s.conn.send_mss == 536
    s.conn.send(b"y" * 2000, s.now)
    out = s.drain()
    # Minshall's Nagle (Linux): the runt goes out, no small segment is in flight
    assert [len(x.payload) for x in out] == [536, 536, 536, 392]
    s.conn.send(b"z" * 10, s.now)
    assert s.drain() == []  # a second small segment waits for the first one's ACK
    assert s.inject(s.seg(".", 1, 2001)) == ["P. 2001:2011(10) ack 1 win 65535"]


def test_20_window_scale_only_when_both_and_capped_at_14() -> None:
    s = passive(opts=TcpOptions(mss=1460))  # peer did not offer wscale
    synack = s.drain()[0]
    assert synack.options.wscale is None
    assert not s.conn.wscale_ok and s.conn.rcv_wscale == 0 and s.conn.snd_wscale == 0
    s.inject(s.seg(".", 1, 1, win=100))
    assert s.conn.snd_wnd == 100  # unscaled
    s2 = passive(opts=TcpOptions(mss=1460, wscale=15))
    synack2 = s2.drain()[0]
    assert synack2.options.wscale == 7 and synack2.window == 64240  # SYN window unscaled
    assert s2.conn.snd_wscale == 14
    s2.inject(s2.seg(".", 1, 1, win=3))
    assert s2.conn.snd_wnd == 3 << 14
    # our windows after the handshake are scaled by our shift
    s2.conn.send(b"", s2.now)
    s2.conn.rcv.ack_now = True
    seg = s2.drain()[0]
    assert seg.window == TcpConfig().recv_buffer >> 7


def test_20_syn_sent_side_window_unscaled_in_synack() -> None:
    s = active()
    s.inject(s.seg("S.", 0, 1, win=1000, options=TcpOptions(mss=1460, wscale=3)))
    assert s.conn.snd_wnd == 1000  # the SYN-ACK window is never scaled
    assert s.conn.snd_wscale == 3


def test_21_sack_only_if_both_offered() -> None:
    s = established(TcpConfig(), TcpOptions(mss=1460))  # peer without sackOK
    assert not s.conn.sack_ok
    s.conn.receive(s.seg(".", 1001, 1, payload=b"a" * 100), s.now)
    segs = s.drain()
    assert [fmt(x, ISS, PEER) for x in segs] == [". 1:1(0) ack 1 win 65535"]
    assert segs[0].options.sack_blocks == []
    s2 = established(TcpConfig(), TcpOptions(mss=1460, sack_permitted=True))
    s2.conn.receive(s2.seg(".", 1001, 1, payload=b"a" * 100), s2.now)
    seg = s2.drain()[0]
    assert seg.options.sack_blocks == [(1001, 1101)]


def test_22_timestamps_only_if_both_and_paws() -> None:
    s = established(TcpConfig(), TcpOptions(mss=1460))
    assert not s.conn.ts_ok
    s = established(TcpConfig(timestamps=False), LINUX_SYN)
    assert not s.conn.ts_ok
    s = established(TcpConfig(), LINUX_SYN)
    assert s.conn.ts_ok
    good = TcpOptions(timestamp=(200, 0))
    s.inject(s.seg(".", 1, 1, payload=b"a" * 10, options=good))
    s.at(1.0)  # delayed ACK
    assert s.conn.rcv_nxt == 11
    # TSval older than TS.Recent: dropped, answered with a dup ACK
    old = TcpOptions(timestamp=(150, 0))
    out = s.inject(s.seg(".", 11, 1, payload=b"b" * 10, options=old))
    assert out == [f". 1:1(0) ack 11 win {_WIN}"]
    assert s.conn.rcv_nxt == 11
    # RSTs are never PAWS-checked
    s.inject(s.seg("R", 11, options=old))
    assert s.conn.state is TcpState.CLOSED


def test_23_icmp_unreachable_in_syn_sent() -> None:
    s = active()
    s.conn.icmp_error(errno.ECONNREFUSED, ISS + 5, 0.1)  # quote outside: ignored
    assert s.conn.state is TcpState.SYN_SENT
    s.conn.icmp_error(errno.ECONNREFUSED, ISS, 0.1)
    assert s.conn.state is TcpState.CLOSED
    s.drain()
    assert s.events == [ev.ConnectionFailed(errno.ECONNREFUSED), ev.CLOSED]
    s2 = active()
    s2.conn.icmp_error(errno.EHOSTUNREACH, ISS, 0.1)
    s2.drain()
    assert s2.events[0] == ev.ConnectionFailed(errno.EHOSTUNREACH)


def test_23_icmp_in_established_is_soft() -> None:
    s = active_established()
    s.conn.send(b"x", 0.0)
    s.drain()
    s.conn.icmp_error(errno.EHOSTUNREACH, ISS + 1, 0.1)
    assert s.conn.state is TcpState.ESTABLISHED and s.conn.soft_error == errno.EHOSTUNREACH


# ------------------------------------------- ESTABLISHED: RST, SYN, sequence
def test_24_rst_at_rcv_nxt_resets() -> None:
    s = established()
    assert s.inject(s.seg("R", 1)) == []
    assert s.conn.state is TcpState.CLOSED
    assert s.events == [ev.ConnectionFailed(errno.ECONNRESET), ev.CLOSED]


def test_25_in_window_rst_gets_rate_limited_challenge_ack() -> None:
    s = established()
    assert s.inject(s.seg("R", 100)) == [". 1:1(0) ack 1 win 65535"]
    assert s.conn.state is TcpState.ESTABLISHED
    s.now = 0.1
    assert s.inject(s.seg("R", 200)) == []  # within 500 ms: rate-limited
    s.now = 0.7
    assert s.inject(s.seg("R", 200)) == [". 1:1(0) ack 1 win 65535"]


def test_26_out_of_window_rst_dropped() -> None:
    s = established()
    assert s.inject(s.seg("R", 5_000_000)) == []
    assert s.inject(s.seg("R", -5 & 0xFFFFFFFF)) == []
    assert s.conn.state is TcpState.ESTABLISHED


@pytest.mark.parametrize("ack", [0, 1, 12345, 0x80000000])
def test_27_rst_ack_any_ack_only_seq_matters(ack: int) -> None:
    s = established()
    assert s.inject(s.seg("R.", 1, ack)) == []
    assert s.conn.state is TcpState.CLOSED


@pytest.mark.parametrize("seq", [0, 1, 500, 0x7FFFFFFF])
def test_28_syn_in_established_gets_challenge_ack(seq: int) -> None:
    s = established()
    assert s.inject(s.seg("S", seq)) == [". 1:1(0) ack 1 win 65535"]
    assert s.conn.state is TcpState.ESTABLISHED


def test_29_ack_of_unsent_data_acked_and_dropped() -> None:
    s = established()
    out = s.inject(s.seg(".", 1, 50, payload=b"z" * 10))
    assert out == [". 1:1(0) ack 1 win 65535"]
    assert s.conn.readable() == 0 and s.conn.snd_una == ISS + 1


def test_30_too_old_ack_gets_challenge_ack() -> None:
    s = established()
    s.conn.send(b"q" * 1000, s.now)
    s.drain()
    s.inject(s.seg(".", 1, 1001))
    # SND.UNA - MAX.SND.WND = 1001 - 65535 < 0: an ack at -70000 is too old
    out = s.inject(s.seg(".", 1, -70000 & 0xFFFFFFFF, payload=b"d" * 5))
    assert out == [". 1001:1001(0) ack 1 win 65535"]
    assert s.conn.readable() == 0


def test_31_data_outside_window_gets_dup_ack() -> None:
    s = established(TcpConfig(recv_buffer=4096, window_scaling=False))
    assert s.inject(s.seg(".", 100_000, 1, payload=b"x" * 10)) == [". 1:1(0) ack 1 win 4096"]
    assert s.conn.readable() == 0


def test_32_old_duplicate_data_immediate_ack_with_dsack() -> None:
    s = established(TcpConfig(), TcpOptions(mss=1460, sack_permitted=True))
    s.inject(s.seg(".", 1, 1, payload=b"a" * 100))
    s.at(0.5)
    s.conn.receive(s.seg(".", 1, 1, payload=b"a" * 100), s.now)
    seg, = s.drain()
    assert fmt(seg, ISS, PEER) == ". 1:1(0) ack 101 win 65535"
    assert seg.options.sack_blocks == [(1, 101)]  # D-SACK (RFC 2883)
    assert s.conn.dsack_dups == 1


def test_32_out_of_order_data_immediate_dup_ack_with_sack() -> None:
    s = established(TcpConfig(), TcpOptions(mss=1460, sack_permitted=True))
    s.conn.receive(s.seg(".", 201, 1, payload=b"c" * 100), s.now)
    seg, = s.drain()
    assert fmt(seg, ISS, PEER) == ". 1:1(0) ack 1 win 65535"
    assert seg.options.sack_blocks == [(201, 301)]
    s.conn.receive(s.seg(".", 401, 1, payload=b"e" * 100), s.now)
    seg, = s.drain()
    assert seg.options.sack_blocks == [(401, 501), (201, 301)]  # most recent first
    s.conn.receive(s.seg(".", 1, 1, payload=b"a" * 200), s.now)
    seg, = s.drain()
    assert fmt(seg, ISS, PEER) == ". 1:1(0) ack 301 win 65535"
    assert seg.options.sack_blocks == [(401, 501)]
    assert s.conn.recv(1000, s.now) == b"a" * 200 + b"c" * 100


def test_33_segment_without_ack_dropped() -> None:
    s = established()
    assert s.inject(s.seg("P", 1, payload=b"nope")) == []
    assert s.conn.readable() == 0


# ---------------------------------------------------------------- close
def test_34_active_close_to_time_wait() -> None:
    s = established()
    s.conn.shutdown(s.now)
    assert s.lines(s.drain()) == ["F. 1:1(0) ack 1 win 65535"]
    assert s.conn.state is TcpState.FIN_WAIT_1
    assert s.inject(s.seg(".", 1, 2)) == []
    assert s.conn.state is TcpState.FIN_WAIT_2
    assert s.conn.next_deadline() is None  # not orphaned: FIN-WAIT-2 waits
    assert s.inject(s.seg("F.", 1, 2)) == [". 2:2(0) ack 2 win 65535"]
    assert s.conn.state is TcpState.TIME_WAIT
    assert s.conn.next_deadline() == 60.0
    assert s.at(60.0) == []
    assert s.conn.state is TcpState.CLOSED
    assert s.event_types() == ["EofReceived", "Closed"]


def test_35_passive_close() -> None:
    s = established()
    assert s.inject(s.seg("F.", 1, 1)) == [". 1:1(0) ack 2 win 65535"]
    assert s.conn.state is TcpState.CLOSE_WAIT
    assert s.event_types() == ["EofReceived"]
    s.conn.close(s.now)
    assert s.lines(s.drain()) == ["F. 1:1(0) ack 2 win 65535"]
    assert s.conn.state is TcpState.LAST_ACK
    assert s.inject(s.seg(".", 2, 2)) == []
    assert s.conn.state is TcpState.CLOSED
    assert s.event_types() == ["EofReceived", "Closed"]
    assert s.inject(s.seg(".", 2, 2, payload=b"late")) == ["R 2:2(0) win 0"]


def test_36_simultaneous_close() -> None:
    s = established()
    s.conn.shutdown(s.now)
    assert s.lines(s.drain()) == ["F. 1:1(0) ack 1 win 65535"]
    assert s.inject(s.seg("F.", 1, 1)) == [". 2:2(0) ack 2 win 65535"]
    assert s.conn.state is TcpState.CLOSING
    assert s.inject(s.seg(".", 2, 2)) == []
    assert s.conn.state is TcpState.TIME_WAIT


def test_37_fin_with_data() -> None:
    s = established()
    s.inject(s.seg(".", 1, 1, payload=b"a" * 1000))
    s.at(1.0)
    assert s.inject(s.seg("FP.", 1001, 1, payload=b"b" * 1000)) == [". 1:1(0) ack 2002 win 65535"]
    assert s.conn.state is TcpState.CLOSE_WAIT
    assert len(s.conn.recv(5000, s.now)) == 2000


def test_38_fin_retransmitted_with_backoff() -> None:
    s = established()
    s.conn.shutdown(0.0)
    s.drain()
    sent = s.run_timers(30)
    assert [line for _, line in sent] == ["F. 1:1(0) ack 1 win 65535"] * len(sent)
    times = [t for t, _ in sent]
    rto = s.conn.rtt.base_rto
    expected = []
    t = 0.0
    for k in range(len(times)):
        t += rto * (1 << k)
        expected.append(round(t, 6))
    assert times == expected and len(times) >= 5


def test_38_peer_fin_retransmitted_in_time_wait_restarts_timer() -> None:
    s = established()
    s.conn.shutdown(0.0)
    s.drain()
    s.inject(s.seg(".", 1, 2))
    s.inject(s.seg("F.", 1, 2))
    assert s.conn.state is TcpState.TIME_WAIT
    s.now = 30.0
    assert s.inject(s.seg("F.", 1, 2)) == [". 2:2(0) ack 2 win 65535"]
    assert s.conn.next_deadline() == 90.0


def test_38_orphaned_fin_wait_2_times_out() -> None:
    s = established()
    s.conn.close(0.0)
    s.drain()
    s.inject(s.seg(".", 1, 2))
    assert s.conn.state is TcpState.FIN_WAIT_2
    assert s.conn.next_deadline() == 60.0
    assert s.at(60.0) == []  # silently, as Linux's FIN-WAIT-2 timewait socket
    assert s.conn.state is TcpState.CLOSED


def test_39_half_close_still_receives_and_write_after_eof_fails() -> None:
    s = established()
    s.conn.shutdown(0.0)
    s.drain()
    s.inject(s.seg(".", 1, 2))
    assert s.conn.state is TcpState.FIN_WAIT_2
    s.inject(s.seg(".", 1, 2, payload=b"m" * 3000))
    assert s.conn.recv(10_000, s.now) == b"m" * 3000
    with pytest.raises(BrokenPipeError):
        s.conn.send(b"more", s.now)


def test_40_data_after_peer_fin_ignored() -> None:
    s = established()
    s.inject(s.seg("F.", 1, 1))
    assert s.inject(s.seg(".", 2, 1, payload=b"after")) == []
    assert s.conn.readable() == 0


def test_40_new_data_after_close_resets() -> None:
    s = established()
    s.conn.close(0.0)
    s.drain()
    s.inject(s.seg(".", 1, 2))
    assert s.inject(s.seg(".", 1, 2, payload=b"x" * 10)) == ["R 2:2(0) win 0"]
    assert s.conn.state is TcpState.CLOSED


def test_41_close_with_unread_data_sends_rst() -> None:
    s = established()
    s.inject(s.seg(".", 1, 1, payload=b"u" * 10))
    s.at(1.0)
    s.conn.close(s.now)
    assert s.lines(s.drain()) == ["R. 1:1(0) ack 11 win 65535"]
    assert s.conn.state is TcpState.CLOSED


def test_41_close_in_syn_sent_sends_nothing() -> None:
    s = active()
    s.conn.close(0.5)
    assert s.drain() == []
    assert s.conn.state is TcpState.CLOSED
    assert s.event_types() == ["Closed"]


def _time_wait() -> Script:
    s = established()
    s.conn.shutdown(0.0)
    s.drain()
    s.inject(s.seg(".", 1, 2))
    s.inject(s.seg("F.", 1, 2))
    assert s.conn.state is TcpState.TIME_WAIT
    return s


def test_42_time_wait_new_syn_above_rcv_nxt_reopens() -> None:
    s = _time_wait()
    syn = s.seg("S", 100_000)
    assert s.inject(syn) == []
    assert s.conn.state is TcpState.CLOSED and s.conn.reopen_syn is syn


def test_42_time_wait_old_syn_gets_the_time_wait_ack() -> None:
    s = _time_wait()
    assert s.inject(s.seg("S", 0)) == [". 2:2(0) ack 2 win 65535"]
    assert s.conn.state is TcpState.TIME_WAIT


def test_42_time_wait_syn_with_newer_timestamp_reopens() -> None:
    s = established(TcpConfig(), LINUX_SYN)
    s.conn.shutdown(0.0)
    s.drain()
    s.inject(s.seg(".", 1, 2, options=TcpOptions(timestamp=(105, 1))))
    s.inject(s.seg("F.", 1, 2, options=TcpOptions(timestamp=(106, 1))))
    assert s.conn.state is TcpState.TIME_WAIT
    assert s.inject(s.seg("S", 0, options=TcpOptions(timestamp=(107, 0)))) == []
    assert s.conn.state is TcpState.CLOSED


def test_42_rst_ends_time_wait() -> None:
    s = _time_wait()
    assert s.inject(s.seg("R", 2)) == []
    assert s.conn.state is TcpState.CLOSED


# ------------------------------------------------------ timers, windows
def test_43_zero_window_persist_probes_back_off_to_120s() -> None:
    s = established()
    s.inject(s.seg(".", 1, 1, win=0))
    s.conn.send(b"p" * 100, 0.0)
    assert s.drain() == []
    rto = s.conn.rtt.rto
    assert s.conn.next_deadline() == pytest.approx(rto)
    # (500 s: unanswered probes end the connection after tcp_retries2 of
    # them, as Linux tcp_probe_timer; test_hardening_timeouts.py has that)
    sent = s.run_timers(500)
    assert s.conn.state is TcpState.ESTABLISHED
    assert all(line == ". 0:0(0) ack 1 win 65535" for _, line in sent)
    gaps = [round(b - a, 6) for (a, _), (b, _) in zip(sent, sent[1:], strict=False)]
    assert gaps[:3] == [round(rto * 2, 6), round(rto * 4, 6), round(rto * 8, 6)]
    assert max(gaps) == 120.0
    # window opens: the data goes out at once
    out = s.inject(s.seg(".", 1, 1, win=1000))
    assert out == ["P. 1:101(100) ack 1 win 65535"]


def test_43_receiver_with_zero_window_acks_probes() -> None:
    s = established(TcpConfig(recv_buffer=1000, window_scaling=False))
    s.inject(s.seg(".", 1, 1, payload=b"f" * 1000))
    s.at(0.5)
    assert s.conn.rcv_adv == s.conn.rcv_nxt  # window full
    assert s.inject(s.seg(".", 1000, 1)) == [". 1:1(0) ack 1001 win 0"]  # Linux probe
    s.now = 1.0
    assert s.inject(s.seg(".", 1001, 1, payload=b"g")) == [". 1:1(0) ack 1001 win 0"]
    s.conn.recv(2000, s.now)
    assert s.lines(s.drain()) == [". 1:1(0) ack 1001 win 1000"]


def test_44_keepalive_timeline() -> None:
    cfg = TcpConfig(keepalive=True, keepalive_idle=10, keepalive_interval=2, keepalive_count=3)
    s = established(cfg)
    assert s.conn.next_deadline() == 10.0
    sent = s.run_timers(100)
    assert sent == [(10.0, ". 0:0(0) ack 1 win 65535"), (12.0, ". 0:0(0) ack 1 win 65535"),
                    (14.0, ". 0:0(0) ack 1 win 65535"), (16.0, "R. 1:1(0) ack 1 win 65535")]
    assert s.conn.state is TcpState.CLOSED
    assert s.events == [ev.ConnectionFailed(errno.ETIMEDOUT), ev.CLOSED]


def test_44_keepalive_answered_keeps_connection() -> None:
    cfg = TcpConfig(keepalive=True, keepalive_idle=10, keepalive_interval=2, keepalive_count=3)
    s = established(cfg)
    assert s.at(10.0) == [". 0:0(0) ack 1 win 65535"]
    s.now = 10.5
    s.inject(s.seg(".", 1, 1))
    assert s.conn.next_deadline() == 20.5
    assert s.conn.state is TcpState.ESTABLISHED


def test_44_keepalive_default_off() -> None:
    s = established()
    assert s.conn.next_deadline() is None


def test_45_rto_linux_formula_and_3s_after_retransmitted_syn() -> None:
    s = active()
    assert s.at(1.0) == ["S 0:0(0) win 64240"]
    s.now = 1.05
    s.inject(s.seg("S.", 0, 1, options=TcpOptions(mss=1460)))
    assert s.conn.rtt.rto == 3.0  # no RTT sample (Karn), RFC 6298 5.7
    s.conn.send(b"d" * 100, s.now)
    s.drain()
    assert s.conn.next_deadline() == pytest.approx(4.05)
    # a clean sample: Linux RTO = SRTT + max(4 RTTVAR, 200 ms)
    s.now = 1.15
    s.inject(s.seg(".", 1, 101))
    assert s.conn.rtt.srtt == pytest.approx(0.1)
    assert s.conn.rtt.rto == pytest.approx(0.1 + 0.2)
    s2 = active(TcpConfig(rto_linux=False, rto_min=1.0))
    s2.now = 0.1
    s2.inject(s2.seg("S.", 0, 1, options=TcpOptions(mss=1460)))
    assert s2.conn.rtt.rto == 1.0  # RFC 6298: 1 s floor


def test_46_urgent_data_delivered_inline() -> None:
    s = established()
    seg = s.seg("U.", 1, 1, payload=b"abc")
    seg.urgent = 3
    s.inject(seg)
    assert s.conn.recv(10, s.now) == b"abc"


def test_47_quickack_at_connection_start() -> None:
    s = established()
    for k in range(16):  # Linux quickack mode: the first 16 segments ACKed at once
        seq = 1 + 100 * k
        assert s.inject(s.seg(".", seq, 1, payload=b"q" * 100)) == \
            [f". 1:1(0) ack {seq + 100} win 65535"]
    assert s.inject(s.seg(".", 1601, 1, payload=b"q" * 100)) == []  # now delayed
    assert s.at(0.04) == [". 1:1(0) ack 1701 win 65535"]


def test_47_delayed_ack_every_second_full_segment_and_timer() -> None:
    s = established(TcpConfig(quickack_segments=0))
    assert s.inject(s.seg(".", 1, 1, payload=b"a" * 1460)) == []
    assert s.conn.next_deadline() == pytest.approx(0.04)
    assert s.inject(s.seg(".", 1461, 1, payload=b"a" * 1460)) == [". 1:1(0) ack 2921 win 65535"]
    assert s.inject(s.seg(".", 2921, 1, payload=b"a" * 100)) == []
    assert s.at(0.04) == [". 1:1(0) ack 3021 win 65535"]


def test_rst_and_fin_flag_combinations_never_confuse_established() -> None:
    s = established()
    assert s.inject(s.seg("SF", 1)) == [". 1:1(0) ack 1 win 65535"]
    assert s.conn.state is TcpState.ESTABLISHED


def test_abort_sends_rst() -> None:
    s = established()
    s.conn.abort(0.0)
    assert s.lines(s.drain()) == ["R. 1:1(0) ack 1 win 65535"]
    assert s.event_types() == ["Closed"]



def test_43_orphan_facing_a_closed_window_gives_up() -> None:
    s = established()
    s.inject(s.seg(".", 1, 1, win=0))
    s.conn.send(b"p" * 100, 0.0)
    s.conn.close(0.0)
    assert s.drain() == []
    sent = s.run_timers(10_000)
    assert len(sent) == 8 and all(line == ". 0:0(0) ack 1 win 65535" for _, line in sent)
    assert s.conn.state is TcpState.CLOSED
    assert s.event_types() == ["Closed"]  # the application already let go: no error event


def test_38_orphaned_fin_retransmissions_stop_after_orphan_retries() -> None:
    s = established(TcpConfig(retries_timed=False))  # counted: 8 retransmissions
    s.conn.close(0.0)
    assert s.lines(s.drain()) == ["F. 1:1(0) ack 1 win 65535"]
    sent = s.run_timers(10_000)
    assert len(sent) == 8
    assert s.conn.state is TcpState.CLOSED


def test_38_orphan_retries_are_a_time_budget_as_linux() -> None:
    """Linux: orphan_retries 8 is the 102.2 s of 8 backed-off RTOs from
    200 ms (tcp_model_timeout) since the first retransmission; the 9th RTO
    comes 102.0 s after it, so a ninth retransmission goes out first."""
    s = established()
    s.conn.close(0.0)
    assert s.lines(s.drain()) == ["F. 1:1(0) ack 1 win 65535"]
    sent = s.run_timers(10_000)
    assert len(sent) == 9
    assert sent[-1][0] - sent[0][0] == pytest.approx(102.0, abs=0.01)
    assert s.conn.state is TcpState.CLOSED
