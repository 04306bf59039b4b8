"""Events a connection reports to its user (the streams layer), pulled with
:meth:`TcpConnection.next_event`.

Events without fields are singletons (``DATA_AVAILABLE`` etc.) so the hot path
allocates nothing; test them with ``isinstance``.
"""

from __future__ import annotations

import errno as _errno
import os
from dataclasses import dataclass
from typing import Final


class Event:
    """Base class of every TCP event."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Connected(Event):
    """The handshake completed (ESTABLISHED reached)."""


@dataclass(frozen=True, slots=True)
class DataAvailable(Event):
    """In-order data can be read with ``recv``.  Reported once until the next
    ``recv`` call, however many segments arrive meanwhile."""


@dataclass(frozen=True, slots=True)
class EofReceived(Event):
    """The peer's FIN arrived in order: after the buffered data, reads return b""."""


@dataclass(frozen=True, slots=True)
class SendSpaceAvailable(Event):
    """``send`` accepted less than offered earlier and the send buffer has room again."""


@dataclass(frozen=True, slots=True)
class ConnectionFailed(Event):
    """The connection failed: ``errno`` is ECONNREFUSED, ETIMEDOUT, ECONNRESET,
    EHOSTUNREACH, ... A :class:`Closed` event follows."""

    errno: int

    @property
    def message(self) -> str:
        return os.strerror(self.errno)

    def exception(self) -> OSError:
        """The exception the user API should raise for this failure."""
        cls: type[OSError] = {
            _errno.ECONNREFUSED: ConnectionRefusedError,
            _errno.ECONNRESET: ConnectionResetError,
            _errno.ETIMEDOUT: TimeoutError,
        }.get(self.errno, OSError)
        return cls(self.errno, self.message)


@dataclass(frozen=True, slots=True)
class Closed(Event):
    """The connection reached CLOSED; remove it from the connection table."""


CONNECTED: Final = Connected()
DATA_AVAILABLE: Final = DataAvailable()
EOF_RECEIVED: Final = EofReceived()
SEND_SPACE_AVAILABLE: Final = SendSpaceAvailable()
CLOSED: Final = Closed()
