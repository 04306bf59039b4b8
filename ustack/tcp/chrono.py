"""Sender-limit chronographs (Linux ``tcp_chrono_start``/``tcp_chrono_stop``,
``tcp_get_info_chrono_stats``): how long the connection was busy sending,
and how much of that it was limited by the peer's receive window or by the
send buffer (``tcpi_busy_time``, ``tcpi_rwnd_limited``, ``tcpi_sndbuf_limited``).

One chronograph runs at a time; a more interesting kind (higher number)
takes over from a less interesting one, and stopping a kind falls back to
BUSY while data is queued, to nothing once all of it is acknowledged.
"""

from __future__ import annotations

from typing import Final

#: Linux enum tcp_chrono
UNSPEC: Final = 0
BUSY: Final = 1
RWND_LIMITED: Final = 2
SNDBUF_LIMITED: Final = 3
#: the shared resting value of Chrono.stat (typed variable-length so that
#: compiled code keeps the one object instead of building a tuple per Chrono)
_ZERO: tuple[float, ...] = (0.0, 0.0, 0.0)  # not Final: mypyc would inline a new tuple per use


class Chrono:
    """The running chronograph and the time each kind accumulated."""

    __slots__ = ("kind", "since", "stat")

    def __init__(self) -> None:
        self.kind = UNSPEC
        self.since = 0.0
        #: seconds spent in BUSY, RWND_LIMITED, SNDBUF_LIMITED (a shared
        #: zero tuple until the first kind ends: most idle connections never
        #: run one)
        self.stat: list[float] | tuple[float, ...] = _ZERO

    def _set(self, kind: int, now: float) -> None:
        if self.kind:
            stat = self.stat
            if not isinstance(stat, list):
                stat = self.stat = [0.0, 0.0, 0.0]
            stat[self.kind - 1] += now - self.since
        self.since = now
        self.kind = kind

    def start(self, kind: int, now: float) -> None:
        """``kind`` began (kept only if more interesting than the running one)."""
        if kind > self.kind:
            self._set(kind, now)

    def stop(self, kind: int, now: float, queues_empty: bool) -> None:
        """``kind`` ended: nothing runs once all data is acknowledged, else
        BUSY if ``kind`` was the running one."""
        if queues_empty:
            if self.kind:
                self._set(UNSPEC, now)
        elif kind == self.kind:
            self._set(BUSY, now)

    def totals(self, now: float) -> tuple[float, float, float]:
        """(busy time, rwnd-limited, sndbuf-limited) in seconds; busy time
        counts all three, as tcpi_busy_time."""
        stat = list(self.stat)
        if self.kind:
            stat[self.kind - 1] += now - self.since
        return stat[0] + stat[1] + stat[2], stat[1], stat[2]
