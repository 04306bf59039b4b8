"""The conformance catalogue: wire-visible TCP edge cases as probe scripts.

Numbers refer to ``shared/tcp-edge-cases.md``.  Every script states what
Linux does (and passes against this machine's kernel); run against ustack it
shows where ustack differs.  ``ustack_note`` records, for a known difference,
why (RFC reasoning) -- the conformance table prints it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ustack.probe.scenarios_recovery import RECOVERY_NOTES, RECOVERY_SCENARIOS


@dataclass(frozen=True, slots=True)
class Scenario:
    id: str
    title: str
    rfc: str
    linux: str
    script: str

    @property
    def ustack_note(self) -> str:
        """A recorded ustack divergence and its RFC reasoning ("" = none known)."""
        return USTACK_NOTES.get(self.id, "")


# A passive open against a listener on 8080, no options but MSS (so neither
# timestamps nor SACK are on), the probe advertises 65535 unscaled.
_OPEN = """
peer listen 8080
0    < S 0:0(0) win 65535 <mss 1460>
+0   > S. 0:0(0) ack 1 <mss *>
+0   < . 1:1(0) ack 1 win 65535
+0   peer expect connected
"""

_OPEN_SACK = """
peer listen 8080
0    < S 0:0(0) win 65535 <mss 1460,sackOK,nop,nop>
+0   > S. 0:0(0) ack 1 <mss *,sackOK>
+0   < . 1:1(0) ack 1 win 65535
+0   peer expect connected
"""

_OPEN_TS = """
peer listen 8080
0    < S 0:0(0) win 65535 <mss 1460,sackOK,TS val 1000 ecr 0,nop,wscale 0>
+0   > S. 0:0(0) ack 1 <mss *,sackOK,TS val * ecr 1000,wscale *>
+0   < . 1:1(0) ack 1 win 65535 <nop,nop,TS val 1001 ecr *>
+0   peer expect connected
"""

# The peer application connects to the probe's port 9090.
_CONNECT = """
peer connect 9090
*    > S 0:0(0) <mss *,sackOK,TS val * ecr 0,wscale *>
"""

# The peer closes first and ends in TIME-WAIT.
_ACTIVE_CLOSE = _OPEN + """
+0.05 peer close
+0   > F. 1:1(0) ack 1
+0   < . 1:1(0) ack 2 win 65535
+0   < F. 1:1(0) ack 2 win 65535
+0   > . 2:2(0) ack 2
"""

# The connection still works: data is acknowledged (within the 500 ms delayed
# ACK bound of RFC 1122 4.2.3.2; Linux ACKs at once in quickack mode).
_STILL_ALIVE = """
+0.05 < P. 1:11(10) ack 1 win 65535
+0~+0.5 > . 1:1(0) ack 11
"""


def _s(id: str, title: str, rfc: str, linux: str, script: str) -> Scenario:
    return Scenario(id, title, rfc, linux, script.strip() + "\n")


SCENARIOS: list[Scenario] = [
    # ------------------------------------------------------------ CLOSED / LISTEN
    _s("1", "SYN to a closed port", "9293 3.10.7.1",
       "R. 0:0(0) ack 1 win 0", """
probe to 8081
0    < S 0:0(0) win 65535 <mss 1460>
+0   > R. 0:0(0) ack 1 win 0
"""),
    _s("2", "SYN with 10 data bytes to a closed port", "9293 3.10.7.1",
       "R. ack 11 (SYN and data count)", """
probe to 8081
0    < S 0:10(10) win 65535 <mss 1460>
+0   > R. 0:0(0) ack 11 win 0
"""),
    _s("3", "ACK to a closed port", "9293 3.10.7.1",
       "R 1000:1000(0): seq = SEG.ACK, no ACK bit", """
probe to 8081
0    < . 1:1(0) ack 1000 win 65535
+0   > R 1000:1000(0) win 0
"""),
    _s("3b", "RST to a closed port", "9293 3.10.7.1",
       "nothing", """
probe to 8081
0    < R 1:1(0) win 0
+0   > nothing for 0.5
"""),
    _s("4", "ACK to a listener", "9293 3.10.7.2",
       "R seq=SEG.ACK", """
peer listen 8080
0    < . 1:1(0) ack 1000 win 65535
+0   > R 1000:1000(0)
"""),
    _s("5a", "RST to a listener", "9293 3.10.7.2",
       "dropped", """
peer listen 8080
0    < R 1:1(0) win 0
+0   > nothing for 0.5
"""),
    _s("5b", "bare FIN (no ACK) to a listener", "9293 3.10.7.2",
       "dropped", """
peer listen 8080
0    < F 0:0(0) win 65535
+0   > nothing for 0.5
"""),
    _s("5c", "SYN+RST to a listener", "9293 3.10.7.2",
       "dropped (RST checked first)", """
