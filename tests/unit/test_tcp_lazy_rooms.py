"""Per-connection structures an idle connection does not keep (issue 14):

* the pending-event queue is the shared empty ``connection.NO_EVENTS``
  while no event is pending (the first event gives the connection a list of
  its own, taking the last one hands the shared list back);
* Cubic's HyStart++ round state is created at the first ACK of the initial
  slow start and dropped when HyStart++ is done.

Each must behave exactly as the eager structure did: the shared empties
must never be written (the seeded differential scenario set runs over every
append site), and the lazy HyStart++ equals the eager one (the code before
the change, kept here as the reference) under any sequence of controller
calls."""

from __future__ import annotations

import math
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from ustack.tcp import events as ev
from ustack.tcp.congestion import CaState, CongestionController, RateSample
from ustack.tcp.congestion import cubic as cubic_mod
from ustack.tcp.congestion.cubic import Cubic
from ustack.tcp.connection import NO_EVENTS
from ustack.tcp.testing import MemoryPair

sys.path.insert(0, str(Path(__file__).parent))
import accel_scenarios  # noqa: E402

MSS = 1000


# ------------------------------------------------------------- shared empties
def test_scenarios_never_write_the_shared_empties() -> None:
    ran = 0
    for sc in accel_scenarios.scenarios():
        for _line in accel_scenarios.run(sc):
            assert NO_EVENTS == [], sc.name
        ran += 1
    assert ran >= 60 and NO_EVENTS == []


def _settle(pair: MemoryPair, until: float) -> None:
    while pair.now < until and pair.step():
        pass


def test_connections_at_rest_hold_the_shared_empties() -> None:
    pair = MemoryPair()
    pair.handshake()
    _settle(pair, 1.0)
    for c in (pair.a, pair.b):
        while c.next_event() is not None:
            pass
        assert c._events is NO_EVENTS
        assert not c.has_events() and c.next_event() is None
    pair.a.send(b"x" * 5000, pair.now)
    pair.run(lambda: pair.b.readable() == 5000, max_time=5.0)
    assert pair.b.recv(5000, pair.now) == b"x" * 5000
    _settle(pair, pair.now + 1.0)
    for c in (pair.a, pair.b):
        while c.next_event() is not None:
            pass
        assert c._events is NO_EVENTS
    assert NO_EVENTS == []


def test_events_come_out_in_order_across_the_shared_list() -> None:
    pair = MemoryPair()
    c = pair.a
    assert c._events is NO_EVENTS
    c._queue_event(ev.CONNECTED)
    c._queue_event(ev.DATA_AVAILABLE)
    assert NO_EVENTS == []
    assert c.next_event() is ev.CONNECTED
    c._queue_event(ev.EOF_RECEIVED)
    assert [c.next_event(), c.next_event(), c.next_event()] == [
        ev.DATA_AVAILABLE, ev.EOF_RECEIVED, None]
    assert c._events is NO_EVENTS


# --------------------------------------------------------------- HyStart++
_INF = math.inf


