"""Super-segment sizes as Linux's (GSO mode): tcp_cwnd_test keeps at least
two in flight (at most half the cwnd each), tcp_tso_autosize sends about
1 ms of the pacing rate (at least tcp_min_tso_segs); and a closed peer
window does not restart the cwnd (zero-window probes carry no data)."""

from __future__ import annotations

from ustack.tcp import TcpConfig, TcpConnection
from ustack.tcp.testing import Script
from ustack.wire.tcp import PSH, SYN, TcpOptions, TcpSegment

ISS = 10_000
PEER = 0


def established(cfg: TcpConfig, rtt: float) -> Script:
    syn = TcpSegment(40000, 80, PEER, 0, SYN, 65535, 0, TcpOptions(mss=1000, wscale=7))
    s = Script(TcpConnection.accept(syn, ISS, 0.0, cfg), ISS, PEER)
    s.drain()
    s.now = rtt
    s.inject(s.seg(".", 1, 1, win=511))
    return s


def sizes(s: Script) -> list[int]:
    return [len(seg.payload) for seg in s.drain()]


def test_half_the_cwnd_per_super_segment_on_a_short_path() -> None:
    # 100 us RTT: autosize allows a whole GSO packet, the cwnd test halves it
    s = established(TcpConfig(max_segment=64000, initial_cwnd=10), 0.0001)
    s.conn.send(b"x" * 30000, s.now)
    assert sizes(s) == [5000, 5000]


def test_about_a_millisecond_of_the_pacing_rate_on_a_long_path() -> None:
    # 100 ms RTT: 200 % x 10 x 1000 B / 0.1 s = 200 kB/s, 195 B per ms:
    # tcp_min_tso_segs (2) decides
    s = established(TcpConfig(max_segment=64000, initial_cwnd=10), 0.1)
    s.conn.send(b"x" * 30000, s.now)
    out = s.drain()
    assert [len(seg.payload) for seg in out] == [2000] * 5
    assert all(seg.flags & PSH for seg in out)


def test_min_tso_segs_raises_the_floor() -> None:
    s = established(TcpConfig(max_segment=64000, initial_cwnd=10, tcp_min_tso_segs=10), 0.1)
    s.conn.send(b"x" * 30000, s.now)
    assert sizes(s) == [5000, 5000]  # 10 MSS, then halved by the cwnd test


def test_zero_window_probes_keep_the_cwnd_the_reopened_window_restarts_it() -> None:
    cfg = TcpConfig(max_segment=64000, initial_cwnd=10, slow_start_after_idle=True)
    s = established(cfg, 0.1)
    s.conn.send(b"x" * 10000, s.now)
    s.drain()
    s.now += 0.1
    s.inject(s.seg(".", 1, 10001, win=0))
    cwnd = s.conn.cc.cwnd
    assert cwnd > 10 * 1000  # slow start grew it
    s.conn.send(b"y" * 10000, s.now)
    assert sizes(s) == []  # the window is closed
    for _ in range(3):  # persist timer: probes, no data
        deadline = s.conn.next_deadline()
        assert deadline is not None
        s.now = deadline
        s.conn.handle_timer(s.now)
        s.drain()
        assert s.conn.cc.cwnd == cwnd
    s.now += 2.0
    s.inject(s.seg(".", 1, 10001, win=511))
    # idle for many RTOs: back to the restart window (RFC 5681 4.1)
    assert s.conn.cc.cwnd == 10 * 1000


def test_exact_wire_psh_on_the_last_segment_of_each_would_be_gso_packet() -> None:
    # no super-segments (max_segment 0), 100 ms RTT: Linux builds 2-MSS GSO
    # packets (tcp_min_tso_segs) and a device without GSO gets them cut in
    # MSS segments, the forced PSH on the second (packetdrill
    # nagle/https_client.pkt with `ethtool -K tun0 tso off gso off`)
    s = established(TcpConfig(max_segment=0, initial_cwnd=10), 0.1)
    s.conn.send(b"x" * 5500, s.now)
    out = s.drain()
    assert [len(seg.payload) for seg in out] == [1000] * 5 + [500]
    assert [bool(seg.flags & PSH) for seg in out] == [False, True, False, True, False, True]


def test_exact_wire_short_path_no_forced_psh_in_a_burst() -> None:
    # 100 us RTT: the would-be GSO packet is half the cwnd (5 MSS)
    s = established(TcpConfig(max_segment=0, initial_cwnd=10), 0.0001)
    s.conn.send(b"x" * 4500, s.now)
    out = s.drain()
    assert [bool(seg.flags & PSH) for seg in out] == [False, False, False, False, True]
