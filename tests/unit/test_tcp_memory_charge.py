"""MemoryBudget.charge's early return (NORMAL and at most pressure_pages
pages: nothing to decide) = the full state update, over random charges
(differential against the reference rule written out here)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ustack.tcp.memory import NORMAL, OVER_LIMIT, PAGE, PRESSURE, MemoryBudget
from ustack.tcp.mib import TcpMib


class Reference:
    """The rule without the shortcut (Linux sk_enter/leave_memory_pressure)."""

    def __init__(self, low: int, pressure: int, high: int) -> None:
        self.low, self.pressure, self.high = low, pressure, high
        self.allocated = 0
        self.state = NORMAL
        self.epoch = 0
        self.pressures = 0
        self.since: float | None = None
        self.time = 0.0

    def charge(self, delta: int, now: float) -> None:
        self.allocated = max(0, self.allocated + delta)
        pages = (self.allocated + PAGE - 1) // PAGE
        if pages > self.high:
            new = OVER_LIMIT
        elif pages > self.pressure or self.state != NORMAL and pages >= self.low:
            new = PRESSURE
        else:
            new = NORMAL
        if new == self.state:
            return
        if self.state == NORMAL:
            self.pressures += 1
            self.since = now
        elif new == NORMAL and self.since is not None:
            self.time += now - self.since
            self.since = None
        self.state = new
        self.epoch += 1


@given(st.tuples(st.integers(0, 6), st.integers(0, 6), st.integers(0, 6)),
       st.lists(st.integers(-12 * PAGE, 12 * PAGE), max_size=60))
def test_charge_matches_the_reference_rule(mem: tuple[int, int, int], deltas: list[int]) -> None:
    low, pressure, high = sorted(mem)
    mib = TcpMib()
    budget = MemoryBudget((low, pressure, high), mib)
    ref = Reference(low, pressure, high)
    for i, delta in enumerate(deltas):
        # edges: land exactly on page boundaries now and then
        if i % 3 == 0:
            delta -= (budget.allocated + delta) % PAGE
        budget.charge(delta, float(i))
        ref.charge(delta, float(i))
        assert (budget.allocated, budget.state, budget.epoch) == (
            ref.allocated, ref.state, ref.epoch)
        assert mib["TcpExtTCPMemoryPressures"] == ref.pressures
        assert mib["TcpExtTCPMemoryPressuresChrono"] == int(ref.time * 1000)
