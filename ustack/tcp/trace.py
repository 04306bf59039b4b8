"""The trace hook: how the sans-I/O core reports what it does (issue 11).

A connection whose ``trace`` attribute is a :data:`TraceHook` calls it as
``hook(now, event, data)`` for every event below; when ``trace`` is ``None``
(the default) the core does nothing more than one ``is None`` test.  The core
never formats or writes: the JSON Lines writer, the per-stack directory and
``USTACK_TRACE`` live above it (``ustack.trace``).

Event names (qlog's vocabulary where it fits) and their ``data`` keys:

``state``       ``old``, ``new`` (``TcpState`` ss names, e.g. ``"SYN-SENT"``)
``seg_sent``    ``seq``, ``ack``, ``len``, ``flags`` (e.g. ``"SA"``), ``win``, ``sack`` (list of
                ``[start, end]``), ``rtx`` (bool: a retransmission); ``win`` is the window
                in bytes, i.e. the header field shifted by the window scale that applies
                to it (RFC 7323 2.2; unshifted on SYNs), so plots need no handshake state
``seg_recv``    same keys as ``seg_sent`` but ``rtx``
``cc``          ``cwnd``, ``ssthresh``, ``in_flight``, ``pacing_rate``, ``delivery_rate``,
                ``srtt``, ``rttvar``, ``min_rtt``, ``rto`` (bytes, bytes/s, seconds), ``ca_state``
``recovery``    ``reason`` (``dupthresh``, ``rack``, ``tlp``, ``rto``, ``undo``, ``exit``), plus
                whatever the reason carries (``seq``, ``len``, ``lost``...)
``open``/``close``  ``local``, ``remote`` (``"ip:port"``), ``close`` also ``errno``
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

TraceHook = Callable[[float, str, dict[str, Any]], None]

EVENTS = ("open", "close", "state", "seg_sent", "seg_recv", "cc", "recovery")

__all__ = ["EVENTS", "TraceHook"]
