"""Conformance scenarios for the sender's loss recovery (issue 9): the peer
(kernel or ustack) sends data, the probe plays the receiver and shapes the
ACK stream.  Segments are 1000 bytes (the probe offers MSS 1000); the kernel
peer's congestion control is pinned to cubic (``sysctl
net.ipv4.tcp_congestion_control``, the probe sets TCP_CONGESTION per socket),
ustack's to its own cubic.

Every expectation is what Linux 6.x does (tcp_recovery.c, tcp_input.c,
tcp_output.c) and passes against this machine's kernel.
"""

from __future__ import annotations

MSS = 1000

#: (id, title, rfc, linux, script): ustack.probe.scenarios makes Scenarios of them
Entry = tuple[str, str, str, str, str]


def _s(id: str, title: str, rfc: str, linux: str, script: str) -> Entry:
    return (id, title, rfc, linux, script)


def _segs(first: int, count: int, when: str = "+0") -> str:
    """Expect ``count`` data segments from segment index ``first`` (0 = 1:1001)."""
    lines = []
    for k in range(first, first + count):
        lines.append(f"{when} > * {1 + k * MSS}:{1 + (k + 1) * MSS}({MSS}) ack 1")
        when = "+0"
    return "\n".join(lines) + "\n"


# Passive open with SACK, MSS 1000; the handshake ACK comes 100 ms after the
# SYN-ACK, so SRTT = min_rtt = 100 ms and the RTO is 300 ms (Linux: SRTT +
# max(4 * RTTVAR, 200 ms)).
_OPEN_SACK_100MS = """
peer listen 8080
0    < S 0:0(0) win 65535 <mss 1000,sackOK,nop,nop>
+0   > S. 0:0(0) ack 1 <mss *,sackOK>
+0.1 < . 1:1(0) ack 1 win 65535
+0   peer expect connected
"""

# Without SACK (NewReno, RFC 6582).
_OPEN_NOSACK = """
peer listen 8080
0    < S 0:0(0) win 65535 <mss 1000>
+0   > S. 0:0(0) ack 1 <mss *>
+0   < . 1:1(0) ack 1 win 65535
+0   peer expect connected
"""


