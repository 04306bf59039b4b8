"""Scoreboard.index (a written-out binary search with head/tail shortcuts)
against ``bisect_right`` on the records' starts, the definition it replaces."""

from __future__ import annotations

from bisect import bisect_right

from hypothesis import given, settings
from hypothesis import strategies as st

from ustack.tcp.scoreboard import Scoreboard


@settings(max_examples=300, deadline=None)
@given(lengths=st.lists(st.integers(1, 3000), min_size=1, max_size=40),
       consumed=st.integers(0, 39), probes=st.lists(st.integers(-10, 10**5), max_size=30))
def test_index_is_bisect_right_on_the_starts(lengths: list[int], consumed: int,
                                              probes: list[int]) -> None:
    sb = Scoreboard(1000, 1000)
    for n in lengths:
        sb.append(sb.nxt + n, 0.0, None)
    sb._h = min(consumed, len(lengths) - 1)
    starts = [r.start for r in sb._q]
    low = starts[sb._h]
    for value in [low + p for p in probes] + [low - 1, sb.nxt - 1, sb.nxt, *starts]:
        assert sb.index(value) == bisect_right(starts, value, lo=sb._h) - 1, value
