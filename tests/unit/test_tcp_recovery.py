# mypy: disable-error-code="comparison-overlap"
# (mypy narrows rec.state after one assert and cannot see that the next call
#  changes it)
"""Loss recovery (ustack.tcp.recovery) rule by rule, on hand-made ACK sequences
with an explicit clock.  Segments are 1000 bytes; segment ``k`` is
``[UNA + k*1000, UNA + (k+1)*1000)``."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ustack.tcp.congestion.base import CaState
from ustack.tcp.rack import TIMEOUT_MIN
from ustack.tcp.recovery import Recovery, RecoveryConfig
from ustack.tcp.rtt import RttEstimator
from ustack.wire.seq import MASK

MSS = 1000
UNA = 5000


def seg(k: int) -> int:
    return (UNA + k * MSS) & MASK


def blk(a: int, b: int) -> tuple[int, int]:
    """SACK block covering segments a..b-1."""
    return (seg(a), seg(b))


def make(*, sack: bool = True, cwnd: int = 20, una: int = UNA,
         config: RecoveryConfig | None = None, ts: bool = False) -> Recovery:
    rtt = RttEstimator(1.0, 0.2, 120.0, True)
    rec = Recovery(una, MSS, rtt, None, sack=sack, config=config,
                   ts_clock=(lambda now: int(now * 1000)) if ts else None)
    rec.cc.cwnd = cwnd * MSS
    return rec


def send(rec: Recovery, first: int, count: int, now: float, *, gap: float = 0.0,
         ts: bool = False) -> None:
    for k in range(first, first + count):
        t = now + (k - first) * gap
        rec.on_sent(seg(k), MSS, t, tsval=int(t * 1000) if ts else None)


def warm(rec: Recovery, rtt: float = 0.1) -> float:
    """One segment out and back so SRTT = min_rtt = ``rtt``; returns the time."""
    rec.on_sent(rec.una, MSS, 0.0)
    rec.on_ack((rec.una + MSS) & MASK, [], rtt)
    return rtt


def shift(rec: Recovery) -> Recovery:
    """Recreate with UNA one segment on so ``seg`` numbering starts at 0 again."""
    return rec


# ---------------------------------------------------------------- scoreboard
def test_cumulative_ack_removes_records_and_counts() -> None:
    rec = make()
    send(rec, 0, 5, 1.0)
    assert rec.sb.packets_out == 5 and rec.in_flight() == 5 * MSS
    out = rec.on_ack(seg(3), [], 1.1)
    assert out.acked == 3 * MSS and out.delivered == 3 * MSS
    assert rec.una == seg(3) and rec.sb.packets_out == 2
    rec.sb.check()


def test_partial_ack_trims_a_gso_record() -> None:
    rec = make()
    rec.on_sent(seg(0), 10 * MSS, 1.0)  # one GSO super-segment of 10 MSS
    assert len(rec.sb) == 1 and rec.sb.packets_out == 10
    out = rec.on_ack(seg(0) + 2500, [], 1.1)
    assert out.acked == 2500
    assert len(rec.sb) == 1 and rec.sb.packets_out == 8  # ceil(7500/1000)
    assert rec.in_flight() == 7500
    rec.sb.check()


def test_sack_splits_a_gso_record_and_repeated_blocks_count_once() -> None:
    rec = make()
    warm(rec)
    rec.on_sent(seg(1), 10 * MSS, 1.0)
    out = rec.on_ack(seg(1), [blk(4, 6)], 1.1)
    assert out.sacked == 2 * MSS and out.dupack
    recs = [(r.start - rec.sb.una, r.end - rec.sb.una, r.sacked) for r in rec.sb]
    assert recs == [(0, 3000, False), (3000, 5000, True), (5000, 10000, False)]
    out = rec.on_ack(seg(1), [blk(4, 6)], 1.11)
    assert out.sacked == 0 and out.delivered == 0
    out = rec.on_ack(seg(1), [blk(4, 7)], 1.12)  # the block grew by one segment
    assert out.sacked == MSS
    rec.sb.check()


def test_sack_blocks_beyond_snd_nxt_are_ignored() -> None:
    rec = make()
    send(rec, 0, 3, 1.0)
    out = rec.on_ack(seg(0), [blk(2, 5)], 1.1)
    assert out.sacked == 0
    rec.sb.check()


def test_sequence_wraparound() -> None:
    una = MASK - 2500 + 1  # 2**32 - 2500
    rec = make(una=una)
    for k in range(5):
        rec.on_sent((una + k * MSS) & MASK, MSS, 1.0)
    assert rec.nxt == (una + 5000) & MASK
    out = rec.on_ack((una + 3000) & MASK, [((una + 4000) & MASK, (una + 5000) & MASK)], 1.1)
    assert out.acked == 3000 and out.sacked == 1000
    assert rec.una == (una + 3000) & MASK
    rec.sb.check()


# ------------------------------------------------------------- RFC 6675 pipe
def test_pipe_is_sent_minus_sacked_and_lost_plus_retransmitted() -> None:
    rec = make()
    warm(rec)
    send(rec, 1, 7, 1.0)
    # five segments SACKed above two holes: both holes are lost (RACK, reo_wnd 0
    # once DupThresh segments are SACKed)
    out = rec.on_ack(seg(1), [blk(3, 8)], 1.1)
    assert out.lost == 2 * MSS
    assert out.lost_ranges == [(seg(1), seg(2)), (seg(2), seg(3))]
    assert rec.state == CaState.RECOVERY
    assert rec.in_flight() == 7 * MSS - 5 * MSS - 2 * MSS
    assert rec.next_to_retransmit() == (seg(1), MSS)
    rec.on_sent(seg(1), MSS, 1.1)
    assert rec.in_flight() == MSS
    assert rec.next_to_retransmit() == (seg(2), MSS)
    rec.on_sent(seg(2), MSS, 1.1)
    assert rec.next_to_retransmit() is None and rec.in_flight() == 2 * MSS
    rec.sb.check()


def test_new_sack_with_a_changed_window_still_counts() -> None:
    """Issue 9: an ACK whose window changed was not counted as a duplicate."""
    rec = make()
    warm(rec)
    send(rec, 1, 7, 1.0)
    out = rec.on_ack(seg(1), [blk(3, 8)], 1.1, window_update=True)
    assert out.dupack and rec.state == CaState.RECOVERY
    assert rec.next_to_retransmit() == (seg(1), MSS)


def test_window_update_without_sack_is_not_a_duplicate() -> None:
    rec = make(sack=False)
    warm(rec)
    send(rec, 1, 5, 1.0)
    out = rec.on_ack(seg(1), [], 1.1, window_update=True)
    assert not out.dupack and rec.reno_sacked == 0


def test_rfc6675_islost_without_rack() -> None:
    rec = make(config=RecoveryConfig(tcp_recovery=0))
    warm(rec)
    send(rec, 1, 7, 1.0)
    out = rec.on_ack(seg(1), [blk(3, 8)], 1.1)
    assert rec.state == CaState.RECOVERY
    # both holes have >= DupThresh SACKed segments above them
    assert out.lost == 2 * MSS
    assert rec.next_to_retransmit() == (seg(1), MSS)


def test_rfc6675_two_sacks_are_not_enough() -> None:
    rec = make(config=RecoveryConfig(tcp_recovery=0))
    warm(rec)
    send(rec, 1, 4, 1.0)
    rec.on_ack(seg(1), [blk(2, 3)], 1.1)
    out = rec.on_ack(seg(1), [blk(2, 4)], 1.1)
    assert out.lost == 0 and rec.state == CaState.DISORDER
    out = rec.on_ack(seg(1), [blk(2, 5)], 1.1)  # the third SACKed segment
    assert out.lost == MSS and rec.state == CaState.RECOVERY


# --------------------------------------------------------------------- RACK
def test_rack_sack_above_hole_waits_reo_wnd_then_retransmits() -> None:
    rec = make()
    t = warm(rec, 0.1)  # min_rtt = srtt = 0.1
    send(rec, 1, 4, 1.0)
    out = rec.on_ack(seg(1), [blk(2, 3)], 1.1)
    assert out.lost == 0 and rec.state == CaState.DISORDER
    kind, when = rec.timer() or ("", 0.0)
    # RACK.rtt = 0.1, reo_wnd = min_rtt/4 = 0.025; segment 1 sent at 1.0
    assert kind == "reorder"
    assert when == pytest.approx(1.1 + 0.025 + TIMEOUT_MIN)
    assert rec.next_to_retransmit() is None
    action = rec.on_timer(when)
    assert action.kind == "reorder" and action.retransmit_lost
    assert rec.state == CaState.RECOVERY
    assert rec.next_to_retransmit() == (seg(1), MSS)
    assert t > 0


def test_rack_reordering_within_window_marks_nothing() -> None:
    rec = make()
    warm(rec, 0.1)
    send(rec, 1, 4, 1.0)
    rec.on_ack(seg(1), [blk(2, 3)], 1.1)
    out = rec.on_ack(seg(3), [], 1.11)  # the "hole" arrives: it was reordering
    assert out.lost == 0 and rec.state == CaState.OPEN
    assert rec.reord_seen == 1
    assert rec.timer() is not None and rec.timer()[0] in ("rto", "probe")  # type: ignore[index]


def test_rack_three_sacks_mark_at_once_when_no_reordering_seen() -> None:
    rec = make()
    warm(rec)
    send(rec, 1, 5, 1.0)
    rec.on_ack(seg(1), [blk(3, 4)], 1.1)
    rec.on_ack(seg(1), [blk(3, 5)], 1.1)
    assert rec.state == CaState.DISORDER and rec.sb.lost_out == 0
    out = rec.on_ack(seg(1), [blk(3, 6)], 1.1)
    assert out.lost == 2 * MSS and rec.state == CaState.RECOVERY


def test_rack_after_reordering_seen_uses_the_window_even_past_dupthresh() -> None:
    rec = make()
    warm(rec, 0.1)
    send(rec, 1, 5, 1.0)
    rec.on_ack(seg(1), [blk(5, 6)], 1.1)
    rec.on_ack(seg(6), [], 1.1)  # segments 1..4 arrive late: reordering of 4 segs
    assert rec.reord_seen == 1 and rec.reordering == 5
    send(rec, 6, 5, 2.0)
    out = rec.on_ack(seg(6), [blk(7, 11)], 2.1)  # four SACKed, reordering seen
    assert out.lost == 0
    assert rec.rack_deadline() == pytest.approx(2.1 + 0.025 + TIMEOUT_MIN)


def test_rack_detects_a_lost_retransmission() -> None:
    rec = make()
    warm(rec, 0.1)
    send(rec, 1, 6, 1.0)
    rec.on_ack(seg(1), [blk(3, 7)], 1.1)
    assert rec.next_to_retransmit() == (seg(1), MSS)
    rec.on_sent(seg(1), MSS, 1.1)
    rec.on_sent(seg(2), MSS, 1.1)
    send(rec, 7, 1, 1.2)  # new data after the retransmissions
    out = rec.on_ack(seg(2), [blk(3, 8)], 1.3)  # seg 2's retransmission lost; 7 SACKed
    # seg 1 (retransmitted 1.1) acked; seg 2's retransmission sent before seg 7
    # and older than RACK.rtt (0.1) + reo_wnd (0 in recovery)
    assert out.lost == MSS and out.lost_ranges == [(seg(2), seg(3))]
    assert rec.next_to_retransmit() == (seg(2), MSS)


def test_a_retransmission_lost_again_counts_in_the_mib() -> None:
    """Linux tcp_mark_skb_lost: LINUX_MIB_TCPLOSTRETRANSMIT per segment of a
    lost-and-retransmitted record presumed lost again (by RACK or an RTO)."""
    mib: dict[str, int] = {}
    rtt = RttEstimator(1.0, 0.2, 120.0, True)
    rec = Recovery(UNA, MSS, rtt, None, mib=mib)
    rec.cc.cwnd = 20 * MSS
    warm(rec, 0.1)
    send(rec, 1, 6, 1.0)
    rec.on_ack(seg(1), [blk(3, 7)], 1.1)
    rec.on_sent(seg(1), MSS, 1.1)
    rec.on_sent(seg(2), MSS, 1.1)
    assert mib.get("TcpExtTCPLostRetransmit", 0) == 0  # first losses are not counted
    send(rec, 7, 1, 1.2)
    out = rec.on_ack(seg(2), [blk(3, 8)], 1.3)  # seg 2's retransmission lost (RACK)
    assert out.lost_ranges == [(seg(2), seg(3))]
    assert mib["TcpExtTCPLostRetransmit"] == 1
    rec.on_sent(seg(2), MSS, 1.3)  # sent a third time, then the RTO: lost again
    rec.on_rto(5.0)
    assert mib["TcpExtTCPLostRetransmit"] == 2


def test_an_rto_after_a_tail_probe_retransmission_counts_nothing() -> None:
    """A TLP retransmission was never presumed lost: the RTO marks it lost
    for the first time (Linux's else branch of tcp_mark_skb_lost)."""
    mib: dict[str, int] = {}
    rtt = RttEstimator(1.0, 0.2, 120.0, True)
    rec = Recovery(UNA, MSS, rtt, None, mib=mib)
    rec.cc.cwnd = 20 * MSS
    warm(rec, 0.1)
    send(rec, 1, 3, 1.0)
    rec.on_sent(seg(3), MSS, 1.3)  # the probe: the tail sent again
    rec.on_rto(5.0)
    assert mib.get("TcpExtTCPLostRetransmit", 0) == 0
    assert rec.sb.lost_out == 3


def test_dsack_widens_the_reordering_window() -> None:
    rec = make()
    warm(rec, 0.1)
    rec.reord_seen = 1  # reordering already seen on this path
    send(rec, 1, 3, 1.0)
    rec.on_ack(seg(1), [blk(2, 4)], 1.1)
    rec.on_timer(rec.rack_deadline() or 0.0)
    rec.on_sent(seg(1), MSS, 1.2)
    out = rec.on_ack(seg(4), [blk(1, 2)], 1.25)  # the retransmission was a duplicate
    assert out.dsack
    send(rec, 4, 2, 1.3)
    rec.on_ack(seg(5), [], 1.4)  # a later round trip: steps grow to 2
    assert rec.rack.reo_wnd_steps == 2


# ------------------------------------------------------------ limited transmit
def test_limited_transmit_without_sack() -> None:
    """RFC 3042: the first two duplicate ACKs each let one new segment out."""
    rec = make(sack=False, cwnd=4)
    warm(rec)
    send(rec, 1, 4, 1.0)
    cwnd = rec.cc.cwnd
    assert cwnd - rec.in_flight() == 0
    out = rec.on_ack(seg(1), [], 1.1)
    assert out.dupack and rec.state == CaState.DISORDER
    assert cwnd - rec.in_flight() == MSS  # room for one new segment
    send(rec, 5, 1, 1.1)
    out = rec.on_ack(seg(1), [], 1.11)
    assert cwnd - rec.in_flight() == MSS
    send(rec, 6, 1, 1.11)
    assert rec.state == CaState.DISORDER and rec.next_to_retransmit() is None
    out = rec.on_ack(seg(1), [], 1.12)  # third duplicate: fast retransmit
    assert rec.state == CaState.RECOVERY
    assert rec.next_to_retransmit() == (seg(1), MSS)


def test_limited_transmit_with_sack() -> None:
    rec = make(cwnd=4)
    warm(rec)
    send(rec, 1, 4, 1.0)
    rec.on_ack(seg(1), [blk(2, 3)], 1.1)
    assert rec.cc.cwnd - rec.in_flight() == MSS
    send(rec, 5, 1, 1.1)
    rec.on_ack(seg(1), [blk(2, 4)], 1.11)
    assert rec.cc.cwnd - rec.in_flight() == MSS
    assert rec.state == CaState.DISORDER


# ------------------------------------------------------------------ NewReno
def test_newreno_partial_ack_retransmits_next_and_full_ack_exits() -> None:
    rec = make(sack=False, cwnd=10)
    warm(rec)
    send(rec, 1, 6, 1.0)
    for i in range(3):
        rec.on_ack(seg(1), [], 1.1 + i * 0.001)
    assert rec.state == CaState.RECOVERY
    ssthresh = rec.cc.ssthresh
    assert ssthresh == 5 * MSS
    assert rec.next_to_retransmit() == (seg(1), MSS)
    rec.on_sent(seg(1), MSS, 1.11)
    # partial ACK (RFC 6582 3.2 step 3): the next hole is retransmitted at once
    rec.on_ack(seg(3), [], 1.2)
    assert rec.state == CaState.RECOVERY
    assert rec.next_to_retransmit() == (seg(3), MSS)
    rec.on_sent(seg(3), MSS, 1.2)
    rec.on_ack(seg(7), [], 1.3)  # full ACK: SND.UNA reaches the recovery point
    # RFC 6582 3.2 step 5 / Linux: NewReno holds the state until above high_seq
    assert rec.state == CaState.RECOVERY
    send(rec, 7, 1, 1.3)
    rec.on_ack(seg(8), [], 1.4)
    assert rec.state == CaState.OPEN
    assert rec.cc.cwnd == ssthresh


# ---------------------------------------------------------------------- PRR
def test_prr_sends_three_segments_after_a_partial_ack() -> None:
    """RFC 6937 with Linux's slow-start reduction bound: after heavy loss the
    pipe is below ssthresh; a partial ACK of two segments lets three out."""
    rec = make(cwnd=20)
    warm(rec)
    send(rec, 1, 20, 1.0)
    out = rec.on_ack(seg(1), [blk(16, 21)], 1.1)  # 15 holes, 5 SACKed
    assert out.lost == 15 * MSS and rec.state == CaState.RECOVERY
    assert rec.cc.ssthresh == 10 * MSS
    assert rec.in_flight() == 0
    # first ACK: delivered 5, pipe 0 -> sndcnt = min(ssthresh - pipe, 5) = 5
    assert rec.cc.cwnd - rec.in_flight() == 5 * MSS
    for k in range(1, 6):
        rec.on_sent(seg(k), MSS, 1.1)
    out = rec.on_ack(seg(3), [blk(16, 21)], 1.2)  # partial ACK of 2 segments
    assert out.acked == 2 * MSS
    assert rec.cc.cwnd - rec.in_flight() == 3 * MSS


def _dupacks_into_recovery(*, sends_between: bool, unsent: bool = True) -> Recovery:
    """cwnd 4, segment 1 of 1..4 lost, then three ACKs SACKing 2, 2-3, 2-4;
    ``unsent``: the application has new data queued (the connection passes
    ``can_send_new``)."""
    rec = make(cwnd=4)
    warm(rec)
    send(rec, 1, 4, 1.0)
    nxt = 5
    for k in (3, 4, 5):
        rec.on_ack(seg(1), [blk(2, k)], 1.1, can_send_new=unsent)
        if sends_between and rec.state != CaState.RECOVERY:
            room = max(rec.cc.cwnd - rec.in_flight(), 0) // MSS
            send(rec, nxt, room, 1.1)  # limited transmit (RFC 3042)
            nxt += room
    assert rec.state == CaState.RECOVERY and rec.cc.ssthresh == 2 * MSS
    return rec


def test_prr_counts_each_acks_own_delivery() -> None:
    """RFC 6937 3 per ACK: the ACK that starts recovery counts its own
    delivery, whether or not new data waits and whether or not the sender ran
    after the earlier dupACKs (the driver sends after each ACK while
    recovery runs, TcpConnection.output_per_ack; tests/unit/
    test_tcp_table_per_ack.py)."""
    for unsent in (False, True):
        rec = _dupacks_into_recovery(sends_between=False, unsent=unsent)
        assert rec.prr_delivered == 1 * MSS
        # one ACK's delivery: room for the retransmission alone (per ACK,
        # Linux would have sent limited transmit on the first two)
        assert rec.cc.cwnd - rec.in_flight() == 1 * MSS


def test_prr_per_ack_when_the_sender_ran_between_the_dupacks() -> None:
    """With a transmission after each dupACK (limited transmit filled the
    pipe) the ACK that starts recovery counts only its own delivery."""
    rec = _dupacks_into_recovery(sends_between=True)
    assert rec.prr_delivered == 1 * MSS
    # pipe 2 (the limited-transmit segments) = ssthresh: only the forced
    # fast retransmit (RFC 6937 3)
    assert rec.cc.cwnd - rec.in_flight() == 1 * MSS


def test_prr_proportional_rate_reduction() -> None:
    """RFC 6937 3: with the pipe above ssthresh, one segment out per two in
    when ssthresh = RecoverFS / 2."""
    rec = make(cwnd=20)
    warm(rec)
    send(rec, 1, 20, 1.0)
    rec.on_ack(seg(1), [blk(2, 5)], 1.1)  # 3 SACKed: segment 1 lost
    assert rec.state == CaState.RECOVERY and rec.cc.ssthresh == 10 * MSS
    # pipe 16 > ssthresh: sndcnt = ceil(prr_delivered * ssthresh / RecoverFS)
    # - prr_out = ceil(3 * 10 / 20) = 2
    assert rec.cc.cwnd - rec.in_flight() == 2 * MSS
    rec.on_sent(seg(1), MSS, 1.1)
    send(rec, 21, 1, 1.1)
    sent = []
    nxt = 22
    for k in range(5, 17):
        rec.on_ack(seg(1), [blk(2, k + 1)], 1.2)
        room = max(rec.cc.cwnd - rec.in_flight(), 0) // MSS
        sent.append(room)
        send(rec, nxt, room, 1.2)
        nxt += room
    # one segment out per two delivered: 2 + sum == ceil((3 + 12) / 2)
    assert sent == [0, 1] * 6
    assert 2 + sum(sent) == -(-(3 + 12) // 2)


def test_prr_quota_direct() -> None:
    rec = make(cwnd=20)
    rec.prior_cwnd = 20 * MSS
    rec.cc.ssthresh = 10 * MSS
    send(rec, 0, 20, 1.0)
    # pipe 20 segments > ssthresh: proportional
    assert rec.prr_quota(MSS, 0, False) == MSS  # forced retransmit (prr_out 0)
    rec.prr_out = MSS
    assert rec.prr_quota(MSS, 0, False) == 0  # ceil(2*10/20)=1 - 1
    assert rec.prr_quota(MSS, 0, False) == MSS  # ceil(3*10/20)=2 - 1


# --------------------------------------------------------------------- TLP
def test_tlp_timeout_is_two_srtt_plus_2ms_with_several_in_flight() -> None:
    rec = make()
    warm(rec, 0.1)
    send(rec, 1, 3, 1.0)
    kind, when = rec.timer() or ("", 0.0)
    assert kind == "probe" and when == pytest.approx(1.0 + 0.2 + TIMEOUT_MIN)


def test_tlp_timeout_adds_rto_min_with_one_segment() -> None:
    rec = make()
    warm(rec, 0.1)
    rec.rtt.base_rto = 1.0
    send(rec, 1, 1, 1.0)
    assert rec.tlp_deadline() == pytest.approx(1.0 + 0.2 + 0.2)


def test_tlp_timeout_never_later_than_the_rto() -> None:
    rec = make()
    warm(rec, 0.1)
    rec.rtt.srtt = 0.4  # PTO 0.802 > RTO remaining
    send(rec, 1, 3, 1.0)
    assert rec.tlp_deadline() == pytest.approx(1.0 + rec.rtt.rto)


def test_tlp_without_rtt_sample_waits_one_second() -> None:
    rec = make()
    send(rec, 0, 2, 1.0)
    assert rec.tlp_deadline() == pytest.approx(2.0)


def test_tlp_probe_retransmits_last_mss_and_its_ack_reduces_once() -> None:
    rec = make(cwnd=10)
    warm(rec, 0.1)
    rec.on_sent(seg(1), 4 * MSS, 1.0)  # GSO: 4 segments in one record
    when = rec.tlp_deadline()
    assert when is not None
    action = rec.on_timer(when, can_send_new=False)
    assert action.kind == "probe" and action.retransmit == (seg(4), MSS)
    rec.on_sent(seg(4), MSS, when)
    assert rec.tlp_high_seq is not None
    assert rec.timer() == ("rto", pytest.approx(when + rec.rtt.rto))
    # the probe's ACK SACKs it: segments 1..3 are lost (tail loss repaired by RACK)
    out = rec.on_ack(seg(1), [blk(4, 5)], when + 0.1)
    assert out.lost == 3 * MSS and rec.state == CaState.RECOVERY


def test_tlp_probe_of_a_lost_tail_ack_above_high_seq_means_loss() -> None:
    rec = make(cwnd=10)
    warm(rec, 0.1)
    send(rec, 1, 2, 1.0)
    when = rec.tlp_deadline() or 0.0
    rec.on_timer(when, can_send_new=False)
    rec.on_sent(seg(2), MSS, when)
    cwnd = rec.cc.cwnd
    send(rec, 3, 1, when + 0.05)  # new data beyond the probe's high_seq
    out = rec.on_ack(seg(4), [], when + 0.15)
    assert out.tlp_recovered and rec.tlp_high_seq is None
    assert rec.cc.cwnd == cwnd // 2 and rec.state == CaState.OPEN


def test_tlp_probe_with_new_data() -> None:
    rec = make()
    warm(rec, 0.1)
    send(rec, 1, 2, 1.0)
    when = rec.tlp_deadline() or 0.0
    action = rec.on_timer(when, can_send_new=True)
    assert action.probe_new and action.retransmit is None
    send(rec, 3, 1, when)
    assert rec.tlp_high_seq is not None and not rec.tlp_retrans
    out = rec.on_ack(seg(4), [], when + 0.1)
    assert not out.tlp_recovered and rec.tlp_high_seq is None


def test_tlp_dsack_of_the_probe_is_no_loss() -> None:
    rec = make(cwnd=10)
    warm(rec, 0.1)
    send(rec, 1, 2, 1.0)
    when = rec.tlp_deadline() or 0.0
    rec.on_timer(when, can_send_new=False)
    rec.on_sent(seg(2), MSS, when)
    cwnd = rec.cc.cwnd
    out = rec.on_ack(seg(3), [blk(2, 3)], when + 0.1)
    assert out.dsack and not out.tlp_recovered
    assert rec.cc.cwnd == cwnd and rec.tlp_high_seq is None


def test_no_tlp_without_sack_or_in_recovery() -> None:
    rec = make(sack=False)
    warm(rec)
    send(rec, 1, 3, 1.0)
    assert rec.timer() is not None and rec.timer()[0] == "rto"  # type: ignore[index]


# ---------------------------------------------------------------------- RTO
def test_rto_marks_everything_lost_and_retransmits_the_head() -> None:
    rec = make(cwnd=10)
    warm(rec, 0.1)
    send(rec, 1, 5, 1.0)
    rec.on_ack(seg(1), [blk(3, 4)], 1.1)
    rto = rec.rtt.rto
    action = rec.on_rto(2.0)
    assert action.retransmit == (seg(1), MSS)
    assert rec.state == CaState.LOSS and rec.rtt.backoff == 1
    assert rec.sb.lost_out == 4  # all but the SACKed one
    assert rec.cc.cwnd == rec.in_flight() + MSS == MSS
    assert rec.timer() == ("rto", pytest.approx(2.0 + 2 * rto))
    rec.on_sent(seg(1), MSS, 2.0)
    assert rec.next_to_retransmit() == (seg(2), MSS)


def test_rto_with_sack_reneging_clears_sacks() -> None:
    rec = make()
    warm(rec)
    send(rec, 1, 4, 1.0)
    rec.on_ack(seg(1), [blk(2, 3)], 1.1)
    out = rec.on_ack(seg(2), [], 1.2)  # the ACK stops at a SACKed segment
    assert out.reneging
    rec.on_rto(1.5)
    assert rec.sb.sacked_out == 0 and rec.sb.lost_out == 3
    rec.sb.check()


def test_karn_no_rtt_from_retransmitted_data() -> None:
    rec = make()
    warm(rec, 0.1)
    send(rec, 1, 1, 1.0)
    rec.on_rto(2.0)
    rec.on_sent(seg(1), MSS, 2.0)
    out = rec.on_ack(seg(2), [], 2.05)
    assert out.rtt is None and rec.rtt.srtt == pytest.approx(0.1)


def test_rtt_has_microsecond_resolution() -> None:
    rec = make()
    rec.on_sent(seg(0), MSS, 10.000000)
    out = rec.on_ack(seg(1), [], 10.000250)
    assert out.rtt == pytest.approx(0.00025, abs=1e-9)
    assert rec.rtt.srtt == pytest.approx(0.00025, abs=1e-9)


def test_rtt_from_timestamps_when_only_retransmitted_data_is_acked() -> None:
    rec = make(ts=True)
    rec.on_sent(seg(0), MSS, 1.0, tsval=1000)
    rec.on_rto(2.0)
    rec.on_sent(seg(0), MSS, 2.0, tsval=2000)
    out = rec.on_ack(seg(1), [], 2.03, ts_ecr=2000)
    assert out.rtt == pytest.approx(0.03, abs=0.0011)  # 1 ms TS ticks


# --------------------------------------------------------------------- undo
def test_dsack_undo_restores_cwnd_and_ssthresh() -> None:
    rec = make(cwnd=10)
    warm(rec, 0.1)
    send(rec, 1, 6, 1.0)
    rec.cc.ssthresh = 8 * MSS
    rec.on_ack(seg(1), [blk(2, 7)], 1.1)  # segment 1 "lost": it was only late
    assert rec.state == CaState.RECOVERY and rec.cc.ssthresh == 5 * MSS
    rec.on_sent(seg(1), MSS, 1.1)
    out = rec.on_ack(seg(7), [], 1.15)  # the original arrives: full ACK
    assert rec.state == CaState.OPEN
    out = rec.on_ack(seg(7), [blk(1, 2)], 1.2)  # then the D-SACK of the retransmission
    assert out.dsack and out.undo is not None and out.undo.reason == "dsack"
    assert rec.cc.cwnd == 10 * MSS
    # prior ssthresh = max(ssthresh, 3/4 cwnd) at the start of recovery
    assert rec.cc.ssthresh == 8 * MSS


def test_dsack_undo_during_recovery() -> None:
    rec = make(cwnd=10)
    warm(rec, 0.1)
    send(rec, 1, 8, 1.0)
    rec.on_ack(seg(1), [blk(2, 6)], 1.1)
    rec.on_sent(seg(1), MSS, 1.1)
    out = rec.on_ack(seg(6), [blk(1, 2)], 1.15)  # partial ACK with a D-SACK below it
    assert out.dsack and out.undo is not None and out.undo.reason == "dsack"
    assert rec.cc.cwnd == 10 * MSS
    assert rec.state in (CaState.OPEN, CaState.DISORDER)


def test_dubious_dsack_is_ignored() -> None:
    rec = make(cwnd=10)
    warm(rec)
    send(rec, 1, 4, 1.0)
    out = rec.on_ack(seg(3), [blk(1, 2)], 1.1)  # nothing was retransmitted
    assert not out.dsack and rec.dsack_dups == 1


def test_eifel_timestamp_undo_of_fast_recovery() -> None:
    rec = make(cwnd=10, ts=True)
    rec.on_sent(seg(0), MSS, 0.0, tsval=0)
    rec.on_ack(seg(1), [], 0.1, ts_ecr=0)
    send(rec, 1, 6, 1.0, ts=True)  # tsval 1000
    rec.on_ack(seg(1), [blk(2, 7)], 1.1, ts_ecr=1000)
    assert rec.state == CaState.RECOVERY
    rec.on_sent(seg(1), MSS, 1.1, tsval=1100)
    # the ACK echoes the original's TSval: the original arrived (RFC 4015)
    out = rec.on_ack(seg(7), [], 1.12, ts_ecr=1000)
    assert out.undo is not None and out.undo.reason == "recovery"
    assert rec.cc.cwnd == 10 * MSS and rec.state == CaState.OPEN


def test_spurious_rto_undo_by_timestamps() -> None:
    rec = make(cwnd=10, ts=True)
    rec.on_sent(seg(0), MSS, 0.0, tsval=0)
    rec.on_ack(seg(1), [], 0.1, ts_ecr=0)
    send(rec, 1, 4, 1.0, ts=True)
    rec.on_rto(1.5)
    rec.on_sent(seg(1), MSS, 1.5, tsval=1500)
    out = rec.on_ack(seg(3), [], 1.6, ts_ecr=1000)
    assert out.undo is not None and out.undo.reason == "loss"
    assert rec.state == CaState.OPEN and rec.cc.cwnd == 10 * MSS
    assert rec.sb.lost_out == 0


def test_frto_spurious_timeout_detected_by_new_data() -> None:
    """RFC 5682 SACK-enhanced F-RTO: after the RTO retransmission is acked,
    new data is sent; if it is (S)ACKed without more retransmission, the
    timeout was spurious."""
    rec = make(cwnd=10)
    warm(rec, 0.1)
    send(rec, 1, 4, 1.0)
    rec.on_rto(1.5)
    rec.on_sent(seg(1), MSS, 1.5)
    out = rec.on_ack(seg(2), [], 1.6, can_send_new=True)  # step 2b: send new data
    assert out.frto_new_data and rec.state == CaState.LOSS
    send(rec, 5, 2, 1.6)
    out = rec.on_ack(seg(7), [], 1.7)  # never-retransmitted data ACKed: spurious
    assert out.undo is not None and out.undo.reason == "frto"
    assert rec.state == CaState.OPEN


def test_frto_real_loss_falls_back_to_conventional_recovery() -> None:
    rec = make(cwnd=10)
    warm(rec, 0.1)
    send(rec, 1, 4, 1.0)
    rec.on_rto(1.5)
    rec.on_sent(seg(1), MSS, 1.5)
    rec.on_ack(seg(2), [], 1.6)
    send(rec, 5, 2, 1.6)
    out = rec.on_ack(seg(2), [blk(5, 6)], 1.7)  # dupACK: step 3a, the loss was real
    assert out.undo is None and not rec.frto
    assert rec.state == CaState.LOSS
    assert rec.next_to_retransmit() == (seg(2), MSS)


# ---------------------------------------------------------------- rate sample
def test_rate_sample_delivered_over_the_longer_interval() -> None:
    rec = make()
    send(rec, 0, 10, 1.0, gap=0.001)
    out = rec.on_ack(seg(10), [], 1.1)
    rs = out.rate
    assert rs is not None
    assert rs.delivered == 10 * MSS and rs.acked_sacked == 10 * MSS
    # send interval 0.009 s, ACK interval 0.1 s (from the first send): the longer
    assert rs.interval == pytest.approx(0.1)
    assert rs.delivery_rate == pytest.approx(10 * MSS / 0.1)
    assert rs.prior_in_flight == 10 * MSS and rs.in_flight == 0
    send(rec, 10, 10, 1.1, gap=0.001)
    rs2 = rec.on_ack(seg(15), [], 1.2).rate
    assert rs2 is not None
    # prior delivered at send of seg 14 = 10 segments; now 15
    assert rs2.delivered == 5 * MSS and rs2.prior_delivered == 10 * MSS
    assert rs2.delivered_total == 15 * MSS


def test_rate_sample_app_limited_marking() -> None:
    rec = make(cwnd=10)
    send(rec, 0, 2, 1.0)
    assert rec.check_app_limited(unsent=0)
    send(rec, 2, 2, 1.01)
    rs = rec.on_ack(seg(4), [], 1.1).rate
    assert rs is not None and rs.is_app_limited
    assert rec.rate.app_limited == 0  # delivered passed the mark
    send(rec, 4, 2, 1.2)
    rs = rec.on_ack(seg(6), [], 1.3).rate
    assert rs is not None and not rs.is_app_limited


def test_rate_sample_invalid_without_delivery() -> None:
    rec = make()
    send(rec, 0, 2, 1.0)
    rs = rec.on_ack(seg(0), [], 1.1).rate
    assert rs is not None and rs.interval < 0 and rs.delivery_rate == 0.0


# -------------------------------------------------------------- misc contract
def test_old_ack_only_contributes_sack_information() -> None:
    rec = make()
    warm(rec)
    send(rec, 1, 5, 1.0)
    rec.on_ack(seg(2), [], 1.1)
    out = rec.on_ack(seg(1), [blk(3, 4)], 1.12)
    assert out.old and out.sacked == MSS and rec.una == seg(2)


def test_ack_beyond_snd_nxt_is_refused() -> None:
    rec = make()
    send(rec, 0, 1, 1.0)
    with pytest.raises(ValueError):
        rec.on_ack(seg(2), [], 1.1)


def test_everything_acked_clears_the_timer() -> None:
    rec = make()
    send(rec, 0, 2, 1.0)
    assert rec.timer() is not None
    rec.on_ack(seg(2), [], 1.1)
    assert rec.timer() is None and rec.in_flight() == 0


def test_drives_the_controller_hooks_in_linux_order() -> None:
    """ssthresh_on_loss once per episode before on_state(RECOVERY); cwnd =
    ssthresh at the end of recovery; on_ack only outside the reduction."""
    from ustack.tcp.congestion.base import CongestionController, RateSample

    calls: list[str] = []

    class Spy(CongestionController):
        name = "hr-spy"

        def on_ack(self, rs: RateSample, now: float) -> None:
            calls.append(f"ack:{rs.acked_sacked}")

        def ssthresh_on_loss(self, now: float, in_flight: int) -> int:
            calls.append("ssthresh")
            return super().ssthresh_on_loss(now, in_flight)

        def on_state(self, new: CaState, now: float) -> None:
            calls.append(new.name)
            super().on_state(new, now)

    cc = Spy(MSS, 10)
    rec = Recovery(UNA, MSS, RttEstimator(1.0, 0.2, 120.0, True), cc, sack=True)
    warm(rec)
    send(rec, 1, 6, 1.0)
    rec.on_ack(seg(1), [blk(2, 7)], 1.1)
    rec.on_sent(seg(1), MSS, 1.1)
    rec.on_ack(seg(7), [], 1.2)
    # Open -> Recovery directly; the ACK ending recovery already grows (Linux)
    assert calls == ["ack:1000", "ssthresh", "RECOVERY", "OPEN", "ack:1000"]
    assert cc.cwnd == cc.ssthresh == 5 * MSS


def test_config_from_tcp_config_and_info() -> None:
    from ustack.tcp.config import TcpConfig

    cfg = RecoveryConfig.from_tcp_config(TcpConfig().with_(dupack_threshold=5, rto_min=0.3))
    assert cfg.tcp_reordering == 5 and cfg.rto_min == 0.3 and cfg.tcp_recovery == 1
    rec = make(config=cfg)
    warm(rec)
    send(rec, 1, 8, 1.0)
    rec.on_ack(seg(1), [blk(3, 9)], 1.1)
    info = rec.info()
    assert info.ca_state == CaState.RECOVERY and info.sacked == 6 and info.lost == 2
    assert info.reordering == 5 and info.in_flight == 0


def test_apply_timers_arms_one_slot() -> None:
    from ustack.tcp.timers import Timers

    rec = make()
    warm(rec)
    t = Timers()
    send(rec, 1, 2, 1.0)
    rec.apply_timers(t)
    assert t.tlp is not None and t.rto is None and t.reorder is None
    rec.on_rto(3.0)
    rec.apply_timers(t)
    assert t.rto is not None and t.tlp is None


def test_simple_retransmit_after_pmtu_shrink() -> None:
    """Linux tcp_simple_retransmit: larger segments lost, LOSS without a
    congestion response, then retransmitted at the new size."""
    rec = make(cwnd=10)
    warm(rec)
    send(rec, 1, 3, 1.0)
    ssthresh = rec.cc.ssthresh
    cwnd = rec.cc.cwnd
    assert rec.simple_retransmit(600, 1.05)
    assert rec.state == CaState.LOSS and rec.undo_marker is None
    assert rec.cc.cwnd == cwnd and rec.cc.ssthresh == max(ssthresh, cwnd * 3 // 4)
    assert rec.next_to_retransmit() == (seg(1), MSS)
    rec.on_sent(seg(1), 600, 1.05)  # the sender resends 600 bytes of it
    assert rec.next_to_retransmit() == (seg(1) + 600, 400)
    assert rec.rack_enabled


def test_rate_sample_field_order() -> None:
    """on_ack builds RateSample positionally: the field order is part of the contract."""
    from dataclasses import fields

    from ustack.tcp.congestion.base import RateSample

    assert [f.name for f in fields(RateSample)] == [
        "delivered", "interval", "delivery_rate", "acked_sacked", "prior_in_flight",
        "in_flight", "losses", "rtt", "min_rtt", "is_app_limited", "is_retrans",
        "prior_delivered", "delivered_total", "ca_state", "is_cwnd_limited"]
    rec = make()
    send(rec, 0, 4, 1.0)
    rs = rec.on_ack(seg(2), [], 1.1).rate
    assert rs is not None
    assert (rs.acked_sacked, rs.prior_in_flight, rs.in_flight) == (2 * MSS, 4 * MSS, 2 * MSS)
    assert rs.delivered_total == 2 * MSS and rs.ca_state == CaState.OPEN
    assert rs.rtt == pytest.approx(0.1) and rs.min_rtt == pytest.approx(0.1)


def test_short_segments_give_rtt_and_rate_samples() -> None:
    """A fully acknowledged segment shorter than the MSS is evidence like any
    other (only a sub-MSS part of a record that stays is not)."""
    rec = make()
    rec.on_sent(seg(0), 300, 1.0)
    out = rec.on_ack((seg(0) + 300) & MASK, [], 1.0002)
    assert out.rtt == pytest.approx(0.0002) and out.acked == 300
    assert out.rate is not None and out.rate.prior_delivered == 0
    rec.on_sent((seg(0) + 300) & MASK, 2 * MSS, 2.0)
    out = rec.on_ack((seg(0) + 600) & MASK, [], 2.1)  # 300 bytes of a 2000-byte record
    assert out.rtt is None and out.acked == 300


def test_dsacked_retransmission_counts_as_delivered() -> None:
    """Linux tcp_dsack_seen: the duplicate was delivered (rate sample and
    window growth of the ACK carrying the D-SACK)."""
    rec = make(cwnd=10)
    warm(rec, 0.1)
    send(rec, 1, 8, 1.0)
    rec.on_ack(seg(1), [blk(2, 6)], 1.1)
    rec.on_sent(seg(1), MSS, 1.1)
    out = rec.on_ack(seg(7), [blk(1, 2), blk(8, 9)], 1.15)
    # newly: 1 and 6 acked, 8 SACKed, and the D-SACKed duplicate of 1
    assert out.dsack and not out.reneging and out.delivered == 4 * MSS
    assert out.rate is not None and out.rate.acked_sacked == 4 * MSS


def test_no_dupthresh_bit_waits_the_reordering_window() -> None:
    """tcp_recovery=5 (RACK | NO_DUPTHRESH): three SACKs do not shortcut the
    reordering window (RFC 8985 without the RFC 6675 trigger)."""
    rec = make(config=RecoveryConfig(tcp_recovery=5))
    warm(rec, 0.1)
    send(rec, 1, 5, 1.0)
    out = rec.on_ack(seg(1), [blk(2, 6)], 1.1)
    assert out.lost == 0 and rec.rack_deadline() == pytest.approx(1.1 + 0.025 + TIMEOUT_MIN)


def test_static_reo_wnd_bit_ignores_dsack() -> None:
    rec = make(config=RecoveryConfig(tcp_recovery=3))
    warm(rec, 0.1)
    rec.reord_seen = 1
    send(rec, 1, 3, 1.0)
    rec.on_ack(seg(1), [blk(2, 4)], 1.1)
    rec.on_timer(rec.rack_deadline() or 0.0)
    rec.on_sent(seg(1), MSS, 1.2)
    rec.on_ack(seg(4), [blk(1, 2)], 1.25)
    send(rec, 4, 2, 1.3)
    rec.on_ack(seg(5), [], 1.4)
    assert rec.rack.reo_wnd_steps == 1


def test_tlp_off() -> None:
    rec = make(config=RecoveryConfig(tcp_early_retrans=0))
    warm(rec)
    send(rec, 1, 3, 1.0)
    assert rec.timer() is not None and rec.timer()[0] == "rto"  # type: ignore[index]


def test_enter_cwr_reduces_once_without_retransmission() -> None:
    """RFC 3168 6.1.2 (Linux tcp_enter_cwr): ssthresh from the controller, PRR
    down to it, no undo, OPEN again once SND.NXT at entry is acknowledged."""
    rec = make(cwnd=10)
    warm(rec)
    send(rec, 1, 10, 1.0)
    rec.enter_cwr(1.05)
    assert rec.state == CaState.CWR and rec.cc.ssthresh == 5 * MSS
    for k in range(2, 12):
        rec.on_ack(seg(k), [], 1.1 + k * 0.001)
    assert rec.next_to_retransmit() is None and rec.total_retrans == 0
    send(rec, 11, 1, 1.2)
    rec.on_ack(seg(12), [], 1.3)
    assert rec.state == CaState.OPEN and rec.cc.cwnd == 5 * MSS


def test_ece_on_an_ack_prevents_undo() -> None:
    rec = make(cwnd=10)
    warm(rec, 0.1)
    send(rec, 1, 6, 1.0)
    rec.on_ack(seg(1), [blk(2, 7)], 1.1, ece=True)
    assert rec.state == CaState.RECOVERY and rec.prior_ssthresh == 0


@settings(max_examples=300, deadline=None)
@given(reord_seen=st.integers(0, 2), state=st.sampled_from(list(CaState)),
       sacked=st.integers(0, 6), reordering=st.integers(1, 5),
       min_rtt=st.floats(0.0, 0.5), srtt=st.floats(0.0, 0.5), bits=st.integers(0, 7),
       steps=st.integers(1, 5))
def test_inlined_reordering_window_is_racks(reord_seen: int, state: CaState, sacked: int,
                                            reordering: int, min_rtt: float, srtt: float,
                                            bits: int, steps: int) -> None:
    """Recovery._reo_wnd (inlined for speed) == Rack.reo_wnd (RFC 8985 6.2
    step 4) for every state it reads."""
    rec = make(config=RecoveryConfig(tcp_recovery=bits))
    rec.reord_seen = reord_seen
    rec.state = state
    rec.sb.sacked_out = sacked
    rec.reordering = reordering
    rec.rtt.min_rtt = min_rtt
    rec.rtt.srtt = srtt
    rec.rack.reo_wnd_steps = steps
    assert rec._reo_wnd() == rec.rack.reo_wnd(
        reord_seen=bool(reord_seen), in_recovery=state >= CaState.RECOVERY,
        sacked_out=sacked, reordering=reordering, min_rtt=min_rtt, srtt=srtt,
        dupthresh=not (bits & 4), static=bool(bits & 2))


def _dsack_of_a_sacked_retransmission(mib: dict[str, int]) -> Recovery:
    """Segments 1..8 out, 1 and 2 lost by RACK and retransmitted; then the
    original of 2 arrives (SACKed) and its retransmission after it (D-SACK
    inside the second block)."""
    rtt = RttEstimator(1.0, 0.2, 120.0, True)
    rec = Recovery(UNA, MSS, rtt, None, mib=mib)
    rec.cc.cwnd = 20 * MSS
    warm(rec, 0.1)
    send(rec, 1, 8, 1.0)
    rec.on_ack(seg(1), [blk(3, 9)], 1.1)  # six SACKed above two holes: both lost
    assert rec.state == CaState.RECOVERY and rec.sb.lost_out == 2
    rec.on_sent(seg(1), MSS, 1.1)
    rec.on_sent(seg(2), MSS, 1.1)
    rec.on_ack(seg(1), [blk(2, 9)], 1.15)  # the original of 2 was only late
    assert rec.reord_seen == 0  # (a SACK of a retransmitted record proves nothing)
    return rec


def test_dsack_of_a_sacked_retransmission_is_reordering() -> None:
    """Linux tcp_sacktag_one: a D-SACK of a retransmitted record already
    SACKed (the original arrived first, then its retransmission) lowers
    ``state->reord``, so tcp_check_sack_reordering counts reordering
    (reord_seen, tp->reordering, LINUX_MIB_TCPSACKREORDER).  From then on
    RACK's reordering window is min_rtt/4 even in recovery (RFC 8985 6.2
    step 4), which stops the cascade of spurious retransmissions."""
    mib: dict[str, int] = {}
    rec = _dsack_of_a_sacked_retransmission(mib)
    out = rec.on_ack(seg(1), [blk(2, 3), blk(2, 9)], 1.2)  # 2's retransmission: D-SACK
    assert out.dsack
    assert rec.reord_seen == 1
    assert rec.reordering == 7  # fack (9) - reord (2), in segments
    assert mib["TcpExtTCPSACKReorder"] == 1
    assert rec._reo_wnd() == pytest.approx(0.1 / 4)  # in RECOVERY, reordering seen


def test_dsack_below_una_is_no_reordering() -> None:
    """Linux walks only SACK blocks above SND.UNA: a D-SACK of data already
    cumulatively acknowledged changes the undo count, not ``reord``."""
    mib: dict[str, int] = {}
    rec = _dsack_of_a_sacked_retransmission(mib)
    rec.on_ack(seg(3), [blk(3, 9)], 1.2)  # 1 repaired: 1 and 2 cumulatively acked
    out = rec.on_ack(seg(3), [blk(2, 3), blk(3, 9)], 1.25)  # then the D-SACK of 2
    assert out.dsack
    assert rec.reord_seen == 0 and mib.get("TcpExtTCPSACKReorder", 0) == 0


def test_sack_reordering_counts_in_the_mib() -> None:
    """LINUX_MIB_TCPSACKREORDER (tcp_check_sack_reordering): a hole filled by
    a never-retransmitted segment below the highest SACK."""
    mib: dict[str, int] = {}
    rtt = RttEstimator(1.0, 0.2, 120.0, True)
    rec = Recovery(UNA, MSS, rtt, None, mib=mib)
    rec.cc.cwnd = 20 * MSS
    warm(rec, 0.1)
    send(rec, 1, 4, 1.0)
    rec.on_ack(seg(1), [blk(2, 3)], 1.1)
    rec.on_ack(seg(3), [], 1.11)
    assert rec.reord_seen == 1 and mib["TcpExtTCPSACKReorder"] == 1


def test_ack_outcome_init_matches_its_fields() -> None:
    """AckOutcome's written-out __init__ takes every dataclass field by name
    with the field's default (a fresh list for lost_ranges), and the counts
    positionally in field order (the fast path passes ``acked`` alone)."""
    from dataclasses import MISSING, fields

    from ustack.tcp.congestion.base import RateSample
    from ustack.tcp.recovery import AckOutcome, Undo

    other: dict[str, Any] = {
        "lost_ranges": [(1, 2)], "rtt": 0.5, "rate": RateSample(), "undo": Undo(1, 2, "dsack"),
        "prior_state": CaState.LOSS, "state": CaState.LOSS}
    plain = AckOutcome()
    for f in fields(AckOutcome):
        default = [] if f.name == "lost_ranges" else f.default
        assert default is not MISSING and getattr(plain, f.name) == default, f.name
        value = other.get(f.name, True if isinstance(default, bool) else 7)
        assert getattr(AckOutcome(**{f.name: value}), f.name) == value, f.name
    assert plain.lost_ranges is not AckOutcome().lost_ranges
    a = AckOutcome(1, 2, 3, 4)
    assert (a.acked, a.sacked, a.delivered, a.lost) == (1, 2, 3, 4)
    assert [f.name for f in fields(AckOutcome)][:4] == ["acked", "sacked", "delivered", "lost"]
