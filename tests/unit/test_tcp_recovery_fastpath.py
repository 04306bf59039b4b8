"""Differential test of the fast paths of ``Recovery.on_ack`` / ``on_sent``:
two instances, one with ``fast_path`` on and one forced onto the general
path, are driven through the same random send / ACK / SACK / D-SACK /
retransmission / timer / ECE sequences; after every step their outcomes,
full state (scoreboard records and counters, RACK, rate sampler, RTT
estimator, congestion controller, timers) must be identical.  A deliberate
mutation of the fast path must be caught."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, target
from hypothesis import strategies as st

from ustack.tcp import congestion
from ustack.tcp.congestion.bbr import Bbr
from ustack.tcp.rack import Rack
from ustack.tcp.recovery import Recovery, RecoveryConfig
from ustack.tcp.rtt import RttEstimator
from ustack.tcp.scoreboard import Segment
from ustack.wire.seq import MASK, seq_sub

#: drive() counts fast-path calls and the mutants replace methods of Recovery,
#: Rack and Scoreboard: only interpreted classes allow that
pytestmark = pytest.mark.pure_python("patches and spies on Recovery methods")

MSS = 100
EXAMPLES = int(os.environ.get("HR_EXAMPLES", "300"))
_SKIP = {"sb", "rate", "rack", "rtt", "cc", "cfg", "ts_clock", "fast_path"}


def _slots(cls: type) -> tuple[str, ...]:
    """The slots of ``cls``; a compiled (mypyc) class lists its attributes
    in ``__mypyc_attrs__`` instead."""
    names: Any = getattr(cls, "__slots__", None) or getattr(cls, "__mypyc_attrs__", ())
    return (names,) if isinstance(names, str) else tuple(names)


def _fields(obj: object) -> dict[str, Any]:
    """Every attribute of ``obj`` (``__dict__`` and slots over the MRO)."""
    out: dict[str, Any] = dict(getattr(obj, "__dict__", {}))
    for cls in type(obj).__mro__:
        for name in _slots(cls):
            if name != "__dict__" and hasattr(obj, name):
                out[name] = getattr(obj, name)
    return out


def _plain(v: Any, depth: int = 0) -> Any:
    """``v`` with ustack helper objects (windowed filters, ...) as field dicts."""
    if isinstance(v, (list, tuple)):
        return type(v)(_plain(x, depth) for x in v)
    if isinstance(v, dict):
        return {k: _plain(x, depth) for k, x in v.items()}
    if type(v).__module__.startswith("ustack.") and depth < 4 and not callable(v) \
            and (hasattr(v, "__dict__") or bool(_slots(type(v)))) \
            and not hasattr(type(v), "__dataclass_fields__") and not isinstance(v, int):
        return {k: _plain(x, depth + 1) for k, x in _fields(v).items() if not callable(x)}
    return v


def snapshot(rec: Recovery) -> dict[str, Any]:
    sb = rec.sb
    seg_fields = [n for n in _slots(Segment)
                  if n not in ("ts_prev", "ts_next")]
    return {
        "rec": {k: v for k, v in _fields(rec).items() if k not in _SKIP},
        "sb": {k: v for k, v in _fields(sb).items()
               if k not in ("_q", "_h", "_ts_head", "_ts_tail")},
        "records": [tuple(getattr(r, n) for n in seg_fields) for r in sb],
        "ts_order": [(r.start, r.end) for r in sb.ts_order()],
        "rack": _plain(_fields(rec.rack)),
        "rate": _plain(_fields(rec.rate)),
        "rtt": _plain(_fields(rec.rtt)),
        "cc": {k: _plain(v) for k, v in _fields(rec.cc).items() if not callable(v)},
        "timer": rec.timer(),
        "in_flight": rec.in_flight(),
        "next": rec.next_to_retransmit(),
    }


def make(una: int, sack: bool, rack: bool, ts: bool, cc: str, fast: bool) -> Recovery:
    rtt = RttEstimator(1.0, 0.2, 120.0, True)
    ctrl = None if cc == "none" else congestion.create(cc, MSS, 10)
    rec = Recovery(una, MSS, rtt, ctrl, sack=sack,
                   config=RecoveryConfig(tcp_recovery=1 if rack else 0),
                   ts_clock=(lambda now: int(now * 1000) & MASK) if ts else None)
    rec.fast_path = fast
    return rec


#: True one time in eight (duplicate ACKs, ECE)
_rarely = st.integers(0, 7).map(lambda x: x == 0)

_send = st.tuples(st.just("send"), st.integers(1, 4), st.booleans())
op = st.one_of(
    _send, _send,
    # a few rounds of a clean bulk flow: send, ACK part of the flight
    st.tuples(st.just("rounds"), st.integers(1, 8), st.integers(1, 3), st.integers(10, 90)),
    # ACKs without SACK blocks are the fast path's case: make them common
    st.tuples(st.just("ack"), st.integers(0, 100), st.just([]), _rarely,
              st.booleans(), _rarely),
    st.tuples(st.just("ack"), st.integers(0, 100), st.just([]), _rarely,
              st.booleans(), _rarely),
    st.tuples(st.just("ack"), st.integers(0, 100), st.lists(
        st.tuples(st.integers(0, 100), st.integers(1, 40)), max_size=4), st.booleans(),
        st.booleans(), _rarely),
    st.tuples(st.just("rtx"), st.integers(1, 3), st.booleans()),
    st.tuples(st.just("timer"), st.booleans(), st.booleans()),
    st.tuples(st.just("wait"), st.integers(1, 400), st.booleans()),
    st.tuples(st.just("applimited"), st.integers(0, 300), st.booleans()),
)


def drive(una: int, sack: bool, rack: bool, ts: bool, cc: str,
          ops: list[tuple[Any, ...]]) -> int:
    """Run ``ops`` on a fast and a general instance, asserting equality after
    every step; returns how many ACKs went through the fast path."""
    fast = make(una, sack, rack, ts, cc, True)
    slow = make(una, sack, rack, ts, cc, False)
    pair = (fast, slow)
    calls = 0
    real = Recovery._on_ack_fast

    def counting(self: Recovery, *a: Any) -> Any:
        nonlocal calls
        calls += 1
        return real(self, *a)

    now = 1.0
    sent_hi = 0
    acked = 0
    with _patched("_on_ack_fast", counting):
        for step, o in enumerate(ops):
            kind = o[0]
            res: list[Any] = []
            if kind == "send":
                n = int(o[1]) * MSS - (MSS // 2 if o[2] else 0)
                for r in _each(pair):
                    r.on_sent((una + sent_hi) & MASK, n, now,
                              tsval=int(now * 1000) & MASK if ts else None)
                sent_hi += n
            elif kind == "ack":
                span = sent_hi - acked
                adv = 0 if o[3] else min(int(o[1]) * span // 100, span)
                a = acked + adv
                blocks = []
                for start_pct, length in o[2]:
                    s = a + (sent_hi - a) * int(start_pct) // 100
                    e = min(s + int(length) * 10, sent_hi)
                    if e > s:
                        blocks.append(((una + s) & MASK, (una + e) & MASK))
                for r in _each(pair):
                    res.append(r.on_ack((una + a) & MASK, blocks, now,
                                        ts_ecr=int((now - 0.05) * 1000) & MASK if ts else None,
                                        can_send_new=bool(o[4]), ece=bool(o[5]) and adv > 0,
                                        is_cwnd_limited=bool(o[4])))
                acked = a
            elif kind == "rtx":
                for r in _each(pair):
                    for _ in range(int(o[1])):
                        nx = r.next_to_retransmit()
                        if nx is None:
                            break
                        r.on_sent(nx[0], min(nx[1], MSS), now,
                                  tsval=int(now * 1000) & MASK if ts else None)
            elif kind == "timer":
                t = fast.timer()
                if t is not None and o[1]:
                    now = max(now, t[1])
                    for r in _each(pair):
                        res.append(r.on_timer(now, can_send_new=bool(o[2])))
                    action = res[0]
                    if action.probe_new:
                        n = MSS
                        for r in _each(pair):
                            r.on_sent((una + sent_hi) & MASK, n, now,
                                      tsval=int(now * 1000) & MASK if ts else None)
                        sent_hi += n
                    elif action.retransmit is not None:
                        s, n = action.retransmit
                        for r in _each(pair):
                            r.on_sent(s, n, now,
                                      tsval=int(now * 1000) & MASK if ts else None)
            elif kind == "rounds":
                for _ in range(int(o[1])):
                    n = int(o[2]) * MSS
                    for r in _each(pair):
                        r.on_sent((una + sent_hi) & MASK, n, now,
                                  tsval=int(now * 1000) & MASK if ts else None)
                    sent_hi += n
                    now += 0.002
                    a = acked + (sent_hi - acked) * int(o[3]) // 100
                    res = [r.on_ack((una + a) & MASK, [], now,
                                    ts_ecr=int((now - 0.05) * 1000) & MASK if ts else None)
                           for r in _each(pair)]
                    acked = a
                    assert res[0] == res[1], (step, o, res)
            elif kind == "wait":
                now += int(o[1]) / 1000.0
            elif kind == "applimited":
                for r in _each(pair):
                    res.append(r.check_app_limited(int(o[1]), 10 * MSS if o[2] else None))
            if res:
                assert res[0] == res[1], (step, o, res)
            sf, ss = snapshot(fast), snapshot(slow)
            assert sf == ss, (step, o, {k: (sf[k], ss[k]) for k in sf if sf[k] != ss[k]})
            fast.sb.check()
            now += 0.001
    return calls


def _each(pair: tuple[Recovery, Recovery]) -> Iterator[Recovery]:
    """Both instances, each seeing the same draws of BBR's shared random
    generator (its PROBE_BW starting phase)."""
    state = Bbr.rng.getstate()
    for r in pair:
        Bbr.rng.setstate(state)
        yield r


@contextmanager
def _patched(name: str, fn: Any) -> Iterator[None]:
    old = getattr(Recovery, name)
    setattr(Recovery, name, fn)
    try:
        yield
    finally:
        setattr(Recovery, name, old)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(una=st.integers(0, MASK), sack=st.booleans(), rack=st.booleans(), ts=st.booleans(),
       cc=st.sampled_from(["none", "reno", "cubic", "bbr"]),
       ops=st.lists(op, min_size=1, max_size=60))
def test_fast_and_general_paths_agree(una: int, sack: bool, rack: bool, ts: bool, cc: str,
                                      ops: list[tuple[Any, ...]]) -> None:
    # steer the search towards sequences that use the fast path a lot
    target(float(drive(una, sack, rack, ts, cc, ops)))


#: a clean bulk flow: sends and in-order ACKs, the fast path's own case
BULK: list[tuple[Any, ...]] = [("send", 4, False), ("wait", 30, False)]
for _i in range(30):
    BULK += [("ack", 50, [], False, True, False), ("send", 2, _i % 5 == 0),
             ("wait", 1, False)]


@pytest.mark.parametrize("cc", ["none", "reno", "cubic", "bbr"])
@pytest.mark.parametrize("ts", [False, True])
def test_bulk_flow_takes_the_fast_path(cc: str, ts: bool) -> None:
    assert drive(0xFFFFFF00, True, True, ts, cc, BULK) >= 25


def test_without_sack_the_fast_path_is_not_taken() -> None:
    assert drive(1000, False, True, True, "cubic", BULK) == 0


def _mutant_prior_in_flight(self: Recovery, a: int, now: float, ts_ecr: int | None,
                            is_cwnd_limited: bool) -> Any:
    """The fast path with one mistake: the rate sample's prior_in_flight is off."""
    out = _REAL_FAST(self, a, now, ts_ecr, is_cwnd_limited)
    assert out.rate is not None
    out.rate.prior_in_flight += 1
    return out


