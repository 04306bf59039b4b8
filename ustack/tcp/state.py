"""TCP connection states (RFC 9293 section 3.3.2) and the allowed transitions.

Values are Linux's ``TCP_*`` state numbers (``include/net/tcp_states.h``) so
the ss filter language and ``inet_diag``-style snapshots can use them as is;
:attr:`TcpState.ss_name` is the name ``ss`` prints.

:data:`TRANSITIONS` is RFC 9293 figure 5 plus the edges Linux (and so ustack)
takes beyond it; ``TcpConnection._set_state`` is the only place a state
changes and checks every change against it when :data:`CHECK_TRANSITIONS` is
on (under pytest, or with ``USTACK_CHECK_STATES=1``).
"""

from __future__ import annotations

import os
import sys
from enum import Enum


class TcpState(Enum):
    ESTABLISHED = 1
    SYN_SENT = 2
    SYN_RECEIVED = 3
    FIN_WAIT_1 = 4
    FIN_WAIT_2 = 5
    TIME_WAIT = 6
    CLOSED = 7
    CLOSE_WAIT = 8
    LAST_ACK = 9
    LISTEN = 10
    CLOSING = 11

    @property
    def ss_name(self) -> str:
        """The name ``ss`` prints (``ESTAB``, ``SYN-SENT``, ``UNCONN`` for CLOSED, ...)."""
        return _SS_NAMES[self]

    @property
    def rfc_name(self) -> str:
        """The name RFC 9293 uses (``ESTABLISHED``, ``SYN-RECEIVED``, ...)."""
        return self.name.replace("_", "-")

    @property
    def synchronized(self) -> bool:
        """RFC 9293 3.10.7.4: states after the handshake (SYN-RECEIVED included)."""
        return self not in (TcpState.CLOSED, TcpState.LISTEN, TcpState.SYN_SENT)


_SS_NAMES = {
    TcpState.ESTABLISHED: "ESTAB",
    TcpState.SYN_SENT: "SYN-SENT",
    TcpState.SYN_RECEIVED: "SYN-RECV",
    TcpState.FIN_WAIT_1: "FIN-WAIT-1",
    TcpState.FIN_WAIT_2: "FIN-WAIT-2",
    TcpState.TIME_WAIT: "TIME-WAIT",
    TcpState.CLOSED: "UNCONN",
    TcpState.CLOSE_WAIT: "CLOSE-WAIT",
    TcpState.LAST_ACK: "LAST-ACK",
    TcpState.LISTEN: "LISTEN",
    TcpState.CLOSING: "CLOSING",
}


_S = TcpState

#: old state -> states it may move to.  RFC 9293 figure 5 edges first, then
#: the Linux ones (each commented).
TRANSITIONS: dict[TcpState, frozenset[TcpState]] = {
    # a TcpConnection is born CLOSED and becomes SYN-SENT (active OPEN) or,
    # built by a listener from a SYN, SYN-RECEIVED (passive OPEN, 3.10.7.2)
    _S.CLOSED: frozenset({_S.SYN_SENT, _S.SYN_RECEIVED, _S.LISTEN}),
    _S.LISTEN: frozenset({_S.SYN_RECEIVED, _S.SYN_SENT, _S.CLOSED}),
    _S.SYN_SENT: frozenset({
        _S.ESTABLISHED,   # rcv SYN,ACK
        _S.SYN_RECEIVED,  # simultaneous open: rcv SYN
        _S.CLOSED,        # CLOSE, RST, timeout, ICMP error (Linux: tcp_v4_err)
    }),
    _S.SYN_RECEIVED: frozenset({
        _S.ESTABLISHED,   # rcv ACK of SYN
        _S.FIN_WAIT_1,    # CLOSE
        _S.LISTEN,        # RST of a passive open (RFC); Linux drops the request instead:
        _S.CLOSED,        # RST, SYN-ACK retries exhausted, in-window SYN (tcp_check_req)
    }),
    _S.ESTABLISHED: frozenset({
        _S.FIN_WAIT_1,    # CLOSE
        _S.CLOSE_WAIT,    # rcv FIN
        _S.CLOSED,        # RST, ABORT, retransmission / keepalive timeout (3.10.5, 3.10.8)
    }),
    _S.FIN_WAIT_1: frozenset({
        _S.FIN_WAIT_2,    # rcv ACK of FIN
        _S.CLOSING,       # rcv FIN
        _S.TIME_WAIT,     # rcv FIN,ACK (both at once)
        _S.CLOSED,        # RST, ABORT, timeout
    }),
    _S.FIN_WAIT_2: frozenset({
        _S.TIME_WAIT,     # rcv FIN
        _S.CLOSED,        # RST, ABORT, orphan timeout (Linux tcp_fin_timeout)
    }),
    _S.CLOSE_WAIT: frozenset({
        _S.LAST_ACK,      # CLOSE
        _S.CLOSED,        # RST, ABORT, timeout
    }),
    _S.CLOSING: frozenset({
        _S.TIME_WAIT,     # rcv ACK of FIN
        _S.CLOSED,        # RST, ABORT, timeout
    }),
    _S.LAST_ACK: frozenset({
        _S.CLOSED,        # rcv ACK of FIN, RST, timeout
    }),
    _S.TIME_WAIT: frozenset({
        _S.CLOSED,        # 2MSL timeout; RST (Linux kills TIME-WAIT); a new SYN (RFC 6191)
    }),
}

#: check every state change against :data:`TRANSITIONS` (test time)
CHECK_TRANSITIONS: bool = "pytest" in sys.modules or os.environ.get("USTACK_CHECK_STATES") == "1"


class TransitionError(AssertionError):
    """A state change outside :data:`TRANSITIONS` (a bug in the core)."""


def check_transition(old: TcpState, new: TcpState) -> None:
    """Raise :class:`TransitionError` unless ``old -> new`` is allowed."""
    if new not in TRANSITIONS[old]:
        raise TransitionError(f"TCP state change {old.rfc_name} -> {new.rfc_name} "
                              "is not in ustack.tcp.state.TRANSITIONS")
