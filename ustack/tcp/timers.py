"""Timer names (as ``ss -o`` prints them) and the rule for the earliest deadline.

A connection keeps one deadline per timer as a float attribute (``None`` =
not armed); re-arming is one assignment, so restarting the retransmission
timer on every ACK is O(1).  The stack keeps the connections' earliest
deadlines in its own heap and calls ``handle_timer(now)`` when one is due.
"""

from __future__ import annotations

#: retransmission (RFC 6298), also SYN / SYN-ACK / FIN retransmission
RETRANSMIT = "on"
#: zero-window probing (RFC 9293 3.8.6.1)
PERSIST = "persist"
#: keepalive (RFC 1122 4.2.3.6), also orphaned FIN-WAIT-2 (Linux shows "timewait")
KEEPALIVE = "keepalive"
#: TIME-WAIT expiry
TIMEWAIT = "timewait"
#: delayed ACK (RFC 1122 4.2.3.2)
DELACK = "delack"

TIMER_NAMES = (RETRANSMIT, PERSIST, KEEPALIVE, TIMEWAIT, DELACK)


def earliest(*deadlines: float | None) -> float | None:
    """The smallest armed deadline."""
    best: float | None = None
    for d in deadlines:
        if d is not None and (best is None or d < best):
            best = d
    return best
