"""TCP connection states (RFC 9293 section 3.3.2).

Values are Linux's ``TCP_*`` state numbers (``include/net/tcp_states.h``) so
the ss filter language and ``inet_diag``-style snapshots can use them as is;
:attr:`TcpState.ss_name` is the name ``ss`` prints.
"""

from __future__ import annotations

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