peer listen 8080
0    < SR 0:0(0) win 65535
+0   > nothing for 0.5
"""),
    _s("5d", "SYN+FIN to a listener", "9293 3.10.7.2",
       "dropped (RFC: process the SYN)", """
peer listen 8080
0    < SF 0:0(0) win 65535 <mss 1460>
+0   > nothing for 0.5
"""),
    _s("6a", "passive open echoes the offered options", "7323 1.3, 2018 2",
       "S. <mss,sackOK,TS ecr=TSval,wscale>", """
peer listen 8080
0    < S 0:0(0) win 65535 <mss 1460,sackOK,TS val 100 ecr 0,nop,wscale 7>
+0   > S. 0:0(0) ack 1 <mss 1460,sackOK,TS val * ecr 100,wscale *>
"""),
    _s("6b", "SYN with only MSS: SYN-ACK has only MSS", "7323 1.3, 2018 2",
       "S. <mss 1460>", """
peer listen 8080
0    < S 0:0(0) win 65535 <mss 1400>
+0   > S. 0:0(0) ack 1 <mss 1460>
"""),
    _s("6c", "SYN-ACK retransmitted with backoff", "6298 5.5",
       "at +1 s, then +2 s", """
peer listen 8080
0    < S 0:0(0) win 65535 <mss 1460>
+0   > S. 0:0(0) ack 1 <mss *>
+1   > S. 0:0(0) ack 1 <mss *>
+2   > S. 0:0(0) ack 1 <mss *>
"""),
    _s("6d", "timestamps and SACK switched off in the peer", "7323 3.2, 2018 2",
       "S. without TS and sackOK although both were offered", """
sysctl net.ipv4.tcp_timestamps=0
sysctl net.ipv4.tcp_sack=0
peer listen 8080
0    < S 0:0(0) win 65535 <mss 1460,sackOK,TS val 100 ecr 0,nop,wscale 7>
+0   > S. 0:0(0) ack 1 <mss *,wscale *>
"""),
    _s("7a", "duplicate SYN in SYN-RECEIVED", "9293 3.10.7.4",
       "SYN-ACK again", """
peer listen 8080
0    < S 0:0(0) win 65535 <mss 1460>
+0   > S. 0:0(0) ack 1 <mss *>
+0.1 < S 0:0(0) win 65535 <mss 1460>
+0   > S. 0:0(0) ack 1 <mss *>
"""),
    _s("7b", "different in-window SYN in SYN-RECEIVED", "9293 3.10.7.4, 5961 4",
       "R. ack 6 (seq 0: RST to a SYN); the request is gone (an ACK gets R)", """
peer listen 8080
0    < S 0:0(0) win 65535 <mss 1460>
+0   > S. 0:0(0) ack 1 <mss *>
+0.1 < S 5:5(0) win 65535 <mss 1460>
+0   > R. *:*(0) ack 6
+0.1 < . 1:1(0) ack 1 win 65535
+0   > R 1:1(0)
"""),
    _s("8", "bad ACK in SYN-RECEIVED", "9293 3.10.7.4",
       "R 5:5(0); the half-open connection survives", """
peer listen 8080
0    < S 0:0(0) win 65535 <mss 1460>
+0   > S. 0:0(0) ack 1 <mss *>
+0   < . 1:1(0) ack 5 win 65535
+0   > R 5:5(0)
+0   < . 1:1(0) ack 1 win 65535
+0   peer expect connected
""" + _STILL_ALIVE),
    _s("8b", "data on the handshake's final ACK", "9293 3.10.7.4",
       "ESTABLISHED and the data ACKed", """
peer listen 8080
0    < S 0:0(0) win 65535 <mss 1460>
+0   > S. 0:0(0) ack 1 <mss *>
+0   < P. 1:11(10) ack 1 win 65535
+0~+0.5 > . 1:1(0) ack 11
+0   peer expect connected
+0   peer read 10
"""),
    _s("9", "RST in SYN-RECEIVED", "9293 3.10.7.4",
       "request dropped silently; a later ACK gets a RST", """
peer listen 8080
0    < S 0:0(0) win 65535 <mss 1460>
+0   > S. 0:0(0) ack 1 <mss *>
+0   < R 1:1(0) win 0
+0   > nothing for 0.3
+0   < . 1:1(0) ack 1 win 65535
+0   > R 1:1(0)
"""),
    _s("9b", "out-of-window RST in SYN-RECEIVED", "9293 3.10.7.4, 5961 3",
       "dropped; the handshake still completes", """
peer listen 8080
0    < S 0:0(0) win 65535 <mss 1460>
+0   > S. 0:0(0) ack 1 <mss *>
+0   < R 1000000:1000000(0) win 0
+0   > nothing for 0.3
+0   < . 1:1(0) ack 1 win 65535
+0   peer expect connected
""" + _STILL_ALIVE),
    # ------------------------------------------------------------ SYN-SENT
    _s("10", "SYN retransmission schedule", "6298 5.5",
       "SYN at 0, +1, +1 (linear, tcp_syn_linear_timeouts)", _CONNECT + """