def _mutant_no_rearm(self: Recovery, a: int, now: float, ts_ecr: int | None,
                     is_cwnd_limited: bool) -> Any:
    """The fast path with one mistake: the xmit timer is not re-armed."""
    kind, at = self._timer_kind, self._timer_at
    out = _REAL_FAST(self, a, now, ts_ecr, is_cwnd_limited)
    if self.sb.packets_out:
        self._timer_kind, self._timer_at = kind, at
    return out


def _mutant_sent_new(self: Recovery, sb: Any, length: int, now: float,
                     tsval: int | None) -> None:
    """The on_sent fast path with one mistake: the rate clocks never restart
    after an idle period (nothing in flight)."""
    r = sb.append(sb.nxt + length, now, tsval)
    self.rate.on_sent(r, now, False)
    if not self._schedule_loss_probe(now, advancing=False) and (
            self._timer_kind == "probe" or self._timer_kind is None):
        self._rearm_rto(now)


_REAL_FAST = Recovery._on_ack_fast


def test_the_differential_check_catches_a_mutated_sent_fast_path() -> None:
    # sanity: the unmutated on_sent fast path passes the same flow
    drive(0xFFFFFF00, True, True, True, "cubic", BULK)
    with _patched("_sent_new", _mutant_sent_new), pytest.raises(AssertionError):
        drive(0xFFFFFF00, True, True, True, "cubic", BULK)


