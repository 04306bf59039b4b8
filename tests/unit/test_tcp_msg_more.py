"""MSG_MORE (TcpConnection.send(..., more=True)), as Linux's tcp_push: the
output right after the write holds partial segments as TCP_CORK does
(TCP_NAGLE_CORK) and the write's end is not marked PSH; a later output
round (an ACK, TCP_NODELAY, the next plain write) follows Nagle/NODELAY,
and with nothing in flight the persist timer sends the held bytes with PSH
after an RTO (tcp_check_probe_timer -> tcp_write_wakeup).  packetdrill
gtests/net/tcp/nagle/sendmsg_msg_more.pkt, checked against the kernel peer.
"""

from __future__ import annotations

from ustack.tcp import TcpConfig
from ustack.tcp.testing import Script
from ustack.wire.tcp import TcpOptions

ISS = 10_000
PEER = 0


def established() -> Script:
    cfg = TcpConfig(max_segment=0, initial_cwnd=10, nodelay=True)
    return Script.passive_open(cfg, TcpOptions(mss=1000), iss=ISS, peer_iss=PEER, rtt=0.01)


def test_more_holds_a_partial_segment_despite_nodelay_until_the_persist_timer() -> None:
    s = established()
    s.conn.send(b"x" * 40, s.now, more=True)
    assert s.lines(s.drain()) == []
    start = s.now
    out = s.run_timers(s.now + 0.5)  # (then RTO retransmissions: nothing ACKs it)
    assert out and out[0][1].split(" win")[0] == "P. 1:41(40) ack 1"
    assert out[0][0] - start >= 0.2  # an RTO later (at least rto_min)


def test_a_plain_write_after_more_releases_both_with_psh() -> None:
    s = established()
    s.conn.send(b"x" * 20, s.now, more=True)
    assert s.drain() == []
    s.conn.send(b"y" * 20, s.now)
    assert [line.split(" win")[0] for line in s.lines(s.drain())] == ["P. 1:41(40) ack 1"]


def test_full_segments_leave_and_the_tail_goes_on_the_ack_without_psh() -> None:
    s = established()
    s.conn.send(b"x" * 3100, s.now, more=True)
    out = s.lines(s.drain())  # (PSH on some: exact-wire GSO grouping, test_tcp_psh)
    assert [line.split(" ack")[0].split()[-1] for line in out] == [
        "1:1001(1000)", "1001:2001(1000)", "2001:3001(1000)"]
    s.now += 0.01
    got = s.inject(s.seg(".", 1, 3001))
    assert [line.split(" ack")[0] for line in got] == [". 3001:3101(100)"]  # no PSH


def test_without_more_nodelay_sends_at_once() -> None:
    s = established()
    s.conn.send(b"x" * 40, s.now)
    assert [line.split(" win")[0] for line in s.lines(s.drain())] == ["P. 1:41(40) ack 1"]