class EagerCubic(Cubic):
    """Cubic with the HyStart++ fields in the controller itself, set at
    construction (the code before the lazy round state): the reference."""

    name = "test-eager-cubic"

    def __init__(self, mss: int, initial_cwnd: int) -> None:
        super().__init__(mss, initial_cwnd)
        self.e_hs_done = not self.hystart
        self.e_css = False
        self.e_css_acc = 0
        self.e_css_rounds = 0
        self.e_css_baseline = _INF
        self.e_round_end = 0
        self.e_last_min = _INF
        self.e_cur_min = _INF
        self.e_samples = 0

    @property
    def in_css(self) -> bool:
        return self.e_css

    def on_ack(self, rs: RateSample, now: float) -> None:
        if rs.rtt > 0:
            self._srtt = rs.rtt if self._srtt < 0 else self._srtt + (rs.rtt - self._srtt) / 8
        if not self.e_hs_done and self.cwnd < self.ssthresh:
            self._e_hystart(rs)
        if not rs.is_cwnd_limited:
            return
        acked = rs.acked_sacked
        if self.cwnd < self.ssthresh:
            if self.e_css:
                if not self.paced and acked > cubic_mod.L_UNPACED * self.mss:
                    acked = cubic_mod.L_UNPACED * self.mss
                self.e_css_acc += acked
                grow = self.e_css_acc // cubic_mod.CSS_GROWTH_DIVISOR
                self.e_css_acc -= grow * cubic_mod.CSS_GROWTH_DIVISOR
                self.cwnd += grow
                return
            limit = self.hystart_ss_limit
            if (limit is not None and not self.e_hs_done and not self.paced
                    and acked > limit * self.mss):
                acked = limit * self.mss
            acked = self.slow_start(acked)
            if acked <= 0:
                return
        if self.hz:
            self._avoid_linux(acked, rs, now)
        else:
            self._avoid(acked, rs, now)

    def ssthresh_on_loss(self, now: float, in_flight: int) -> int:
        out = super().ssthresh_on_loss(now, in_flight)
        self.e_css = False
        self.e_hs_done = True
        return out

    def _e_hystart(self, rs: RateSample) -> None:
        if rs.prior_delivered >= self.e_round_end:
            self.e_round_end = rs.delivered_total
            self.e_last_min = self.e_cur_min
            self.e_cur_min = _INF
            self.e_samples = 0
            if self.e_css:
                self.e_css_rounds += 1
                if self.e_css_rounds >= cubic_mod.CSS_ROUNDS:
                    self.ssthresh = self.cwnd
                    self.e_css = False
                    self.e_hs_done = True
                    return
        if rs.rtt <= 0:
            return
        if rs.rtt < self.e_cur_min:
            self.e_cur_min = rs.rtt
        self.e_samples += 1
        if self.e_samples < cubic_mod.N_RTT_SAMPLE or self.e_last_min == _INF:
            return
        if not self.e_css:
            thresh = max(cubic_mod.MIN_RTT_THRESH,
                         min(self.e_last_min / cubic_mod.MIN_RTT_DIVISOR,
                             cubic_mod.MAX_RTT_THRESH))
            if self.e_cur_min >= self.e_last_min + thresh:
                self.e_css = True
                self.e_css_baseline = self.e_cur_min
                self.e_css_rounds = 0
                self.e_css_acc = 0
        elif self.e_cur_min < self.e_css_baseline:
            self.e_css = False
            self.e_css_baseline = _INF


def _state(cc: CongestionController) -> tuple[object, ...]:
    assert isinstance(cc, Cubic)
    return (cc.cwnd, cc.ssthresh, cc.prior_cwnd, cc.in_css, cc.w_max, cc.k, cc.ca_state,
            cc.pacing_rate, cc.info())


_CC_STEP = st.one_of(
    # an ACK: segments acked, RTT in ms (0: none), starts a new round, cwnd-limited
    st.tuples(st.just("ack"), st.integers(1, 30), st.integers(0, 80), st.booleans(),
              st.booleans()),
    st.tuples(st.just("loss"), st.integers(0, 0), st.integers(0, 0), st.booleans(),
              st.booleans()),
    st.tuples(st.just("state"), st.sampled_from([int(s) for s in CaState]), st.integers(0, 0),
              st.booleans(), st.booleans()),
    st.tuples(st.just("undo"), st.integers(0, 0), st.integers(0, 0), st.booleans(),
              st.booleans()),
    st.tuples(st.just("tx_start"), st.integers(0, 2000), st.integers(0, 0), st.booleans(),
              st.booleans()),
    st.tuples(st.just("idle"), st.integers(0, 3000), st.integers(1, 400), st.booleans(),
              st.booleans()),
)


@settings(max_examples=400, deadline=None)
@given(steps=st.lists(_CC_STEP, min_size=1, max_size=120), paced=st.booleans(),
       ss_limit=st.sampled_from([None, 8]), hystart=st.booleans(), iw=st.integers(1, 12))
