"""Retry limits as time budgets, the way Linux applies tcp_retries2,
tcp_orphan_retries and tcp_syn_retries.

RFC 1122 4.2.3.5 lets the thresholds R1 and R2 "be measured in time units or
as a count of retransmissions".  Linux (net/ipv4/tcp_timer.c,
``retransmits_timed_out`` and ``tcp_model_timeout``) turns the count N into
the time N retransmissions would take if the RTO started at ``rto_base`` and
doubled up to ``rto_max``, and fails the connection at the first
retransmission timeout at which that much time has passed since its stamp.
So the number of retransmissions depends on the connection's real RTO: with
tcp_retries2=2 (1.4 s) and an RTO of ~200 ms a connection retransmits three
times, not two (catalogue 45c).

The stamps (Linux ``retrans_stamp``): for data, the first retransmission by
the retransmission timer; in SYN-SENT, the first SYN.  ``rto_base`` is
TCP_RTO_MIN (200 ms, ustack ``rto_min``) for data and TCP_TIMEOUT_INIT (1 s,
``rto_initial``) for the SYN.  Linux's SYN-SENT check is "count reached *or*
time spent", so with tcp_syn_linear_timeouts a small tcp_syn_retries ends
sooner than its count (tcp_syn_retries=1: SYNs at 0, 1, 2 s, ETIMEDOUT at
3 s, measured against Linux 6.18).

Approximations: Linux's stamp is the first retransmission of any kind but a
tail loss probe, so a fast retransmission before the first RTO starts its
clock earlier than ustack's (which starts at the first RTO); the stamp of
TCP_USER_TIMEOUT (``TcpConnection._rtx_stamp``, when the head was sent) is a
separate, older rule, unchanged here.

``TcpConfig.retries_timed`` = False keeps the RFC's other reading: counts.
tcp_retries1 (Linux's trigger for MTU probing and route re-selection) has no
counterpart in ustack: neither mechanism exists here.
"""

from __future__ import annotations


def model_timeout(boundary: int, rto_base: float, rto_max: float) -> float:
    """Seconds that ``boundary`` retransmissions take with an RTO starting at
    ``rto_base`` and doubling up to ``rto_max`` (Linux tcp_model_timeout:
    exponential while below the cap, then ``rto_max`` per retry).  In whole
    milliseconds, as Linux's jiffies arithmetic (HZ=1000)."""
    if boundary <= 0:
        return 0.0
    base = max(int(round(rto_base * 1000.0)), 1)
    cap = max(int(round(rto_max * 1000.0)), base)
    # the retries before the RTO reaches the cap: ilog2(rto_max / rto_base)
    thresh = (cap // base).bit_length() - 1
    if boundary <= thresh:
        ms = ((2 << boundary) - 1) * base
    else:
        ms = ((2 << thresh) - 1) * base + (boundary - thresh) * cap
    return ms / 1000.0


def timed_out(retransmits: int, since: float, now: float, boundary: int,
              rto_base: float, rto_max: float) -> bool:
    """Linux retransmits_timed_out: at least one retransmission, and the time
    since ``since`` has reached the model of ``boundary`` retries."""
    if retransmits <= 0:
        return False
    return now - since >= model_timeout(boundary, rto_base, rto_max) - 1e-6