+1   > S 0:0(0)
+1   > S 0:0(0)
"""),
    _s("10b", "SYN retries exhausted", "9293 3.8.3, 1122 4.2.3.5",
       "tcp_syn_retries=1 (no linear timeouts): SYN at 0 and +1, ETIMEDOUT at 3 s", """
sysctl net.ipv4.tcp_syn_retries=1
sysctl net.ipv4.tcp_syn_linear_timeouts=0
""" + _CONNECT + """
+1   > S 0:0(0)
+0   > nothing for 1.8
+0   peer expect ETIMEDOUT
"""),
    _s("10c", "SYN retries as a time budget (tcp_syn_retries=1)", "1122 4.2.3.5, 9293 3.8.3",
       "SYN at 0, +1, +1 (linear), ETIMEDOUT at 3 s: the time one backed-off retry "
       "from 1 s takes, before the count (1 + 4 linear) is reached", """
sysctl net.ipv4.tcp_syn_retries=1
""" + _CONNECT + """
+1   > S 0:0(0)
+1   > S 0:0(0)
+0   > nothing for 0.9
+0   peer expect ETIMEDOUT
"""),
    _s("11", "SYN-ACK with an unacceptable ACK", "9293 3.10.7.3",
       "R seq=SEG.ACK, stay in SYN-SENT (Linux re-sends the SYN at once)", _CONNECT + """
+0   < S. 0:0(0) ack 5 win 65535 <mss 1460>
+0   > R 5:5(0)
+0~+0.3 > S 0:0(0)
+0.1 < S. 0:0(0) ack 1 win 65535 <mss 1460>
+0   > . 1:1(0) ack 1
+0   peer expect connected
"""),
    _s("12a", "bare ACK of our SYN in SYN-SENT", "9293 3.10.7.3",
       "dropped", _CONNECT + """
+0   < . 0:0(0) ack 1 win 65535
+0   > nothing for 0.5
"""),
    _s("12b", "bare ACK with a wrong ack in SYN-SENT", "9293 3.10.7.3",
       "R seq=SEG.ACK", _CONNECT + """
+0   < . 0:0(0) ack 100 win 65535
+0   > R 100:100(0)
"""),
    _s("13", "RST+ACK with an acceptable ACK in SYN-SENT", "9293 3.10.7.3",
       "connection refused, no more SYNs", _CONNECT + """
+0   < R. 0:0(0) ack 1 win 0
+0   peer expect ECONNREFUSED
+0   > nothing for 1.5
"""),
    _s("14", "RST without ACK in SYN-SENT", "9293 3.10.7.3",
       "ignored; SYN retransmitted at 1 s", _CONNECT + """
+0.1 < R 0:0(0) win 0
0.9~1.15 > S 0:0(0)
"""),
    _s("15", "RST+ACK with an unacceptable ACK in SYN-SENT", "9293 3.10.7.3",
       "dropped, no RST back (Linux re-sends the SYN at once)", _CONNECT + """
+0.1 < R. 0:0(0) ack 100 win 0
+0~+0.3 > S 0:0(0)
+0   peer expect pending
"""),
    _s("16", "simultaneous open", "9293 3.5 fig. 8",
       "S. with the same ISS; ACK and ESTABLISHED on our SYN-ACK", _CONNECT + """
+0   < S 0:0(0) win 65535 <mss 1460>
+0   > S. 0:0(0) ack 1
+0   < S. 0:0(0) ack 1 win 65535 <mss 1460>
+0   > . 1:1(0) ack 1
+0   peer expect connected
""" + _STILL_ALIVE),
    _s("17", "SYN-ACK carrying data", "9293 3.10.7.3",
       "ACK of the SYN only: the data is dropped", _CONNECT + """
+0   < S. 0:10(10) ack 1 win 65535 <mss 1460>
+0   > . 1:1(0) ack 1
"""),
    _s("18", "SYN with data to a listener (no Fast Open)", "9293 3.10.7.2, 7413",
       "S. acks only the SYN", """
peer listen 8080
0    < S 0:10(10) win 65535 <mss 1460>
+0   > S. 0:0(0) ack 1 <mss *>
"""),
    _s("19", "no MSS option: send MSS 536", "9293 3.7.1, 6691",
       "first segment of 536 bytes", """
peer listen 8080
0    < S 0:0(0) win 65535
+0   > S. 0:0(0) ack 1 <mss *>
+0   < . 1:1(0) ack 1 win 65535
+0   peer expect connected
+0.05 peer write 1000
+0   > * 1:537(536) ack 1
"""),
    _s("19b", "small remainder right after a full-sized segment", "1122 4.2.3.4, 896",
       "sent at once (Minshall's Nagle: no small segment in flight)", """