def test_lazy_hystart_equals_the_eager_one(steps: list[tuple[str, int, int, bool, bool]],
                                           paced: bool, ss_limit: int | None, hystart: bool,
                                           iw: int) -> None:
    attrs = {"hystart": hystart, "hystart_ss_limit": ss_limit}
    Lazy = type("LazyCubic", (Cubic,), dict(attrs, name="test-lazy-cubic"))
    Eager = type("EagerCubicK", (EagerCubic,), dict(attrs, name="test-eager-cubic-k"))
    lazy: Cubic = Lazy(MSS, iw)
    eager: Cubic = Eager(MSS, iw)
    for cc in (lazy, eager):
        cc.paced = paced
    delivered = 0
    round_start = 0
    now = 0.0
    assert lazy._hs is (None if hystart else cubic_mod._HS_DONE)
    for op, a, b, flag, limited in steps:
        now += 0.001 * (1 + a % 7)
        if op == "ack":
            if flag:
                round_start = delivered
            delivered += a * MSS
            rs = RateSample(acked_sacked=a * MSS, rtt=b / 1000 if b else -1.0,
                            prior_delivered=round_start, delivered_total=delivered,
                            is_cwnd_limited=limited)
            lazy.on_ack(rs, now)
            eager.on_ack(rs, now)
        elif op == "loss":
            assert lazy.ssthresh_on_loss(now, lazy.cwnd) == eager.ssthresh_on_loss(
                now, eager.cwnd)
            lazy.ssthresh = eager.ssthresh = max(lazy.cwnd // 2, 2 * MSS)
        elif op == "state":
            lazy.on_state(CaState(a), now)
            eager.on_state(CaState(a), now)
        elif op == "undo":
            assert lazy.undo_cwnd() == eager.undo_cwnd()
        elif op == "tx_start":
            lazy.on_tx_start(now, a / 1000)
            eager.on_tx_start(now, a / 1000)
        else:
            lazy.on_idle_restart(a / 1000, b / 1000, iw)
            eager.on_idle_restart(a / 1000, b / 1000, iw)
        assert _state(lazy) == _state(eager), (op, a, b, flag, limited)
        hs = lazy._hs
        assert isinstance(eager, EagerCubic)
        if eager.e_hs_done:
            assert hs is cubic_mod._HS_DONE  # done: the round state is dropped
        elif hs is not None:
            assert (hs.css, hs.css_rounds, hs.round_end, hs.samples) == (
                eager.e_css, eager.e_css_rounds, eager.e_round_end, eager.e_samples)
        else:  # not created yet: the eager one is still in its initial state
            assert (eager.e_round_end, eager.e_samples, eager.e_css) == (0, 0, False)
    done = cubic_mod._HS_DONE
    assert not done.css and done.samples == 0 and done.round_end == 0


def test_hystart_round_state_is_created_at_the_first_ack_and_dropped_when_done() -> None:
    cc = Cubic(MSS, 10)
    assert cc._hs is None and not cc.in_css  # an idle connection keeps none
    delivered = 0
    rounds = [0.020, 0.040, 0.040, 0.040, 0.040, 0.040, 0.040]  # a rise: CSS, then 5 rounds
    for rtt in rounds:
        start = delivered
        for _ in range(8):
            delivered += MSS
            cc.on_ack(RateSample(acked_sacked=MSS, rtt=rtt, prior_delivered=start,
                                 delivered_total=delivered), 0.0)
        if rtt == 0.020:
            assert cc._hs is not None and cc._hs is not cubic_mod._HS_DONE
    assert cc._hs is cubic_mod._HS_DONE and cc.ssthresh == cc.cwnd < 0x7FFFFFFF
    lossy = Cubic(MSS, 10)
    lossy.ssthresh_on_loss(0.0, lossy.cwnd)  # a loss before any ACK: HyStart++ done
    assert lossy._hs is cubic_mod._HS_DONE