@pytest.mark.parametrize("mutant", [_mutant_prior_in_flight, _mutant_no_rearm])
def test_the_differential_check_catches_a_mutated_fast_path(mutant: Any) -> None:
    with _patched("_on_ack_fast", mutant), pytest.raises(AssertionError):
        drive(0xFFFFFF00, True, True, True, "cubic", BULK)


def test_the_differential_check_catches_a_fast_path_that_skips_rack() -> None:
    """Mutant: RACK is not advanced by ACKs taking the fast path."""
    real_adv = Rack.advance
    in_fast = [False]

    def adv(self: Rack, *args: Any) -> None:
        if not in_fast[0]:
            real_adv(self, *args)

    def fast(self: Recovery, *a: Any) -> Any:
        in_fast[0] = True
        try:
            return _REAL_FAST(self, *a)
        finally:
            in_fast[0] = False

    with _patched("_on_ack_fast", fast), _patched_rack(adv), pytest.raises(AssertionError):
        drive(0xFFFFFF00, True, True, True, "cubic", BULK)


@contextmanager
def _patched_rack(fn: Any) -> Iterator[None]:
    old = Rack.advance
    Rack.advance = fn  # type: ignore[method-assign]
    try:
        yield
    finally:
        Rack.advance = old  # type: ignore[method-assign]