RECOVERY_SCENARIOS: list[Entry] = [
    _s("rec-tlp", "tail loss probe at 2*SRTT", "8985 7.2-7.3",
       "the last segment re-sent 2*SRTT + 2 ms after the flight (SRTT 100 ms: at "
       "+202 ms; the script allows 170-270 ms for a loaded stack's RTT sample), "
       "long before the 300 ms RTO", _OPEN_SACK_100MS + """
+0   peer write 3000
""" + _segs(0, 3) + """
+0.17~+0.27 > * 2001:3001(1000) ack 1
+0   < . 1:1(0) ack 3001 win 65535
+0   > nothing for 0.3
"""),
    _s("rec-rack", "RACK: a SACK above a hole waits the reordering window",
       "8985 6.2", "no retransmission at the SACK; the hole re-sent min_rtt/4 "
       "(25 ms) later", _OPEN_SACK_100MS + """
+0   peer write 4000
""" + _segs(0, 4) + """
+0.1 < . 1:1(0) ack 1 win 65535 <nop,nop,sack 1001:2001>
+0.027 > * 1:1001(1000) ack 1
+0   < . 1:1(0) ack 4001 win 65535
"""),
    _s("rec-dupthresh", "SACKs of three segments above two holes: both re-sent",
       "6675 4-5, 8985 6.2", "both holes retransmitted at once (RACK window 0 "
       "once DupThresh segments are SACKed and no reordering was seen)",
       _OPEN_SACK_100MS + """
+0   peer write 5000
""" + _segs(0, 5) + """
+0.1 < . 1:1(0) ack 1 win 65535 <nop,nop,sack 2001:5001>
+0   > * 1:1001(1000) ack 1
+0   > * 1001:2001(1000) ack 1
"""),
    _s("rec-window", "SACK-driven retransmission with a changing window",
       "6675 2 (DupAck), 5", "ACKs with new SACK blocks count whatever their "
       "window: the hole re-sent", _OPEN_SACK_100MS + """
+0   peer write 5000
""" + _segs(0, 5) + """
+0.1 < . 1:1(0) ack 1 win 64000 <nop,nop,sack 1001:2001>
+0   < . 1:1(0) ack 1 win 63000 <nop,nop,sack 1001:3001>
+0   < . 1:1(0) ack 1 win 62000 <nop,nop,sack 1001:4001>
+0~+0.01 > * 1:1001(1000) ack 1
"""),
    _s("rec-limited", "limited transmit on the first two duplicate ACKs",
       "3042 2, 5681 3.2", "one new segment per duplicate ACK, then fast "
       "retransmit on the third", _OPEN_NOSACK + """
+0   peer write 14000
""" + _segs(0, 10) + """
+0.05 < . 1:1(0) ack 1 win 65535
""" + _segs(10, 1) + """+0.01 < . 1:1(0) ack 1 win 65535
""" + _segs(11, 1) + """+0.01 < . 1:1(0) ack 1 win 65535
+0   > * 1:1001(1000) ack 1
"""),
    _s("rec-newreno", "NewReno: a partial ACK retransmits the next hole at once",
       "6582 3.2 step 3", "fast retransmit of 1:1001 on the third duplicate ACK, "
       "2001:3001 on the partial ACK (no SACK)", _OPEN_NOSACK + """
+0   peer write 5000
""" + _segs(0, 5) + """
+0.05 < . 1:1(0) ack 1 win 65535
+0.01 < . 1:1(0) ack 1 win 65535
+0.01 < . 1:1(0) ack 1 win 65535
+0   > * 1:1001(1000) ack 1
+0.05 < . 1:1(0) ack 2001 win 65535
+0   > * 2001:3001(1000) ack 1
+0.05 < . 1:1(0) ack 5001 win 65535
+0   > nothing for 0.1
"""),
    _s("rec-prr", "PRR: three segments after a partial ACK",
       "6937 3 (PRR-SSRB)", "3 retransmissions on entering recovery (SACK of 3 "
       "above 7 holes), 3 more on the partial ACK of 2 segments", _OPEN_SACK_100MS + """
+0   peer write 30000
""" + _segs(0, 10) + """
+0.1 < . 1:1(0) ack 1 win 65535 <nop,nop,sack 7001:10001>
+0   > * 1:1001(1000) ack 1
+0   > * 1001:2001(1000) ack 1
+0   > * 2001:3001(1000) ack 1
+0.1 < . 1:1(0) ack 2001 win 65535 <nop,nop,sack 7001:10001>
+0   > * 3001:4001(1000) ack 1
+0   > * 4001:5001(1000) ack 1
+0   > * 5001:6001(1000) ack 1
+0   > nothing for 0.05
"""),
    _s("rec-stretch", "slow start grows by the segments a stretch ACK covers",
       "5681 3.1 (Linux: no L=2 limit)", "one ACK for all 10 segments of the "
       "initial window: 20 new segments", _OPEN_SACK_100MS + """
+0   peer write 40000
""" + _segs(0, 10) + """
+0.1 < . 1:1(0) ack 10001 win 65535
""" + _segs(10, 20) + """+0   > nothing for 0.02
"""),
    _s("rec-dsack-undo", "D-SACK undoes a spurious fast retransmit",
       "2883 4, 3708 3", "after the D-SACK the window is back to 10 segments",
       _OPEN_SACK_100MS + """
+0   peer write 5000
""" + _segs(0, 5) + """
+0.1 < . 1:1(0) ack 1 win 65535 <nop,nop,sack 1001:5001>
+0   > * 1:1001(1000) ack 1
+0.01 < . 1:1(0) ack 5001 win 65535
+0.01 < . 1:1(0) ack 5001 win 65535 <nop,nop,sack 1:1001>
+0.01 peer write 15000
""" + _segs(5, 10) + """+0   > nothing for 0.01
"""),
    _s("rec-dsack-undo2", "D-SACK undo with data in flight",
       "2883 4, 3708 3", "7 segments after recovery (cubic ssthresh); the D-SACK "
       "arriving with the ACK of 2 of them restores cwnd 10, +3 in slow start (the "
       "D-SACKed segment counts as delivered): 8 more",
       _OPEN_SACK_100MS + """
+0   peer write 5000
""" + _segs(0, 5) + """
+0.1 < . 1:1(0) ack 1 win 65535 <nop,nop,sack 1001:5001>
+0   > * 1:1001(1000) ack 1
+0.01 < . 1:1(0) ack 5001 win 65535
+0.01 peer write 30000
""" + _segs(5, 7) + """+0   > nothing for 0.01
+0.01 < . 1:1(0) ack 7001 win 65535 <nop,nop,sack 1:1001>
""" + _segs(12, 8) + """+0   > nothing for 0.01
"""),
    _s("rec-reorder-dsack", "a D-SACK of a SACKed retransmission is reordering",
       "8985 6.2 step 4, 2883 4", "1:1001 and 1001:2001 re-sent at once (7 SACKed, "
       "no reordering seen); the original of 1001:2001 arrives, then its "
       "retransmission (D-SACK inside the SACKed block): reordering seen (Linux "
       "tcp_sacktag_one), so in the next episode 3 SACKs above a hole wait the "
       "reordering window (min_rtt/4 = 25 ms) instead of a retransmission at once",
       _OPEN_SACK_100MS + """
+0   peer write 10000
""" + _segs(0, 10) + """
+0.1 < . 1:1(0) ack 1 win 65535 <nop,nop,sack 2001:10001>
+0   > * 1:1001(1000) ack 1
+0   > * 1001:2001(1000) ack 1
+0.01 < . 1:1(0) ack 1 win 65535 <nop,nop,sack 1001:10001>
+0.01 < . 1:1(0) ack 1 win 65535 <nop,nop,sack 1001:2001 1001:10001>
+0.01 < . 1:1(0) ack 10001 win 65535
+0   peer write 4000
""" + _segs(10, 4) + """
+0.1 < . 1:1(0) ack 10001 win 65535 <nop,nop,sack 11001:14001>
+0.027 > * 10001:11001(1000) ack 1
+0   < . 1:1(0) ack 14001 win 65535
"""),
]

#: ustack's known differences in these scenarios (merged into
#: ``ustack.probe.scenarios.USTACK_NOTES``; a note makes the ustack run a
#: strict xfail, so a fix shows up as XPASS and asks for the note to go)
RECOVERY_NOTES: dict[str, str] = {}
