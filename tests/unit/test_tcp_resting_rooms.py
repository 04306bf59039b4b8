"""The slimmer resting forms of two per-connection objects behave exactly
as the list-based forms they replaced (issue 14, memory):

* ``WindowedMin`` keeps its three (time, value) pairs in slots instead of
  two 3-lists: compared with the list version (kept below as the
  reference, the code as it was) on random sample streams;
* ``Chrono.stat`` is a shared zero tuple until a kind first ends: the
  totals equal a chronograph that starts with a list."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ustack.tcp.chrono import _ZERO, BUSY, RWND_LIMITED, SNDBUF_LIMITED, Chrono
from ustack.tcp.rtt import WindowedMin


class ListWindowedMin:
    """The list-based WindowedMin as it was (the reference)."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._t = [0.0, 0.0, 0.0]
        self._v = [0.0, 0.0, 0.0]

    def reset(self, now: float, v: float) -> float:
        self._t = [now, now, now]
        self._v = [v, v, v]
        return v

    def update(self, now: float, v: float) -> float:
        t, s = self._t, self._v
        if s[0] == 0.0 or v <= s[0] or now - t[2] > self.window:
            return self.reset(now, v)
        if v <= s[1]:
            t[1] = t[2] = now
            s[1] = s[2] = v
        elif v <= s[2]:
            t[2] = now
            s[2] = v
        dt = now - t[0]
        win = self.window
        if dt > win:
            t[0], t[1] = t[1], t[2]
            s[0], s[1] = s[1], s[2]
            t[2], s[2] = now, v
            if now - t[0] > win:
                t[0], t[1] = t[1], t[2]
                s[0], s[1] = s[1], s[2]
                t[2], s[2] = now, v
        elif t[1] == t[0] and dt > win / 4:
            t[1] = t[2] = now
            s[1] = s[2] = v
        elif t[2] == t[1] and dt > win / 2:
            t[2] = now
            s[2] = v
        return s[0]


@settings(max_examples=300, deadline=None)
@given(window=st.sampled_from([1.0, 10.0, 300.0]),
       samples=st.lists(st.tuples(st.sampled_from([0.0, 0.01, 0.3, 1.0, 2.6, 5.1, 11.0, 400.0]),
                                  st.sampled_from([0.001, 0.002, 0.002, 0.003, 0.005, 0.01])),
                        min_size=1, max_size=60))
def test_slotted_windowed_min_equals_the_list_version(
        window: float, samples: list[tuple[float, float]]) -> None:
    new, ref = WindowedMin(window), ListWindowedMin(window)
    now = 0.0
    for dt, v in samples:
        now += dt
        assert new.update(now, v) == ref.update(now, v)
        assert (new._t0, new._t1, new._t2) == tuple(ref._t)
        assert (new._v0, new._v1, new._v2) == tuple(ref._v)
        assert new.value == ref._v[0]


@settings(max_examples=200, deadline=None)
@given(ops=st.lists(st.tuples(st.sampled_from(["start", "stop"]),
                              st.sampled_from([BUSY, RWND_LIMITED, SNDBUF_LIMITED]),
                              st.booleans(), st.sampled_from([0.0, 0.001, 0.5, 3.0])),
                    max_size=30))
def test_chrono_with_a_shared_zero_equals_one_with_a_list(
        ops: list[tuple[str, int, bool, float]]) -> None:
    lazy, ref = Chrono(), Chrono()
    ref.stat = [0.0, 0.0, 0.0]
    assert lazy.stat is _ZERO
    now = 0.0
    for op, kind, empty, dt in ops:
        now += dt
        for c in (lazy, ref):
            if op == "start":
                c.start(kind, now)
            else:
                c.stop(kind, now, empty)
        assert lazy.totals(now + 1.0) == ref.totals(now + 1.0)
        assert list(lazy.stat) == ref.stat
    assert _ZERO == (0.0, 0.0, 0.0)  # never written through