def test_the_differential_check_catches_a_mutated_clean_pop() -> None:
    """Mutant: Scoreboard.pop_acked_clean forgets to unlink the acknowledged
    records from the time-ordered list RACK walks."""
    from ustack.tcp.scoreboard import Scoreboard

    real = Scoreboard.pop_acked_clean

    def pop(self: Scoreboard, ack: int) -> list[tuple[Segment, int]]:
        linked = [r for r in self.ts_order() if r.end <= ack]
        out = real(self, ack)
        for r in linked:
            self.ts_append(r)
        return out

    Scoreboard.pop_acked_clean = pop  # type: ignore[method-assign]
    try:
        with pytest.raises(AssertionError):
            drive(0xFFFFFF00, True, True, True, "cubic", BULK)
    finally:
        Scoreboard.pop_acked_clean = real  # type: ignore[method-assign]


#: a loss episode (SACK above a hole, RACK marks it, retransmission, the ACK
#: that ends recovery), then clean bulk again: Linux keeps undo_marker after
#: a recovery that was not undone, and the fast path must still be taken
LOSSY: list[tuple[Any, ...]] = [("send", 8, False), ("wait", 30, False),
                                ("ack", 10, [], False, True, False),
                                ("ack", 0, [(30, 40)], False, True, False),
                                ("ack", 0, [(20, 60)], False, True, False),
                                ("wait", 10, False), ("timer", True, False),
                                ("rtx", 3, False), ("wait", 10, False),
                                ("ack", 100, [], False, True, False)] + BULK


