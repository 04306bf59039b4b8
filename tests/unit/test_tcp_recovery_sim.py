"""ustack.tcp.recovery driving a whole transfer over a simulated lossy path:
a sender that obeys cwnd and the room's retransmission choices, a path with
fixed delay and seeded random loss (and optional reordering), and a receiver
that answers every segment with a cumulative ACK, SACK blocks (RFC 2018: the
newest first) and D-SACKs (RFC 2883).  Checks that every byte arrives, that
isolated losses are repaired without an RTO, and the scoreboard invariants."""

from __future__ import annotations

import heapq
import random

import pytest

from ustack.tcp.congestion import create
from ustack.tcp.congestion.base import CaState
from ustack.tcp.recovery import Recovery, RecoveryConfig
from ustack.tcp.rtt import RttEstimator
from ustack.tcp.testing import SequenceReceiver

MSS = 1000


def transfer(*, segments: int, loss: float, seed: int, sack: bool = True,
             reorder: float = 0.0, cc: str = "reno", delay: float = 0.01,
             config: RecoveryConfig | None = None,
             drop_first: frozenset[int] = frozenset()) -> tuple[Recovery, float, dict[str, int]]:
    rng = random.Random(seed)
    rtt = RttEstimator(1.0, 0.2, 120.0, True)
    ctl = create(cc, MSS, 10)
    rec = Recovery(0, MSS, rtt, ctl, sack=sack, config=config)
    rcv = SequenceReceiver(sack)
    total = segments * MSS
    now = 0.0
    nxt = 0
    events: list[tuple[float, int, str, int, int, list[tuple[int, int]]]] = []
    counter = 0
    stats = {"rto": 0, "probe": 0, "reorder": 0, "sent": 0, "acks": 0}
    dropped_once = {k * MSS for k in drop_first}

    def emit(seq: int, n: int) -> None:
        nonlocal counter
        rec.on_sent(seq, n, now)
        stats["sent"] += 1
        if seq in dropped_once:
            dropped_once.discard(seq)
            return
        if rng.random() < loss:
            return
        d = delay + (rng.random() * delay if rng.random() < reorder else 0.0)
        counter += 1
        heapq.heappush(events, (now + d, counter, "data", seq, seq + n, []))

    def pump() -> None:
        nonlocal nxt
        while rec.in_flight() < ctl.cwnd:
            r = rec.next_to_retransmit()
            if r is not None:
                emit(r[0], min(r[1], MSS))
                continue
            if nxt >= total:
                break
            n = min(MSS, total - nxt)
            emit(nxt, n)
            nxt += n

    pump()
    steps = 0
    while rec.una < total or events:
        steps += 1
        assert steps < 2_000_000
        t = rec.timer()
        if events and (t is None or events[0][0] <= t[1]):
            at, _, kind, a, b, blocks = heapq.heappop(events)
            now = max(now, at)
            if kind == "data":
                ack, sacks = rcv.receive(a, b)
                counter += 1
                heapq.heappush(events, (now + delay, counter, "ack", ack, 0, sacks))
            else:
                if a > rec.sb.nxt:
                    continue
                stats["acks"] += 1
                out = rec.on_ack(a, blocks, now, can_send_new=nxt < total)
                if out.frto_new_data and nxt < total:
                    n = min(MSS, total - nxt)
                    emit(nxt, n)
                    nxt += n
                pump()
        elif t is not None:
            now = max(now, t[1])
            stats[t[0]] += 1
            action = rec.on_timer(now, can_send_new=nxt < total)
            if action.retransmit is not None:
                emit(action.retransmit[0], action.retransmit[1])
            elif action.probe_new and nxt < total:
                n = min(MSS, total - nxt)
                emit(nxt, n)
                nxt += n
            pump()
        else:
            break
        if steps % 97 == 0:
            rec.sb.check()
    assert rcv.nxt == total and rec.una == total
    rec.sb.check()
    return rec, now, stats


@pytest.mark.parametrize("cc", ["reno", "cubic"])
def test_clean_path_needs_no_retransmission(cc: str) -> None:
    rec, t, stats = transfer(segments=2000, loss=0.0, seed=1, cc=cc)
    assert rec.total_retrans == 0 and stats["rto"] == 0
    assert rec.state == CaState.OPEN


@pytest.mark.parametrize("seed", range(4))
def test_random_loss_is_repaired_by_sack_recovery(seed: int) -> None:
    rec, t, stats = transfer(segments=3000, loss=0.02, seed=seed)
    lost = stats["sent"] - 3000
    assert lost > 0
    # RACK-TLP repairs almost everything without waiting for the RTO
    assert stats["rto"] <= 2, stats


@pytest.mark.parametrize("seed", range(3))
def test_random_loss_without_sack_newreno(seed: int) -> None:
    rec, t, stats = transfer(segments=1500, loss=0.01, seed=seed, sack=False)
    assert rec.total_retrans > 0
    assert stats["rto"] <= 6, stats


def test_reordering_raises_dupthresh_and_avoids_spurious_retransmits() -> None:
    rec, t, stats = transfer(segments=3000, loss=0.0, seed=5, reorder=0.2, delay=0.005)
    assert rec.reord_seen > 0
    # spurious retransmissions are D-SACKed and undone
    assert rec.total_retrans == 0 or rec.undos > 0 or rec.rack.reo_wnd_steps > 1 \
        or rec.reordering > 3


def test_heavy_loss_with_rfc6675_islost() -> None:
    rec, t, stats = transfer(segments=2000, loss=0.05, seed=9,
                             config=RecoveryConfig(tcp_recovery=0))
    assert rec.total_retrans > 0


def test_tail_loss_is_repaired_by_a_probe() -> None:
    """The last three segments of a transfer are lost: the tail loss probe
    (RFC 8985 7) brings the SACK that lets RACK repair them, no RTO."""
    rec, t, stats = transfer(segments=30, loss=0.0, seed=3, drop_first=frozenset({27, 28, 29}))
    assert stats["probe"] == 1 and stats["rto"] == 0, stats
    assert rec.tlp_probes == 1 and rec.total_retrans == 3
    # the probe (a retransmission of the last segment) repaired a loss: CWR
    assert rec.tlp_recoveries == 1 or rec.state == CaState.OPEN


def test_single_loss_without_sack_is_repaired_by_fast_retransmit() -> None:
    rec, t, stats = transfer(segments=100, loss=0.0, seed=3, sack=False,
                             drop_first=frozenset({40}))
    assert stats["rto"] == 0 and rec.total_retrans == 1


def test_two_holes_with_sack_are_repaired_in_one_round() -> None:
    rec, t, stats = transfer(segments=100, loss=0.0, seed=3, drop_first=frozenset({40, 42}))
    assert stats["rto"] == 0 and rec.total_retrans == 2