peer listen 8080
0    < S 0:0(0) win 65535 <mss 1000>
+0   > S. 0:0(0) ack 1 <mss *>
+0   < . 1:1(0) ack 1 win 65535
+0   peer expect connected
+0.05 peer write 1500
+0   > * 1:1001(1000) ack 1
+0   > * 1001:1501(500) ack 1
"""),
    _s("19c", "peer MSS below the floor (mss 40)", "9293 3.7.1, 6691",
       "48-byte segments (tcp_min_snd_mss floor, above the offered 40)", """
peer listen 8080
0    < S 0:0(0) win 65535 <mss 40>
+0   > S. 0:0(0) ack 1 <mss *>
+0   < . 1:1(0) ack 1 win 65535
+0   peer expect connected
+0.05 peer write 100
+0   > * 1:49(48) ack 1
"""),
    _s("20", "no window scale offered: none in the SYN-ACK", "7323 2.2",
       "S. without wscale", """
peer listen 8080
0    < S 0:0(0) win 65535 <mss 1460,sackOK,nop,nop>
+0   > S. 0:0(0) ack 1 <mss *,sackOK>
"""),
    _s("20b", "our window is scaled by our shift after the handshake", "7323 2.3",
       "win 1 with wscale 7 allows 128 bytes", """
peer listen 8080
0    < S 0:0(0) win 65535 <mss 1460,nop,wscale 7>
+0   > S. 0:0(0) ack 1 <mss *,wscale *>
+0   < . 1:1(0) ack 1 win 1
+0   peer expect connected
+0.05 peer write 1000
+0   > * 1:129(128) ack 1
"""),
    _s("21", "no sackOK offered: no SACK in SYN-ACK nor in dup ACKs", "2018 2",
       "S. without sackOK; dup ACK without SACK blocks", """
peer listen 8080
0    < S 0:0(0) win 65535 <mss 1460,nop,wscale 7>
+0   > S. 0:0(0) ack 1 <mss *,wscale *>
+0   < . 1:1(0) ack 1 win 512
+0   peer expect connected
+0.05 < P. 11:21(10) ack 1 win 512
+0   > . 1:1(0) ack 1 <>
"""),
    _s("22a", "no timestamps offered: none in the SYN-ACK", "7323 3.2",
       "S. without TS", """
peer listen 8080
0    < S 0:0(0) win 65535 <mss 1460,sackOK,nop,wscale 7>
+0   > S. 0:0(0) ack 1 <mss *,sackOK,wscale *>
"""),
    _s("22b", "PAWS: old TSval", "7323 5.3",
       "data dropped, dup ACK echoing TS.Recent", """
peer listen 8080
0    < S 0:0(0) win 65535 <mss 1460,sackOK,TS val 1000 ecr 0,nop,wscale 0>
+0   > S. 0:0(0) ack 1 <mss *,sackOK,TS val * ecr 1000,wscale *>
+0   < . 1:1(0) ack 1 win 65535 <nop,nop,TS val 1001 ecr *>
+0   peer expect connected
+0.05 < P. 1:11(10) ack 1 win 65535 <nop,nop,TS val 1002 ecr *>
+0~+0.5 > . 1:1(0) ack 11 <TS val * ecr 1002>
+0.05 < P. 11:21(10) ack 1 win 65535 <nop,nop,TS val 900 ecr *>
+0   > . 1:1(0) ack 11 <TS val * ecr 1002>
"""),
    _s("22c", "timestamps on: a RST carries TS", "7323 4.2",
       "R. (close with unread data) with <TS val * ecr TS.Recent>", _OPEN_TS + """
+0.05 < P. 1:11(10) ack 1 win 65535 <nop,nop,TS val 1002 ecr *>
+0~+0.5 > . 1:1(0) ack 11 <TS val * ecr 1002>
+0.05 peer close
+0   > R. 1:1(0) ack 11 <TS val * ecr 1002>
"""),
    _s("22d", "timestamps on: data without TS option", "7323 3.2",
       "accepted and ACKed (RFC 7323 says SHOULD drop)", _OPEN_TS + """
+0.05 < P. 1:11(10) ack 1 win 65535
+0~+0.5 > . 1:1(0) ack 11
"""),
    _s("22e", "RST with an old TSval (exact seq)", "7323 5.3 R1",
       "accepted: PAWS does not apply to RSTs", _OPEN_TS + """
+0.05 < R 1:1(0) win 0 <nop,nop,TS val 900 ecr *>
+0   > nothing for 0.3
+0   peer expect ECONNRESET
"""),
    _s("23a", "ICMP port unreachable in SYN-SENT", "5927 5.1, 1122 4.2.3.9",
       "connect fails at once: ECONNREFUSED", _CONNECT + """
