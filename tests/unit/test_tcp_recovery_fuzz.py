"""Property test of ustack.tcp.recovery: random send / ACK / SACK / D-SACK /
timer sequences against a simple model of what was sent, checking the
scoreboard's invariants after every step."""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ustack.tcp.recovery import Recovery, RecoveryConfig
from ustack.tcp.rtt import RttEstimator
from ustack.wire.seq import MASK

MSS = 100

op = st.one_of(
    st.tuples(st.just("send"), st.integers(1, 4), st.booleans()),
    st.tuples(st.just("ack"), st.integers(0, 100), st.lists(
        st.tuples(st.integers(0, 100), st.integers(1, 40)), max_size=4), st.booleans(),
        st.booleans()),
    st.tuples(st.just("rtx"), st.integers(1, 3), st.booleans()),
    st.tuples(st.just("timer"), st.booleans(), st.booleans()),
    st.tuples(st.just("wait"), st.integers(1, 400), st.booleans()),
)


EXAMPLES = int(os.environ.get("HR_EXAMPLES", "300"))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(una=st.integers(0, MASK), sack=st.booleans(), rack=st.booleans(),
       ts=st.booleans(), ops=st.lists(op, min_size=1, max_size=60))
def test_random_sequences_keep_the_invariants(una: int, sack: bool, rack: bool, ts: bool,
                                              ops: list[tuple[Any, ...]]) -> None:
    rtt = RttEstimator(1.0, 0.2, 120.0, True)
    cfg = RecoveryConfig(tcp_recovery=1 if rack else 0)
    rec = Recovery(una, MSS, rtt, None, sack=sack, config=cfg,
                   ts_clock=(lambda now: int(now * 1000) & MASK) if ts else None)
    now = 1.0
    base = una  # unwrapped offsets from the initial una
    sent_hi = 0  # bytes sent (offset of SND.NXT from base)
    acked = 0
    prev_una = rec.sb.una
    for o in ops:
        kind = o[0]
        #: bytes lost and not retransmitted since, before this step
        lost_pending = {b for r in rec.sb if r.lost and not r.rtx
                        for b in range(r.start - base, r.end - base)}
        if kind == "send":
            n = int(o[1]) * MSS
            if o[2]:
                n -= MSS // 2  # a short segment now and then
            rec.on_sent((base + sent_hi) & MASK, n, now,
                        tsval=int(now * 1000) & MASK if ts else None)
            sent_hi += n
        elif kind == "ack":
            span = sent_hi - acked
            adv = min(int(o[1]) * span // 100, span)
            if o[3]:
                adv = 0  # duplicate
            a = acked + adv
            blocks = []
            for start_pct, length in o[2]:
                s = a + (sent_hi - a) * int(start_pct) // 100
                e = min(s + int(length) * 10, sent_hi)
                if e > s:
                    blocks.append(((base + s) & MASK, (base + e) & MASK))
            out = rec.on_ack((base + a) & MASK, blocks, now,
                             ts_ecr=int((now - 0.05) * 1000) & MASK if ts else None,
                             can_send_new=bool(o[4]))
            for s, e in out.lost_ranges:
                lo = rec.sb.unwrap(s) - base
                hi = lo + ((e - s) & MASK)
                # no byte is reported lost twice without being retransmitted
                # (an undo forgets every loss mark first)
                assert out.undo is not None or not (set(range(lo, hi)) & lost_pending)
            acked = a
            if out.frto_new_data:  # F-RTO 2b: the sender sends new data now
                rec.on_sent((base + sent_hi) & MASK, MSS, now)
                sent_hi += MSS
            rs = out.rate
            assert rs is not None
            assert rs.acked_sacked >= 0 and rs.losses >= 0
            assert rs.delivered >= 0
            assert rs.interval < 0 or rs.interval > 0
            assert rs.delivery_rate >= 0.0
            assert rs.in_flight >= 0 and rs.prior_in_flight >= 0
            assert rs.prior_delivered <= rs.delivered_total
            assert rs.delivered <= rs.delivered_total
            assert out.frto_new_data or rs.in_flight == rec.in_flight()
            if rs.interval > 0:
                assert rs.min_rtt < 0 or rs.interval >= rs.min_rtt
                assert rs.delivery_rate == rs.delivered / rs.interval
            assert out.acked == adv or out.old
        elif kind == "rtx":
            for _ in range(int(o[1])):
                nxt = rec.next_to_retransmit()
                if nxt is None:
                    break
                seq, n = nxt
                lo = rec.sb.unwrap(seq) - base
                assert all(b in lost_pending for b in range(lo, lo + n))
                if o[2] and n > MSS:
                    n = MSS  # the sender sends one MSS of a larger hole
                rec.on_sent(seq, n, now, tsval=int(now * 1000) & MASK if ts else None)
                lost_pending -= set(range(lo, lo + n))
        elif kind == "timer":
            t = rec.timer()
            if t is not None:
                now = max(now, t[1])
                action = rec.on_timer(now, can_send_new=bool(o[1]))
                if action.retransmit is not None:
                    seq, n = action.retransmit
                    rec.on_sent(seq, n, now)
                elif action.probe_new:
                    rec.on_sent((base + sent_hi) & MASK, MSS, now)
                    sent_hi += MSS
        else:
            now += int(o[1]) / 1000.0
        # invariants
        rec.sb.check()
        assert rec.in_flight() >= 0
        assert rec.sb.una >= prev_una  # SND.UNA never moves back
        prev_una = rec.sb.una
        assert rec.sb.una - base == acked
        assert rec.sb.nxt - base == sent_hi
        for s, e in rec.sb.sacked_ranges():  # SACKed is within what was sent
            assert base + acked <= s < e <= base + sent_hi
        assert rec.sb.sacked_bytes <= sent_hi - acked
        assert rec.sb.lost_bytes + rec.sb.sacked_bytes <= sent_hi - acked
        t = rec.timer()
        if rec.sb.packets_out == 0:
            assert t is None
        else:
            assert t is not None

