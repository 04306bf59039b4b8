"""The output queue of a connection with nothing queued is one shared empty
list (``ustack.tcp.sender.NO_OUT``), never appended to: every append site
gives the connection a list of its own first (an idle connection keeps no
list: 56 B).  The seeded differential scenario set (every recovery, option
and controller combination, TIME-WAIT, keepalive, persist) runs over every
append site; the shared list must come out of it empty, and connections at
rest hold it again."""

from __future__ import annotations

import sys
from pathlib import Path

from ustack.tcp.sender import NO_OUT
from ustack.tcp.testing import MemoryPair

sys.path.insert(0, str(Path(__file__).parent))
import accel_scenarios  # noqa: E402


def test_scenarios_never_write_the_shared_queue() -> None:
    ran = 0
    for sc in accel_scenarios.scenarios():
        for _line in accel_scenarios.run(sc):
            assert NO_OUT == [], sc.name
        ran += 1
    assert ran >= 60 and NO_OUT == []


def _settle(pair: MemoryPair, until: float) -> None:
    """Run the pair until nothing is due before ``until`` (delayed ACKs sent)."""
    while pair.now < until and pair.step():
        pass


def test_connections_at_rest_hold_the_shared_queue() -> None:
    pair = MemoryPair()
    assert pair.a._out  # the SYN is queued in a list of its own
    assert pair.a._out is not NO_OUT
    pair.handshake()
    _settle(pair, 1.0)
    assert pair.a._out is NO_OUT and pair.b._out is NO_OUT
    pair.a.send(b"x" * 5000, pair.now)
    pair.run(lambda: pair.b.readable() == 5000, max_time=5.0)
    assert pair.b.recv(5000, pair.now) == b"x" * 5000
    _settle(pair, pair.now + 1.0)
    assert pair.a._out is NO_OUT and pair.b._out is NO_OUT
    assert NO_OUT == []