@pytest.mark.parametrize("cc", ["none", "reno", "cubic", "bbr"])
def test_after_a_recovery_the_fast_path_is_taken_again(cc: str) -> None:
    # (without timestamps: drive() echoes a TSval older than the
    # retransmissions, so with them the episode is undone by RFC 4015)
    seen: list[Any] = []
    real = Recovery._on_ack_fast

    def spy(self: Recovery, *a: Any) -> Any:
        seen.append(self.undo_marker)
        return real(self, *a)

    with _patched("_on_ack_fast", spy):
        drive(0xFFFFFF00, True, True, False, cc, LOSSY)
    # the episode left an undo marker and the clean ACKs after it still went fast
    assert sum(1 for m in seen if m is not None) >= 25, seen


#: a loss episode: a hole at the front, then SACK ACKs whose first block
#: grows the highest SACKed range (Recovery._sacktag_top's case), a second
#: hole with the older block repeated, growth above it, retransmission,
#: and ACKs that close the holes
EPISODE: list[tuple[Any, ...]] = [("send", 20, False), ("wait", 30, False)]
for _n in (1, 2, 3, 4, 6):
    EPISODE += [("ack", 0, [(10, _n * 10)], True, True, False), ("wait", 1, False)]
EPISODE += [("ack", 0, [(80, 5), (10, 60)], True, True, False),
            ("ack", 0, [(80, 9), (10, 60)], True, True, False),
            ("ack", 0, [(80, 12), (10, 60), (10, 30)], True, True, False),
            ("rtx", 2, False), ("wait", 40, False),
            ("ack", 5, [(80, 15), (10, 60)], False, True, False),
            ("timer", True, True), ("rtx", 3, False),
            ("ack", 100, [], False, True, False)]


def _count_top(counter: list[int]) -> Any:
    real = Recovery._sacktag_top

    def counting(self: Recovery, *a: Any) -> bool:
        done: bool = real(self, *a)
        counter[0] += int(done)
        return done

    return counting


@pytest.mark.parametrize("cc", ["none", "reno", "cubic", "bbr"])
@pytest.mark.parametrize("rack", [False, True])
def test_a_loss_episode_takes_the_sack_top_path(cc: str, rack: bool) -> None:
    taken = [0]
    with _patched("_sacktag_top", _count_top(taken)):
        drive(0xFFFFFF00, True, rack, True, cc, EPISODE)
    # the fast instance only (the general one never calls it): growing top
    # blocks, one new range above a hole, growth above it
    assert taken[0] >= 7, taken


def _mutant_top_appends(self: Recovery, blocks: Any, a: int, prior_fack: int, now: float,
                        acc: Any, st: Any, min_rtt: float) -> bool:
    """The short path with one mistake: the new range is always appended as
    a range of its own (never merged into the highest one)."""
    sb = self.sb
    s0 = sb.unwrap(blocks[0][0])
    e0 = s0 + seq_sub(blocks[0][1], blocks[0][0])
    if len(blocks) > 1 or s0 < a or e0 > sb.nxt or (sb._sacked and e0 <= sb._sacked[-1][1]):
        return False
    start = sb._sacked[-1][1] if sb._sacked and s0 <= sb._sacked[-1][1] else s0
    sb._sacked.append((start, e0))
    i, j = sb.isolate(start, e0)
    for k in range(i, j):
        r = sb.record(k)
        if not r.sacked:
            self._sacktag_one(r, prior_fack, now, acc, st, min_rtt)
    return True


def _mutant_top_ignores_others(self: Recovery, blocks: Any, a: int, prior_fack: int,
                               now: float, acc: Any, st: Any, min_rtt: float) -> bool:
    """The short path with one mistake: the other blocks are not checked
    (new information in them is lost)."""
    return bool(_REAL_TOP(self, blocks[:1], a, prior_fack, now, acc, st, min_rtt))


_REAL_TOP = Recovery._sacktag_top


@pytest.mark.parametrize("mutant", [_mutant_top_appends, _mutant_top_ignores_others])
def test_the_differential_check_catches_a_mutated_sack_top_path(mutant: Any) -> None:
    ops = [*EPISODE[:12], ("ack", 0, [(80, 14), (30, 5)], True, True, False), *EPISODE[12:]]
    drive(0xFFFFFF00, True, True, True, "cubic", ops)  # sanity: the real one passes
    with _patched("_sacktag_top", mutant), pytest.raises(AssertionError):
        drive(0xFFFFFF00, True, True, True, "cubic", ops)