+0.1 < icmp unreachable port [S 0:0(0)]
+0   peer expect ECONNREFUSED
+0   > nothing for 1.2
"""),
    _s("23b", "ICMP host unreachable in SYN-SENT", "5927 5.1, 1122 4.2.3.9",
       "connect fails at once: EHOSTUNREACH", _CONNECT + """
+0.1 < icmp unreachable host [S 0:0(0)]
+0   peer expect EHOSTUNREACH
+0   > nothing for 1.2
"""),
    _s("23c", "ICMP quoting a seq outside SND.UNA..SND.NXT", "5927 4.1",
       "ignored; SYN retransmitted", _CONNECT + """
+0.1 < icmp unreachable port [S 1000:1000(0)]
0.9~1.15 > S 0:0(0)
"""),
    _s("23d", "ICMP fragmentation needed (Path MTU Discovery)", "1191 3, 8201, 5927 5.3",
       "MSS lowered to MTU-40 at once: 1160 + 300 bytes re-sent", _OPEN + """
+0.05 peer write 1460
+0   > P. 1:1461(1460) ack 1
+0.05 < icmp unreachable frag_needed mtu 1200 [P. 1:1461(1460) ack 1]
+0   > * 1:1161(1160) ack 1
+0   > * 1161:1461(300) ack 1
"""),
    _s("23e", "ICMP port unreachable in ESTABLISHED", "1122 4.2.3.9, 5927 4",
       "soft error: the connection survives", _OPEN + """
+0.05 peer write 10
+0   > P. 1:11(10) ack 1
+0.05 < icmp unreachable port [P. 1:11(10) ack 1]
+0   > nothing for 0.1
+0   < . 1:1(0) ack 11 win 65535
+0.05 < P. 1:11(10) ack 11 win 65535
+0~+0.5 > . 11:11(0) ack 11
"""),
    # ------------------------------------------------------------ ESTABLISHED
    _s("24", "RST with seq = RCV.NXT", "5961 3.2",
       "reset: reader gets ECONNRESET, nothing sent", _OPEN + """
+0.05 < R 1:1(0) win 0
+0   > nothing for 0.3
+0   peer expect ECONNRESET
"""),
    _s("25", "RST in window, not exact", "5961 3.2",
       "challenge ACK; connection survives", _OPEN + """
+0.05 < R 1000:1000(0) win 0
+0   > . 1:1(0) ack 1
""" + _STILL_ALIVE),
    _s("25b", "challenge ACKs are rate-limited", "5961 7",
       "one per 500 ms per socket (tcp_invalid_ratelimit)", _OPEN + """
+0.05 < R 1000:1000(0) win 0
+0   > . 1:1(0) ack 1
+0.1 < R 2000:2000(0) win 0
+0   > nothing for 0.2
+0.3 < R 3000:3000(0) win 0
+0   > . 1:1(0) ack 1
"""),
    _s("26", "RST out of window", "5961 3.2",
       "dropped silently", _OPEN + """
+0.05 < R 1000000:1000000(0) win 0
+0   > nothing for 0.5
""" + _STILL_ALIVE),
    _s("27", "RST+ACK, exact seq, any ack", "5961 3.2",
       "reset (ack value ignored)", _OPEN + """
+0.05 < R. 1:1(0) ack 123456 win 0
+0   > nothing for 0.3
+0   peer expect ECONNRESET
"""),
    _s("28", "SYN in ESTABLISHED", "5961 4.2",
       "challenge ACK, no state change", _OPEN + """
+0.05 < S 500:500(0) win 65535 <mss 1460>
+0   > . 1:1(0) ack 1
""" + _STILL_ALIVE),
    _s("29", "ACK of unsent data", "9293 3.10.7.4, 5961 5.2",
       "ACK and drop", _OPEN + """
+0.05 < P. 1:11(10) ack 1000 win 65535
+0   > . 1:1(0) ack 1
""" + _STILL_ALIVE),
    _s("30", "ACK too old (< SND.UNA - MAX.SND.WND)", "5961 5.2",
       "challenge ACK and drop", _OPEN + """
+0.05 < P. 1:11(10) ack -200000 win 65535
+0   > . 1:1(0) ack 1
""" + _STILL_ALIVE),
    _s("31", "data beyond the receive window", "9293 3.10.7.4",
       "dup ACK ack RCV.NXT", _OPEN + """
+0.05 < P. 500000:500010(10) ack 1 win 65535
+0   > . 1:1(0) ack 1
"""),
    _s("31b", "segment overlapping RCV.NXT", "9293 3.10.7.4 (trim)",
       "old part trimmed, new part ACKed", _OPEN + """
+0.05 < P. 1:11(10) ack 1 win 65535
+0~+0.5 > . 1:1(0) ack 11
+0.05 < P. 6:16(10) ack 1 win 65535
+0~+0.5 > . 1:1(0) ack 16
"""),
    _s("32a", "old duplicate data with SACK", "2883 4",
       "immediate ACK with a D-SACK block", _OPEN_SACK + """
