# mypy: disable-error-code="comparison-overlap"
# (mypy narrows rec.state after one assert and cannot see the next call change it)
"""The recovery room as the connection drives it (ustack.tcp.connection +
ustack.tcp.recovery), on hand-made segments: what reaches the room."""

from __future__ import annotations

from ustack.tcp import TcpConfig, TcpConnection
from ustack.tcp.congestion.base import CaState
from ustack.tcp.testing import Script
from ustack.wire.tcp import SYN, TcpOptions, TcpSegment

ISS = 10_000
PEER = 0
MSS = 1000


def established() -> Script:
    # handshake RTT 100 ms
    return Script.passive_open(None, TcpOptions(mss=MSS, sack_permitted=True), iss=ISS,
                               peer_iss=PEER, rtt=0.1)


def sack(s: Script, ack: int, *blocks: tuple[int, int]) -> list[str]:
    base = ISS
    opts = TcpOptions(sack_blocks=[((base + a) & 0xFFFFFFFF, (base + b) & 0xFFFFFFFF)
                                   for a, b in blocks])
    return s.inject(s.seg(".", 1, ack, options=opts))


def test_late_dsack_with_nothing_outstanding_undoes_the_reduction() -> None:
    """RFC 3708 / Linux tcp_ack's no_queue path: the D-SACK of the only
    retransmission arrives after everything is acknowledged; the window
    reduction is undone (the next flight is 10 segments, not 7)."""
    s = established()
    conn = s.conn
    assert conn.rec is not None
    conn.send(b"x" * 5 * MSS, s.now)
    assert len(s.drain()) == 5
    s.now += 0.1
    out = sack(s, 1, (1001, 5001))  # four segments SACKed: 1:1001 lost
    assert any(line.startswith(". 1:1001") or " 1:1001(" in line for line in out), out
    assert conn.rec.state == CaState.RECOVERY
    s.now += 0.01
    s.inject(s.seg(".", 1, 5001))
    assert conn.rec.state == CaState.OPEN and conn.cc.cwnd == 7 * MSS
    s.now += 0.01
    sack(s, 5001, (1, 1001))  # the D-SACK: the retransmission was a duplicate
    assert conn.cc.cwnd == 10 * MSS
    conn.send(b"y" * 15 * MSS, s.now)
    assert len(s.drain()) == 10


def _small_window(batched: bool) -> tuple[Script, list[str]]:
    """Reno, cwnd 4, more data queued; segment 1:1001 of four is lost and
    three dupACKs SACK the other three, either in one batch (the connection
    alone sees all three before it is asked for output; the driver instead
    drains after each ACK in recovery: tests/unit/test_tcp_table_per_ack.py)
    or one by one with the output drained after each."""
    syn = TcpSegment(40000, 80, PEER, 0, SYN, 65535, 0,
                     TcpOptions(mss=MSS, sack_permitted=True))
    s = Script(TcpConnection.accept(syn, ISS, 0.0, TcpConfig(initial_cwnd=4,
                                                                congestion="reno")), ISS, PEER)
    s.drain()
    s.now = 0.1
    s.inject(s.seg(".", 1, 1))
    s.conn.send(b"x" * 20 * MSS, s.now)
    assert len(s.drain()) == 4
    s.now += 0.1
    lines: list[str] = []
    for k in (2, 3, 4):
        opts = TcpOptions(sack_blocks=[((ISS + 1001) & 0xFFFFFFFF,
                                        (ISS + 1 + k * MSS) & 0xFFFFFFFF)])
        s.conn.receive(s.seg(".", 1, 1, options=opts), s.now)
        if not batched:
            lines += s.lines(s.drain())
    if batched:
        lines = s.lines(s.drain())
    assert s.conn.rec is not None and s.conn.rec.state == CaState.RECOVERY
    return s, [line.split(" ack")[0] for line in lines]


def test_dupacks_one_by_one_use_limited_transmit_then_retransmit() -> None:
    """RFC 3042 then RFC 6937 per ACK: two new segments on the first two
    dupACKs, then only the forced fast retransmission (pipe = ssthresh)."""
    _, out = _small_window(batched=False)
    assert out == [". 4001:5001(1000)", ". 5001:6001(1000)", ". 1:1001(1000)"], out


def test_sack_recovery_counts_a_reentry_within_one_ack() -> None:
    """Linux counts LINUX_MIB_TCPSACKRECOVERY in every tcp_enter_recovery:
    an ACK that ends one episode (SND.UNA passes high_seq, the state goes
    back to Open in tcp_try_undo_recovery) and shows a new hole RACK marks
    lost enters recovery again, a second episode, although the state is
    RECOVERY before and after that ACK."""
    s = established()
    conn = s.conn
    assert conn.rec is not None
    conn.send(b"x" * 20 * MSS, s.now)
    assert len(s.drain()) == 10
    s.now += 0.1
    out = sack(s, 1, (2001, 10001))  # 1:1001 and 1001:2001 lost
    assert out[:2] == [". 1:1001(1000) ack 1 win 65535", ". 1001:2001(1000) ack 1 win 65535"]
    assert conn.rec.state == CaState.RECOVERY and conn.mib["TcpExtTCPSackRecovery"] == 1
    s.now += 0.1
    out = sack(s, 11001, (12001, 15001))  # past high_seq (10001); 11001:12001 lost
    assert out[0] == ". 11001:12001(1000) ack 1 win 65535"
    assert conn.rec.state == CaState.RECOVERY
    assert conn.mib["TcpExtTCPSackRecovery"] == 2
    assert conn.rec.recoveries == 2
