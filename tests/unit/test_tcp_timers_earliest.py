"""Timers.earliest (unrolled) = the smallest armed deadline, for every
combination of armed slots (differential against min() over the slots)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ustack.tcp.timers import SS_NAMES, Timers

SLOTS = tuple(SS_NAMES)
deadline = st.one_of(st.none(), st.floats(min_value=-1e6, max_value=1e6, allow_nan=False))


@given(st.lists(deadline, min_size=len(SLOTS), max_size=len(SLOTS)))
def test_earliest_is_the_smallest_armed_deadline(values: list[float | None]) -> None:
    t = Timers()
    for name, at in zip(SLOTS, values, strict=True):
        setattr(t, name, at)
    armed = [at for at in values if at is not None]
    assert t.earliest() == (min(armed) if armed else None)


def test_every_slot_is_read() -> None:
    for name in SLOTS:
        t = Timers()
        t.rto = 10.0 if name != "rto" else None
        setattr(t, name, 1.0)
        assert t.earliest() == 1.0, name
