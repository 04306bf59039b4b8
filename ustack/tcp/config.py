"""Per-connection TCP settings, Linux-like defaults.

Every default names the Linux sysctl or constant it mirrors; where RFC and
Linux differ ustack takes Linux's value and the RFC's is given for reference.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(slots=True)
class TcpConfig:
    """Knobs of one connection (copy with :meth:`with_` to change some)."""

    # --- segment sizes -------------------------------------------------------
    #: MSS we advertise (MTU 1500 - 40); the send MSS is min(this, peer's MSS).
    mss: int = 1460
    #: Largest payload per emitted segment; 0 = one MSS (exact wire).  Larger
    #: values let ``segments_to_send`` emit GSO super-segments of whole MSS
    #: multiples (the link layer splits them), e.g. 65160 = 44 * 1448 + ...
    max_segment: int = 0

    # --- buffers -------------------------------------------------------------
    #: Send buffer bound in bytes: ``send`` accepts at most this much unacked
    #: + unsent data (the streams layer's back-pressure).  Linux tcp_wmem max
    #: 4 MB, what a bulk sender's autotuned buffer reaches (tcp_sndbuf_expand);
    #: ustack does not autotune, so it starts there (nothing is allocated
    #: before the application writes).  With 1 MB a bulk transfer to the
    #: kernel on a veth was send-buffer limited (issue 14).
    send_buffer: int = 4 << 20
    #: Receive buffer in bytes: bounds the advertised window and out-of-order
    #: storage.  (Linux autotunes tcp_rmem up to 6 MB, 32 MB here; ustack does
    #: not autotune.)  4 MB: a kernel sender on a veth is not held by the
    #: window while the stack handles a batch (with 1 MB ustack woke for half
    #: as many frames and spent ~1.6x the CPU per byte, issue 14), and an
    #: exact-wire window (~2900 frames) still fits the 4096-slot receive ring.
    recv_buffer: int = 4 << 20
    #: At most this many separate out-of-order ranges are kept; a segment that
    #: would open another is dropped (bounded per-segment cost, see Reassembly.add).
    ooo_max_blocks: int = 256

    # --- options (RFC 7323, RFC 2018) ----------------------------------------
    window_scaling: bool = True
    #: Shift we offer (Linux offers 7 for its 6 MB tcp_rmem max); capped at 14.
    window_scale: int = 7
    #: SACK-permitted offered (RFC 2018; Linux tcp_sack 1; also ``tcp_sack``)
    sack: bool = True
    timestamps: bool = True
    #: TCP_NODELAY: False = Nagle on (RFC 9293 3.7.4, Linux default).
    nodelay: bool = False
    #: TCP_CORK: hold partial segments until uncorked (Linux; 200 ms cap not modelled).
    cork: bool = False
    #: TCP_QUICKACK: ACK every data segment at once instead of delaying.
    quickack: bool = False
    #: TCP_MAXSEG: clamp of the MSS (0 = none).
    maxseg: int = 0
    #: Floor of the send MSS (Linux net.ipv4.tcp_min_snd_mss 48, the
    #: CVE-2019-11479 mitigation): a peer offering a smaller MSS gets segments
    #: of this size without options (48 - 12 = 36 payload bytes with
    #: timestamps, as Linux __tcp_mtu_to_mss, which clamps before it takes
    #: the option length off).  RFC 9293 3.7.1 says never exceed the peer's MSS.
    tcp_min_snd_mss: int = 48
    #: TCP_NOTSENT_LOWAT: ``send`` starts no new size-goal chunk while this many
    #: bytes wait unsent, writable below half of it (Linux's rule, see
    #: TcpConnection._notsent_room; 0 = no limit beyond the send buffer, Linux
    #: tcp_notsent_lowat UINT_MAX).
    notsent_lowat: int = 0

    # --- congestion control ---------------------------------------------------
    #: Algorithm by registry name (Linux tcp_congestion_control; the kernel's
    #: built-in default is cubic).  Per connection: ``conn.set_congestion``.
    congestion: str = "cubic"
    #: Initial window in segments (RFC 6928, Linux TCP_INIT_CWND = 10).
    initial_cwnd: int = 10
    #: Duplicate ACKs that trigger fast retransmit (RFC 5681; Linux tcp_reordering 3).
    dupack_threshold: int = 3
    #: Shrink cwnd after an idle period longer than the RTO (RFC 5681 4.1,
    #: Linux tcp_slow_start_after_idle 1).
    slow_start_after_idle: bool = True
    #: Pace every connection (Linux: the fq qdisc or SO_MAX_PACING_RATE; off by
    #: default as on a Linux host without fq).  A controller with
    #: ``needs_pacing`` (bbr) is paced regardless.
    pacing: bool = False
    #: Pacing rate in percent of cwnd/SRTT while cwnd < ssthresh / after it,
    #: when the controller sets none (Linux tcp_pacing_ss_ratio 200,
    #: tcp_pacing_ca_ratio 120).
    tcp_pacing_ss_ratio: int = 200
    tcp_pacing_ca_ratio: int = 120
    #: fewest MSS in a super-segment (Linux tcp_min_tso_segs 2; see
    #: Sender._tso_cap for the rest of tcp_tso_autosize)
    tcp_min_tso_segs: int = 2

    # --- loss recovery (Linux net.ipv4 sysctls) -------------------------------
    #: Bit mask, Linux net.ipv4.tcp_recovery (default 1; ip-sysctl.rst,
    #: tcp_recovery.c): 0x1 = RACK loss detection (RFC 8985; for SACK peers
    #: it replaces RFC 6675's DupThresh loss marking); 0x2 = static RACK
    #: reordering window (min_rtt/4, never grown by D-SACKs: Linux
    #: TCP_RACK_STATIC_REO_WND, tcp_rack_update_reo_wnd); 0x4 = no DupThresh
    #: heuristic inside RACK (the window is not zeroed once DupThresh segments
    #: are SACKed with no reordering seen: TCP_RACK_NO_DUPTHRESH,
    #: tcp_rack_reo_wnd).  0 = RFC 6675 IsLost / DupThresh only.
    tcp_recovery: int = 1
    #: Tail loss probes (RFC 8985 7): 3 = TLP on, 0 = off (Linux tcp_early_retrans 3).
    tcp_early_retrans: int = 3
    #: F-RTO spurious-RTO detection (RFC 5682; Linux tcp_frto 2 = SACK-enhanced).
    tcp_frto: int = 2
    #: Act on D-SACK (RFC 2883, RFC 3708 undo; Linux tcp_dsack 1).
    tcp_dsack: bool = True

    # --- retransmission (RFC 6298) --------------------------------------------
    #: Initial RTO (RFC 6298 2.1 and Linux TCP_TIMEOUT_INIT: 1 s).
    rto_initial: float = 1.0
    #: Minimum RTO: Linux TCP_RTO_MIN 200 ms (RFC 6298 2.4 says 1 s).
    rto_min: float = 0.2
    #: Maximum RTO: Linux TCP_RTO_MAX 120 s (RFC 6298 allows >= 60 s).
    rto_max: float = 120.0
    #: RTO after the handshake when the SYN was retransmitted and no RTT sample
    #: exists (RFC 6298 5.7, Linux TCP_TIMEOUT_FALLBACK): 3 s.
    rto_fallback: float = 3.0
    #: True: Linux formula RTO = SRTT + max(4*RTTVAR, rto_min).
    #: False: RFC 6298 RTO = max(rto_min, SRTT + max(G, 4*RTTVAR)).
    rto_linux: bool = True
    #: SYN retransmissions (Linux tcp_syn_retries 6) ...
    syn_retries: int = 6
    #: ... plus this many first ones at a constant 1 s (Linux >= 6.5
    #: tcp_syn_linear_timeouts 4): SYNs at 0,1,2,3,4,5,7,11,19,35,67 s,
    #: ETIMEDOUT at 131 s.
    syn_linear_timeouts: int = 4
    #: SYN-ACK retransmissions (Linux tcp_synack_retries 5: 1,2,4,8,16 s apart).
    synack_retries: int = 5
    #: Data/FIN retransmissions before ETIMEDOUT (Linux tcp_retries2 15: with
    #: ``retries_timed`` a time budget of ~924.6 s, see below).
    retries2: int = 15
    #: Retransmissions / zero-window probes of a connection the application
    #: has closed (orphan) before it is dropped (Linux tcp_orphan_retries 0 = 8).
    orphan_retries: int = 8
    #: TCP_USER_TIMEOUT (RFC 5482) in seconds, 0 = off: how long sent data or
    #: unanswered zero-window probes may stay unacknowledged before the
    #: connection fails with ETIMEDOUT; when set it replaces retries2 (Linux).
    user_timeout: float = 0.0
    #: True (Linux): retries2, orphan_retries and syn_retries are time budgets,
    #: the time that many retransmissions would take with the RTO doubling
    #: from rto_min (rto_initial for the SYN) up to rto_max (Linux
    #: retransmits_timed_out / tcp_model_timeout; tcp_retries2=15 = 924.6 s),
    #: measured from the first retransmission (the first SYN); the SYN's count
    #: limit applies as well.  False: plain counts of retransmissions.  RFC
    #: 1122 4.2.3.5 allows either ("measured in time units or as a count of
    #: retransmissions").  ustack.tcp.retry_budget has the model.
    retries_timed: bool = True
    #: Linux tcp_max_orphans: orphaned connections (closed by the application,
    #: still finishing) beyond this many are reset at once (TCPAbortOnMemory).
    #: Read by the connection table.
    max_orphans: int = 65536

    # --- close ----------------------------------------------------------------
    #: TIME-WAIT duration (Linux TCP_TIMEWAIT_LEN 60 s; RFC 9293 2*MSL = 4 min).
    time_wait: float = 60.0
    #: Orphaned FIN-WAIT-2 lifetime after close() (Linux tcp_fin_timeout 60 s).
    fin_wait2: float = 60.0

    # --- acknowledgements -----------------------------------------------------
    #: Delayed-ACK timer (Linux TCP_DELACK_MIN 40 ms; at most delack_max 200 ms).
    delack: float = 0.04
    delack_max: float = 0.2
    #: Minimum spacing of challenge ACKs and of ACKs answering out-of-window
    #: non-data segments (Linux tcp_invalid_ratelimit 500 ms; RFC 5961 sec. 7).
    challenge_ack_interval: float = 0.5
    #: Data segments ACKed at once at the start of a connection before delayed
    #: ACKs begin (Linux quickack mode, TCP_MAX_QUICKACKS 16; 0 = RFC-style
    #: delayed ACKs from the first segment).
    quickack_segments: int = 16

    # --- handshake --------------------------------------------------------------
    #: Queue text carried by a SYN-ACK (RFC 9293 3.10.7.3).  Linux discards it
    #: without Fast Open and ACKs only the SYN; so does ustack by default.
    accept_synack_data: bool = False
    #: SYN cookies (RFC 4987 3.6), Linux tcp_syncookies: 0 never, 1 when a
    #: listener's SYN queue is full, 2 always.  Read by the connection table.
    syncookies: int = 1
    #: Linux tcp_max_syn_backlog: without cookies, a listener keeps no more
    #: than 3/4 of this many request socks (the SYN queue also stops at the
    #: listen backlog, as Linux's inet_csk_reqsk_queue_is_full).
    max_syn_backlog: int = 4096
    #: Stack-wide TCP buffer budget in pages of 4096 bytes, Linux tcp_mem
    #: (min, pressure, max); None sizes it from the machine's memory as Linux
    #: tcp_init_mem does.  Read by the connection table.
    tcp_mem: tuple[int, int, int] | None = None

    # --- keepalive (RFC 1122 4.2.3.6, Linux SO_KEEPALIVE off) ------------------
    keepalive: bool = False
    keepalive_idle: float = 7200.0  # tcp_keepalive_time
    keepalive_interval: float = 75.0  # tcp_keepalive_intvl
    keepalive_count: int = 9  # tcp_keepalive_probes

    def __eq__(self, other: object) -> bool:
        """Field by field, as the ``__eq__`` dataclass would generate (which
        builds two tuples of every field): the connection table compares its
        config snapshot with the live config on every connect
        (``TcpTable._shared_config``).  tests/unit/test_tcp_config_eq.py
        checks that every field takes part."""
        if not isinstance(other, TcpConfig) or other.__class__ is not self.__class__:
            return NotImplemented
        return (
            self.mss == other.mss
            and self.max_segment == other.max_segment
            and self.send_buffer == other.send_buffer
            and self.recv_buffer == other.recv_buffer
            and self.ooo_max_blocks == other.ooo_max_blocks
            and self.window_scaling == other.window_scaling
            and self.window_scale == other.window_scale
            and self.sack == other.sack
            and self.timestamps == other.timestamps
            and self.nodelay == other.nodelay
            and self.cork == other.cork
            and self.quickack == other.quickack
            and self.maxseg == other.maxseg
            and self.tcp_min_snd_mss == other.tcp_min_snd_mss
            and self.notsent_lowat == other.notsent_lowat
            and self.congestion == other.congestion
            and self.initial_cwnd == other.initial_cwnd
            and self.dupack_threshold == other.dupack_threshold
            and self.slow_start_after_idle == other.slow_start_after_idle
            and self.pacing == other.pacing
            and self.tcp_pacing_ss_ratio == other.tcp_pacing_ss_ratio
            and self.tcp_pacing_ca_ratio == other.tcp_pacing_ca_ratio
            and self.tcp_min_tso_segs == other.tcp_min_tso_segs
            and self.tcp_recovery == other.tcp_recovery
            and self.tcp_early_retrans == other.tcp_early_retrans
            and self.tcp_frto == other.tcp_frto
            and self.tcp_dsack == other.tcp_dsack
            and self.rto_initial == other.rto_initial
            and self.rto_min == other.rto_min
            and self.rto_max == other.rto_max
            and self.rto_fallback == other.rto_fallback
            and self.rto_linux == other.rto_linux
            and self.syn_retries == other.syn_retries
            and self.syn_linear_timeouts == other.syn_linear_timeouts
            and self.synack_retries == other.synack_retries
            and self.retries2 == other.retries2
            and self.orphan_retries == other.orphan_retries
            and self.user_timeout == other.user_timeout
            and self.retries_timed == other.retries_timed
            and self.max_orphans == other.max_orphans
            and self.time_wait == other.time_wait
            and self.fin_wait2 == other.fin_wait2
            and self.delack == other.delack
            and self.delack_max == other.delack_max
            and self.challenge_ack_interval == other.challenge_ack_interval
            and self.quickack_segments == other.quickack_segments
            and self.accept_synack_data == other.accept_synack_data
            and self.syncookies == other.syncookies
            and self.max_syn_backlog == other.max_syn_backlog
            and self.tcp_mem == other.tcp_mem
            and self.keepalive == other.keepalive
            and self.keepalive_idle == other.keepalive_idle
            and self.keepalive_interval == other.keepalive_interval
            and self.keepalive_count == other.keepalive_count
        )

    @property
    def tcp_sack(self) -> bool:
        """Linux's sysctl name for :attr:`sack`."""
        return self.sack

    @tcp_sack.setter
    def tcp_sack(self, on: bool) -> None:
        self.sack = on

    def with_(self, **changes: object) -> TcpConfig:
        """A copy with some fields changed."""
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def offered_wscale(self) -> int:
        """The window-scale shift we put in our SYN (capped at 14, RFC 7323 2.3)."""
        return min(max(self.window_scale, 0), 14)
