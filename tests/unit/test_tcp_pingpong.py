"""The delayed-ACK policy of a request/response connection, as Linux's
(issue 14: checked on the wire against a kernel client, cubic pinned, 40
one-byte exchanges: 45 client segments, 3 of them pure ACKs, for both).

Linux ACKs the first data segments of a connection at once (quickack
mode) unless the connection is interactive: once we send data within a
delayed-ACK interval of the peer's last data (``tcp_event_data_sent``,
``tcp_pingpong_thresh`` 1), the ACK of the next data waits for our answer
to carry it.  A delayed ACK that had to go alone (the timer ran out) or
duplicate data end that mode (``tcp_delack_timer_handler``,
``tcp_enter_quickack_mode``)."""

from __future__ import annotations

from ustack.tcp import TcpConfig, TcpConnection, TcpState
from ustack.tcp.testing import Script
from ustack.wire.tcp import SYN, TcpOptions, TcpSegment


def established(cfg: TcpConfig | None = None) -> Script:
    conn = TcpConnection.accept(TcpSegment(5555, 80, 0, 0, SYN, 65535, 0, TcpOptions()),
                                1000, 0.0, cfg or TcpConfig())
    s = Script(conn, 1000, 0)
    s.drain()
    s.inject(s.seg(".", 1, 1))
    assert conn.state is TcpState.ESTABLISHED
    return s


def exchange(s: Script, k: int, answer: bool = True) -> tuple[list[str], list[str]]:
    """The peer's k-th 1-byte request (what we answer at once), then our
    1-byte reply (what leaves with it)."""
    s.now += 0.001
    ours = (s.conn.snd_nxt - s.iss) & 0xFFFFFFFF  # the peer has everything we sent
    got = s.inject(s.seg("P.", 1 + k, ours, payload=b"q"))
    assert s.conn.recv(10, s.now) == b"q"
    if not answer:
        return got, []
    s.now += 0.0001
    s.conn.send(b"r", s.now)
    return got, s.lines(s.drain())


def test_first_request_is_quick_acked_then_acks_ride_on_the_answers() -> None:
    s = established()
    assert exchange(s, 0) == ([". 1:1(0) ack 2 win 65535"], ["P. 1:2(1) ack 2 win 65535"])
    assert s.conn.rcv.pingpong  # answered within the delayed-ACK interval
    for k in range(1, 20):
        got, sent = exchange(s, k)
        assert got == []  # no pure ACK: it leaves with the answer
        assert sent == [f"P. {1 + k}:{2 + k}(1) ack {2 + k} win 65535"]


def test_a_delayed_ack_that_goes_alone_ends_ping_pong_mode() -> None:
    s = established()
    exchange(s, 0)
    exchange(s, 1)
    assert s.conn.rcv.pingpong
    assert exchange(s, 2, answer=False) == ([], [])
    assert s.at(s.now + 0.05) == [". 3:3(0) ack 4 win 65535"]  # the delayed ACK alone
    assert not s.conn.rcv.pingpong
    # quickack mode again for the next request (quickacks remain)
    got, _ = exchange(s, 3)
    assert got == [". 3:3(0) ack 5 win 65535"]
    # and answering at once makes it interactive again
    assert s.conn.rcv.pingpong
    assert exchange(s, 4)[0] == []


def test_a_late_answer_does_not_enter_ping_pong_mode() -> None:
    s = established()
    s.now += 0.001
    assert s.inject(s.seg("P.", 1, 1, payload=b"q")) == [". 1:1(0) ack 2 win 65535"]
    s.now += 0.2  # longer than the delayed-ACK interval
    s.conn.send(b"r", s.now)
    s.drain()
    assert not s.conn.rcv.pingpong


def test_duplicate_data_ends_ping_pong_mode() -> None:
    """(the peer resends what we acknowledged: our ACK did not arrive)"""
    s = established()
    exchange(s, 0)
    exchange(s, 1)
    assert s.conn.rcv.pingpong
    s.now += 0.001
    assert s.inject(s.seg("P.", 2, 1, payload=b"q")) == [". 3:3(0) ack 3 win 65535"]
    assert not s.conn.rcv.pingpong
