"""The timer table of one connection: named deadlines and the earliest of them.

Every timer is one float attribute of :class:`Timers` (``None`` = not armed),
so re-arming the retransmission timer on every ACK is one assignment (O(1));
there is no timer object per event and no callback.  The connection reports
:meth:`Timers.earliest` as its ``next_deadline``; the stack keeps those in its
own heap and calls ``handle_timer(now)`` when one is due (DESIGN "Timers at
scale").

The names are the ``ss -o`` names (Linux ``inet_diag`` ``idiag_timer``: the
retransmission, loss-probe and RACK reordering timers all show as ``on``,
Linux arms them in one slot, ``icsk_retransmit_timer``).  ``delack`` and
``pacing`` have no ss name in Linux; ustack shows them under their own names.
"""

from __future__ import annotations

from typing import Final

#: retransmission (RFC 6298), also SYN / SYN-ACK / FIN retransmission.  Its
#: length is ``RttEstimator.rto``: the base RTO doubled per ``backoff``, which
#: each timeout raises and only a valid RTT sample clears (RFC 6298 5.5 and
#: section 5's "collapse", Karn's rule in section 3; Linux
#: ``tcp_ack_update_rtt``), never a duplicate ACK, a window update or an ACK
#: of retransmitted data alone
RETRANSMIT: Final = "on"
#: zero-window probing (RFC 9293 3.8.6.1)
PERSIST: Final = "persist"
#: keepalive (RFC 1122 4.2.3.6)
KEEPALIVE: Final = "keepalive"
#: TIME-WAIT expiry, also orphaned FIN-WAIT-2 (Linux shows "timewait" for both)
TIMEWAIT: Final = "timewait"
#: delayed ACK (RFC 1122 4.2.3.2, RFC 9293 3.8.6.3)
DELACK: Final = "delack"
#: pacing release time (the sender holds the next segment until then)
PACING: Final = "pacing"

TIMER_NAMES = (RETRANSMIT, PERSIST, KEEPALIVE, TIMEWAIT, DELACK, PACING)

#: attribute -> ss name, in the order ``ss -o`` / :meth:`Timers.pending` reports them
SS_NAMES: Final[dict[str, str]] = {
    "rto": RETRANSMIT,        # RFC 6298 retransmission timeout
    "tlp": RETRANSMIT,        # RFC 8985 7: tail loss probe (PTO)
    "reorder": RETRANSMIT,    # RFC 8985 6.2: RACK reordering window
    "persist": PERSIST,
    "keepalive": KEEPALIVE,
    "timewait": TIMEWAIT,
    "delack": DELACK,
    "pacing": PACING,
}


class Timers:
    """One deadline per named timer (seconds on the caller's clock, or None)."""

    __slots__ = ("rto", "tlp", "reorder", "persist", "keepalive", "delack", "timewait",
                 "pacing", "rtx_first")

    def __init__(self) -> None:
        self.rto: float | None = None
        self.tlp: float | None = None
        self.reorder: float | None = None
        self.persist: float | None = None
        self.keepalive: float | None = None
        self.delack: float | None = None
        self.timewait: float | None = None
        self.pacing: float | None = None
        #: when the retransmission timer first resent data since the last ACK
        #: of new data (Linux retrans_stamp; the retries2 time budget of
        #: ustack.tcp.retry_budget runs from it).  Not a deadline.
        self.rtx_first = 0.0

    def earliest(self) -> float | None:
        """The smallest armed deadline (the connection's ``next_deadline``).

        Unrolled (read after every input and output): no tuple per call,
        ~30 % fewer bytecodes than a loop, and compiled (mypyc) plain
        comparisons of the slots."""
        best = self.rto
        d = self.tlp
        if d is not None and (best is None or d < best):
            best = d
        d = self.reorder
        if d is not None and (best is None or d < best):
            best = d
        d = self.persist
        if d is not None and (best is None or d < best):
            best = d
        d = self.delack
        if d is not None and (best is None or d < best):
            best = d
        d = self.keepalive
        if d is not None and (best is None or d < best):
            best = d
        d = self.timewait
        if d is not None and (best is None or d < best):
            best = d
        d = self.pacing
        if d is not None and (best is None or d < best):
            best = d
        return best

    def pending(self) -> tuple[str, str, float] | None:
        """(attribute, ss name, deadline) of the timer ``ss -o`` shows: the
        first armed one in :data:`SS_NAMES` order."""
        for attr, name in SS_NAMES.items():
            at: float | None = getattr(self, attr)
            if at is not None:
                return attr, name, at
        return None

    def stop_all(self) -> None:
        """Disarm everything (CLOSED)."""
        self.rto = self.tlp = self.reorder = self.persist = None
        self.keepalive = self.delack = self.timewait = self.pacing = None

    def stop_transmission(self) -> None:
        """Disarm the timers that belong to sending and probing (TIME-WAIT)."""
        self.rto = self.tlp = self.reorder = self.persist = None
        self.keepalive = self.delack = self.pacing = None

    def as_dict(self) -> dict[str, float]:
        """The armed timers by attribute name (tests, diagnostics)."""
        return {a: at for a in SS_NAMES if (at := getattr(self, a)) is not None}


def earliest(*deadlines: float | None) -> float | None:
    """The smallest armed deadline."""
    best: float | None = None
    for d in deadlines:
        if d is not None and (best is None or d < best):
            best = d
    return best
