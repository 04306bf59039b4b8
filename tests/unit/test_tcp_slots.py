"""Every per-connection object is slotted (no ``__dict__``), so the resting
footprint of a connection cannot creep back (issue 14, memory: a
``__dict__`` on Recovery alone once cost ~1.6 KB per idle connection).

Two checks: a list of the per-connection classes (the connection and its
rooms, the congestion controllers, the table's endpoint, the transport, the
TIME-WAIT record, the half-open request), and a walk over everything a live
connection reaches, idle and after sending (so a new room added later is
covered without editing the list)."""

from __future__ import annotations

import enum
from typing import Any

import pytest

from ustack.driver.tcp_table import TcpEndpoint
from ustack.streams import TcpTransport
from ustack.tcp.chrono import Chrono
from ustack.tcp.congestion import _REGISTRY, create
from ustack.tcp.connection import TcpConnection
from ustack.tcp.listener import RequestSock
from ustack.tcp.mib import TcpMib
from ustack.tcp.rack import Rack
from ustack.tcp.rate import RateAccumulator, RateSampler
from ustack.tcp.reassembly import Reassembly
from ustack.tcp.receiver import Receiver
from ustack.tcp.recovery import Recovery, RecoveryConfig
from ustack.tcp.rtt import RttEstimator, WindowedMin
from ustack.tcp.scoreboard import Scoreboard, Segment
from ustack.tcp.send_buffer import SendBuffer
from ustack.tcp.sender import Sender
from ustack.tcp.testing import MemoryPair
from ustack.tcp.timers import Timers
from ustack.tcp.timewait import TimeWait
from ustack.wire.tcp import TcpOptions, TcpSegment

PER_CONNECTION = [
    TcpConnection, Sender, SendBuffer, Chrono, Receiver, Reassembly, Timers, RttEstimator,
    WindowedMin, Recovery, RecoveryConfig, Scoreboard, Segment, Rack, RateSampler,
    RateAccumulator, TcpOptions, TcpSegment, TcpEndpoint, TcpTransport, TimeWait, RequestSock,
    *_REGISTRY.values(),
]


@pytest.mark.parametrize("cls", PER_CONNECTION, ids=lambda c: c.__qualname__)
def test_per_connection_class_has_no_dict(cls: type) -> None:
    assert cls.__dictoffset__ == 0, f"{cls.__qualname__} instances carry a __dict__"


def _reachable(root: object) -> dict[int, tuple[type, str]]:
    """ustack objects reachable from ``root`` through slots (and the first
    items of lists and tuples), with a path to each."""
    seen: dict[int, tuple[type, str]] = {}
    todo: list[tuple[object, str]] = [(root, "conn")]
    while todo:
        o, path = todo.pop()
        if isinstance(o, (list, tuple)):
            todo.extend((x, f"{path}[{i}]") for i, x in enumerate(o[:4]))
            continue
        t = type(o)
        if not t.__module__.startswith("ustack.") or id(o) in seen:
            continue
        seen[id(o)] = (t, path)
        if isinstance(o, (enum.Enum, TcpMib)):
            continue  # shared: enum members, the stack-wide MIB
        for k in t.__mro__:
            # a compiled (mypyc) class lists its attributes in __mypyc_attrs__
            slots: Any = getattr(k, "__slots__", None) or getattr(k, "__mypyc_attrs__", ())
            for name in (slots,) if isinstance(slots, str) else slots:
                if hasattr(o, name):
                    todo.append((getattr(o, name), f"{path}.{name}"))
    return seen


@pytest.mark.parametrize("congestion", sorted(_REGISTRY))
def test_everything_a_connection_reaches_is_slotted(congestion: str) -> None:
    from ustack.tcp.config import TcpConfig

    p = MemoryPair(TcpConfig(congestion=congestion), TcpConfig(congestion=congestion))
    p.handshake()
    for conn in (p.a, p.b):
        idle = _reachable(conn)
        assert Recovery not in {t for t, _ in idle.values()}  # idle: no room yet
    p.a.send(b"x" * 20000, p.now)
    p.flush()
    p.a.rec  # noqa: B018 (the room, made by the send)
    found = _reachable(p.a) | _reachable(p.b)
    types = {t for t, _ in found.values()}
    assert {Recovery, Scoreboard, Segment, Rack, RateSampler, Sender, Receiver} <= types
    bad = [f"{t.__qualname__} at {path}" for t, path in found.values()
           if t.__dictoffset__ and not issubclass(t, (enum.Enum, TcpMib))]
    assert not bad, bad
    assert type(create(congestion, 1460, 10)).__dictoffset__ == 0