+0.05 < P. 1:11(10) ack 1 win 65535
+0~+0.5 > . 1:1(0) ack 11
+0.05 < P. 1:11(10) ack 1 win 65535
+0   > . 1:1(0) ack 11 <sack 1:11>
"""),
    _s("32b", "out-of-order data with SACK", "2018 4, 5681 4.2",
       "immediate dup ACK with a SACK block", _OPEN_SACK + """
+0.05 < P. 11:21(10) ack 1 win 65535
+0   > . 1:1(0) ack 1 <sack 11:21>
"""),
    _s("32c", "two holes: SACK blocks, most recent first", "2018 4",
       "sack 31:41 11:21; after the first hole fills, ack 21 <sack 31:41>", _OPEN_SACK + """
+0.05 < P. 11:21(10) ack 1 win 65535
+0   > . 1:1(0) ack 1 <sack 11:21>
+0.05 < P. 31:41(10) ack 1 win 65535
+0   > . 1:1(0) ack 1 <sack 31:41 11:21>
+0.05 < P. 1:11(10) ack 1 win 65535
+0   > . 1:1(0) ack 21 <sack 31:41>
"""),
    _s("33", "segment without ACK in ESTABLISHED", "9293 3.10.7.4",
       "dropped", _OPEN + """
+0.05 < P 1:11(10) win 65535
+0   > nothing for 0.5
""" + _STILL_ALIVE),
    _s("bad-csum", "segment with a bad TCP checksum", "9293 3.1",
       "dropped silently", _OPEN + """
+0.05 < P. 1:11(10) ack 1 win 65535 badsum
+0   > nothing for 0.5
""" + _STILL_ALIVE),
    _s("ip-ttl", "IP header fields do not matter to TCP (TTL 0/1, no DF, ID 0)",
       "1122 3.2.1.7", "data accepted and ACKed", _OPEN + """
+0.05 < P. 1:11(10) ack 1 win 65535 ttl 0
+0~+0.5 > . 1:1(0) ack 11
+0.05 < P. 11:21(10) ack 1 win 65535 ttl 1 nodf id 0
+0~+0.5 > . 1:1(0) ack 21
"""),
    # ------------------------------------------------------------ close
    _s("34", "active close", "9293 3.6",
       "F. → ACK → FIN → ACK (TIME-WAIT)", _ACTIVE_CLOSE),
    _s("35", "passive close, then a stray segment", "9293 3.6",
       "ACK of FIN, EOF, F. on close, RST for later data", _OPEN + """
+0.05 < F. 1:1(0) ack 1 win 65535
+0   > . 1:1(0) ack 2
+0   peer expect EOF
+0   peer close
+0   > F. 1:1(0) ack 2
+0   < . 2:2(0) ack 2 win 65535
+0.05 < P. 2:12(10) ack 2 win 65535
+0   > R 2:2(0)
"""),
    _s("35b", "FIN retransmitted in LAST-ACK", "9293 3.6, 6298 5",
       "F. again after RTO; the final ACK closes (nothing more)", _OPEN + """
+0.05 < F. 1:1(0) ack 1 win 65535
+0~+0.5 > . 1:1(0) ack 2
+0   peer expect EOF
+0   peer close
+0   > F. 1:1(0) ack 2
+0.15~+0.6 > F. 1:1(0) ack 2
+0   < . 2:2(0) ack 2 win 65535
+0   > nothing for 0.3
"""),
    _s("36", "simultaneous close", "9293 3.6 fig. 13",
       "CLOSING: ACK of our FIN; then TIME-WAIT re-ACKs", _OPEN + """
+0.05 peer close
+0   > F. 1:1(0) ack 1
+0   < F. 1:1(0) ack 1 win 65535
+0   > . 2:2(0) ack 2
+0   < . 2:2(0) ack 2 win 65535
+0.1 < F. 1:1(0) ack 2 win 65535
+0   > . 2:2(0) ack 2
"""),
    _s("37", "FIN with data", "9293 3.10.7.4",
       ". ack 12 covers data and FIN (delayed ~40 ms: pingpong after FIN)", _OPEN + """
+0.05 < FP. 1:11(10) ack 1 win 65535
+0~+0.5 > . 1:1(0) ack 12
"""),
    _s("38a", "our FIN is retransmitted with backoff", "6298 5.5",
       "F. again after RTO (>= 200 ms), then doubled", _OPEN + """
+0.05 peer close
+0   > F. 1:1(0) ack 1
+0.15~+0.6 > F. 1:1(0) ack 1
+0.3~+1.2 > F. 1:1(0) ack 1
"""),
    _s("38b", "retransmitted peer FIN in TIME-WAIT", "9293 3.10.7.4",
       "re-ACKed", _ACTIVE_CLOSE + """
