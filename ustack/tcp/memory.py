"""The stack-wide TCP memory budget, Linux ``tcp_mem`` (sans-I/O).

Linux counts the pages of every TCP buffer of the machine in
``tcp_memory_allocated`` against three thresholds (``net.ipv4.tcp_mem``,
pages): below *min* nothing is regulated; above *pressure* TCP enters memory
pressure (``TcpExtTCPMemoryPressures``) and stays there until usage falls
below *min* again; above *max* no socket may grow its buffers at all.  Under
pressure Linux stops growing buffers and clamps each receive window to a few
segments (``tcp_adjust_rcv_ssthresh``: 4 * advmss); ``sk_stream_memory_free``
then blocks senders.

ustack's version, one :class:`MemoryBudget` per stack (the connection table
owns it): each connection is charged its send queue, its unread in-order
data and its out-of-order data, in bytes, whenever the table drains it.
The budget only decides; :class:`Clamp` says what a connection may use:

* normal: the configured ``send_buffer`` / ``recv_buffer``;
* pressure: sends block (no more than what is queued) and the receive
  buffer may grow by at most 4 MSS beyond what it holds now, so the
  advertised window shrinks to a few segments and then to zero; each
  connection keeps the minimum Linux guarantees under pressure (not over
  max): 4 KB to send and 4 KB received (``tcp_wmem[0]``/``tcp_rmem[0]``,
  ``__sk_mem_raise_allocated``), so a small answer is never blocked;
* over max: neither grows at all.

A connection is charged what it holds, not the window it has advertised
(Linux charges an skb when it is queued, ``tcp_try_rmem_schedule``): a fresh
connection costs the budget nothing.  So that a window advertised in normal
times cannot fill memory once the pressure starts, a clamped connection's
announced right edge is pulled back to what its clamp lets it hold
(``Receiver.clamp_window``; Linux drops the segment it cannot charge and
announces a zero window, ``tcp_data_queue`` / ``tcp_select_window`` with
``ICSK_ACK_NOMEM``): data in flight beyond it is out of the window, answered
with an ACK and sent again later.

So the total stays below *max* plus a few segments per connection, however
many peers stop reading.  When the budget is NORMAL again, every connection
clamped under the pressure gets its configured limits back at once
(``TcpTable._release_clamps``), and a writer blocked on the old bound hears
of the room (``TcpConnection.set_send_limit``), as Linux wakes writers when
it leaves memory pressure: an idle connection would otherwise keep its
clamp until its next segment, which may never come.  The default thresholds come from the machine's
memory as Linux ``tcp_init_mem`` computes them.
"""

from __future__ import annotations

import os
from typing import Final, NamedTuple

from ustack.tcp.mib import TcpMib

PAGE: Final = 4096
#: what every connection may hold under pressure whatever the budget
#: (Linux tcp_wmem[0] / tcp_rmem[0] defaults; not over the hard limit)
WMEM0: Final = 4096
RMEM0: Final = 4096
NORMAL: Final = 0
PRESSURE: Final = 1
OVER_LIMIT: Final = 2


def default_tcp_mem(phys_pages: int | None = None) -> tuple[int, int, int]:
    """Linux ``tcp_init_mem``: limit = 1/16 of the memory pages (at least
    128); tcp_mem = (3/4 limit, limit, 3/2 limit)."""
    if phys_pages is None:
        try:
            phys_pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // PAGE
        except (ValueError, OSError):
            phys_pages = 1 << 20  # 4 GiB
    limit = max(phys_pages // 16, 128)
    low = limit // 4 * 3
    return (low, limit, low * 2)


class Clamp(NamedTuple):
    """What one connection may hold (bytes), for the current budget state."""

    send_limit: int
    recv_size: int


class MemoryBudget:
    """Pages of TCP buffers for a whole stack against (min, pressure, max)."""

    __slots__ = ("min_pages", "pressure_pages", "max_pages", "allocated", "state", "epoch",
                 "mib", "_pressure_since", "_pressure_time")

    def __init__(self, tcp_mem: tuple[int, int, int] | None = None,
                 mib: TcpMib | None = None) -> None:
        low, pressure, high = tcp_mem if tcp_mem is not None else default_tcp_mem()
        if not 0 <= low <= pressure <= high:
            raise ValueError(f"tcp_mem must be min <= pressure <= max pages, not {tcp_mem}")
        self.min_pages = low
        self.pressure_pages = pressure
        self.max_pages = high
        #: bytes charged by every connection
        self.allocated = 0
        self.state = NORMAL
        #: bumped on every state change: connections re-apply their clamp
        self.epoch = 0
        self.mib = mib if mib is not None else TcpMib()
        self._pressure_since: float | None = None
        self._pressure_time = 0.0

    @property
    def pages(self) -> int:
        return (self.allocated + PAGE - 1) // PAGE

    @property
    def under_pressure(self) -> bool:
        return self.state != NORMAL

    def charge(self, delta: int, now: float) -> None:
        """Add ``delta`` bytes (negative: freed) and update the state
        (Linux ``sk_enter_memory_pressure`` / ``sk_leave_memory_pressure``)."""
        allocated = self.allocated + delta
        if allocated < 0:
            allocated = 0
        self.allocated = allocated
        state = self.state
        if state == NORMAL and allocated <= self.pressure_pages * PAGE:
            return  # (pages <= pressure_pages, so below max too: still NORMAL)
        pages = (allocated + PAGE - 1) // PAGE
        if pages > self.max_pages:
            new = OVER_LIMIT
        elif pages > self.pressure_pages:
            new = PRESSURE
        elif state != NORMAL and pages >= self.min_pages:
            new = PRESSURE  # hysteresis: pressure ends below min
        else:
            new = NORMAL
        if new == state:
            return
        if state == NORMAL:
            self.mib["TcpExtTCPMemoryPressures"] += 1
            self._pressure_since = now
        elif new == NORMAL and self._pressure_since is not None:
            self._pressure_time += now - self._pressure_since
            self.mib["TcpExtTCPMemoryPressuresChrono"] = int(self._pressure_time * 1000)
            self._pressure_since = None
        self.state = new
        self.epoch += 1

    def clamp(self, send_buffer: int, recv_buffer: int, send_queued: int, recv_held: int,
              mss: int) -> Clamp:
        """The limits for a connection configured with ``send_buffer`` /
        ``recv_buffer`` that now queues ``send_queued`` bytes to send and
        holds ``recv_held`` received bytes."""
        state = self.state
        if state == NORMAL:
            return Clamp(send_buffer, recv_buffer)
        if state == PRESSURE:
            # (the 4 KB guarantees: Linux __sk_mem_raise_allocated)
            return Clamp(min(send_buffer, max(send_queued, WMEM0)),
                         min(recv_buffer, max(recv_held + 4 * max(mss, 536), RMEM0)))
        return Clamp(min(send_buffer, send_queued), min(recv_buffer, recv_held))

    def counters(self) -> dict[str, int]:
        """``tcp_mem_*`` keys for ``Stack.counters()``."""
        return {"tcp_mem_pages": self.pages, "tcp_mem_bytes": self.allocated,
                "tcp_mem_state": self.state, "tcp_mem_min": self.min_pages,
                "tcp_mem_pressure": self.pressure_pages, "tcp_mem_max": self.max_pages}


__all__ = ["MemoryBudget", "Clamp", "default_tcp_mem", "PAGE", "NORMAL", "PRESSURE",
           "OVER_LIMIT", "WMEM0", "RMEM0"]
