"""Loss recovery for one TCP sender, sans-I/O, as Linux 6.x does it.

The room that decides *what is lost and when*, fed by the connection with
what it sent and what the ACKs say.  It owns the scoreboard (one record per
sent segment, :mod:`ustack.tcp.scoreboard`), RACK-TLP (:mod:`ustack.tcp.rack`,
RFC 8985), the delivery-rate sampler (:mod:`ustack.tcp.rate`), the
congestion-avoidance state machine (``CaState``: Linux
``tcp_fastretrans_alert``), PRR (RFC 6937), undo of spurious retransmissions
(RFC 2883/3708 D-SACK, RFC 4015 Eifel, RFC 5682 F-RTO), NewReno for peers
without SACK (RFC 6582) and the "xmit timer" Linux shares between the RTO,
the tail loss probe and the RACK reorder timer.  It drives the congestion
controller's loss hooks (``ssthresh_on_loss``, ``on_state``, ``undo_cwnd``)
and its ``on_ack(rs, now)``, and sets ``cc.cwnd`` during a reduction, like
Linux's ``tcp_cong_control``.

Interface (all sequence numbers are 32-bit wire values, all times seconds
from the connection's clock, all amounts bytes)::

    rec = Recovery(una, mss, rtt, cc, sack=..., config=RecoveryConfig(),
                   ts_clock=lambda now: tsval)        # ts_clock optional
    rec.on_sent(seq, length, now, tsval=...)          # every data/FIN send
    out = rec.on_ack(ack, sack_blocks, now, ts_ecr=..., window_update=...,
                     has_data=..., ece=..., is_cwnd_limited=...,
                     can_send_new=...) -> AckOutcome
    rec.next_to_retransmit() -> (seq, length) | None  # lowest lost hole
    rec.in_flight() -> int                            # RFC 6675 pipe
    rec.timer() -> (kind, deadline) | None            # "rto"/"probe"/"reorder"
    rec.on_timer(now, can_send_new=...) -> TimerAction
        # = on_rto(now) / on_tlp_timer(now, ...) / on_rack_timer(now)
    rec.check_app_limited(unsent, cwnd)               # sender ran out of data
    rec.enter_cwr(now)                                # ECN / local congestion
    rec.set_mss(mss)
    rec.simple_retransmit(mss, now)                   # PMTU shrank (RFC 1191)
    rec.apply_timers(conn.timers)                     # xmit timer -> rto/tlp/reorder
    rec.info() -> RecoveryInfo                        # ss -i counters
    rec.cc = new_controller                           # after TCP_CONGESTION

How the connection drives it.  Create it when the connection becomes
synchronised (``una`` = ISS+1 after the SYN is acknowledged, ``sack`` = the
peer offered SACK-permitted) with the connection's ``RttEstimator`` and
congestion controller.  Call :meth:`Recovery.on_sent` for every segment that
carries data or FIN, new or retransmitted, right when it is emitted (``length``
is the sequence space it uses, payload + FIN; a GSO super-segment may be one
call; whether it is a retransmission is known from ``seq``).  For every
acceptable ACK (``SND.UNA <= SEG.ACK <= SND.NXT``) call :meth:`Recovery.on_ack`
with the segment's SACK blocks (wire order, D-SACK first as received), its
TSecr, and whether it carried data or changed the window -- also when nothing
is outstanding if it carries SACK blocks (a D-SACK arriving after the last
ACK still undoes a spurious reduction: Linux ``tcp_ack``'s ``no_queue``
path), and for an old ACK (below SND.UNA) that carries SACK blocks; it removes what is
acknowledged, marks SACKs and losses, feeds the RTT estimator (Karn-safe, from
per-segment send times, microsecond resolution; the connection must not feed
it again), resets the RTO backoff on a valid sample, moves the state machine,
sets ``cc.cwnd``/``cc.ssthresh``, calls ``cc.on_ack`` when Linux would, and
re-arms the xmit timer.  Then the sender sends: first retransmissions, one
:meth:`next_to_retransmit` range at a time while ``in_flight() < cc.cwnd``
(it may send part of a range; each send goes through ``on_sent`` which moves
the hole), then new data while ``in_flight() < cc.cwnd`` and the peer window
allows (limited transmit, RFC 3042, falls out of the pipe: SACKed or, without
SACK, duplicate-ACKed segments leave the pipe).  ``out.frto_new_data`` asks
for new data before retransmissions (F-RTO step 2b; only offered when
``on_ack(can_send_new=True)`` said unsent data fits the peer window).  The xmit timer
:meth:`timer` is one entry of the connection's timer table (``ss -o`` shows it
as ``on``); when it expires call :meth:`on_timer`: after an RTO (the room backs the
RTO off itself, ``rtt.backoff += 1``, and resets it on the next valid RTT
sample) the connection does its own retries2/ETIMEDOUT bookkeeping and sends
``action.retransmit`` whatever the window (Linux sends the head), after a probe it sends one new
segment (``action.probe_new``, Nagle off) or ``action.retransmit``.  When
the application has nothing left to send, call :meth:`check_app_limited`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from ustack.tcp.congestion.base import CaState, CongestionController, RateSample
from ustack.tcp.rack import TIMEOUT_MIN, Rack, probe_timeout
from ustack.tcp.rate import RateAccumulator, RateSampler
from ustack.tcp.rtt import RttEstimator
from ustack.tcp.scoreboard import Scoreboard, Segment
from ustack.tcp.timers import Timers
from ustack.wire.seq import MASK, seq_lt, seq_sub

__all__ = ["AckOutcome", "CaState", "Recovery", "RecoveryConfig", "RecoveryInfo",
           "TimerAction", "Undo"]

#: the states as module constants (enum member lookups are slow on 3.11)
_OPEN: Final = CaState.OPEN
_DISORDER: Final = CaState.DISORDER
_CWR: Final = CaState.CWR
_RECOVERY: Final = CaState.RECOVERY
_LOSS: Final = CaState.LOSS

#: Linux tcp_recovery bits
RACK_LOSS_DETECTION: Final = 0x1
RACK_STATIC_REO_WND: Final = 0x2
RACK_NO_DUPTHRESH: Final = 0x4
#: ssthresh meaning "none yet" (Linux TCP_INFINITE_SSTHRESH, here in bytes)
INFINITE_SSTHRESH: Final = 0x7FFFFFFF


@dataclass(slots=True)
class RecoveryConfig:
    """Knobs, named after the Linux sysctls they mirror (defaults = Linux's)."""

    #: net.ipv4.tcp_recovery: 1 = RACK loss detection (RFC 8985); | 2 static
    #: reordering window; | 4 no DupThresh trigger.  0 = RFC 6675 IsLost.
    tcp_recovery: int = RACK_LOSS_DETECTION
    #: net.ipv4.tcp_early_retrans: 3 or 4 = tail loss probes (RFC 8985 7); 0 off
    tcp_early_retrans: int = 3
    #: net.ipv4.tcp_frto: F-RTO (RFC 5682) after an RTO; 0 off
    tcp_frto: int = 2
    #: net.ipv4.tcp_dsack: use D-SACK (RFC 2883) for undo and RACK's window
    tcp_dsack: bool = True
    #: net.ipv4.tcp_reordering: initial DupThresh in segments (RFC 6675 DupThresh)
    tcp_reordering: int = 3
    #: net.ipv4.tcp_max_reordering: upper bound of the adapted DupThresh
    tcp_max_reordering: int = 300
    #: RTO floor added to the probe timeout with one segment in flight (Linux
    #: tcp_rto_min, 200 ms)
    rto_min: float = 0.2
    #: probe timeout without an RTT sample (Linux TCP_TIMEOUT_INIT, 1 s)
    probe_initial: float = 1.0

    @classmethod
    def from_tcp_config(cls, cfg: object) -> RecoveryConfig:
        """The knobs from a ``TcpConfig`` (same sysctl names; ``dupack_threshold``
        is tcp_reordering, ``rto_min`` tcp_rto_min); missing ones keep Linux's
        defaults."""
        d = cls()
        return cls(
            tcp_recovery=int(getattr(cfg, "tcp_recovery", d.tcp_recovery)),
            tcp_early_retrans=int(getattr(cfg, "tcp_early_retrans", d.tcp_early_retrans)),
            tcp_frto=int(getattr(cfg, "tcp_frto", d.tcp_frto)),
            tcp_dsack=bool(getattr(cfg, "tcp_dsack", d.tcp_dsack)),
            tcp_reordering=int(getattr(cfg, "dupack_threshold", d.tcp_reordering)),
            tcp_max_reordering=int(getattr(cfg, "tcp_max_reordering", d.tcp_max_reordering)),
            rto_min=float(getattr(cfg, "rto_min", d.rto_min)),
            probe_initial=float(getattr(cfg, "rto_initial", d.probe_initial)))


@dataclass(slots=True, frozen=True)
class Undo:
    """A reduction proved spurious: the window to restore (already applied to
    the controller when one was given)."""

    cwnd: int
    ssthresh: int
    #: "dsack" (RFC 3708), "recovery"/"partial" (RFC 4015 timestamps or no
    #: retransmission needed), "loss" (spurious RTO, RFC 4015), "frto" (RFC 5682)
    reason: str


@dataclass(slots=True, init=False)
class AckOutcome:
    """What one ACK did (bytes; ranges are wire sequence numbers)."""

    #: bytes newly acknowledged cumulatively (SND.UNA advance)
    acked: int = 0
    #: bytes newly SACKed
    sacked: int = 0
    #: bytes newly delivered (acked-not-previously-SACKed + newly SACKed)
    delivered: int = 0
    #: bytes newly marked lost by this ACK and their ranges
    lost: int = 0
    lost_ranges: list[tuple[int, int]] = field(default_factory=list)
    #: Karn-safe RTT sample in seconds fed to the estimator, or None
    rtt: float | None = None
    #: the delivery-rate sample (Linux struct rate_sample)
    rate: RateSample | None = None
    #: the ACK carried a (credible) D-SACK block
    dsack: bool = False
    #: counted as a duplicate ACK (RFC 5681 2 / RFC 6675 2: new SACK info counts)
    dupack: bool = False
    #: a reduction was undone
    undo: Undo | None = None
    prior_state: CaState = _OPEN
    state: CaState = _OPEN
    #: the ACK is below SND.UNA (only its SACK information was used)
    old: bool = False
    #: F-RTO step 2b: send new data (not retransmissions) now if possible
    frto_new_data: bool = False
    #: the tail loss probe repaired a loss (Linux LINUX_MIB_TCPLOSSPROBERECOVERY)
    tlp_recovered: bool = False
    #: the receiver discarded SACKed data (RFC 2018 8): the RTO was shortened
    reneging: bool = False
    #: the ACK entered recovery (Linux tcp_enter_recovery; also when it ended
    #: an episode and began the next: ``prior_state`` and ``state`` are then
    #: both RECOVERY)
    entered_recovery: bool = False

    def __init__(self, acked: int = 0, sacked: int = 0, delivered: int = 0, lost: int = 0,
                 lost_ranges: list[tuple[int, int]] | None = None,
                 rtt: float | None = None, rate: RateSample | None = None,
                 dsack: bool = False, dupack: bool = False, undo: Undo | None = None,
                 prior_state: CaState = _OPEN, state: CaState = _OPEN, old: bool = False,
                 frto_new_data: bool = False, tlp_recovered: bool = False,
                 reneging: bool = False, entered_recovery: bool = False) -> None:
        # written out (init=False) like RateSample's: compiled by mypyc, the
        # dataclass-generated one runs interpreted (one AckOutcome per ACK
        # that is not a plain cumulative one); same fields, defaults, order
        self.acked = acked
        self.sacked = sacked
        self.delivered = delivered
        self.lost = lost
        self.lost_ranges = [] if lost_ranges is None else lost_ranges
        self.rtt = rtt
        self.rate = rate
        self.dsack = dsack
        self.dupack = dupack
        self.undo = undo
        self.prior_state = prior_state
        self.state = state
        self.old = old
        self.frto_new_data = frto_new_data
        self.tlp_recovered = tlp_recovered
        self.reneging = reneging
        self.entered_recovery = entered_recovery


@dataclass(slots=True, frozen=True)
class RecoveryInfo:
    """Recovery counters in Linux ``tcp_info`` terms (segments unless bytes)."""

    ca_state: CaState
    sacked: int  #: tcpi_sacked
    lost: int  #: tcpi_lost
    retrans: int  #: tcpi_retrans (retransmissions in flight)
    total_retrans: int  #: tcpi_total_retrans
    reordering: int  #: tcpi_reordering
    reord_seen: int  #: tcpi_reord_seen
    dsack_dups: int  #: tcpi_dsack_dups
    delivered: int  #: bytes delivered (tcpi_delivered is in segments)
    delivery_rate: float  #: bytes/s of the best recent sample (tcpi_delivery_rate)
    app_limited: bool  #: tcpi_delivery_rate_app_limited
    in_flight: int  #: bytes, RFC 6675 pipe
    tlp_probes: int  #: TcpExtTCPLossProbes
    tlp_recoveries: int  #: TcpExtTCPLossProbeRecovery
    undos: int  #: undone reductions (TcpExtTCPFullUndo + PartialUndo + DSACKUndo + LossUndo)


@dataclass(slots=True)
class TimerAction:
    """What the sender must do after the xmit timer fired."""

    kind: str
    #: send this range now, whatever the window (RTO head / probe), or None
    retransmit: tuple[int, int] | None = None
    #: send one new MSS of data now (TLP with new data, Nagle off)
    probe_new: bool = False
    #: lost segments are waiting: retransmit ``next_to_retransmit()`` within cwnd
    retransmit_lost: bool = False


class _Window:
    """Stand-in controller when none is given (tests): Reno loss reaction."""

    controls_cwnd = False

    def __init__(self, mss: int) -> None:
        self.mss = mss
        self.cwnd = 10 * mss
        self.ssthresh = INFINITE_SSTHRESH
        self.prior_cwnd = 0

    def ssthresh_on_loss(self, now: float, in_flight: int) -> int:
        self.prior_cwnd = self.cwnd
        return max(self.cwnd >> 1, 2 * self.mss)

    def on_state(self, new: CaState, now: float) -> None:
        pass

    def undo_cwnd(self) -> int:
        return max(self.cwnd, self.prior_cwnd)

    def on_ack(self, rs: RateSample, now: float) -> None:
        pass


def ack_times(now: float, arrival: float, first_arrival: float | None,
              first_sent: float, last_sent: float) -> tuple[float, float]:
    """The times an ACK's two RTT samples end at (RFC 6298 2: when the ACK
    arrives): ``first_arrival`` (the first of coalesced ACKs) for the oldest
    acknowledged segment, sent at ``first_sent``, ``arrival`` for the newest,
    sent at ``last_sent``.  A stamp after ``now`` or before the send time it
    is measured from (clocks disagreeing) is not believed: ``now`` instead,
    the sample then includes our processing delay, as without stamps."""
    t_last = arrival if last_sent <= arrival <= now else now
    if first_arrival is None:
        return t_last, t_last
    t_first = first_arrival if first_sent <= first_arrival <= t_last else t_last
    return t_first, t_last


class _AckState:
    """Per-ACK scratch (Linux struct tcp_sacktag_state + ack flags)."""

    __slots__ = ("reord", "first_sackt", "last_sackt", "first_ackt", "last_ackt",
                 "retrans_data_acked", "orig_sack_acked", "newly_sacked", "dsack",
                 "dsack_tlp", "una_advanced", "lost_retrans", "reo_armed", "ts_ecr",
                 "can_send_new")

    def __init__(self, nxt: int, ts_ecr: int | None, can_send_new: bool) -> None:
        self.can_send_new = can_send_new
        self.reord = nxt
        self.first_sackt: float | None = None
        self.last_sackt = 0.0
        self.first_ackt: float | None = None
        self.last_ackt = 0.0
        self.retrans_data_acked = False
        self.orig_sack_acked = False
        self.newly_sacked = 0
        self.dsack = False
        self.dsack_tlp = False
        self.una_advanced = False
        self.lost_retrans = False
        self.reo_armed = False
        self.ts_ecr = ts_ecr


class Recovery:
    """Scoreboard + RACK-TLP + PRR + undo + rate samples for one sender."""

    # slotted: one per connection (a __dict__ here was ~1.6 KB per idle
    # connection); fast_path is a slot, so it is set per instance
    __slots__ = (
        "fast_path", "cfg", "_tlp_on", "sb", "rate", "rack", "rtt", "cc", "sack_ok",
        "ts_clock", "state", "high_seq", "undo_marker", "undo_retrans", "prior_ssthresh",
        "prior_cwnd", "prr_delivered", "prr_out", "batch_delivered", "reordering",
        "reord_seen", "retrans_stamp", "_retrans_any", "frto", "tlp_high_seq",
        "tlp_retrans", "_probe_pending", "dsack_dups", "total_retrans",
        "total_retrans_bytes", "rto_count", "reno_sacked", "is_sack_reneg", "tlp_probes",
        "tlp_recoveries", "undos", "recoveries", "_timer_kind", "_timer_at", "_now", "_ts_ecr",
        "_ca_rtt", "ack_time", "ack_time_first",
    )

    def __init__(self, una: int, mss: int, rtt: RttEstimator,
                 cc: CongestionController | None = None, *, sack: bool = True,
                 config: RecoveryConfig | None = None,
                 ts_clock: Callable[[float], int] | None = None,
                 mib: dict[str, int] | None = None) -> None:
        #: take the fast paths of :meth:`on_ack` / :meth:`on_sent` for the
        #: common case (tests set it False on an instance to force the general
        #: path; tests/unit/test_tcp_recovery_fastpath.py proves both give the same)
        self.fast_path = True
        self.cfg = config if config is not None else RecoveryConfig()
        self._tlp_on = self.cfg.tcp_early_retrans in (3, 4)
        self.sb = Scoreboard(una, mss)
        self.sb.lost_log = []
        self.sb.mib = mib  # TcpExtTCPLostRetransmit (Scoreboard.mark_lost)
        self.rate = RateSampler()
        self.rack = Rack()
        self.rtt = rtt
        self.cc: CongestionController | _Window = cc if cc is not None else _Window(mss)
        self.sack_ok = sack
        self.ts_clock = ts_clock
        self.state = _OPEN
        #: Linux tp->high_seq: SND.NXT when the current episode began (RFC 6582 "recover")
        self.high_seq = self.sb.una
        self.undo_marker: int | None = None
        self.undo_retrans = -1
        self.prior_ssthresh = 0
        self.prior_cwnd = 0
        self.prr_delivered = 0
        self.prr_out = 0
        #: DupThresh in segments, adapted to observed reordering (Linux tp->reordering)
        self.reordering = self.cfg.tcp_reordering
        self.reord_seen = 0
        #: TSval of the first retransmission of the episode (Linux retrans_stamp)
        self.retrans_stamp: int | None = None
        self._retrans_any = False
        self.frto = False
        self.tlp_high_seq: int | None = None
        self.tlp_retrans = False
        self._probe_pending: str | None = None
        self.dsack_dups = 0
        self.total_retrans = 0
        self.total_retrans_bytes = 0
        self.rto_count = 0  #: RTOs since SND.UNA last advanced (Linux icsk_retransmits)
        self.reno_sacked = 0  #: duplicate ACKs standing for SACKs without SACK
        self.is_sack_reneg = False
        self.tlp_probes = 0
        self.tlp_recoveries = 0
        #: recovery episodes entered (Linux LINUX_MIB_TCPSACKRECOVERY /
        #: TCPRENORECOVERY: every tcp_enter_recovery, a re-entry within one
        #: ACK included)
        self.recoveries = 0
        self.undos = 0
        self._timer_kind: str | None = None
        self._timer_at = 0.0
        self._now = 0.0
        self._ts_ecr: int | None = None
        self._ca_rtt: float | None = None
        #: when the ACK being processed reached us (the link's receive stamp,
        #: set by the connection per segment; None: ``now``), and when the
        #: first of the ACKs it stands for did (ACK coalescing): RTT samples
        #: only (:func:`ack_times`)
        self.ack_time: float | None = None
        self.ack_time_first: float | None = None

    # --- small views ---------------------------------------------------------------
    @property
    def mss(self) -> int:
        return self.sb.mss

    def set_mss(self, mss: int) -> None:
        """The send MSS changed (PMTU); new records count segments with it."""
        self.sb.mss = max(mss, 1)

    @property
    def una(self) -> int:
        return self.sb.una & MASK

    @property
    def nxt(self) -> int:
        return self.sb.nxt & MASK

    def in_flight(self) -> int:
        """RFC 6675 ``pipe`` in bytes (Linux ``tcp_packets_in_flight``): sent,
        minus SACKed (or, without SACK, duplicate-ACKed) and lost, plus
        retransmitted."""
        sb = self.sb  # (Scoreboard.in_flight inlined: the sender asks per push)
        f = sb.nxt - sb.una - sb.sacked_bytes - sb.lost_bytes + sb.retrans_bytes
        if self.reno_sacked:
            f -= self.reno_sacked * self.sb.mss
            if f < 0:
                f = 0
        return f

    def sacked_out(self) -> int:
        """SACKed segments (duplicate ACKs without SACK; Linux tp->sacked_out)."""
        return self.sb.sacked_out + self.reno_sacked

    def info(self) -> RecoveryInfo:
        """What ``ss -i`` / ``tcp_info`` show of the sender's recovery state."""
        sb = self.sb
        rate = self.rate
        return RecoveryInfo(
            ca_state=self.state, sacked=sb.sacked_out + self.reno_sacked,
            lost=sb.lost_out, retrans=sb.retrans_out, total_retrans=self.total_retrans,
            reordering=self.reordering, reord_seen=self.reord_seen,
            dsack_dups=self.dsack_dups, delivered=rate.delivered,
            delivery_rate=(rate.rate_delivered / rate.rate_interval
                           if rate.rate_interval > 0 else 0.0),
            app_limited=rate.rate_app_limited, in_flight=self.in_flight(),
            tlp_probes=self.tlp_probes, tlp_recoveries=self.tlp_recoveries,
            undos=self.undos)

    def timer(self) -> tuple[str, float] | None:
        """The xmit timer: ("rto" | "probe" | "reorder", deadline) or None."""
        if self._timer_kind is None:
            return None
        return (self._timer_kind, self._timer_at)

    def apply_timers(self, timers: Timers) -> None:
        """Copy the xmit timer into the connection's timer table (one of
        ``rto``/``tlp``/``reorder`` armed, as Linux's single slot)."""
        kind = self._timer_kind
        at = self._timer_at
        timers.rto = at if kind == "rto" else None
        timers.tlp = at if kind == "probe" else None
        timers.reorder = at if kind == "reorder" else None

    def rack_deadline(self) -> float | None:
        return self._timer_at if self._timer_kind == "reorder" else None

    def tlp_deadline(self) -> float | None:
        return self._timer_at if self._timer_kind == "probe" else None

    def rto_deadline(self) -> float | None:
        return self._timer_at if self._timer_kind == "rto" else None

    def next_to_retransmit(self) -> tuple[int, int] | None:
        """The lowest lost, not yet retransmitted range (RFC 6675 4 NextSeg
        rule 1; Linux retransmits only segments marked lost, new data being
        rule 2)."""
        r = self.sb.next_lost()
        if r is None:
            return None
        return (r.start & MASK, r.end - r.start)

    # --- sending ------------------------------------------------------------------
    def restamp(self, stamped: float, left: float) -> None:
        """The (re)transmissions recorded at ``stamped`` left the host at
        ``left`` (later: the driver's send call, after segmentation and
        encoding): their send time becomes ``left``, so RTT samples (RFC
        6298 2) and rate-sample intervals start when the segment did (Linux
        stamps ``skb_mstamp`` in ``tcp_transmit_skb``, just before the
        device).  Walks the time-ordered list from its tail: O(segments of
        that round); order is kept (they are the latest sent)."""
        if left <= stamped:
            return
        r = self.sb._ts_tail
        while r is not None and r.sent == stamped:
            r.sent = left
            if r.first_sent == stamped:
                r.first_sent = left
            if r.tx_first_tx_time == stamped:
                r.tx_first_tx_time = left
            if r.tx_delivered_time == stamped:
                r.tx_delivered_time = left
            r = r.ts_prev
        self._restamp_rate(stamped, left)

    def _restamp_rate(self, stamped: float, left: float) -> None:
        """The rate sampler's interval starts that carry the round's old
        send time ``stamped`` move to ``left`` with the records."""
        rate = self.rate
        if rate.first_tx_time == stamped:
            rate.first_tx_time = left
        if rate.delivered_time == stamped:
            rate.delivered_time = left

    def restamp_each(self, stamped: float, starts: list[int], spans: list[int],
                     times: list[float]) -> None:
        """:meth:`restamp` with a time per output segment: the records sent
        at ``stamped`` whose first sequence number lies in segment ``i``
        (``starts[i]``, ``spans[i]`` sequence numbers, output order) left at
        ``times[i]`` (non-decreasing: the device's send call for each frame
        of the round).  Linux stamps every skb in __tcp_transmit_skb, a TSO
        skb once for all its segments (tcp_fragment copies the stamp to
        both parts): the time of its own transmission, so the newest
        acknowledged segment's RTT (min_rtt, ``ca_rtt``) never includes the
        sending of the super-segments before it.  The flight's start
        (``tx_first_tx_time``, ``tx_delivered_time``, the sampler's) moves
        to the first frame's time, as :meth:`restamp` moves it.  The round's
        new-data record is split at the frames' boundaries first
        (:meth:`Scoreboard.split`, Linux tcp_fragment: both parts keep every
        mark), so each super-segment has a record, and so a time, of its own."""
        n = len(times)
        if not n:
            return
        left = times[0]
        if left <= stamped:
            left = stamped
        sb = self.sb
        q = sb._q
        if n > 1 and len(q) > sb._h:
            # the round's new data is one record (Sender.push reports it in
            # one on_sent): cut it where the frames were cut, one record per
            # super-segment as Linux has one skb per TSO packet
            i = len(q) - 1
            tail = q[i]
            if tail.sent == stamped and not tail.retrans:
                lo, hi = tail.start, tail.end
                s32 = lo & MASK
                cuts: list[int] = []
                for k in range(n):
                    b = lo + ((starts[k] - s32) & MASK)
                    if lo < b < hi:
                        cuts.append(b)
                if cuts:
                    cuts.sort()
                    for b in cuts:
                        i = sb.split(i, b)
        r = sb._ts_tail
        j = n - 1
        while r is not None and r.sent == stamped:
            s = r.start & MASK
            t = left
            k = j  # the tail's records belong to the last segments: search back from there
            while k >= 0:
                if (s - starts[k]) & MASK < spans[k]:
                    break
                k -= 1
            if k < 0:  # (out of output order: look at all of them)
                k = n - 1
                while k >= 0 and (s - starts[k]) & MASK >= spans[k]:
                    k -= 1
            if k >= 0:
                j = k
                if times[k] > t:
                    t = times[k]
            r.sent = t
            if r.first_sent == stamped:
                r.first_sent = t
            if r.tx_first_tx_time == stamped:
                r.tx_first_tx_time = left
            if r.tx_delivered_time == stamped:
                r.tx_delivered_time = left
            r = r.ts_prev
        self._restamp_rate(stamped, left)

    def on_sent(self, seq: int, length: int, now: float, *,
                retransmission: bool | None = None, tsval: int | None = None) -> None:
        """``length`` sequence numbers from ``seq`` were just transmitted.

        The part below SND.NXT is a retransmission (``retransmission`` is only a
        hint; the sequence numbers decide).  New data gets a record stamped for
        rate sampling (Linux ``tcp_rate_skb_sent``); a retransmission is
        counted for undo (``undo_retrans``), PRR (``prr_out``) and Karn."""
        if length <= 0:
            return
        sb = self.sb
        self._now = now
        if seq == sb.nxt & MASK and self._probe_pending is None and self.fast_path:
            self._sent_new(sb, length, now, tsval)
            return
        start = sb.unwrap(seq)
        end = start + length
        if start > sb.nxt:
            raise ValueError(f"segment at {seq} leaves a gap after SND.NXT {sb.nxt & MASK}")
        if end <= sb.una:
            return  # entirely acknowledged already
        nothing_in_flight = sb.packets_out == 0
        in_reduction = self.state is _CWR or self.state is _RECOVERY
        new_data = False
        rtx_end = end if end < sb.nxt else sb.nxt
        if start < rtx_end:
            self._sent_again(max(start, sb.una), rtx_end, now, tsval)
        if end > sb.nxt:
            r = sb.append(end, now, tsval)
            self.rate.on_sent(r, now, nothing_in_flight)
            new_data = True
        if in_reduction:
            self.prr_out += end - max(start, sb.una)
        if self._probe_pending is not None:
            # RFC 8985 7.3: remember SND.NXT for the probe's ACK (Linux tlp_high_seq)
            self.tlp_retrans = self._probe_pending == "retransmit"
            self._probe_pending = None
            self.tlp_high_seq = sb.nxt
            self.tlp_probes += 1
            self._timer_kind = None
            self._rearm_rto(now)
            return
        # Linux tcp_event_new_data_sent (RTO armed when the flight starts or a
        # probe was pending) + tcp_schedule_loss_probe at the end of
        # tcp_write_xmit; the probe, when armed, replaces the RTO in the slot
        if new_data and not self._schedule_loss_probe(now, advancing=False) and (
                nothing_in_flight or self._timer_kind == "probe" or self._timer_kind is None):
            self._rearm_rto(now)

    def _sent_new(self, sb: Scoreboard, length: int, now: float, tsval: int | None) -> None:
        """:meth:`on_sent` fast path: new data appended in order at SND.NXT, no
        probe pending (the general path with nothing to resend; same results,
        tests/unit/test_tcp_recovery_fastpath.py)."""
        nothing_in_flight = sb.packets_out == 0
        r = sb.append(sb.nxt + length, now, tsval)
        self.rate.on_sent(r, now, nothing_in_flight)
        state = self.state
        if state is _CWR or state is _RECOVERY:
            self.prr_out += length
        if not self._schedule_loss_probe(now, advancing=False) and (
                nothing_in_flight or self._timer_kind == "probe" or self._timer_kind is None):
            self._rearm_rto(now)

    def _sent_again(self, start: int, end: int, now: float, tsval: int | None) -> None:
        sb = self.sb
        i, j = sb.isolate(start, end)
        head = sb.head
        head_rtx = False
        for k in range(i, j):
            r = sb.record(k)
            if r is head:
                head_rtx = True
            sb.retransmitted(r, now, tsval)
            self.rate.on_sent(r, now, False)
            if self.undo_retrans < 0:
                self.undo_retrans = 0
            self.undo_retrans += r.pcount
            self.total_retrans += r.pcount
            self.total_retrans_bytes += r.end - r.start
        if not self._retrans_any:
            self._retrans_any = True
            self.retrans_stamp = tsval
        # Linux tcp_xmit_retransmit_queue: retransmitting the head restarts the RTO
        if head_rtx and self._timer_kind != "reorder" and self._probe_pending is None:
            self._timer_kind = "rto"
            self._timer_at = now + self.rtt.rto

    def check_app_limited(self, unsent: int, cwnd: int | None = None) -> bool:
        """The application has ``unsent`` bytes queued and nothing more to give:
        mark samples app-limited if the network is not the limit (Linux
        ``tcp_rate_check_app_limited``)."""
        sb = self.sb
        return self.rate.check_app_limited(unsent, sb.mss, self.in_flight(),
                                           self.cc.cwnd if cwnd is None else cwnd,
                                           sb.lost_bytes, sb.retrans_bytes)

    # --- ACK processing -----------------------------------------------------------
    def on_ack(self, ack: int, sack_blocks: Sequence[tuple[int, int]], now: float, *,
               ts_ecr: int | None = None, window_update: bool = False,
               has_data: bool = False, ece: bool = False,
               is_cwnd_limited: bool = True, can_send_new: bool = False) -> AckOutcome:
        """Process one ACK (Linux ``tcp_ack``: ``tcp_sacktag_write_queue``,
        ``tcp_clean_rtx_queue``, ``tcp_process_tlp_ack``,
        ``tcp_fastretrans_alert``, ``tcp_rate_gen``, ``tcp_cong_control``)."""
        sb = self.sb
        self._now = now
        if not sack_blocks and not ece:
            fa = self._fast_ack_point(ack)
            if fa is not None:
                return self._on_ack_fast(fa, now, ts_ecr, is_cwnd_limited)
        self._ts_ecr = ts_ecr
        out = AckOutcome(prior_state=self.state, state=self.state)
        a = sb.unwrap(ack)
        if a > sb.nxt:
            raise ValueError(f"ACK {ack} beyond SND.NXT {sb.nxt & MASK}")
        old = a < sb.una
        if old:
            out.old = True
            a = sb.una
        st = _AckState(sb.nxt, ts_ecr, can_send_new)
        prior_una = sb.una
        prior_fack = sb.fack
        prior_in_flight = self.in_flight()
        prior_delivered = self.rate.delivered
        prior_lost = sb.lost_total
        prior_recoveries = self.recoveries
        log = sb.lost_log
        if log is not None:
            log.clear()
        acc = RateAccumulator()
        min_rtt = self.rtt.min_rtt

        if sack_blocks and self.sack_ok:
            self._sacktag(sack_blocks, a, prior_una, prior_fack, now, acc, st, min_rtt)
        st.una_advanced = a > prior_una
        if st.una_advanced:
            self.rto_count = 0
            out.acked = self._clean(a, now, acc, st, min_rtt)
        # RFC 5681 / Linux reordering detection: a never-retransmitted segment
        # delivered below the highest SACK means the network reordered
        if st.reord < prior_fack:
            self._check_sack_reordering(st.reord, max(prior_fack, sb.fack))
        out.rtt = self._rtt_update(now, st)
        self.rack.update_reo_wnd(acc.prior_delivered if acc.have else None,
                                 self.rate.delivered,
                                 bool(self.cfg.tcp_recovery & RACK_STATIC_REO_WND))
        out.sacked = st.newly_sacked
        out.dsack = st.dsack
        not_dup = has_data or window_update or st.una_advanced
        classic_dup = (not st.una_advanced and not has_data and not window_update
                       and sb.packets_out > 0 and not st.dsack)
        # RFC 6675 2: an ACK with new SACK information is a duplicate whatever
        # else it changed
        out.dupack = classic_dup or (not st.una_advanced and st.newly_sacked > 0)
        num_dupack = 1 if out.dupack else 0

        if self.tlp_high_seq is not None:
            self._process_tlp_ack(a, st, not_dup, out)

        reneg = False
        dubious = (not not_dup or st.newly_sacked > 0 or ece or st.dsack
                   or self.state is not _OPEN)
        if st.una_advanced and sb.sacked_out and sb.head is not None and sb.head.sacked:
            # RFC 2018 8: the receiver dropped SACKed data; wait a little for
            # the ACK that would fix it, then the RTO clears all SACK marks
            reneg = True
        rexmit_new = False
        if reneg:
            out.reneging = True
            delay = max(self.rtt.srtt / 2, 0.01)
            self._timer_kind = "rto"
            self._timer_at = now + delay
        elif dubious:
            rexmit_new = self._fastretrans_alert(prior_una, num_dupack, st, ece, out)
        out.frto_new_data = rexmit_new

        delivered_now = self.rate.delivered - prior_delivered
        lost_now = sb.lost_total - prior_lost
        out.delivered = delivered_now
        out.lost = lost_now
        if log:
            out.lost_ranges = [(s & MASK, e & MASK) for s, e in log]
        d, interval, app_limited = self.rate.generate(acc, delivered_now, now, min_rtt,
                                                      self.is_sack_reneg)
        cur_rtt = self.rtt.min_rtt
        ca_rtt = self._ca_rtt
        # positional, in RateSample's field order (half the cost of keywords;
        # test_rate_sample_field_order guards the order)
        rs = RateSample(
            d, interval, d / interval if interval > 0 else 0.0,
            delivered_now, prior_in_flight, self.in_flight(), lost_now,
            ca_rtt if ca_rtt is not None else -1.0, cur_rtt if cur_rtt > 0 else -1.0,
            app_limited, acc.is_retrans, acc.prior_delivered if acc.have else 0,
            self.rate.delivered, self.state, is_cwnd_limited)
        out.rate = rs
        if not old:
            self._cong_control(delivered_now, lost_now, st, rs, now)
        # Linux tcp_set_xmit_timer (FLAG_SET_XMIT_TIMER): after newly acked data
        if sb.packets_out == 0:
            self._timer_kind = None
            self._probe_pending = None
        elif (st.una_advanced and not reneg and not st.reo_armed
              and not self._schedule_loss_probe(now, advancing=True)):
            self._rearm_rto(now)
        out.state = self.state
        out.entered_recovery = self.recoveries != prior_recoveries
        self._ts_ecr = None
        return out

    def _fast_ack_point(self, ack: int) -> int | None:
        """The unwrapped ACK if an ACK without SACK blocks and ECE takes the
        fast path (:meth:`_clean_ack`: the cumulative ACK advances, nothing
        SACKed/lost/retransmitted, a SACK peer, OPEN, no probe episode; an
        undo marker left by an earlier recovery is fine), else None."""
        sb = self.sb
        # (undo_marker may stay set after a recovery, as in Linux: only
        # _fastretrans_alert and D-SACKs read it, and an advancing ACK without
        # SACK blocks in OPEN is not dubious, so the general path never does)
        if (self.state is _OPEN and self.tlp_high_seq is None
                and not (sb.sacked_out or sb.lost_out or sb.retrans_out or self.reno_sacked)
                and self.sack_ok and not self.is_sack_reneg and self.fast_path):
            d = (ack - sb.una) & MASK
            if 0 < d <= sb.nxt - sb.una:
                return sb.una + d
        return None

    def on_clean_ack(self, ack: int, now: float, ts_ecr: int | None,
                     is_cwnd_limited: bool) -> RateSample | None:
        """:meth:`on_ack` of an ACK without SACK blocks and without ECE when
        it takes the fast path; returns only the rate sample (the rest of
        the :class:`AckOutcome` of that path is "nothing happened": no
        state change, D-SACK, loss, undo, F-RTO or reneging), or None when
        the ACK needs :meth:`on_ack`.  The connection calls this first for
        plain ACKs (no keyword arguments, no outcome object)."""
        a = self._fast_ack_point(ack)
        if a is None:
            return None
        self._now = now
        return self._clean_ack(a, now, ts_ecr, is_cwnd_limited)[0]

    def _on_ack_fast(self, a: int, now: float, ts_ecr: int | None,
                     is_cwnd_limited: bool) -> AckOutcome:
        """:meth:`on_ack`'s fast path: :meth:`_clean_ack` as an outcome."""
        rs, acked, seq_rtt = self._clean_ack(a, now, ts_ecr, is_cwnd_limited)
        out = AckOutcome(acked)
        out.rtt = seq_rtt
        out.delivered = rs.acked_sacked
        out.rate = rs
        return out

    def _clean_ack(self, a: int, now: float, ts_ecr: int | None,
                   is_cwnd_limited: bool) -> tuple[RateSample, int, float | None]:
        """:meth:`on_ack` for the common case: the cumulative ACK advances to
        ``a`` (unwrapped), no SACK blocks, nothing SACKed, lost or being
        retransmitted on the scoreboard, a SACK peer, state OPEN, no probe
        episode, no ECE (an undo marker left by an earlier recovery is
        fine: the general path reads it only for dubious ACKs and D-SACKs).
        The general path then takes no
        SACK, D-SACK, dupACK, loss, undo or state-machine branch; what is
        left is inlined here (``_clean`` without marks, the rate sampler's
        ``on_delivered``/``generate``, ``_rtt_update``, RACK's window update,
        ``_cong_control`` in OPEN, the probe timer).  With no SACKed, lost or
        retransmitted bytes the pipe is SND.NXT - SND.UNA and nothing is
        newly lost.  Same results, state and calls as the general path
        (tests/unit/test_tcp_recovery_fastpath.py)."""
        sb = self.sb
        rate = self.rate
        rack = self.rack
        log = sb.lost_log
        if log:
            log.clear()
        prior_fack = sb.fack
        # (in_flight() with no SACKed, lost, retransmitted or dupACKed bytes)
        prior_in_flight = sb.nxt - sb.una
        delivered = rate.delivered
        prior_delivered = delivered
        reord = sb.nxt
        rtt = self.rtt
        min_rtt = rtt.min_rtt
        self.rto_count = 0
        # Linux tcp_clean_rtx_queue with no SACK/lost/retrans marks (see
        # _clean; Scoreboard.pop_acked_clean); the rate sample's starting
        # record (RateSampler.on_delivered) kept in locals instead of a
        # RateAccumulator
        acked = 0
        mss = sb.mss
        first_ackt: float | None = None
        last_ackt = 0.0
        retrans_acked = False
        have = False
        s_delivered = 0
        s_time = 0.0
        s_interval = -1.0
        s_app_limited = False
        s_retrans = False
        s_xid = 0
        s_end = 0
        first_tx = rate.first_tx_time
        for r, n in sb.pop_acked_clean(a):
            acked += n
            delivered += n
            if r.start == a and r.pcount == (
                    (r.end - a + n + mss - 1) // mss if r.end - a + n > mss else 1):
                continue  # no whole segment of the record acked (see _clean)
            sent = r.sent
            if r.retrans:
                retrans_acked = True
                if not (ts_ecr is not None and r.tsval is not None
                        and seq_lt(ts_ecr, r.tsval)):
                    rack.advance(r, now, min_rtt)
            else:
                if first_ackt is None:
                    first_ackt = sent
                last_ackt = sent
                if r.start < reord:
                    reord = r.start
                rack.advance(r, now, min_rtt)
            # RateSampler.on_delivered
            if not have or sent > first_tx or (
                    sent == first_tx and (r.xid > s_xid or (r.xid == s_xid and r.end > s_end))):
                have = True
                s_delivered = r.tx_delivered
                s_time = r.tx_delivered_time
                s_app_limited = r.app_limited
                s_retrans = r.retrans > 0
                s_end = r.end
                s_xid = r.xid
                first_tx = sent
                s_interval = sent - r.tx_first_tx_time
        rate.first_tx_time = first_tx
        rate.delivered = delivered
        if reord < prior_fack:
            self._check_sack_reordering(reord, max(prior_fack, sb.fack))
        # _rtt_update without SACK samples
        seq_rtt: float | None = None
        ca_rtt: float | None = None
        if first_ackt is not None and not retrans_acked:
            if self.ack_time is None:
                seq_rtt = now - first_ackt
                ca_rtt = now - last_ackt
            else:
                t_first, t_last = ack_times(now, self.ack_time, self.ack_time_first,
                                            first_ackt, last_ackt)
                seq_rtt = t_first - first_ackt
                ca_rtt = t_last - last_ackt
        elif ts_ecr is not None and self.ts_clock is not None:
            delta = seq_sub(self.ts_clock(now), ts_ecr)
            if 0 <= delta < 0x7FFFFFFF // 1000:
                seq_rtt = max(delta, 1) / 1000.0
                ca_rtt = seq_rtt
        self._ca_rtt = ca_rtt
        if seq_rtt is not None:
            rtt.update(seq_rtt, ca_rtt if ca_rtt is not None else seq_rtt, now)
            rtt.backoff = 0
        # Rack.update_reo_wnd: only a pending D-SACK or a multiplier left
        # above 1 without persistence changes anything
        if have and (rack.dsack_seen or (rack.reo_wnd_steps != 1 and not rack.reo_wnd_persist)):
            rack.update_reo_wnd(s_delivered, delivered,
                                bool(self.cfg.tcp_recovery & RACK_STATIC_REO_WND))
        delivered_now = delivered - prior_delivered
        # RateSampler.generate (tcp_rate_gen)
        app = rate.app_limited
        if app and delivered > app:
            rate.app_limited = 0
        if delivered_now:
            rate.delivered_time = now
        if not have:
            d = 0
            interval = -1.0
        else:
            d = delivered - s_delivered
            ack_interval = now - s_time
            interval = s_interval if s_interval > ack_interval else ack_interval
            if (min_rtt > 0.0 and interval < min_rtt) or interval <= 0.0:
                interval = -1.0
            elif not s_app_limited or (
                    d * rate.rate_interval >= rate.rate_delivered * interval):
                rate.rate_delivered = d
                rate.rate_interval = interval
                rate.rate_app_limited = s_app_limited
        cur_rtt = rtt.min_rtt
        in_flight = sb.nxt - sb.una
        rs = RateSample(
            d, interval, d / interval if interval > 0 else 0.0,
            delivered_now, prior_in_flight, in_flight, 0,
            ca_rtt if ca_rtt is not None else -1.0, cur_rtt if cur_rtt > 0 else -1.0,
            s_app_limited, s_retrans, s_delivered, delivered, self.state, is_cwnd_limited)
        cc = self.cc
        # _cong_control in OPEN after an in-order advance (tcp_may_raise_cwnd)
        if cc.controls_cwnd or delivered_now > 0:
            cc.on_ack(rs, now)
        packets_out = sb.packets_out
        if packets_out == 0:
            self._timer_kind = None
            self._probe_pending = None
        elif self._tlp_on:
            # _schedule_loss_probe(advancing=True) for a SACK peer in OPEN
            # (rack.probe_timeout inlined)
            srtt = rtt.srtt
            cfg = self.cfg
            if srtt <= 0.0:
                pto = cfg.probe_initial
            else:
                pto = 2 * srtt + (cfg.rto_min if packets_out == 1 else TIMEOUT_MIN)
            rto = rtt.rto
            if 0 < rto < pto:
                pto = rto
            self._timer_kind = "probe"
            self._timer_at = now + pto
        else:
            self._rearm_rto(now)
        return rs, acked, seq_rtt

    def _sacktag(self, blocks: Sequence[tuple[int, int]], a: int, prior_una: int,
                 prior_fack: int, now: float, acc: RateAccumulator, st: _AckState,
                 min_rtt: float) -> None:
        """RFC 2018 / RFC 6675 4 Update(): mark SACKed records; the first block is
        a D-SACK (RFC 2883 4) if it lies below the ACK or inside the second."""
        if self.fast_path and self._sacktag_top(blocks, a, prior_fack, now, acc, st, min_rtt):
            return
        sb = self.sb
        ranges: list[tuple[int, int]] = []
        for left, right in blocks:
            s = sb.unwrap(left)
            ranges.append((s, s + seq_sub(right, left)))
        s0, e0 = ranges[0]
        dsack = e0 > s0 and (s0 < a or (len(ranges) > 1 and ranges[1][0] <= s0
                                        and e0 <= ranges[1][1]))
        if dsack:
            self._dsack(s0, e0, prior_una, st)
        for s, e in sorted(ranges):
            if e <= s or e > sb.nxt:
                continue  # RFC 2018: invalid block (Linux tcp_is_sackblock_valid)
            if s < a:
                s = a
            if e <= s:
                continue
            for ns, ne in sb.add_sacked_range(s, e):
                i, j = sb.isolate(ns, ne)
                for k in range(i, j):
                    r = sb.record(k)
                    if not r.sacked:
                        self._sacktag_one(r, prior_fack, now, acc, st, min_rtt)

    def _sacktag_top(self, blocks: Sequence[tuple[int, int]], a: int, prior_fack: int,
                     now: float, acc: RateAccumulator, st: _AckState, min_rtt: float) -> bool:
        """:meth:`_sacktag`'s short path for the common SACK ACK of a loss
        episode (RFC 2018 4: the first block holds the newest segment): the
        first block, valid and at or above the ACK, only extends the SACKed
        set at its top, and every other block repeats ranges already SACKed.
        Then no block is a D-SACK (RFC 2883 4: the first is above the ACK
        and not inside the second, which ends below it), the repeated ones
        change nothing, and the one new range is merged in place instead of
        rebuilding the set.  False (nothing done) when the ACK is not of that
        shape: the general path takes it.  Same marks, counters and order
        as the general path (tests/unit/test_tcp_recovery_fastpath.py)."""
        sb = self.sb
        una = sb.una
        base = una & MASK
        nxt = sb.nxt
        left, right = blocks[0]
        s0 = una + seq_sub(left, base)
        e0 = s0 + seq_sub(right, left)
        if s0 < a or e0 <= s0 or e0 > nxt:
            return False
        top = sb._sacked
        if top:
            ls, le = top[-1]
            if s0 < ls or e0 <= le:
                return False
        elif len(blocks) > 1:
            return False
        for k in range(1, len(blocks)):
            left, right = blocks[k]
            s = una + seq_sub(left, base)
            e = s + seq_sub(right, left)
            if e <= s or e > nxt or not sb.sacked_covers(s, e):
                return False
        i, j = sb.isolate(sb.add_sacked_top(s0, e0), e0)
        for k in range(i, j):
            r = sb.record(k)
            if not r.sacked:
                self._sacktag_one(r, prior_fack, now, acc, st, min_rtt)
        return True

    def _sacktag_one(self, r: Segment, prior_fack: int, now: float, acc: RateAccumulator,
                     st: _AckState, min_rtt: float) -> None:
        """Linux ``tcp_sacktag_one`` for a newly SACKed record."""
        if not r.retrans:
            if r.start < prior_fack and r.start < st.reord:
                st.reord = r.start
            if r.end <= self.high_seq:
                st.orig_sack_acked = True
            if st.first_sackt is None:
                st.first_sackt = r.sent
            st.last_sackt = r.sent
        self.rack.advance(r, now, min_rtt)
        self.rate.on_delivered(acc, r)
        n = r.end - r.start
        self.sb.mark_sacked(r)
        self.rate.delivered += n
        st.newly_sacked += n

    def _dsack(self, s: int, e: int, prior_una: int, st: _AckState) -> None:
        """RFC 2883 / RFC 3708 (Linux ``tcp_dsack_seen``, ``tcp_check_dsack``):
        a duplicate arrived.  Dubious D-SACKs (more than was retransmitted) are
        ignored; a credible one counts against ``undo_retrans`` and widens RACK's
        reordering window once reordering has been seen.  A credible D-SACK
        above SND.UNA of a retransmitted record that is already SACKed (the
        original arrived, then the retransmission) is reordering: it lowers
        ``st.reord`` as Linux ``tcp_sacktag_one`` does for such a record, so
        ``tcp_check_sack_reordering`` counts it (``reord_seen``; RACK's window
        is then min_rtt/4 even in recovery, RFC 8985 6.2 step 4)."""
        if not self.cfg.tcp_dsack:
            return
        mss = self.sb.mss
        n = e - s
        dup_segs = 1
        if n > mss:
            dup_segs = (n + mss - 1) // mss
        elif self.tlp_high_seq is not None and self.tlp_high_seq == e:
            st.dsack_tlp = True
        self.dsack_dups += dup_segs
        if self.dsack_dups > self.total_retrans:
            return
        if self.reord_seen and not st.dsack_tlp:
            self.rack.dsack_seen = True
        st.dsack = True
        # Linux tcp_dsack_seen: "a spurious retransmission is delivered" (it
        # counts for the rate sample and the window growth of this ACK)
        self.rate.delivered += n
        um = self.undo_marker
        if e <= prior_una:
            if um is not None and self.undo_retrans > 0 and e > um:
                self.undo_retrans = max(0, self.undo_retrans - dup_segs)
            return
        # D-SACK of data still on the scoreboard (Linux walks it in
        # tcp_sacktag_walk: tcp_sacktag_one with dup_sack): count its
        # retransmitted records for undo; a SACKed one is reordering
        sb = self.sb
        lo = max(s, sb.una)
        hi = min(e, sb.nxt)
        if lo >= hi:
            return
        i, j = sb.isolate(lo, hi)
        for k in range(i, j):
            r = sb.record(k)
            if not r.retrans:
                continue
            if um is not None and r.end > um and self.undo_retrans > 0:
                self.undo_retrans = max(0, self.undo_retrans - r.pcount)
            if r.sacked and r.start < st.reord:
                st.reord = r.start

    def _clean(self, a: int, now: float, acc: RateAccumulator, st: _AckState,
               min_rtt: float) -> int:
        """Linux ``tcp_clean_rtx_queue``: drop what the cumulative ACK covers."""
        sb = self.sb
        acked = 0
        acked_pkts = 0
        sack_ok = self.sack_ok
        ts_ecr = st.ts_ecr
        rack = self.rack
        rate = self.rate
        high = self.high_seq
        for r, n in sb.pop_acked(a):
            acked += n
            acked_pkts += sb.pcount(n)
            if r.start == a and sb.pcount(r.end - a + n) == r.pcount:
                # no whole segment of the record acked: Linux acks whole
                # segments of a record only (tcp_tso_acked: the evidence
                # comes with the ACK that lowers the record's segment count,
                # however many partial ACKs came before): bytes, no evidence
                if not r.sacked and sack_ok:
                    rate.delivered += n
                continue
            if r.retrans:
                st.retrans_data_acked = True
            elif not r.sacked:
                if st.first_ackt is None:
                    st.first_ackt = r.sent
                st.last_ackt = r.sent
                if r.start < st.reord:
                    st.reord = r.start
                if r.end <= high:
                    st.orig_sack_acked = True
            if not r.sacked:
                if sack_ok:
                    rate.delivered += n
                    spurious = (r.retrans and ts_ecr is not None and r.tsval is not None
                                and seq_lt(ts_ecr, r.tsval))
                    if not spurious:
                        rack.advance(r, now, min_rtt)
                rate.on_delivered(acc, r)
        if not sack_ok:
            # Linux tcp_remove_reno_sacks: the dupACKs already counted some of it
            credited = self.reno_sacked * sb.mss
            rate.delivered += max(acked - credited, min(acked, sb.mss))
            if acked_pkts - 1 >= self.reno_sacked:
                self.reno_sacked = 0
            else:
                self.reno_sacked -= acked_pkts - 1
        return acked

    def _rtt_update(self, now: float, st: _AckState) -> float | None:
        """RFC 6298 3 / Karn: RTT from never-retransmitted segments only
        (cumulatively acked first, else SACKed); with timestamps, RFC 7323 4.3
        TSecr when only retransmitted data was acked (Linux
        ``tcp_ack_update_rtt``).  Resets the RTO backoff (RFC 6298 5.7)."""
        seq_rtt: float | None = None
        ca_rtt: float | None = None
        at = self.ack_time
        if st.first_ackt is not None and not st.retrans_data_acked:
            if at is None:
                seq_rtt = now - st.first_ackt
                ca_rtt = now - st.last_ackt
            else:
                t_first, t_last = ack_times(now, at, self.ack_time_first,
                                            st.first_ackt, st.last_ackt)
                seq_rtt = t_first - st.first_ackt
                ca_rtt = t_last - st.last_ackt
        if st.first_sackt is not None:
            t = now if at is None else ack_times(now, at, None, st.first_sackt,
                                                  st.last_sackt)[1]
            sack_rtt = t - st.first_sackt
            ca_rtt = t - st.last_sackt
            if seq_rtt is None:
                seq_rtt = sack_rtt
        if (seq_rtt is None and st.una_advanced and st.ts_ecr is not None
                and self.ts_clock is not None):
            delta = seq_sub(self.ts_clock(now), st.ts_ecr)
            if 0 <= delta < 0x7FFFFFFF // 1000:
                seq_rtt = max(delta, 1) / 1000.0
                ca_rtt = seq_rtt
        self._ca_rtt = ca_rtt
        if seq_rtt is None:
            return None
        self.rtt.update(seq_rtt, ca_rtt if ca_rtt is not None else seq_rtt, now)
        self.rtt.backoff = 0
        return seq_rtt

    def _check_sack_reordering(self, low: int, fack: int, ts: bool = False) -> None:
        """Linux ``tcp_check_sack_reordering``: raise DupThresh to the observed
        reordering degree (RFC 4653-style adaptation), at most tcp_max_reordering."""
        if low >= fack:
            return
        mss = self.sb.mss
        metric = fack - low
        if metric > self.reordering * mss:
            self.reordering = min((metric + mss - 1) // mss, self.cfg.tcp_max_reordering)
        self.reord_seen += 1
        mib = self.sb.mib
        if mib is not None:
            key = "TcpExtTCPTSReorder" if ts else "TcpExtTCPSACKReorder"
            mib[key] = mib.get(key, 0) + 1

    def _process_tlp_ack(self, a: int, st: _AckState, not_dup: bool,
                         out: AckOutcome) -> None:
        """RFC 8985 7.4 (Linux ``tcp_process_tlp_ack``): end the probe episode;
        if the probe repaired a loss, reduce the window once (CWR)."""
        th = self.tlp_high_seq
        if th is None or a < th:
            return
        if not self.tlp_retrans:
            self.tlp_high_seq = None  # a probe of new data was acknowledged
        elif st.dsack_tlp:
            self.tlp_high_seq = None  # the D-SACK says original and probe arrived
        elif a > th:
            # RFC 8985 7.4.2: the probe repaired a loss: one reduction
            self._init_cwnd_reduction()
            self._set_state(_CWR)
            self._end_cwnd_reduction()
            self._try_keep_open()
            self.tlp_recoveries += 1
            out.tlp_recovered = True
        elif not (st.una_advanced or not_dup or st.newly_sacked):
            self.tlp_high_seq = None  # pure dupACK: both arrived, no loss

    # --- the state machine (Linux tcp_fastretrans_alert) -------------------------
    def _fastretrans_alert(self, prior_una: int, num_dupack: int, st: _AckState,
                           ece: bool, out: AckOutcome) -> bool:
        """RFC 6675 5 / RFC 6582 / RFC 8985 as Linux ``tcp_fastretrans_alert``.
        Returns True when F-RTO wants new data sent first."""
        sb = self.sb
        do_lost = num_dupack > 0 or (st.newly_sacked > 0 and self._force_fast_retransmit())
        fast_rexmit = False
        if ece:
            self.prior_ssthresh = 0
        if self.state is _OPEN:
            self.retrans_stamp = None
            self._retrans_any = bool(sb.retrans_out)
        elif sb.una >= self.high_seq:
            if self.state is _CWR:
                if sb.una != self.high_seq:
                    self._end_cwnd_reduction()
                    self._set_state(_OPEN)
            elif self.state is _RECOVERY:
                if not self.sack_ok:
                    self.reno_sacked = 0
                if self._try_undo_recovery(out):
                    return False
                self._end_cwnd_reduction()

        state = self.state
        if state is _RECOVERY:
            if not st.una_advanced:
                if not self.sack_ok:
                    self._add_reno_sack(num_dupack)
            else:
                held, do_lost = self._try_undo_partial(prior_una, do_lost, out)
                if held:
                    return False
            if self._try_undo_dsack(out):
                self._try_to_open(ece)
            self._identify_packet_loss(st)
            if self.state is not _RECOVERY:
                if not self._time_to_recover():
                    return False
                self._enter_recovery(ece)
        else:
            if state is _LOSS:
                rexmit_new = self._process_loss(st, num_dupack, out)
                if rexmit_new:
                    return True
                self._identify_packet_loss(st)
                if not (self.state is _OPEN or st.lost_retrans):
                    return False
            # Open, Disorder, CWR (and Loss falling through)
            if not self.sack_ok:
                if st.una_advanced:
                    self.reno_sacked = 0
                self._add_reno_sack(num_dupack)
            if self.state <= _DISORDER:
                self._try_undo_dsack(out)
            self._identify_packet_loss(st)
            if not self._time_to_recover():
                self._try_to_open(ece)
                return False
            self._enter_recovery(ece)
            fast_rexmit = True
        if not self._rack_on() and do_lost and self.sack_ok:
            self._update_scoreboard(fast_rexmit)
        return False

    def _rack_on(self) -> bool:
        return bool(self.cfg.tcp_recovery & RACK_LOSS_DETECTION) and self.sack_ok

    @property
    def rack_enabled(self) -> bool:
        """RACK loss detection is in use (tcp_recovery bit 1 and a SACK peer)."""
        return self._rack_on()

    def simple_retransmit(self, mss: int, now: float) -> bool:
        """The path MTU shrank (Linux ``tcp_simple_retransmit``, RFC 1191 /
        RFC 4821): segments larger than the new MSS are lost and go out again
        at the new size, without a congestion response -- LOSS state keeps
        ssthresh at ``tcp_current_ssthresh`` and forbids undo.  Returns
        whether anything was marked."""
        self._now = now
        self.set_mss(mss)
        sb = self.sb
        for r in list(sb):
            if r.end - r.start > mss:
                sb.mark_lost(r)
        if not sb.lost_out:
            return False
        if self.state is not _LOSS:
            self.high_seq = sb.nxt
            self.cc.ssthresh = self._current_ssthresh()
            self.prior_ssthresh = 0
            self.undo_marker = None
            self._set_state(_LOSS)
        return True

    def _force_fast_retransmit(self) -> bool:
        """Linux ``tcp_force_fast_retransmit``: SACKs reach DupThresh segments
        above SND.UNA."""
        return self.sb.fack > self.sb.una + self.reordering * self.sb.mss

    def _time_to_recover(self) -> bool:
        """Linux ``tcp_time_to_recover``: a loss is marked, or (without RACK)
        RFC 6675 5 DupThresh SACKed/duplicate-ACKed segments."""
        if self.sb.lost_out:
            return True
        return not self._rack_on() and self.sacked_out() + 1 > self.reordering

    def _identify_packet_loss(self, st: _AckState) -> None:
        """Linux ``tcp_identify_packet_loss``: NewReno head marking without
        SACK, RACK with it."""
        sb = self.sb
        if sb.head is None:
            return
        if not self.sack_ok:
            self._newreno_mark_lost(st.una_advanced)
        elif self._rack_on():
            prior_retrans = sb.retrans_out
            if self._rack_mark_lost(self._now):
                st.reo_armed = True
            if prior_retrans > sb.retrans_out:
                st.lost_retrans = True

    def _reo_wnd(self) -> float:
        """:meth:`Rack.reo_wnd` for this connection (inlined: once per ACK
        that detects losses; tests/unit/test_tcp_recovery.py checks both agree)."""
        if not self.reord_seen and (
                self.state >= _RECOVERY
                or (not (self.cfg.tcp_recovery & RACK_NO_DUPTHRESH)
                    and self.sb.sacked_out >= self.reordering)):
            return 0.0
        steps = 1 if self.cfg.tcp_recovery & RACK_STATIC_REO_WND else self.rack.reo_wnd_steps
        rtt = self.rtt
        wnd = (rtt.min_rtt / 4) * steps
        srtt = rtt.srtt
        return wnd if wnd < srtt or srtt <= 0.0 else srtt

    def _rack_mark_lost(self, now: float) -> bool:
        """Linux ``tcp_rack_mark_lost``: detect losses if RACK advanced; arm the
        reorder timer for the segments still inside the window (RFC 8985 6.2
        step 5 / 6.3).  Returns True if the timer was armed."""
        rack = self.rack
        if not rack.advanced:
            return False
        rack.advanced = False
        _, timeout = rack.detect_loss(self.sb, now, self._reo_wnd())
        if timeout > 0.0:
            self._timer_kind = "reorder"
            self._timer_at = now + timeout + TIMEOUT_MIN
            return True
        return False

    def _newreno_mark_lost(self, una_advanced: bool) -> None:
        """RFC 6582 3.2 (Linux ``tcp_newreno_mark_lost``): without SACK, the
        first unacknowledged segment is lost after DupThresh duplicate ACKs, and
        again after each partial ACK during recovery."""
        sb = self.sb
        if ((self.state < _RECOVERY and self.reno_sacked >= self.reordering)
                or (self.state is _RECOVERY and una_advanced)):
            head = sb.head
            if head is None or head.lost:
                return
            if head.end - head.start > sb.mss:
                sb.split(sb.index(head.start), head.start + sb.mss)
            sb.mark_lost(head)

    def _update_scoreboard(self, fast_rexmit: bool) -> None:
        """RFC 6675 4 IsLost() without RACK (``tcp_recovery=0``; Linux
        ``tcp_update_scoreboard``): a hole is lost once DupThresh segments, or
        more than (DupThresh - 1) * SMSS bytes, are SACKed above it; on entering
        recovery the first hole is lost in any case."""
        sb = self.sb
        mss = sb.mss
        above = sb.sacked_out
        above_bytes = sb.sacked_bytes
        marked = False
        for r in list(sb):
            if r.sacked:
                above -= r.pcount
                above_bytes -= r.end - r.start
                continue
            if above >= self.reordering or above_bytes > (self.reordering - 1) * mss:
                if not r.lost:
                    sb.mark_lost(r)
                marked = True
            else:
                break
        if not marked and fast_rexmit:
            head = sb.head
            if head is not None and not head.sacked and not head.lost:
                if head.end - head.start > mss:
                    sb.split(sb.index(head.start), head.start + mss)
                sb.mark_lost(head)

    def _add_reno_sack(self, num_dupack: int) -> None:
        """Linux ``tcp_add_reno_sack``: without SACK, each duplicate ACK stands
        for one segment that left the network (RFC 5681 3.2 step 4, RFC 3042)."""
        if not num_dupack:
            return
        sb = self.sb
        prior = self.reno_sacked
        self.reno_sacked += num_dupack
        holes = min(max(sb.lost_out, 1), sb.packets_out)
        if self.reno_sacked + holes > sb.packets_out:
            self.reno_sacked = max(sb.packets_out - holes, 0)
            # Linux tcp_check_reno_reordering: more dupACKs than segments out
            self.reordering = min(sb.packets_out + 1, self.cfg.tcp_max_reordering,
                                  max(self.reordering, sb.packets_out + 1))
            self.reord_seen += 1
        if self.reno_sacked > prior:
            self.rate.delivered += (self.reno_sacked - prior) * sb.mss

    def _any_retrans_done(self) -> bool:
        head = self.sb.head
        return self.sb.retrans_out > 0 or (head is not None and head.retrans > 0)

    def _packet_delayed(self) -> bool:
        """RFC 4015 (Eifel) / Linux ``tcp_packet_delayed``: the ACK echoes a
        timestamp older than the first retransmission, so the original arrived;
        or nothing was retransmitted at all."""
        if (self.retrans_stamp is not None and self._ts_ecr is not None
                and seq_lt(self._ts_ecr, self.retrans_stamp)):
            return True
        # nothing retransmitted since the episode began (Linux: !retrans_stamp)
        return self.undo_retrans < 0

    def _may_undo(self) -> bool:
        """Linux ``tcp_may_undo``: every retransmission D-SACKed, or delayed."""
        return self.undo_marker is not None and (
            self.undo_retrans == 0 or self._packet_delayed())

    def _undo_cwnd_reduction(self, unmark_loss: bool, reason: str, out: AckOutcome) -> None:
        """Linux ``tcp_undo_cwnd_reduction``: restore cwnd (controller's
        ``undo_cwnd``) and the prior ssthresh."""
        if unmark_loss:
            self.sb.unmark_lost_all()
        cc = self.cc
        if self.prior_ssthresh:
            cc.cwnd = cc.undo_cwnd()
            if self.prior_ssthresh > cc.ssthresh:
                cc.ssthresh = self.prior_ssthresh
        self.undo_marker = None
        self.rack.advanced = True
        self.undos += 1
        out.undo = Undo(cc.cwnd, cc.ssthresh, reason)

    def _try_undo_recovery(self, out: AckOutcome) -> bool:
        """RFC 4015 / RFC 6582 at the end of recovery (Linux
        ``tcp_try_undo_recovery``).  True: hold the state (NewReno waits for an
        ACK above the recovery point, RFC 6582 3.2 step 5)."""
        if self._may_undo():
            self._undo_cwnd_reduction(False, "loss" if self.state is _LOSS
                                      else "recovery", out)
        elif self.rack.reo_wnd_persist:
            self.rack.reo_wnd_persist -= 1
        if self.sb.una == self.high_seq and not self.sack_ok:
            if not self._any_retrans_done():
                self.retrans_stamp = None
                self._retrans_any = False
            return True
        self._set_state(_OPEN)
        self.is_sack_reneg = False
        return False

    def _try_undo_dsack(self, out: AckOutcome) -> bool:
        """RFC 3708 (Linux ``tcp_try_undo_dsack``): every retransmission of the
        episode was D-SACKed: the reduction was spurious."""
        if self.undo_marker is not None and self.undo_retrans == 0:
            self.rack.reo_wnd_persist = min(16, self.rack.reo_wnd_persist + 1)
            self._undo_cwnd_reduction(False, "dsack", out)
            return True
        return False

    def _try_undo_partial(self, prior_una: int, do_lost: bool,
                          out: AckOutcome) -> tuple[bool, bool]:
        """Linux ``tcp_try_undo_partial``: a partial ACK for an original
        transmission (RFC 4015 timestamps) means reordering, not loss."""
        if self.undo_marker is not None and self._packet_delayed():
            self._check_sack_reordering(prior_una, max(self.sb.fack, prior_una), ts=True)
            if self.sb.retrans_out:
                return True, do_lost
            if not self._any_retrans_done():
                self.retrans_stamp = None
                self._retrans_any = False
            self._undo_cwnd_reduction(True, "partial", out)
            self._try_keep_open()
            return False, do_lost
        return False, self._force_fast_retransmit()

    def _try_undo_loss(self, frto_undo: bool, out: AckOutcome) -> bool:
        """RFC 4015 / RFC 5682 (Linux ``tcp_try_undo_loss``): the RTO was spurious."""
        if frto_undo or self._may_undo():
            self._undo_cwnd_reduction(True, "frto" if frto_undo else "loss", out)
            self.rto_count = 0
            if frto_undo or self.sack_ok:
                self._set_state(_OPEN)
                self.is_sack_reneg = False
            return True
        return False

    def _process_loss(self, st: _AckState, num_dupack: int, out: AckOutcome) -> bool:
        """RFC 5682 F-RTO, SACK-enhanced (3.1), as Linux ``tcp_process_loss``.
        True: send new data now (step 2b)."""
        sb = self.sb
        recovered = sb.una >= self.high_seq
        if st.una_advanced and self._try_undo_loss(False, out):
            return False
        if self.frto:
            # step 3b: never-retransmitted data was (S)ACKed: the RTO was spurious
            if st.orig_sack_acked and self._try_undo_loss(True, out):
                return False
            if sb.nxt > self.high_seq:
                if st.newly_sacked or num_dupack:
                    self.frto = False  # step 3a: the loss was real
            elif st.una_advanced and not recovered:
                self.high_seq = sb.nxt
                # step 2b: send new data if there is some that fits the window,
                # else fall back to conventional recovery
                if st.can_send_new:
                    return True
                self.frto = False
        if recovered:
            self._try_undo_recovery(out)
            return False
        if not self.sack_ok:
            if sb.nxt > self.high_seq and num_dupack:
                self._add_reno_sack(num_dupack)
            elif st.una_advanced:
                self.reno_sacked = 0
        return False

    def _try_keep_open(self) -> None:
        """Linux ``tcp_try_keep_open``: OPEN, or DISORDER while SACKs, losses or
        retransmissions are outstanding."""
        state = _OPEN
        if self.sb.sacked_out + self.reno_sacked + self.sb.lost_out or self._any_retrans_done():
            state = _DISORDER
        if self.state != state:
            self._set_state(state)
            self.high_seq = self.sb.nxt

    def _try_to_open(self, ece: bool) -> None:
        if not self._any_retrans_done():
            self.retrans_stamp = None
            self._retrans_any = False
        if ece:
            self.enter_cwr(self._now)
        if self.state is not _CWR:
            self._try_keep_open()

    def _set_state(self, new: CaState) -> None:
        if new != self.state:
            self.state = new
            self.cc.on_state(new, self._now)

    def _current_ssthresh(self) -> int:
        """Linux ``tcp_current_ssthresh``: in a reduction ssthresh, else at least
        3/4 of cwnd (what undo restores)."""
        cc = self.cc
        if self.state is _CWR or self.state is _RECOVERY:
            return cc.ssthresh
        return max(cc.ssthresh, (cc.cwnd >> 1) + (cc.cwnd >> 2))

    def _init_undo(self) -> None:
        self.undo_marker = self.sb.una
        self.undo_retrans = self.sb.retrans_out or -1

    def _init_cwnd_reduction(self) -> None:
        """RFC 6937 3 initialisation (Linux ``tcp_init_cwnd_reduction``)."""
        cc = self.cc
        self.high_seq = self.sb.nxt
        self.tlp_high_seq = None
        self.prior_cwnd = cc.cwnd
        self.prr_delivered = 0
        self.prr_out = 0
        cc.ssthresh = cc.ssthresh_on_loss(self._now, self.in_flight())

    def _end_cwnd_reduction(self) -> None:
        """RFC 6937 3: at the end of recovery cwnd = ssthresh (unless undone)."""
        cc = self.cc
        if cc.controls_cwnd:
            return
        if cc.ssthresh < INFINITE_SSTHRESH and (
                self.state is _CWR or self.undo_marker is not None):
            cc.cwnd = cc.ssthresh

    def _enter_recovery(self, ece: bool) -> None:
        """RFC 6675 5 step 4 / RFC 5681 3.2 (Linux ``tcp_enter_recovery``)."""
        self.recoveries += 1
        self.prior_ssthresh = 0
        self._init_undo()
        if self.state is not _CWR and self.state is not _RECOVERY:
            if not ece:
                self.prior_ssthresh = self._current_ssthresh()
            self._init_cwnd_reduction()
        self._set_state(_RECOVERY)

    def enter_cwr(self, now: float) -> None:
        """RFC 3168 6.1.2 / local congestion (Linux ``tcp_enter_cwr``): one
        reduction, no retransmission."""
        self._now = now
        self.prior_ssthresh = 0
        if self.state < _CWR:
            self.undo_marker = None
            self._init_cwnd_reduction()
            self._set_state(_CWR)

    def prr_quota(self, newly_delivered: int, newly_lost: int, una_advanced: bool) -> int:
        """RFC 6937 3 PRR with slow-start reduction bound (Linux
        ``tcp_cwnd_reduction``): bytes the sender may send on this ACK."""
        if newly_delivered <= 0 or not self.prior_cwnd:
            return 0
        mss = self.sb.mss
        ssthresh = self.cc.ssthresh
        self.prr_delivered += newly_delivered
        pipe = self.in_flight()
        delta = ssthresh - pipe
        if delta < 0:
            # proportional part: ceil(prr_delivered * ssthresh / RecoverFS) - prr_out,
            # rounded to whole segments like Linux's packet arithmetic
            unit = self.prior_cwnd * mss
            sndcnt = -(-(ssthresh * self.prr_delivered) // unit) * mss - self.prr_out
        else:
            # slow-start reduction bound: catch up towards ssthresh
            sndcnt = max(self.prr_delivered - self.prr_out, newly_delivered)
            if una_advanced and not newly_lost:
                sndcnt += mss
            sndcnt = min(delta, sndcnt)
        # RFC 6937 3: force the fast retransmit on entering recovery
        floor = 0 if self.prr_out else mss
        return max(sndcnt, floor)

    def _cong_control(self, delivered: int, lost: int, st: _AckState, rs: RateSample,
                      now: float) -> None:
        """Linux ``tcp_cong_control``: PRR during a reduction, else let the
        controller grow the window."""
        cc = self.cc
        if cc.controls_cwnd:
            cc.on_ack(rs, now)
            return
        if self.state is _CWR or self.state is _RECOVERY:
            if delivered > 0 and self.prior_cwnd:
                quota = self.prr_quota(delivered, lost, st.una_advanced)
                cc.cwnd = self.in_flight() + quota
            return
        # Linux tcp_may_raise_cwnd: in-order delivery, or any progress when the
        # path is known to reorder
        if self.reordering > self.cfg.tcp_reordering:
            may = st.una_advanced or st.newly_sacked > 0
        else:
            may = st.una_advanced
        if may and delivered > 0:
            cc.on_ack(rs, now)

    # --- timers ------------------------------------------------------------------
    def _rearm_rto(self, now: float) -> None:
        """Linux ``tcp_rearm_rto`` (RFC 6298 5.1/5.3): RTO from now, or, right
        after a probe/reorder timer, from the head's transmission."""
        sb = self.sb
        if sb.packets_out == 0:
            self._timer_kind = None
            return
        rto = self.rtt.rto
        if self._timer_kind in ("probe", "reorder") and sb.head is not None:
            delta = rto - (now - sb.head.sent)
            rto = delta if delta > 1e-6 else 1e-6
        self._timer_kind = "rto"
        self._timer_at = now + rto

    def _schedule_loss_probe(self, now: float, advancing: bool) -> bool:
        """RFC 8985 7.2 (Linux ``tcp_schedule_loss_probe``): arm the probe
        timer at PTO, never later than the RTO would fire."""
        sb = self.sb
        state = self.state
        if (not self.sack_ok or not sb.packets_out
                or (state is not _OPEN and state is not _CWR)
                or not self._tlp_on):
            return False
        rtt = self.rtt
        pto = probe_timeout(rtt.srtt, sb.packets_out, self.cfg.rto_min,
                            self.cfg.probe_initial)
        rto = rtt.rto
        if advancing:
            rto_delta = rto
        else:
            head = sb.head
            rto_delta = rto - (now - head.sent) if head is not None else rto
        if rto_delta > 0 and rto_delta < pto:
            pto = rto_delta
        self._timer_kind = "probe"
        self._timer_at = now + pto
        return True

    def on_timer(self, now: float, *, can_send_new: bool = False) -> TimerAction:
        """The xmit timer expired: dispatch to the RTO, probe or reorder handler."""
        kind = self._timer_kind
        if kind == "probe":
            return self.on_tlp_timer(now, can_send_new=can_send_new)
        if kind == "reorder":
            return self.on_rack_timer(now)
        if kind == "rto":
            return self.on_rto(now)
        return TimerAction("none")

    def on_rack_timer(self, now: float) -> TimerAction:
        """RFC 8985 6.3 (Linux ``tcp_rack_reo_timeout``): segments still waiting
        in the reordering window are now lost; start recovery if needed."""
        self._now = now
        sb = self.sb
        prior = self.in_flight()
        prior_lost = sb.lost_total
        if sb.lost_log is not None:
            sb.lost_log.clear()
        self.rack.detect_loss(sb, now, self._reo_wnd())
        action = TimerAction("reorder")
        if self.in_flight() != prior:
            if self.state is not _RECOVERY:
                self._enter_recovery(False)
                if not self.cc.controls_cwnd:
                    quota = self.prr_quota(sb.mss, sb.lost_total - prior_lost, False)
                    self.cc.cwnd = self.in_flight() + quota
            action.retransmit_lost = sb.next_lost() is not None
        self._rearm_rto(now)
        return action

    def on_tlp_timer(self, now: float, *, can_send_new: bool = False) -> TimerAction:
        """RFC 8985 7.3 (Linux ``tcp_send_loss_probe``): one probe per episode,
        new data if the sender has some that fits the window, else the last
        MSS of the highest sent segment."""
        self._now = now
        sb = self.sb
        action = TimerAction("probe")
        if self.tlp_high_seq is not None or sb.tail is None:
            self._rearm_rto(now)
            return action
        self.tlp_retrans = False
        # fall back to the RTO from the head if the sender sends nothing
        self._rearm_rto(now)
        if can_send_new:
            self._probe_pending = "new"
            action.probe_new = True
            return action
        tail = sb.tail
        start = tail.start
        if tail.pcount > 1 and tail.end - tail.start > (tail.pcount - 1) * sb.mss:
            start = tail.start + (tail.pcount - 1) * sb.mss
        self._probe_pending = "retransmit"
        action.retransmit = (start & MASK, tail.end - start)
        return action

    def on_rto(self, now: float) -> TimerAction:
        """RFC 6298 5.4-5.6 / RFC 5681 3.1 / RFC 6675 5.1 (Linux
        ``tcp_retransmit_timer`` + ``tcp_enter_loss``): back off, mark the
        flight lost, cwnd = pipe + 1 MSS, retransmit the head."""
        self._now = now
        sb = self.sb
        action = TimerAction("rto")
        self._timer_kind = None
        if sb.head is None:
            return action
        self._enter_loss(now)
        self.rto_count += 1
        self.rtt.backoff += 1
        head = sb.head
        n = min(head.end - head.start, sb.mss)
        action.retransmit = (head.start & MASK, n)
        self._timer_kind = "rto"
        self._timer_at = now + self.rtt.rto
        return action

    def _enter_loss(self, now: float) -> None:
        """Linux ``tcp_enter_loss`` / ``tcp_timeout_mark_lost``."""
        sb = self.sb
        cc = self.cc
        new_recovery = self.state < _RECOVERY
        if sb.lost_log is not None:
            sb.lost_log.clear()
        # mark lost: everything but what was sent within the last RACK.rtt
        head = sb.head
        is_reneg = head is not None and head.sacked
        if is_reneg:
            sb.clear_sacked_all()
            self.is_sack_reneg = True
        elif not self.sack_ok:
            self.reno_sacked = 0
        for r in list(sb):
            if not is_reneg and r is not head and self.rack.skb_timeout(r, now, 0.0) > 0:
                continue  # sent within the last RACK.rtt: not yet presumed lost
            sb.mark_lost(r)
        if (self.state <= _DISORDER or self.high_seq <= sb.una
                or (self.state is _LOSS and not self.rto_count)):
            self.prior_ssthresh = self._current_ssthresh()
            self.prior_cwnd = cc.cwnd
            cc.ssthresh = cc.ssthresh_on_loss(now, self.in_flight())
            self._init_undo()
        # every controller, .cong_control ones (bbr) included (Linux
        # tcp_enter_loss: snd_cwnd = tcp_packets_in_flight + 1)
        cc.cwnd = self.in_flight() + sb.mss
        if self.state <= _DISORDER and self.sacked_out() >= self.cfg.tcp_reordering:
            self.reordering = min(self.reordering, self.cfg.tcp_reordering)
        self._set_state(_LOSS)
        self.high_seq = sb.nxt
        self.tlp_high_seq = None
        self._probe_pending = None
        # RFC 5682 3.1 step 1 (and 3.2 for a repeated timeout of the same head)
        self.frto = bool(self.cfg.tcp_frto) and (new_recovery or self.rto_count > 0)