+0.1 < F. 1:1(0) ack 2 win 65535
+0   > . 2:2(0) ack 2
"""),
    _s("38c", "orphaned FIN-WAIT-2 times out (tcp_fin_timeout=1)", "9293 3.6, 1122 4.2.2.13",
       "gone after the timeout: a late FIN gets R", """
sysctl net.ipv4.tcp_fin_timeout=1
""" + _OPEN + """
+0.05 peer close
+0   > F. 1:1(0) ack 1
+0   < . 1:1(0) ack 2 win 65535
+1.5 < F. 1:1(0) ack 2 win 65535
+0   > R 2:2(0)
"""),
    _s("39", "half close: data after our FIN is accepted", "9293 3.6",
       "ACKs data in FIN-WAIT-2", _OPEN + """
+0.05 peer shutdown
+0   > F. 1:1(0) ack 1
+0   < . 1:1(0) ack 2 win 65535
+0.05 < P. 1:11(10) ack 2 win 65535
+0~+0.5 > . 2:2(0) ack 11
+0   peer read 10
"""),
    _s("40a", "data after the application fully closed", "9293 3.10.7.4, 2525 2.17",
       "R seq=SEG.ACK", _OPEN + """
+0.05 peer close
+0   > F. 1:1(0) ack 1
+0   < P. 1:11(10) ack 2 win 65535
+0   > R 2:2(0)
"""),
    _s("40b", "data after the peer's FIN (CLOSE-WAIT)", "9293 3.10.7.4",
       "ignored: nothing sent", _OPEN + """
+0.05 < F. 1:1(0) ack 1 win 65535
+0   > . 1:1(0) ack 2
+0.05 < P. 2:12(10) ack 1 win 65535
+0   > nothing for 0.5
"""),
    _s("41a", "close with unread data", "2525 2.17",
       "R. SND.NXT ack RCV.NXT instead of FIN", _OPEN + """
+0.05 < P. 1:11(10) ack 1 win 65535
+0~+0.5 > . 1:1(0) ack 11
+0.05 peer close
+0   > R. 1:1(0) ack 11
"""),
    _s("41b", "close in SYN-SENT", "9293 3.10.4",
       "nothing sent", _CONNECT + """
+0.05 peer close
+0   > nothing for 1.5
"""),
    _s("42a", "new SYN with a higher seq in TIME-WAIT", "6191, 1122 4.2.2.13",
       "reopens: SYN-ACK", _ACTIVE_CLOSE + """
+0.1 < S 1000:1000(0) win 65535 <mss 1460>
+0   > S. 0:0(0) ack 1001 <mss *>
"""),
    _s("42b", "old SYN in TIME-WAIT", "9293 3.10.7.4",
       "the TIME-WAIT ACK", _ACTIVE_CLOSE + """
+0.1 < S 0:0(0) win 65535 <mss 1460>
+0   > . 2:2(0) ack 2
"""),
    _s("42c", "RST with seq = RCV.NXT in TIME-WAIT", "1337, 9293 3.10.7.4",
       "ends TIME-WAIT (RFC 1337 would ignore it): a later ACK gets R", _ACTIVE_CLOSE + """
+0.1 < . 2:2(0) ack 2 win 65535
+0   > nothing for 0.3
+0   < R 2:2(0) win 0
+0   > nothing for 0.3
+0   < . 2:2(0) ack 2 win 65535
+0   > R 2:2(0)
"""),
    _s("42d", "SYN with an old seq but a newer TSval in TIME-WAIT", "6191, 7323 5",
       "reopens: SYN-ACK", """
peer listen 8080
0    < S 0:0(0) win 65535 <mss 1460,sackOK,TS val 1000 ecr 0,nop,wscale 7>
+0   > S. 0:0(0) ack 1 <mss *,sackOK,TS val * ecr 1000,wscale *>
+0   < . 1:1(0) ack 1 win 512 <nop,nop,TS val 1001 ecr *>
+0   peer expect connected
+0.05 peer close
+0   > F. 1:1(0) ack 1 <TS val * ecr 1001>
+0   < . 1:1(0) ack 2 win 512 <nop,nop,TS val 1002 ecr *>
+0   < F. 1:1(0) ack 2 win 512 <nop,nop,TS val 1003 ecr *>
+0   > . 2:2(0) ack 2 <TS val * ecr 1003>
+0.1 < S 0:0(0) win 65535 <mss 1460,sackOK,TS val 5000 ecr 0,nop,wscale 7>
+0   > S. 0:0(0) ack 1 <mss *,sackOK,TS val * ecr 5000,wscale *>
"""),
    # ------------------------------------------------------------ timers
    _s("43", "zero window: persist probes", "9293 3.8.6.1, 1122 4.2.2.17",
       ". SND.UNA-1:SND.UNA-1(0) after >= 200 ms, backing off x2; data on window open", """
peer listen 8080
0    < S 0:0(0) win 65535 <mss 1460>
+0   > S. 0:0(0) ack 1 <mss *>
+0   < . 1:1(0) ack 1 win 0
+0   peer expect connected
+0.05 peer write 100
+0.15~+0.8 > . 0:0(0) ack 1
+0.3~+0.6 > . 0:0(0) ack 1
+0.6~+1.1 > . 0:0(0) ack 1
+0   < . 1:1(0) ack 1 win 65535
+0   > * 1:101(100) ack 1
"""),
    _s("44", "keepalive probes, then RST and ETIMEDOUT", "1122 4.2.3.6",
       ". SND.NXT-1 ack RCV.NXT every interval; after N probes R. and ETIMEDOUT", """
sysctl net.ipv4.tcp_keepalive_time=1
sysctl net.ipv4.tcp_keepalive_intvl=1
sysctl net.ipv4.tcp_keepalive_probes=2
peer keepalive
""" + _OPEN + """
+1   > . 0:0(0) ack 1
+1   > . 0:0(0) ack 1
+1   > R. 1:1(0) ack 1
+0   peer expect ETIMEDOUT
"""),
    _s("45", "data retransmission timeout", "6298 2, 5",
       "retransmit after RTO (>= 200 ms), then doubled", _OPEN + """
+0.05 peer write 100
+0   > P. 1:101(100) ack 1
+0.15~+0.6 > P. 1:101(100) ack 1
+0.3~+1.2 > P. 1:101(100) ack 1
"""),
    _s("46", "urgent data (MSG_OOB)", "9293 3.8.5, 6093",
       "URG with the pointer one past the urgent byte (BSD style)", _OPEN + """
+0.05 peer write-urgent 10
+0   > PU. 1:11(10) ack 1 urg 10
"""),
    _s("45b", "first data RTO after a retransmitted SYN", "6298 5.7",
       "3 s (no RTT sample from the handshake: Karn, no timestamps)", """
peer connect 9090
*    > S 0:0(0)
+1   > S 0:0(0)
+0   < S. 0:0(0) ack 1 win 65535 <mss 1460>
+0   > . 1:1(0) ack 1
+0   peer expect connected
+0.05 peer write 100
+0   > P. 1:101(100) ack 1
+3   > P. 1:101(100) ack 1
"""),
    _s("45c", "retransmissions exhausted (tcp_retries2=2)", "1122 4.2.3.5, 9293 3.8.3",
       "3 retransmissions (time budget 1.4 s), then ETIMEDOUT without RST", """
sysctl net.ipv4.tcp_retries2=2
""" + _OPEN + """
+0.05 peer write 100
+0   > P. 1:101(100) ack 1
*    > P. 1:101(100) ack 1
*    > P. 1:101(100) ack 1
*    > P. 1:101(100) ack 1
+0   > nothing for 3
+0   peer expect ETIMEDOUT
"""),
    _s("fast-rtx", "three duplicate ACKs: fast retransmit", "5681 3.2",
       "the missing segment re-sent at once", """
peer listen 8080
0    < S 0:0(0) win 65535 <mss 1000>
+0   > S. 0:0(0) ack 1 <mss *>
+0   < . 1:1(0) ack 1 win 65535
+0   peer expect connected
+0.05 peer write 5000
+0   > * 1:1001(1000) ack 1
+0   > * 1001:2001(1000) ack 1
+0   > * 2001:3001(1000) ack 1
+0   > * 3001:4001(1000) ack 1
+0   > * 4001:5001(1000) ack 1
+0   < . 1:1(0) ack 1001 win 65535
+0   < . 1:1(0) ack 1001 win 65535
+0   < . 1:1(0) ack 1001 win 65535
+0   < . 1:1(0) ack 1001 win 65535
+0   > * 1001:2001(1000) ack 1
"""),
    _s("47", "ACK of a small segment comes within 500 ms", "1122 4.2.3.2, 9293 3.8.6.3",
       "ACK (immediate in quickack)", _OPEN + """
+0.05 < P. 1:11(10) ack 1 win 65535
+0~+0.5 > . 1:1(0) ack 11
"""),
    _s("47b", "first data segment of a connection", "1122 4.2.3.2, 9293 3.8.6.3",
       "ACKed at once (quickack mode at connection start)", _OPEN + """
+0.05 < P. 1:11(10) ack 1 win 65535
+0   > . 1:1(0) ack 11
"""),
]
# the sender's loss recovery (issue 9), kept in their own module
SCENARIOS += [_s(*entry) for entry in RECOVERY_SCENARIOS]


def by_id(scenario_id: str) -> Scenario:
    for s in SCENARIOS:
        if s.id == scenario_id:
            return s
    raise KeyError(f"no scenario {scenario_id!r}")


#: ustack's known differences from Linux, with the RFC reasoning (filled from
#: the recorded runs; BUG = ustack violates the RFC and should be fixed)
USTACK_NOTES: dict[str, str] = {
}
USTACK_NOTES.update(RECOVERY_NOTES)
