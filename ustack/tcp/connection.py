"""One TCP connection as a sans-I/O state machine (RFC 9293 section 3.10).

Inputs carry ``now`` (seconds, any monotonic origin): :meth:`receive` a
segment, :meth:`handle_timer`, and the application calls :meth:`send`,
:meth:`recv`, :meth:`shutdown`, :meth:`close`, :meth:`abort`.  Outputs are
pulled: :meth:`segments_to_send` (call it after every input; it builds the data
segments and ACKs the input made due), :meth:`next_deadline` (call it after
``segments_to_send``) and :meth:`next_event`.

Reading order: the constructors (active/passive OPEN, 3.10.1), the user calls
(SEND, RECEIVE, CLOSE, ABORT: 3.10.2-3.10.5), segment arrival (3.10.7: SYN-SENT
in :meth:`_receive_syn_sent`, TIME-WAIT in :meth:`_receive_time_wait`, the
other states in :meth:`receive` with ACK processing in :meth:`_process_ack`
and text/FIN in :meth:`_process_data`), timeouts (3.10.8) in
:meth:`handle_timer`, and output in :meth:`segments_to_send`.

Where RFC and Linux differ the default is Linux's; each such place says so.
"""

from __future__ import annotations

import errno as E
from collections.abc import Callable
from copy import copy
from typing import Any, ClassVar, Final

from ustack._mypyc import mypyc_attr
from ustack.tcp import events as ev
from ustack.tcp.chrono import BUSY as _CHRONO_BUSY
from ustack.tcp.chrono import SNDBUF_LIMITED as _CHRONO_SNDBUF
from ustack.tcp.config import TcpConfig
from ustack.tcp.congestion.base import CaState, CongestionController
from ustack.tcp.congestion.registry import create
from ustack.tcp.info import TcpInfo
from ustack.tcp.listener import reply_to_unmatched
from ustack.tcp.mib import TcpMib
from ustack.tcp.options import (
    TIMESTAMP_OPTION_LEN,
    Negotiated,
    negotiate,
    syn_options,
    synack_options,
)
from ustack.tcp.reassembly import Reassembly
from ustack.tcp.receiver import Receiver
from ustack.tcp.recovery import AckOutcome, Recovery, RecoveryConfig
from ustack.tcp.retry_budget import timed_out as retries_timed_out
from ustack.tcp.rtt import RttEstimator
from ustack.tcp.send_buffer import SKB_OVERHEAD, SendBuffer
from ustack.tcp.send_buffer import admit as sndbuf_admit
from ustack.tcp.send_buffer import charged as sndbuf_charged
from ustack.tcp.send_buffer import writable as sndbuf_writable
from ustack.tcp.sender import NO_OUT, Sender
from ustack.tcp.state import CHECK_TRANSITIONS, TcpState, check_transition
from ustack.tcp.timers import Timers
from ustack.tcp.trace import TraceHook
from ustack.tcp.urgent import active as urgent_active
from ustack.tcp.urgent import mark as urgent_mark
from ustack.wire.seq import seq_gt, seq_le, seq_lt, seq_sub
from ustack.wire.tcp import ACK, FIN, RST, SYN, TcpOptions, TcpSegment, flags_to_str

MASK: Final = 0xFFFFFFFF
_EMPTY_OPTIONS: Final = TcpOptions()


class TsClock:
    """A connection's TSval clock (RFC 7323 5.4: milliseconds plus the
    connection's random offset) as a callable of its own: what the recovery
    room gets as ``ts_clock``.  The connection's bound ``_ts_val`` would make
    a reference cycle (connection -> room -> method -> connection) that
    only the cyclic collector frees: every finished connection's ~20
    objects waited for a collection."""

    __slots__ = ("offset",)

    def __init__(self, offset: int) -> None:
        self.offset = offset

    def __call__(self, now: float) -> int:
        return (int(now * 1000) + self.offset) & MASK


class _TsOptions:
    """The timestamp-only options last built by any connection, with the
    TSval and TSecr they carry (:meth:`TcpConnection._options`).  A burst of
    segments from one connection within one millisecond shares one options
    object (and the encoder's cached encoding of it), as a per-connection
    cache would; being one for the stack, it costs an idle connection
    nothing (issue 14: it was ~200 B per connection)."""

    __slots__ = ("tsval", "recent", "opts")

    def __init__(self) -> None:
        self.tsval = -1
        self.recent = -1
        self.opts = _EMPTY_OPTIONS


_TS_OPTIONS: Final = _TsOptions()
#: a connection's event queue while no event is pending
#: (TcpConnection._events): one shared empty list, never appended to; the
#: first event gives the connection a list of its own, and taking the last
#: one hands the shared list back (an idle connection keeps none: 56 B)
NO_EVENTS: Final[list[ev.Event]] = []
#: PAWS: TS.Recent older than 24 days is invalid (RFC 7323 5.5)
_PAWS_IDLE: Final = 24 * 24 * 3600.0
#: Linux TCP_TIMEOUT_MIN (2 jiffies): the quick SYN re-send after a bad SYN-ACK
_TIMEOUT_MIN: Final = 0.002

_ESTABLISHED: Final = TcpState.ESTABLISHED
_SYN_SENT: Final = TcpState.SYN_SENT
_SYN_RECEIVED: Final = TcpState.SYN_RECEIVED
_FIN_WAIT_1: Final = TcpState.FIN_WAIT_1
_FIN_WAIT_2: Final = TcpState.FIN_WAIT_2
_TIME_WAIT: Final = TcpState.TIME_WAIT
_CLOSED: Final = TcpState.CLOSED
_CLOSE_WAIT: Final = TcpState.CLOSE_WAIT
_LAST_ACK: Final = TcpState.LAST_ACK
_CLOSING: Final = TcpState.CLOSING
_LISTEN: Final = TcpState.LISTEN

#: states in which the send side may still transmit data or a FIN
_CA_OPEN: Final = CaState.OPEN
_SENDING_STATES: Final = frozenset({_ESTABLISHED, _CLOSE_WAIT, _FIN_WAIT_1, _CLOSING, _LAST_ACK})
#: Linux sk_gso_max_size for a 64 KB GSO device: 65536 - (MAX_TCP_HEADER + 1)
_GSO_MAX_PAYLOAD: Final = 65536 - 321
#: states in which received text is accepted (RFC 9293 3.10.7.4 "seventh")
_RECEIVING_STATES: Final = frozenset({_ESTABLISHED, _FIN_WAIT_1, _FIN_WAIT_2})


def _sending(st: TcpState) -> bool:
    """``st in _SENDING_STATES`` by identity: TcpState is an interpreted
    Enum, whose ``__hash__`` (a Python call) a set lookup pays for every
    state but the first (tests/unit/test_conn_setup_isn_ports.py checks
    both agree on every state)."""
    return (st is _ESTABLISHED or st is _CLOSE_WAIT or st is _FIN_WAIT_1 or st is _CLOSING
            or st is _LAST_ACK)


def _receiving(st: TcpState) -> bool:
    """``st in _RECEIVING_STATES`` by identity (as :func:`_sending`)."""
    return st is _ESTABLISHED or st is _FIN_WAIT_1 or st is _FIN_WAIT_2


#: shared RecoveryConfig by its knobs (TcpConnection._start_recovery)
_RECOVERY_CONFIGS: Final[dict[tuple[Any, ...], RecoveryConfig]] = {}

#: Undo.reason -> the Linux counter it increments
_UNDO_MIB: Final = {"dsack": "TcpExtTCPDSACKUndo", "recovery": "TcpExtTCPFullUndo",
             "partial": "TcpExtTCPPartialUndo", "loss": "TcpExtTCPLossUndo",
             "frto": "TcpExtTCPSpuriousRTOs"}


def _seg_data(seg: TcpSegment, wscale: int) -> dict[str, Any]:
    """The ``seg_sent``/``seg_recv`` trace keys (ustack.tcp.trace); ``win``
    in bytes (the field shifted by ``wscale``, never on a SYN: RFC 7323 2.2)."""
    return {"seq": seg.seq, "ack": seg.ack, "len": len(seg.payload),
            "flags": flags_to_str(seg.flags),
            "win": seg.window if seg.flags & SYN else seg.window << wscale,
            "sack": [list(b) for b in seg.options.sack_blocks]}


# the differential tests derive eager/general-path variants (mypyc compat)
@mypyc_attr(allow_interpreted_subclasses=True)
class TcpConnection:
    """A TCP control block plus its state machine.  Build with :meth:`connect`
    or :meth:`accept`."""

    __slots__ = (
        "config", "_cfg_own", "state", "local_port", "remote_port",
        # the rooms: send side, receive side, timer table
        "snd", "rcv", "timers",
        # send sequence space (RFC 9293 3.3.1); the receive side's is in rcv
        "iss", "snd_una", "snd_nxt", "snd_wnd", "snd_wl1", "snd_wl2", "max_snd_wnd", "irs",
        # negotiated options
        "snd_wscale", "rcv_wscale", "wscale_ok", "sack_ok", "ts_ok", "send_mss", "advmss",
        # the recovery room: scoreboard, RACK-TLP, PRR, undo, rate samples
        # (created at the first use after synchronization, _room; _rec_cfg
        # is its shared config, set when the connection synchronizes)
        "_rec", "_rec_cfg", "_rate",
        # close bookkeeping
        "_app_closed", "eof_received", "_rst_on_data",
        # loss recovery, RTT, congestion
        "rtt", "cc", "_retransmits",
        "_syn_retransmitted", "_passive",
        # timer counts
        "_persist_backoff", "_ka_probes",
        # unanswered zero-window probes and when that run began; when the
        # last probe went out; when the retransmitted head was first sent
        "_probes_out", "_probe_since", "_probe_last", "_rtx_stamp",
        # timestamps
        "_ts_recent", "_ts_recent_stamp", "_ts_offset",
        # output and events
        "_out", "_early_nxt", "_events", "_data_event_sent", "_send_blocked",
        "_last_oow", "_closed_emitted", "error", "reopen_syn", "soft_error",
        # observation: trace hook (ustack.tcp.trace) and MIB counters (ustack.tcp.mib)
        "trace", "mib",
        # counters (tcp_info)
        "bytes_sent", "bytes_retrans", "bytes_acked", "segs_out", "segs_in",
        "data_segs_out", "data_segs_in", "total_retrans", "dsack_dups", "last_send",
        "last_recv", "last_ack", "_created", "_now",
    )

    #: take the receive fast path and the sender's bulk path (a subclass in
    #: the differential test turns both off to drive the general paths)
    fast_path: ClassVar[bool] = True
    #: create the recovery room when the connection synchronizes instead of
    #: at its first use (tests/unit/test_tcp_lazy_recovery.py drives both)
    eager_recovery: ClassVar[bool] = False

    # ------------------------------------------------------------------ OPEN
    def __init__(self, local_port: int, remote_port: int, iss: int, now: float,
                 config: TcpConfig | None = None, *, mib: TcpMib | None = None,
                 trace: TraceHook | None = None, shared_config: bool = False) -> None:
        """Internal: use :meth:`connect` or :meth:`accept`.

        ``shared_config``: ``config`` is a snapshot nobody changes (the
        table's, ``TcpTable._shared_config``): the connection reads it as its
        own and copies it only when a per-connection option is set
        (:meth:`_own_config`).  Otherwise it takes a private copy at once."""
        # per-connection options (set_nodelay, set_keepalive) must not leak
        # into other connections sharing the same config
        own = not shared_config or config is None
        if config is None:
            cfg = TcpConfig()
        elif own:
            cfg = copy(config)
        else:
            cfg = config
        if cfg.maxseg and cfg.maxseg < cfg.mss:
            if not own:
                cfg = copy(cfg)
                own = True
            cfg.mss = cfg.maxseg  # TCP_MAXSEG clamps what we advertise
        # The flags first and together: the compiled class lays its fields
        # out in the order __init__ first assigns them, one byte per flag,
        # so twelve flags in a row share two words (with the definedness
        # bitmap) where twelve scattered ones took one word each; with the
        # SYN window kept by the receiver the compiled object is 512 bytes,
        # pymalloc's largest size class (tests/unit/test_tcp_layout.py)
        self._cfg_own = own
        self.wscale_ok = False
        self.sack_ok = False
        self.ts_ok = False
        self._app_closed = False
        self.eof_received = False
        self._rst_on_data = False
        self._syn_retransmitted = False
        self._passive = False
        self._data_event_sent = False
        self._send_blocked = False
        self._closed_emitted = False
        self.config = cfg
        #: trace hook: ``trace(now, event, data)`` (ustack.tcp.trace), None = off
        self.trace: TraceHook | None = trace
        #: MIB counters (nstat names); the table passes its stack-wide one
        self.mib: TcpMib = mib if mib is not None else TcpMib()
        self.state = _CLOSED
        self._now = now
        self.local_port = local_port
        self.remote_port = remote_port
        iss &= MASK
        self.iss = iss
        self.timers = timers = Timers()
        self.snd = Sender(iss, cfg.send_buffer, now)
        self.rcv = Receiver(timers, cfg.recv_buffer, cfg.mss, cfg.delack,
                            cfg.quickack_segments, cfg.ooo_max_blocks)
        self.snd.cork = cfg.cork
        self.rcv.quickack_mode = cfg.quickack
        self.snd_una = iss
        self.snd_nxt = iss
        self.snd_wnd = 0
        self.snd_wl1 = 0
        self.snd_wl2 = 0
        self.max_snd_wnd = 0
        self.irs = 0
        self.snd_wscale = 0
        self.rcv_wscale = 0
        self.advmss = cfg.mss
        self.send_mss = 536
        #: the recovery room: None before the connection synchronizes and,
        #: after it (``_rec_cfg`` set), until the room is first needed
        self._rec: Recovery | None = None
        self._rec_cfg: RecoveryConfig | None = None
        #: the latest valid delivery-rate sample, bytes/s
        self._rate = 0.0
        self.rtt = RttEstimator(cfg.rto_initial, cfg.rto_min, cfg.rto_max, cfg.rto_linux)
        self.cc: CongestionController = create(cfg.congestion, 536, cfg.initial_cwnd)
        self.cc.paced = cfg.pacing or self.cc.needs_pacing
        self._retransmits = 0
        self._persist_backoff = 0
        self._ka_probes = 0
        self._probes_out = 0
        self._probe_since = now
        self._probe_last = now
        self._rtx_stamp = -1e18  # no loss episode yet
        self._ts_recent = 0
        self._ts_recent_stamp = 0.0
        # a per-connection TSval offset (Linux randomises it per connection)
        self._ts_offset = (iss * 2654435761) & MASK
        self._out: list[TcpSegment] = NO_OUT  # (a list of its own at the first segment)
        #: SND.NXT before the first transmission of a receive batch made
        #: during loss recovery (_send_after_ack), for the trace's rtx flag
        self._early_nxt: int | None = None
        #: pending events, oldest first (a list: rarely more than two; the
        #: shared empty NO_EVENTS while none is pending, _queue_event)
        self._events: list[ev.Event] = NO_EVENTS
        self._last_oow = -1e18
        #: errno of the failure that closed the connection, if any
        self.error: int | None = None
        #: set when a SYN legitimately ended TIME-WAIT (RFC 6191 / Linux
        #: tcp_timewait_state_process): the table should hand it to a listener
        self.reopen_syn: TcpSegment | None = None
        #: last ICMP soft error (RFC 1122 4.2.3.9), reported but not fatal
        self.soft_error: int | None = None
        self.bytes_sent = 0
        self.bytes_retrans = 0
        self.bytes_acked = 0
        self.segs_out = 0
        self.segs_in = 0
        self.data_segs_out = 0
        self.data_segs_in = 0
        self.total_retrans = 0
        self.dsack_dups = 0
        self.last_send = now
        self.last_recv = now
        self.last_ack = now
        self._created = now

    # ------------------------------------------------------------ state
    def _set_state(self, new: TcpState) -> None:
        """The one place the state changes: checked against the allowed
        transitions (RFC 9293 figure 5 + Linux, ustack.tcp.state.TRANSITIONS)
        at test time, reported to the trace hook."""
        old = self.state
        if new is old:
            return
        if CHECK_TRANSITIONS:
            check_transition(old, new)
        self.state = new
        # RFC 4022 tcpCurrEstab / tcpEstabResets / tcpAttemptFails
        mib = self.mib
        if new is _ESTABLISHED or new is _CLOSE_WAIT:
            if old is not _ESTABLISHED and old is not _CLOSE_WAIT:
                mib["TcpCurrEstab"] += 1
        elif old is _ESTABLISHED or old is _CLOSE_WAIT:
            mib["TcpCurrEstab"] -= 1
            if new is _CLOSED:
                mib["TcpEstabResets"] += 1
        elif new is _CLOSED and (old is _SYN_SENT or old is _SYN_RECEIVED):
            mib["TcpAttemptFails"] += 1
        if self.trace is not None:
            self.trace(self._now, "state", {"old": old.ss_name, "new": new.ss_name})

    def _own_config(self) -> TcpConfig:
        """This connection's config, copied first if it is still the shared
        snapshot (a per-connection option is about to change it)."""
        if not self._cfg_own:
            self.config = copy(self.config)
            self._cfg_own = True
        return self.config

    # ------------------------------------------------------------ views
    @property
    def rcv_nxt(self) -> int:
        """RCV.NXT (RFC 9293 3.3.1)."""
        return self.rcv.nxt

    @property
    def rcv_adv(self) -> int:
        """The right edge of the window last advertised (RCV.NXT + RCV.WND)."""
        return self.rcv.adv

    @property
    def rcv_mss(self) -> int:
        return self.rcv.mss

    @property
    def bytes_received(self) -> int:
        return self.rcv.bytes_received

    @property
    def _sndbuf(self) -> SendBuffer:
        # (read by ustack.diag.snapshot)
        return self.snd.buf

    @property
    def _ooo(self) -> Reassembly:
        return self.rcv.ooo

    @classmethod
    def connect(cls, local_port: int, remote_port: int, iss: int, now: float,
                config: TcpConfig | None = None, *, mib: TcpMib | None = None,
                trace: TraceHook | None = None, shared_config: bool = False) -> TcpConnection:
        """Active OPEN (RFC 9293 3.10.1): queue a SYN, enter SYN-SENT."""
        if cls is TcpConnection:  # (compiled: the constructor called directly)
            c = TcpConnection(local_port, remote_port, iss, now, config, mib=mib, trace=trace,
                              shared_config=shared_config)
        else:
            c = cls(local_port, remote_port, iss, now, config, mib=mib, trace=trace,
                    shared_config=shared_config)
        c._set_state(_SYN_SENT)
        c.mib["TcpActiveOpens"] += 1
        c.snd.ptr = c.snd_nxt = (c.iss + 1) & MASK
        c._queue_out(c._syn_segment(now))
        c.timers.rto = now + c.rtt.rto
        return c

    @classmethod
    def accept(cls, syn: TcpSegment, iss: int, now: float,
               config: TcpConfig | None = None, *, mib: TcpMib | None = None,
               trace: TraceHook | None = None, shared_config: bool = False,
               synack_sent: bool = False) -> TcpConnection:
        """Passive OPEN from a listener that got ``syn`` (RFC 9293 3.10.7.2):
        queue a SYN-ACK echoing only the options the SYN offered, enter
        SYN-RECEIVED.  Data on the SYN is discarded (no Fast Open, as Linux).

        ``synack_sent``: the listener's request sock already sent the SYN-ACK
        at ``now`` (the table promotes a completed handshake): the connection
        counts it as sent instead of building it for the output queue, as
        :meth:`segments_to_send` would have at ``now`` (without a trace
        hook, whose ``seg_sent`` line needs the segment)."""
        if cls is TcpConnection:  # (as in connect)
            c = TcpConnection(syn.dst_port, syn.src_port, iss, now, config, mib=mib,
                              trace=trace, shared_config=shared_config)
        else:
            c = cls(syn.dst_port, syn.src_port, iss, now, config, mib=mib, trace=trace,
                    shared_config=shared_config)
        c._passive = True
        c._set_state(_SYN_RECEIVED)
        c.segs_in = 1
        c._take_syn(syn, now)
        c.snd.ptr = c.snd_nxt = (c.iss + 1) & MASK
        c.rcv.adv = (c.rcv.nxt + c.rcv.syn_window) & MASK
        if synack_sent and trace is None:
            # what segments_to_send(now) does with the queued SYN-ACK: count
            # it (_now and last_send are ``now`` already; _synack_segment's
            # rcv.acked = rcv.nxt was done by _take_syn)
            c.segs_out = 1
        else:
            c._queue_out(c._synack_segment(now))
        c.timers.rto = now + c.rtt.rto
        return c

    def _take_syn(self, syn: TcpSegment, now: float) -> None:
        """Record the peer's SYN: IRS, RCV.NXT and the negotiated options."""
        self.irs = syn.seq
        self.rcv.nxt = self.rcv.acked = (syn.seq + 1) & MASK
        n: Negotiated = negotiate(self.config, syn.options)
        self.wscale_ok = n.wscale_ok
        self.snd_wscale = n.snd_wscale
        self.rcv_wscale = self.rcv.wscale = n.rcv_wscale
        self.sack_ok = self.rcv.sack_ok = n.sack_ok
        self.ts_ok = n.ts_ok
        mss = n.send_mss - (TIMESTAMP_OPTION_LEN if n.ts_ok else 0)
        self.send_mss = mss
        self.rcv.mss = min(self.advmss, n.send_mss)
        cfg = self.config
        self.snd.set_mss(mss, cfg.max_segment)
        self.cc.set_mss(mss, cfg.initial_cwnd)
        if n.ts_ok and syn.options.timestamp is not None:
            self._ts_recent = syn.options.timestamp[0]
            self._ts_recent_stamp = now

    # ---------------------------------------------------------- user calls
    def send(self, data: bytes | bytearray | memoryview, now: float, *,
             more: bool = False) -> int:
        """SEND (RFC 9293 3.10.2): queue bytes, return how many fit in the send
        buffer.  Raises BrokenPipeError after shutdown/close, or the error that
        closed the connection.  ``more`` (Linux MSG_MORE): the next output
        holds partial segments as TCP_CORK would, and the end of this write
        carries no PSH (tcp_push: no tcp_mark_push, TCP_NAGLE_CORK)."""
        self._now = now
        snd = self.snd
        snd.more = snd.more_cork = more
        st = self.state
        if self.snd.fin_queued or self._app_closed:
            raise BrokenPipeError(E.EPIPE, "TCP send side already shut down")
        if st is _CLOSED or st is _TIME_WAIT or st is _FIN_WAIT_2:
            if self.error is not None:
                raise ev.ConnectionFailed(self.error).exception()
            raise BrokenPipeError(E.EPIPE, "TCP connection is closed")
        lowat = self.config.notsent_lowat
        if lowat:
            room = self._notsent_room(lowat)
            if room < len(data):
                data = data[:room if room > 0 else 0]
                self._send_blocked = True
        idle = not self.snd.unsent(self.snd_una)
        buf = self.snd.buf
        if buf.limit < self.config.send_buffer:
            n = buf.write(data)  # clamped by memory pressure: the strict bound
        else:
            n = buf.write(data, self._sndbuf_admit(len(data)))
        if n and idle:
            self.snd.chrono.start(_CHRONO_BUSY, now)  # Linux tcp_add_write_queue_tail
        if n < len(data):
            self._send_blocked = True
        return n

    def send_urgent(self, data: bytes | bytearray | memoryview, now: float) -> int:
        """send(data, MSG_OOB) (Linux tcp_sendmsg + tcp_mark_urg): queue
        ``data`` like :meth:`send`; the urgent pointer then points one past
        the last byte queued (RFC 6093, BSD/Linux), and the next output is not
        held by Nagle (Linux tcp_nagle_test in urgent mode).  Segments carry
        URG until the peer acknowledges the urgent byte (ustack.tcp.urgent)."""
        n = self.send(data, now)
        if n:
            self.snd.urg_up = (self.snd_una + len(self.snd.buf)) & MASK
            self.snd.force = True
        return n

    @property
    def urgent_pointer(self) -> int | None:
        """SND.UP while urgent data is unacknowledged (urgent mode), else None."""
        return self.snd.urg_up if urgent_active(self.snd.urg_up, self.snd_una) else None

    def _size_goal(self) -> int:
        """Linux tcp_xmit_size_goal: half the peer's largest window
        (tcp_bound_to_half_wnd), at most a GSO packet, in whole MSS."""
        mss = self.send_mss
        goal = min(_GSO_MAX_PAYLOAD, self.max_snd_wnd >> 1) // mss * mss
        return goal if goal >= mss else mss

    def _sndbuf_admit(self, n: int) -> int:
        """Bytes of an ``n``-byte write the send buffer takes (Linux's rule,
        :func:`ustack.tcp.send_buffer.admit`); what leaves at once is the
        whole segments min(SND.WND, cwnd) allows beyond the sent bytes."""
        snd = self.snd
        buf = snd.buf
        queued = len(buf)
        goal = self._size_goal()
        # admit()'s first test, before the window/cwnd arithmetic it does not
        # need: every skb this write starts begins below the bound
        if (sndbuf_charged(queued, goal) + n + SKB_OVERHEAD * (n // goal + 1)
                < buf.limit):
            return n
        una = self.snd_una
        sent = (snd.ptr - una) & MASK
        out = 0
        rec = self._rec
        if self._rec_cfg is not None and _sending(self.state):
            flight = (self.snd_nxt - una) & MASK
            cwnd_room = flight + self.cc.cwnd - (rec.in_flight() if rec is not None else 0)
            wnd = self.snd_wnd if self.snd_wnd < cwnd_room else cwnd_room
            if wnd > sent:
                mss = self.send_mss
                out = (wnd - sent) // mss * mss
        eor = snd.eor
        closed = bool(eor) and eor[-1] == (una + queued) & MASK
        return sndbuf_admit(n, queued, queued - sent, out, goal, buf.limit, closed)

    def _notsent_room(self, lowat: int) -> int:
        """What one write may queue under TCP_NOTSENT_LOWAT, as Linux's
        tcp_sendmsg_locked: the bytes the window and cwnd let out at once
        leave during the write (tcp_push_one), the rest fills skbs of the
        size goal (tcp_xmit_size_goal: half the peer's largest window, at
        most a GSO packet, whole MSS), and a new skb is only started while
        fewer than ``lowat`` bytes wait unsent (tcp_stream_memory_free)."""
        snd = self.snd
        una = self.snd_una
        queued = len(snd.buf)
        wire = (snd.ptr - una) & MASK
        rec = self._rec
        if self._rec_cfg is not None and _sending(self.state):
            flight = (self.snd_nxt - una) & MASK
            cwnd_room = flight + self.cc.cwnd - (rec.in_flight() if rec is not None else 0)
            limit = self.snd_wnd if self.snd_wnd < cwnd_room else cwnd_room
            if limit > wire:
                wire = limit
        mss = self.send_mss
        goal = min(_GSO_MAX_PAYLOAD, self.max_snd_wnd >> 1) // mss * mss
        if goal < mss:
            goal = mss
        target = goal * max(1, -(-lowat // goal))  # unsent once the last skb is full
        return wire + target - queued

    def recv(self, max_bytes: int, now: float) -> bytes:
        """RECEIVE (RFC 9293 3.10.3): take up to ``max_bytes`` in-order bytes.
        Returns b"" when nothing is buffered (see :attr:`eof_received`).
        Reading may reopen the window; a window update is then due."""
        self._now = now
        self._data_event_sent = False
        data = self.rcv.read(max_bytes)
        if data:
            self._read_done()
        return data

    def _read_done(self) -> None:
        """The application took bytes: in a synchronized state the window
        may reopen, and a window update is then due (RFC 9293 3.8.6.2.2)."""
        st = self.state
        # (ESTABLISHED first: ``synchronized`` is an interpreted enum property)
        if st is _ESTABLISHED or st.synchronized:
            self.rcv.maybe_window_update()

    def recv_into(self, sink: Callable[[memoryview], object], max_bytes: int,
                  now: float) -> int:
        """:meth:`recv`, handing ``sink`` a view of up to ``max_bytes``
        in-order bytes instead of a copy (valid during the call only: the
        sink copies what it keeps and does not call into this connection);
        the bytes are taken even if it raises.  Returns how many."""
        self._now = now
        self._data_event_sent = False
        n = self.rcv.read_into(sink, max_bytes)
        if n:
            self._read_done()
        return n

    def recv_chunks(self, max_bytes: int, now: float) -> list[bytes | bytearray | memoryview]:
        """:meth:`recv` as the chunks that hold the bytes, handed over
        without a copy (:meth:`Receiver.take`; views of frames among them,
        which the caller then keeps alive)."""
        self._now = now
        self._data_event_sent = False
        chunks = self.rcv.take(max_bytes)
        if chunks:
            self._read_done()
        return chunks

    def shutdown(self, now: float) -> None:
        """Half-close (shutdown(SHUT_WR)): a FIN follows the queued data
        (RFC 9293 3.10.4).  In SYN-SENT/SYN-RECEIVED the FIN waits for
        ESTABLISHED (Linux sends it once the handshake completes)."""
        self._now = now
        if self.snd.fin_queued:
            return
        st = self.state
        if st is _CLOSED or st not in (_ESTABLISHED, _CLOSE_WAIT, _SYN_SENT, _SYN_RECEIVED):
            return
        self.snd.fin_queued = True
        self.snd.fin_seq = (self.snd_una + len(self.snd.buf)) & MASK
        if st is _ESTABLISHED:
            self._set_state(_FIN_WAIT_1)
        elif st is _CLOSE_WAIT:
            self._set_state(_LAST_ACK)

    def close(self, now: float) -> None:
        """Full close (close(2)): like :meth:`shutdown`, and the connection is
        orphaned.  With unread received data a RST is sent instead of a FIN
        (RFC 2525 2.17, Linux tcp_close); in SYN-SENT nothing is sent."""
        self._now = now
        if self._app_closed:
            return
        self._app_closed = True
        st = self.state
        if st is _CLOSED:
            return
        if st is _SYN_SENT:
            self._become_closed()
            return
        if self.rcv.buf and st.synchronized and st is not _TIME_WAIT:
            self.mib["TcpExtTCPAbortOnClose"] += 1
            self._emit(self._make(RST | ACK, self.snd_nxt), now)
            self._become_closed()
            return
        self._rst_on_data = True
        self.shutdown(now)
        if self.state is _FIN_WAIT_2 and self.timers.timewait is None:
            self.timers.timewait = now + self.config.fin_wait2

    def abort(self, now: float) -> None:
        """ABORT (RFC 9293 3.10.5): RST if synchronized, then CLOSED."""
        self._now = now
        st = self.state
        if st is _CLOSED:
            return
        if st.synchronized and st is not _TIME_WAIT:
            self._emit(self._make(RST | ACK, self.snd_nxt), now)
        self._app_closed = True
        self._become_closed()

    def icmp_error(self, errno: int, quoted_seq: int, now: float, *, mtu: int = 0) -> None:
        """An ICMP error quoting one of our segments (RFC 9293 3.10.7.1 note,
        RFC 5927, RFC 1122 4.2.3.9).  Only a quote in [SND.UNA, SND.NXT) counts
        (RFC 5927 4.1).

        * EMSGSIZE ("fragmentation needed", with the next-hop ``mtu``): Path
          MTU Discovery (RFC 1191 3, RFC 8201), see :meth:`path_mtu_reduced`.
        * others: in SYN-SENT the connect fails at once (Linux); elsewhere a
          soft error (recorded in :attr:`soft_error`, not fatal).
        """
        if self.state is _CLOSED:
            return
        if not (seq_le(self.snd_una, quoted_seq) and seq_lt(quoted_seq, self.snd_nxt)):
            return
        if errno == E.EMSGSIZE:
            if mtu:
                self.path_mtu_reduced(mtu, now)
            return
        if self.state is _SYN_SENT:
            self._fail(errno)
        else:
            self.soft_error = errno

    def path_mtu_reduced(self, mtu: int, now: float) -> None:
        """The path MTU dropped to ``mtu`` (RFC 1191 3, RFC 8201): lower the
        send MSS to MTU - 40 (minus the timestamp option) and retransmit what
        is in flight at once with the new size, without a congestion response
        (Linux tcp_v4_mtu_reduced / tcp_simple_retransmit).  MTUs below 552
        are treated as 552 (Linux ip_rt_min_pmtu)."""
        mtu = max(mtu, 552)
        mss = mtu - 40 - (TIMESTAMP_OPTION_LEN if self.ts_ok else 0)
        if mss >= self.send_mss:
            return
        self.send_mss = mss
        cfg = self.config
        self.snd.set_mss(mss, cfg.max_segment)
        self.cc.mss = mss
        rec = self.rec
        if rec is not None:
            # what is outstanding at the old size is resent at the new one,
            # without a congestion response (Linux tcp_simple_retransmit)
            rec.simple_retransmit(mss, now)
            rec.apply_timers(self.timers)

    def set_congestion(self, name: str) -> None:
        """TCP_CONGESTION: switch this connection's algorithm (a registered
        name; ValueError names the available ones).  As Linux
        ``tcp_reinit_congestion_control``, the window and ssthresh carry over
        and the new controller starts its own state from them."""
        new = create(name, self.send_mss, self.config.initial_cwnd)
        new.paced = self.config.pacing or new.needs_pacing
        old = self.cc
        if self.state.synchronized:
            new.set_mss(self.send_mss, self.config.initial_cwnd)
            new.cwnd = old.cwnd
            new.ssthresh = old.ssthresh
        self._own_config().congestion = name
        self.cc = new
        if self._rec is not None:  # (a room created later takes self.cc)
            self._rec.cc = new

    def mark_record_end(self) -> None:
        """MSG_EOR: the bytes queued so far end a record; no segment, GSO
        super-segment or retransmission carries bytes of both sides (Linux
        TCP_SKB_CB(skb)->eor, tcp_skb_can_collapse_to)."""
        if len(self.snd.buf):
            self.snd.mark_eor((self.snd_una + len(self.snd.buf)) & MASK)

    def set_cork(self, enabled: bool) -> None:
        """TCP_CORK (Linux): hold partial segments; uncorking sends them."""
        self._own_config().cork = enabled
        self.snd.cork = enabled
        if not enabled:
            self.snd.force = True  # Linux: push pending frames on uncork

    def set_quickack(self, enabled: bool) -> None:
        """TCP_QUICKACK: ACK every data segment at once (a delayed ACK goes now)."""
        self._own_config().quickack = enabled
        self.rcv.quickack_mode = enabled
        if enabled and self.timers.delack is not None:
            self.rcv.ack_now = True

    def set_maxseg(self, nbytes: int) -> None:
        """TCP_MAXSEG: clamp the MSS (before the handshake also the MSS we
        advertise; after it the send MSS, with no retransmission)."""
        if nbytes < 88 and nbytes != 0:
            raise ValueError(f"TCP_MAXSEG must be 0 or >= 88 bytes, not {nbytes}")
        cfg = self._own_config()
        cfg.maxseg = nbytes
        if not nbytes:
            return
        if not self.state.synchronized:
            cfg.mss = min(cfg.mss, nbytes)
            self.advmss = cfg.mss
            self.rcv.advmss = min(self.rcv.advmss, nbytes)
            return
        if nbytes < self.send_mss:
            self.send_mss = nbytes
            self.snd.set_mss(nbytes, cfg.max_segment)
            self.cc.mss = nbytes
            if self.rec is not None:
                self.rec.set_mss(nbytes)

    def set_notsent_lowat(self, nbytes: int) -> None:
        """TCP_NOTSENT_LOWAT: ``send`` starts no new size-goal chunk once ``nbytes``
        wait unsent, and the socket is writable below half of it (0 = off)."""
        if nbytes < 0:
            raise ValueError(f"TCP_NOTSENT_LOWAT must be >= 0, not {nbytes}")
        self._own_config().notsent_lowat = nbytes

    def set_send_buffer(self, nbytes: int) -> None:
        """SO_SNDBUF: the bound of the charge of unacknowledged + unsent
        bytes (Linux sk_sndbuf; see :mod:`ustack.tcp.send_buffer`)."""
        if nbytes <= 0:
            raise ValueError(f"SO_SNDBUF must be > 0, not {nbytes}")
        self._own_config().send_buffer = nbytes
        self.snd.buf.limit = nbytes

    def set_recv_buffer(self, nbytes: int) -> None:
        """SO_RCVBUF: the bound of the window we advertise (never shrunk below
        what was already advertised, RFC 9293 3.8.6) and of out-of-order data."""
        if nbytes <= 0:
            raise ValueError(f"SO_RCVBUF must be > 0, not {nbytes}")
        self._own_config().recv_buffer = nbytes
        self.rcv.size = nbytes
        if self.state.synchronized:
            self.rcv.maybe_window_update()

    def set_nodelay(self, enabled: bool) -> None:
        """TCP_NODELAY: True turns Nagle off and pushes what is pending at the
        next output, held back by Nagle or TCP_CORK alike (Linux
        tcp_sock_set_nodelay: TCP_NAGLE_OFF|TCP_NAGLE_PUSH, then
        tcp_push_pending_frames; the cork itself stays on)."""
        self._own_config().nodelay = enabled
        if enabled and self.snd.unsent(self.snd_una):
            self.snd.force = True

    def set_user_timeout(self, seconds: float) -> None:
        """TCP_USER_TIMEOUT (RFC 5482): fail with ETIMEDOUT when sent data or
        zero-window probes stay unacknowledged this long (0 = off, retries2)."""
        if seconds < 0:
            raise ValueError(f"user timeout must be >= 0 seconds, not {seconds}")
        self._own_config().user_timeout = seconds

    def set_keepalive(self, enabled: bool, now: float, *, idle: float | None = None,
                      interval: float | None = None, count: int | None = None) -> None:
        """SO_KEEPALIVE (+ TCP_KEEPIDLE/KEEPINTVL/KEEPCNT): arm or disarm probing."""
        cfg = self._own_config()
        if idle is not None:
            cfg.keepalive_idle = idle
        if interval is not None:
            cfg.keepalive_interval = interval
        if count is not None:
            cfg.keepalive_count = count
        cfg.keepalive = enabled
        self._ka_probes = 0
        if enabled and self.state in (_ESTABLISHED, _CLOSE_WAIT, _FIN_WAIT_2):
            self.timers.keepalive = (max(self.last_recv, now - cfg.keepalive_idle)
                                     + cfg.keepalive_idle)
        elif not enabled:
            self.timers.keepalive = None

    # --------------------------------------------------------------- queries
    def send_space(self) -> int:
        """Bytes :meth:`send` would accept now, 0 while not writable (Linux
        tcp_poll / sk_stream_write_space: at most 2/3 of the send buffer
        charged, :func:`ustack.tcp.send_buffer.writable`)."""
        if self.snd.fin_queued or self._app_closed or self.state is _CLOSED:
            return 0
        buf = self.snd.buf
        limit = buf.limit
        if limit < self.config.send_buffer:
            space = buf.space  # clamped by memory pressure: the strict bound
        else:
            goal = self._size_goal()
            queued = len(buf)
            if not sndbuf_writable(queued, goal, limit):
                return 0
            space = limit - sndbuf_charged(queued, goal)
        lowat = self.config.notsent_lowat
        if lowat:
            # writable while twice the unsent bytes stay below the mark
            # (Linux tcp_poll -> __sk_stream_memory_free(sk, wake=1))
            if 2 * self.snd.unsent(self.snd_una) >= lowat:
                return 0
            room = self._notsent_room(lowat)
            if room < space:
                return room if room > 0 else 0
        return space

    def readable(self) -> int:
        """In-order bytes waiting for :meth:`recv`."""
        return len(self.rcv.buf)

    @property
    def shut_wr(self) -> bool:
        return self.snd.fin_queued

    @property
    def shut_rd(self) -> bool:
        return self._app_closed

    @property
    def send_queue(self) -> int:
        return len(self.snd.buf)

    @property
    def flight_size(self) -> int:
        return seq_sub(self.snd_nxt, self.snd_una)

    def next_event(self) -> ev.Event | None:
        events = self._events
        if not events:
            return None
        event = events.pop(0)
        if not events:
            self._events = NO_EVENTS  # (the last one taken: back to the shared list)
        return event

    def set_send_limit(self, limit: int) -> None:
        """The stack's memory budget (ustack.tcp.memory) moved this
        connection's send bound: a writer blocked on the old bound hears of
        the room the new one gives (as an ACK that frees space would tell
        it), else it would wait for an ACK that may never come."""
        self.snd.buf.limit = limit
        if self._send_blocked and self.send_space():
            self._send_blocked = False
            self._queue_event(ev.SEND_SPACE_AVAILABLE)

    def _queue_event(self, event: ev.Event) -> None:
        """Append ``event`` to the pending events (a list of its own first:
        a connection with none pending holds the shared empty ``NO_EVENTS``)."""
        events = self._events
        if events is NO_EVENTS:
            events = self._events = []
        events.append(event)

    def has_events(self) -> bool:
        """An event waits for :meth:`next_event`."""
        return bool(self._events)

    def next_deadline(self) -> float | None:
        """The earliest armed timer (call after :meth:`segments_to_send`)."""
        return self.timers.earliest()

    # -------------------------------------------------------- segment arrival
    def receive(self, seg: TcpSegment, now: float, arrival: float | None = None,
                first_arrival: float | None = None) -> None:
        """SEGMENT ARRIVES (RFC 9293 3.10.7).  Never raises for any segment.

        ``now`` is the present: every timer, TSval and state change uses it.
        ``arrival``, when the link knows it, is when the segment reached us
        (the kernel's receive stamp, ustack.link.rxtime), and
        ``first_arrival`` that of the first of the ACKs it stands for (ACK
        coalescing): the RTT samples of this ACK use them (RFC 6298 2: the
        time the ACK arrives), clamped to ``now``, so they measure the path
        and not our own wake-up."""
        self._now = now
        rec = self._rec
        if rec is None and self._rec_cfg is not None and seg.options.sack_blocks:
            # nothing sent yet: only a SACK-carrying ACK reaches the room
            # (_process_ack; a late D-SACK)
            rec = self._room()
        if rec is not None:
            rec.ack_time = arrival
            rec.ack_time_first = first_arrival
        self.segs_in += 1
        self.last_recv = now
        if self.trace is not None:
            self.trace(now, "seg_recv", _seg_data(seg, self.snd_wscale))
        st = self.state
        flags = seg.flags
        payload = seg.payload
        plen = len(payload)
        if plen:
            self.data_segs_in += 1
        if self.timers.keepalive is not None:
            self.timers.keepalive = now + self.config.keepalive_idle
            self._ka_probes = 0

        # ---- fast path: ESTABLISHED, in order, plain ACK (+ data) ----------
        # (the same checks as the general path in its order, minus the ones
        # that cannot apply; tests/unit/test_tcp_fastpath.py drives both)
        rcv = self.rcv
        seq = seg.seq
        if (st is _ESTABLISHED and (flags & (SYN | FIN | RST | ACK)) == ACK
                and seq == rcv.nxt and self.fast_path):
            ts = seg.options.timestamp
            if ts is not None and self.ts_ok:
                if (((ts[0] - self._ts_recent) & MASK) >= 0x80000000
                        and now - self._ts_recent_stamp < _PAWS_IDLE):  # PAWS (RFC 7323 5)
                    self._paws_reject(plen, now)
                    return
                if ((seq == rcv.acked or ((seq - rcv.acked) & MASK) >= 0x80000000)
                        and ((seg.ack - self.snd_una) & MASK)
                        <= ((self.snd_nxt - self.snd_una) & MASK)):
                    # seq <= the last ACK sent and an acceptable ACK
                    # (SND.UNA =< SEG.ACK =< SND.NXT): record TS.Recent
                    # (RFC 7323 4.3; Linux tcp_ack updates it only once the
                    # ACK is known good)
                    self._ts_recent = ts[0]
                    self._ts_recent_stamp = now
            room = (rcv.adv - seq) & MASK
            if plen > room or room >= 0x80000000:
                self._receive_general(seg, now)  # beyond the window: trim
                return
            if (seg.ack == self.snd_una and self.snd_nxt == seg.ack
                    and not seg.options.sack_blocks):
                # nothing in flight, nothing acknowledged: only the window
                # (the _process_ack branch for SEG.ACK = SND.UNA, inlined)
                wnd = seg.window << self.snd_wscale
                if self.timers.persist is not None and wnd:
                    self.timers.persist = None
                    self._persist_backoff = 0
                self._update_window(seg, wnd)
            elif not self._process_ack(seg, now):
                return
            if plen:
                if rcv.accept(payload, now):
                    self._receive_fin(now)
                if not self._data_event_sent:
                    self._data_event_sent = True
                    self._queue_event(ev.DATA_AVAILABLE)
            return

        if st is _CLOSED or st is _LISTEN:
            rst = reply_to_unmatched(seg)
            if rst is not None:
                self._emit(rst, now)
            return
        if st is _SYN_SENT:
            self._receive_syn_sent(seg, now)
            return
        if st is _TIME_WAIT:
            self._receive_time_wait(seg, now)
            return
        self._receive_general(seg, now)

    # ---------------------------------------------- ACK coalescing (driver)
    def coalescible_ack(self, seg: TcpSegment) -> bool:
        """``seg`` is a plain cumulative ACK this connection would take
        through its ACK fast path right now: ESTABLISHED, flags exactly ACK,
        no text, no SACK information it would use, in sequence, SND.UNA <
        SEG.ACK =< SND.NXT, the recovery room OPEN, no trace hook.  A driver
        that read several segments for this connection in one receive batch
        may hold such an ACK and let a later one supersede it
        (:meth:`ack_supersedes`); docs/tcp-core.md "ACK coalescing"."""
        if (seg.flags != ACK or seg.payload or self.state is not _ESTABLISHED
                or self.trace is not None or not self.fast_path):
            return False
        rec = self._rec
        # (no room yet: nothing in flight, so no ACK of new data to coalesce)
        if rec is None or seg.seq != self.rcv.nxt or (self.sack_ok and seg.options.sack_blocks):
            return False
        # the recovery room is quiet: nothing SACKed, lost or retransmitted,
        # no loss-probe episode (then an ACK only moves SND.UNA, RTT, RACK,
        # the rate sample and cwnd: Recovery.on_clean_ack; an undo marker
        # left by an earlier recovery is not read by such an ACK)
        sb = rec.sb
        if (rec.state is not CaState.OPEN or rec.tlp_high_seq is not None
                or rec.is_sack_reneg or rec.reno_sacked
                or sb.sacked_out or sb.lost_out or sb.retrans_out):
            return False
        una = self.snd_una
        d = (seg.ack - una) & MASK
        return 0 < d <= ((self.snd_nxt - una) & MASK)

    def ack_supersedes(self, older: TcpSegment, newer: TcpSegment) -> bool:
        """Receiving only ``newer`` may stand for receiving ``older`` then
        ``newer`` (both read in one batch, nothing processed in between):
        ``newer`` is coalescible, has the same sequence number and a higher
        cumulative ACK (so ``older`` is no duplicate ACK and ``newer``'s
        window passes the SND.WL1/SND.WL2 test), and with timestamps its
        TSval is not older than ``older``'s, which passes PAWS (so TS.Recent
        ends where it would, RFC 7323 4.3/5.3, and no PAWS reply is lost).
        What the pair then does is what one stretch ACK does (RFC 5681 4.2
        allows those): the bytes acknowledged, cwnd growth, delivered count,
        RACK and the rate sample are those of ``newer``; the SRTT gets one
        sample (from the oldest segment acknowledged) instead of two."""
        if newer.seq != older.seq or not self.coalescible_ack(newer):
            return False
        if not 0 < ((newer.ack - older.ack) & MASK) < 0x80000000:
            return False
        if self.ts_ok:
            t_old = older.options.timestamp
            t_new = newer.options.timestamp
            if t_old is None or t_new is None:
                return t_old is None and t_new is None
            if (((t_new[0] - t_old[0]) & MASK) >= 0x80000000
                    or ((t_old[0] - self._ts_recent) & MASK) >= 0x80000000):
                return False
        return True

    def absorb_ack(self, older: TcpSegment) -> None:
        """``older`` was superseded (:meth:`ack_supersedes`) and will not be
        received: count it as a segment in (tcpi_segs_in) all the same."""
        self.segs_in += 1

    # ------------------------------------------ receive runs (driver GRO)
    def run_ok(self, seg: TcpSegment) -> bool:
        """Right after :meth:`receive` of ``seg``: segments exactly like it
        (same ACK, window, options and flags but PSH) that continue its text
        would each take :meth:`receive`'s fast path to the in-order text
        branch with nothing in flight and TS.Recent staying (their SEG.SEQ
        above the last ACK sent), so :meth:`receive_run` may take a
        run of them at once (a driver's receive coalescing, as Linux GRO;
        docs/tcp-core.md "Receive runs").  True when ``seg`` carried text
        that went in whole and in order, ESTABLISHED, no trace hook,
        SND.UNA = SND.NXT = SEG.ACK, no SACK blocks, nothing out of order
        held, SND.WL1/SND.WL2 from ``seg`` (its window taken) and its TSval
        not older than TS.Recent (so PAWS passes)."""
        plen = len(seg.payload)
        if (not plen or self.state is not _ESTABLISHED or not self.fast_path
                or self.trace is not None):
            return False
        rcv = self.rcv
        ooo = rcv.ooo
        if (rcv.nxt != ((seg.seq + plen) & MASK) or rcv.acked == rcv.nxt
                or ooo.nbytes or ooo.fin_pos is not None
                or self.snd_una != seg.ack or self.snd_nxt != seg.ack
                or self.snd_wl1 != seg.seq or self.snd_wl2 != seg.ack
                or seg.options.sack_blocks or not self._data_event_sent):
            return False
        ts = seg.options.timestamp
        return not (ts is not None and self.ts_ok
                    and ((ts[0] - self._ts_recent) & MASK) >= 0x80000000)

    def receive_run(self, seg: TcpSegment, payloads: list[bytes | memoryview], hlen: int,
                    last_seq: int, now: float, arrival: float | None) -> None:
        """SEGMENT ARRIVES for each of a run of segments following ``seg``
        (:meth:`run_ok` was True after it), given as their TCP segments
        ``payloads`` (header of ``hlen`` bytes, the same as ``seg``'s but for
        the sequence number, checksum and PSH; text in sequence, within
        RCV.ADV; ``last_seq`` the last one's SEG.SEQ), all at ``now``, the
        last one arriving at ``arrival``.  Exactly what :meth:`receive` does
        to each (tests/unit/test_tcp_rx_runs.py): the fast path's in-order
        text branch, the ACK being the window-only case; TS.Recent stays
        (every SEG.SEQ is above the last ACK sent, RFC 7323 4.3)."""
        n = len(payloads)
        self._now = now
        rec = self._rec
        if rec is not None:
            rec.ack_time = arrival
            rec.ack_time_first = None
        self.segs_in += n
        self.data_segs_in += n
        self.last_recv = now
        timers = self.timers
        if timers.keepalive is not None:
            timers.keepalive = now + self.config.keepalive_idle
            self._ka_probes = 0
        wnd = seg.window << self.snd_wscale
        if timers.persist is not None and wnd:
            timers.persist = None
            self._persist_backoff = 0
        # _update_window of each: SND.WL1 was ``seg``'s SEG.SEQ (run_ok), so
        # every later SEG.SEQ passes the rule and the last one's stays
        self.snd_wnd = wnd
        self.snd_wl1 = last_seq
        self.snd_wl2 = seg.ack
        if wnd > self.max_snd_wnd:
            self.max_snd_wnd = wnd
        self.rcv.accept_run(payloads, hlen, now)
        if not self._data_event_sent:
            self._data_event_sent = True
            self._queue_event(ev.DATA_AVAILABLE)

    def _receive_general(self, seg: TcpSegment, now: float) -> None:
        """3.10.7.4 "Other states": SYN-RECEIVED through LAST-ACK."""
        st = self.state
        flags = seg.flags
        seq = seg.seq
        payload = seg.payload

        if st is _SYN_RECEIVED:
            # a retransmitted SYN: answer with the SYN-ACK again (Linux tcp_check_req)
            if (flags & (SYN | ACK | RST | FIN)) == SYN and seq == self.irs:
                self._emit(self._synack_segment(now), now)
                return
            # an ACK that does not acknowledge our SYN: reset it, stay (Linux)
            if flags & ACK and not flags & RST and seg.ack != self.snd_nxt and not flags & SYN:
                self._emit(TcpSegment(self.local_port, self.remote_port, seg.ack, 0, RST, 0),
                           now)
                return
            # simultaneous open: the peer's SYN-ACK acknowledges our SYN-ACK's SYN
            if (flags & (SYN | ACK | RST)) == (SYN | ACK) \
                    and ((seq + 1) & MASK) == self.rcv.nxt and seg.ack == self.snd_nxt:
                flags &= ~SYN
                seq = self.rcv.nxt
                payload = b""
                self.rcv.ack_now = True  # Linux ACKs the crossing SYN-ACK

        ts = seg.options.timestamp
        # ---- PAWS (RFC 7323 5.3), never for RSTs ----
        if (self.ts_ok and ts is not None and not flags & RST
                and seq_lt(ts[0], self._ts_recent)
                and now - self._ts_recent_stamp < _PAWS_IDLE):
            self._paws_reject(len(payload), now)
            return

        # ---- first: sequence number check (3.10.7.4) ----
        plen = len(payload)
        seg_len = plen + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)
        rcv_nxt = self.rcv.nxt
        wnd = seq_sub(self.rcv.adv, rcv_nxt)
        if wnd < 0:
            wnd = 0
        off = seq_sub(seq, rcv_nxt)  # where the segment starts relative to RCV.NXT
        if seg_len == 0:
            ok = off == 0 if wnd == 0 else 0 <= off < wnd
        elif wnd == 0:
            ok = False
        else:
            ok = (0 <= off < wnd) or (0 <= off + seg_len - 1 < wnd)
        if not ok:
            if flags & RST:
                return  # RFC 5961 3.2: out-of-window RST, silently dropped
            if flags & SYN and st is not _SYN_RECEIVED:
                self._challenge_ack(now)  # RFC 5961 4.2
                return
            if plen and off < 0 and self.sack_ok:
                # old duplicate data: D-SACK it (RFC 2883)
                self.rcv.dsack = (seq, (seq + plen) & MASK)
                self.dsack_dups += 1
            if seg_len:
                self.rcv.ack_now = True  # data/FIN: dup ACK at once, never rate-limited
                # our ACK was lost or late: ping-pong mode ends (Linux
                # tcp_data_queue out_of_window -> tcp_enter_quickack_mode)
                self.rcv.pingpong = False
            else:
                self._oow_ack(now)
            return

        # ---- second: RST (RFC 5961 3.2; Linux accepts any in-window RST in SYN-RECEIVED) ----
        if flags & RST:
            if st is _SYN_RECEIVED:
                if self._passive:
                    self._become_closed()
                else:
                    self._fail(E.ECONNREFUSED)
            elif off == 0:
                self._fail(E.ECONNRESET, quiet=st in (_CLOSING, _LAST_ACK))
            else:
                self._challenge_ack(now)
            return

        # ---- fourth: SYN in a synchronized state (RFC 5961 4.2) ----
        if flags & SYN:
            if st is _SYN_RECEIVED and self._passive:
                # Linux tcp_check_req: an in-window SYN that is not a
                # retransmission resets the embryonic connection
                rst = reply_to_unmatched(seg)
                if rst is not None:
                    self._emit(rst, now)
                self._become_closed()
                return
            self._challenge_ack(now)
            return

        # ---- fifth: ACK field ----
        if not flags & ACK:
            return  # RFC 9293: drop segments without ACK (catalogue 33)

        if (ts is not None and self.ts_ok and seq_le(seq, self.rcv.acked)
                and ((seg.ack - self.snd_una) & MASK) <= ((self.snd_nxt - self.snd_una) & MASK)):
            # TS.Recent only from a segment whose ACK is acceptable (SND.UNA
            # =< SEG.ACK =< SND.NXT): one acking unsent data (or an old ACK)
            # must not move it (RFC 7323 4.3; Linux tcp_ack calls
            # tcp_replace_ts_recent after its ACK checks)
            self._ts_recent = ts[0]
            self._ts_recent_stamp = now

        if st is _SYN_RECEIVED:
            ack = seg.ack
            if not (seq_gt(ack, self.snd_una) and seq_le(ack, self.snd_nxt)):
                self._emit(TcpSegment(self.local_port, self.remote_port, ack, 0, RST, 0), now)
                return
            self._establish(seg, now)
            st = self.state
        if not self._process_ack(seg, now):
            return
        st = self.state
        if st is _CLOSED or st is _TIME_WAIT:
            if st is _TIME_WAIT and flags & FIN:
                self.rcv.ack_now = True
            return

        # ---- trim to the window (3.10.7.4 "first", trimming) ----
        if off < 0:
            skip = -off
            if skip > plen:
                skip = plen
            if self.sack_ok and skip:
                self.rcv.dsack = (seq, (seq + skip) & MASK)
                self.dsack_dups += 1
            payload = payload[skip:]
            seq = (seq + skip) & MASK
            plen -= skip
            self.rcv.ack_now = True
        fin = bool(flags & FIN)
        room = seq_sub(self.rcv.adv, seq)
        if plen > room:
            payload = payload[:max(room, 0)]
            plen = len(payload)
            fin = False

        # ---- seventh/eighth: text and FIN ----
        if plen or fin:
            self._process_data(seq, payload, fin, seg, now)

    def _process_data(self, seq: int, payload: bytes | memoryview, fin: bool, seg: TcpSegment,
                      now: float) -> None:
        st = self.state
        plen = len(payload)
        if plen and not _receiving(st):
            return  # after the peer's FIN: ignore (RFC 9293 3.10.7.4, Linux)
        if plen and self._rst_on_data:
            # RFC 1122 4.2.2.13 / Linux: new data after close() -> RST, abort
            if seg.flags & ACK:
                rst = TcpSegment(self.local_port, self.remote_port, seg.ack, 0, RST, 0)
            else:
                rst = TcpSegment(self.local_port, self.remote_port, 0,
                                 (seg.seq + seg.seg_len) & MASK, RST | ACK, 0)
            self._emit(rst, now)
            self.mib["TcpExtTCPAbortOnData"] += 1
            self._fail(E.ECONNRESET, quiet=True)
            return
        if seq == self.rcv.nxt:
            if plen:
                self._accept_in_order(payload, now)
            if fin or self.rcv.ooo.fin_pos == self.rcv.pos:
                self._receive_fin(now)
            return
        # out of order: queue, answer at once with a dup ACK + SACK (RFC 5681 4.2)
        self.rcv.queue(seq, payload, fin)

    def _accept_in_order(self, payload: bytes | memoryview, now: float) -> None:
        """In-order text: the receiver appends it (and what reassembly now
        completes) and schedules the ACK; the application hears of it once."""
        if self.rcv.accept(payload, now):
            self._receive_fin(now)
        if not self._data_event_sent:
            self._data_event_sent = True
            self._queue_event(ev.DATA_AVAILABLE)

    def _receive_fin(self, now: float) -> None:
        """Eighth step: the peer's FIN is in order (3.10.7.4)."""
        if self.eof_received:
            return
        self.eof_received = True
        self.rcv.take_fin()
        self._queue_event(ev.EOF_RECEIVED)
        st = self.state
        if st is _ESTABLISHED:
            self._set_state(_CLOSE_WAIT)
        elif st is _FIN_WAIT_1:
            # our FIN not yet acknowledged (else _process_ack moved us on)
            self._set_state(_CLOSING)
        elif st is _FIN_WAIT_2:
            self._enter_time_wait(now)

    def _process_ack(self, seg: TcpSegment, now: float) -> bool:
        """Fifth step, ESTABLISHED and later (3.10.7.4).  False = stop processing.

        Every acceptable ACK (and an old one carrying SACK blocks, as Linux)
        goes to the recovery room, which updates the scoreboard, RTT, rate
        sample, loss state and cwnd (RFC 6675, RFC 8985, RFC 6937)."""
        ack = seg.ack
        una = self.snd_una
        # (no room yet: nothing was sent, so SND.NXT = SND.UNA and the room
        # has nothing to do; receive() made it for a SACK-carrying ACK)
        rec = self._rec
        if rec is not None and rec.state is _CA_OPEN and seg.options.sack_blocks \
                and self.sack_ok and not seg.payload:
            # an ACK that may start recovery: first what the earlier ACKs of
            # the batch allow, as Linux transmits after each (see _send_after_ack)
            self._send_after_ack(now)
        if ack == una:
            # (windows on SYN segments are never scaled, RFC 7323 2.2)
            wnd = seg.window if seg.flags & SYN else seg.window << self.snd_wscale
            # with nothing outstanding only a SACK-carrying ACK matters: a late
            # D-SACK still undoes a spurious reduction (Linux tcp_ack no_queue)
            if rec is not None and (self.snd_nxt != una
                                    or (seg.options.sack_blocks and self.sack_ok)):
                self._recovery_ack(rec, seg, now, wnd > self.snd_wnd)
            if self.timers.persist is not None and wnd:
                self.timers.persist = None
                self._persist_backoff = 0
            self._update_window(seg, wnd)
            if rec is not None and rec.state is not _CA_OPEN and not seg.payload:
                self._send_after_ack(now)
            return True
        acked = (ack - una) & MASK
        flight = (self.snd_nxt - una) & MASK
        if acked > flight:
            if acked < 0x80000000:
                # RFC 9293: ACK of something not yet sent -> ACK, drop (catalogue 29)
                self._oow_ack(now)
                return False
            if ((una - ack) & MASK) > self.max_snd_wnd:
                self._challenge_ack(now)  # RFC 5961 5.2 (catalogue 30)
                return False
            # old duplicate ACK: only its SACK blocks count (Linux tcp_ack),
            # then process the text
            if rec is not None and seg.options.sack_blocks and self.sack_ok \
                    and self.snd_nxt != una:
                self._recovery_ack(rec, seg, now, False)
                if rec.state is not _CA_OPEN and not seg.payload:
                    self._send_after_ack(now)
            return True
        # ---- new data acknowledged: SND.UNA < SEG.ACK =< SND.NXT ----
        data_acked = acked
        snd = self.snd
        if snd.fin_queued and not snd.fin_acked and seq_gt(ack, snd.fin_seq):
            snd.fin_acked = True
            data_acked -= 1
        if data_acked:
            snd.buf.acknowledge(data_acked)
            self.bytes_acked += data_acked
        self.snd_una = ack
        self.last_ack = now
        # no rtt.backoff = 0 here: the backoff ends with a valid RTT sample
        # (RFC 6298 5 / Karn; Linux tcp_ack_update_rtt), which the recovery
        # room takes; an ACK of retransmitted data alone keeps it
        self._retransmits = 0
        wnd = seg.window << self.snd_wscale
        if rec is not None:
            opts = seg.options
            rs = None
            if (not opts.sack_blocks or not self.sack_ok) and self.trace is None:
                # a plain ACK: the recovery room's fast path if it applies
                # (its outcome has no state change, D-SACK, undo, F-RTO or
                # reneging to act on); else _recovery_ack's general path.
                # (Sender.is_cwnd_limited inlined)
                ts = opts.timestamp
                cc = self.cc
                cwnd = cc.cwnd
                rs = rec.on_clean_ack(ack, now, ts[1] if ts is not None and self.ts_ok else None,
                                      cwnd < 2 * snd.max_flight if cwnd < cc.ssthresh
                                      else snd.cwnd_limited)
            if rs is None:
                self._recovery_ack(rec, seg, now, wnd != self.snd_wnd)
            else:
                rec.apply_timers(self.timers)
                if rs.interval > 0:
                    self._rate = rs.delivery_rate
        if self.timers.persist is not None:
            self.timers.persist = None
            self._persist_backoff = 0
        self._update_window(seg, wnd)
        if ack == self.snd_nxt:
            # all acknowledged (Linux tcp_clean_rtx_queue: tcp_chrono_stop BUSY)
            snd.chrono.stop(_CHRONO_BUSY, now, not snd.unsent(ack))
        if self._send_blocked and self.send_space():
            self._send_blocked = False
            self._queue_event(ev.SEND_SPACE_AVAILABLE)
            # Linux tcp_check_space: SOCK_NOSPACE cleared
            snd.chrono.stop(_CHRONO_SNDBUF, now, ack == self.snd_nxt and not snd.unsent(ack))
        if snd.fin_acked:
            st = self.state
            if st is _FIN_WAIT_1:
                self._set_state(_FIN_WAIT_2)
                if self._app_closed:
                    self.timers.timewait = now + self.config.fin_wait2
            elif st is _CLOSING:
                self._enter_time_wait(now)
                return False
            elif st is _LAST_ACK:
                self._become_closed()
                return False
        if rec is not None and rec.state is not _CA_OPEN and not seg.payload:
            self._send_after_ack(now)
        return True

    def _send_after_ack(self, now: float) -> None:
        """Loss recovery runs (DISORDER, CWR, RECOVERY, LOSS): transmit what
        this ACK allows now, as Linux does after every ACK (``tcp_ack`` then
        ``tcp_data_snd_check``), instead of once after the receive batch.
        Limited transmit (RFC 3042) and PRR's per-ACK quota (RFC 6937 3)
        depend on it: a batch of dupACKs processed before the sender runs
        would lose the first ones' limited-transmit room and start PRR from
        a single retransmission.  The segments join ``_out``: the driver still
        sends the whole batch's output at once.  In OPEN a batch acts as one
        stretch ACK and the output waits for :meth:`segments_to_send`, except
        before a SACK-carrying ACK (:meth:`_process_ack`): it may start
        recovery, whose PRR (RFC 6937) and RACK (RFC 8985) start from the
        pipe the earlier ACKs' transmissions would have filled; after a clean
        ACK that opened cwnd room, a batch left only the retransmission in
        flight at a small cwnd, and its loss waited for the RTO."""
        if _sending(self.state):
            if self._early_nxt is None:
                self._early_nxt = self.snd_nxt
            self.snd.push(self, now)

    def _recovery_ack(self, rec: Recovery, seg: TcpSegment, now: float,
                      window_update: bool) -> None:
        """Hand one ACK to the recovery room and act on what it found."""
        cc = self.cc
        cwnd, ssthresh = cc.cwnd, cc.ssthresh
        opts = seg.options
        ts = opts.timestamp
        snd = self.snd
        out = rec.on_ack(
            seg.ack, opts.sack_blocks if self.sack_ok else (), now,
            ts_ecr=ts[1] if ts is not None and self.ts_ok else None,
            window_update=window_update,
            has_data=bool(seg.payload) or bool(seg.flags & (SYN | FIN)),
            is_cwnd_limited=snd.is_cwnd_limited(self),
            # (read by F-RTO in the LOSS state, Recovery._process_loss)
            can_send_new=rec.state is CaState.LOSS and self._can_send_new())
        rec.apply_timers(self.timers)
        rs = out.rate
        if rs is not None and rs.interval > 0:
            self._rate = rs.delivery_rate
        if out.frto_new_data:
            snd.frto_new = True
        if out.state is not out.prior_state or out.dsack or out.undo is not None \
                or out.tlp_recovered or out.reneging or out.entered_recovery:
            self._recovery_event(rec, out, now)
        if self.trace is not None and (cc.cwnd != cwnd or cc.ssthresh != ssthresh):
            self._trace_cc(now)

    def _recovery_event(self, rec: Recovery, out: AckOutcome, now: float) -> None:
        """MIB counters and trace of what an ACK did to the loss state."""
        mib = self.mib
        trace = self.trace
        if out.dsack:
            mib["TcpExtTCPDSACKRecv"] += 1
        if out.reneging:
            mib["TcpExtTCPSACKReneging"] += 1
        if out.tlp_recovered:
            mib["TcpExtTCPLossProbeRecovery"] += 1
        st, prior = out.state, out.prior_state
        if out.entered_recovery:  # (Linux counts every tcp_enter_recovery)
            mib["TcpExtTCPSackRecovery" if self.sack_ok else "TcpExtTCPRenoRecovery"] += 1
            if trace is not None:
                trace(now, "recovery", {"reason": "rack" if rec.rack_enabled else "dupthresh",
                                        "lost": out.lost, "seq": rec.una})
        if out.undo is not None:
            reason = out.undo.reason
            mib[_UNDO_MIB[reason]] += 1
            if trace is not None:
                trace(now, "recovery", {"reason": "undo", "undo": reason,
                                        "cwnd": out.undo.cwnd, "ssthresh": out.undo.ssthresh})
        if (prior is CaState.RECOVERY or prior is CaState.LOSS) and st <= CaState.DISORDER \
                and trace is not None:
            trace(now, "recovery", {"reason": "exit", "from": prior.name.lower()})

    def _trace_cc(self, now: float) -> None:
        assert self.trace is not None
        cc = self.cc
        rtt = self.rtt
        rec = self._rec
        self.trace(now, "cc", {
            "cwnd": cc.cwnd, "ssthresh": cc.ssthresh,
            "in_flight": rec.in_flight() if rec is not None else 0,
            "pacing_rate": self.snd.pacing_rate or cc.pacing_rate,
            "delivery_rate": self._delivery_rate(), "srtt": rtt.srtt, "rttvar": rtt.rttvar,
            "min_rtt": rtt.min_rtt, "rto": rtt.rto,
            "ca_state": rec.state.name.lower() if rec is not None else "open"})

    def _can_send_new(self) -> bool:
        """Unsent data that fits the peer window (RFC 8985 7.3, RFC 5682 2b)."""
        flight = (self.snd_nxt - self.snd_una) & MASK
        return self.snd.unsent(self.snd_una) > 0 and self.snd_wnd > flight

    def _update_window(self, seg: TcpSegment, wnd: int) -> None:
        """SND.WND update rule (RFC 9293 3.10.7.4, SND.WL1/SND.WL2)."""
        wl1 = self.snd_wl1
        seq = seg.seq
        # SND.WL1 < SEG.SEQ or (SND.WL1 = SEG.SEQ and SND.WL2 =< SEG.ACK), mod 2**32
        if (((wl1 - seq) & MASK) >= 0x80000000
                or (wl1 == seq and ((seg.ack - self.snd_wl2) & MASK) < 0x80000000)):
            self.snd_wnd = wnd
            self.snd_wl1 = seg.seq
            self.snd_wl2 = seg.ack
            if wnd > self.max_snd_wnd:
                self.max_snd_wnd = wnd

    def _establish(self, seg: TcpSegment, now: float) -> None:
        """SYN-RECEIVED -> ESTABLISHED on the ACK of our SYN (3.10.7.4)."""
        self.snd_una = seg.ack
        if seq_lt(self.snd.ptr, seg.ack):
            self.snd.ptr = seg.ack
        # a (simultaneous-open) SYN-ACK carries an unscaled window (RFC 7323 2.2)
        self.snd_wnd = seg.window if seg.flags & SYN else seg.window << self.snd_wscale
        self.max_snd_wnd = self.snd_wnd
        self.snd_wl1 = seg.seq
        self.snd_wl2 = seg.ack
        self._handshake_rtt(seg, now)
        self._start_recovery()
        self._set_state(_ESTABLISHED)
        if self._passive:
            self.mib["TcpPassiveOpens"] += 1  # Linux: when the child is created
        self.timers.rto = None
        self._queue_event(ev.CONNECTED)
        if self.config.keepalive:
            self.timers.keepalive = now + self.config.keepalive_idle
        if self.snd.fin_queued:
            self._set_state(_FIN_WAIT_1)

    def _start_recovery(self) -> None:
        """The connection is synchronized: the recovery room starts at SND.UNA
        with the negotiated MSS and SACK, the RTT estimator and the
        controller (ustack.tcp.recovery)."""
        cfg = self.config
        knobs = (cfg.tcp_recovery, cfg.tcp_early_retrans, cfg.tcp_frto, cfg.tcp_dsack,
                 cfg.dupack_threshold, cfg.rto_min, cfg.rto_initial)
        rcfg = _RECOVERY_CONFIGS.get(knobs)
        if rcfg is None:
            # one RecoveryConfig per distinct set of knobs, shared (the
            # recovery room only reads it)
            if len(_RECOVERY_CONFIGS) > 64:
                _RECOVERY_CONFIGS.clear()
            rcfg = _RECOVERY_CONFIGS[knobs] = RecoveryConfig(
                tcp_recovery=cfg.tcp_recovery, tcp_early_retrans=cfg.tcp_early_retrans,
                tcp_frto=cfg.tcp_frto, tcp_dsack=cfg.tcp_dsack,
                tcp_reordering=cfg.dupack_threshold, rto_min=cfg.rto_min,
                probe_initial=cfg.rto_initial)
        self._rec_cfg = rcfg
        if self.eager_recovery:
            self._room()
        self.snd.cwnd_usage_seq = self.snd_una

    def _room(self) -> Recovery:
        """The recovery room, created on first use.  An idle connection (one
        that has sent nothing since the handshake) keeps none: until the
        first data or FIN send SND.UNA, the MSS (a change of it creates the
        room first), SACK, timestamps and the RTT estimator are what they
        were when the connection synchronized, so a room made now equals
        one made then and left alone (the controller is the current one, as
        set_congestion would have set it).  Before synchronization: an error."""
        rec = self._rec
        if rec is None:
            rcfg = self._rec_cfg
            if rcfg is None:
                raise RuntimeError("no recovery room before the connection synchronizes")
            rec = self._rec = Recovery(self.snd_una, self.send_mss, self.rtt, self.cc,
                                       sack=self.sack_ok, config=rcfg,
                                       ts_clock=self._ts_clock(), mib=self.mib)
        return rec

    @property
    def rec(self) -> Recovery | None:
        """The recovery room (ustack.tcp.recovery); None before the connection
        synchronizes.  Reading it creates it (:meth:`_room`)."""
        return self._room() if self._rec_cfg is not None else None

    def _handshake_rtt(self, seg: TcpSegment, now: float) -> None:
        """RTT from the handshake: the SYN's send time unless it was
        retransmitted (Karn), then the timestamp echo; RFC 6298 5.7 fallback."""
        ts = seg.options.timestamp
        rtt = self.rtt
        rtt.backoff = 0
        if not self._syn_retransmitted:
            r = now - self._created
            rtt.update(r, r, now)
        elif self.ts_ok and ts is not None and ts[1]:
            ticks = ((int(now * 1000) + self._ts_offset - ts[1]) & MASK)
            if ticks < 0x7FFFFFFF:
                rtt.update(ticks / 1000.0, ticks / 1000.0, now)
        if not rtt.has_sample and self._syn_retransmitted:
            rtt.set_base(self.config.rto_fallback)
        self._retransmits = 0

    def _receive_syn_sent(self, seg: TcpSegment, now: float) -> None:
        """3.10.7.3 SYN-SENT."""
        flags = seg.flags
        if flags & ACK:
            ack = seg.ack
            if seq_le(ack, self.iss) or seq_gt(ack, self.snd_nxt):
                if not flags & RST:  # catalogue 11/12: >R seq=SEG.ACK, stay
                    self._emit(TcpSegment(self.local_port, self.remote_port, ack, 0, RST, 0),
                               now)
                # Linux (tcp_rcv_synsent_state_process): "previous FIN/ACK or
                # RST/ACK might be ignored", so before any retransmission the
                # SYN timer is cut to TCP_TIMEOUT_MIN and the SYN goes out again
                if self._retransmits == 0:
                    self.timers.rto = now + _TIMEOUT_MIN
                return  # catalogue 15: never answer a RST
        if flags & RST:
            if flags & ACK:
                self._fail(E.ECONNREFUSED)  # catalogue 13
            return  # catalogue 14: RST without ACK is ignored
        if not flags & SYN:
            return  # catalogue 12: acceptable bare ACK -> drop
        self._take_syn(seg, now)
        if flags & ACK:
            self.snd_una = seg.ack
            self.snd_wnd = seg.window  # SYN windows are never scaled
            self.max_snd_wnd = self.snd_wnd
            self.snd_wl1 = seg.seq
            self.snd_wl2 = seg.ack
            self.rcv.adv = (self.rcv.nxt + self.rcv.syn_window) & MASK
            self._handshake_rtt(seg, now)
            self._start_recovery()
            self._set_state(_ESTABLISHED)
            self.timers.rto = None
            self._queue_event(ev.CONNECTED)
            if self.config.keepalive:
                self.timers.keepalive = now + self.config.keepalive_idle
            if self.snd.fin_queued:
                self._set_state(_FIN_WAIT_1)
            self.rcv.ack_now = True
            # catalogue 17: text (and FIN) on a SYN-ACK.  RFC 9293 3.10.7.3 says
            # continue at the sixth step and queue it; Linux frees the segment
            # after the handshake (tcp_rcv_state_process, no Fast Open) and
            # ACKs only the SYN, so the peer retransmits the data.  Linux by
            # default; TcpConfig.accept_synack_data=True gives the RFC's.
            if self.config.accept_synack_data:
                payload = seg.payload
                room = seq_sub(self.rcv.adv, self.rcv.nxt)
                fin = bool(flags & FIN)
                if len(payload) > room:
                    payload = payload[:room]
                    fin = False
                if payload:
                    self._accept_in_order(payload, now)
                if fin:
                    self._receive_fin(now)
                self.rcv.ack_now = True
        else:
            # simultaneous open (catalogue 16): SYN-RECEIVED, send SYN-ACK with our ISS
            self._set_state(_SYN_RECEIVED)
            self.rcv.adv = (self.rcv.nxt + self.rcv.syn_window) & MASK
            self._emit(self._synack_segment(now), now)

    def _receive_time_wait(self, seg: TcpSegment, now: float) -> None:
        """TIME-WAIT (3.10.7.4 and Linux tcp_timewait_state_process)."""
        flags = seg.flags
        ts = seg.options.timestamp
        if flags & SYN and not flags & (RST | ACK):
            newer_ts = (self.ts_ok and ts is not None and seq_gt(ts[0], self._ts_recent))
            if seq_gt(seg.seq, self.rcv.nxt) or newer_ts:
                # catalogue 42: a new incarnation may reuse the 4-tuple
                self.reopen_syn = seg
                self._become_closed()
                return
            self.rcv.ack_now = True  # the TIME-WAIT ACK
            return
        if flags & RST:
            off = seq_sub(seg.seq, self.rcv.nxt)
            if off == 0 or 0 <= off < max(seq_sub(self.rcv.adv, self.rcv.nxt), 1):
                self._become_closed()  # Linux kills TIME-WAIT (RFC 1337 would ignore)
            return
        if flags & FIN and ((seg.seq + len(seg.payload) + 1) & MASK) == self.rcv.nxt:
            # retransmitted FIN: ACK again, restart the 2MSL wait (3.10.7.4 "eighth")
            self.rcv.ack_now = True
            self.timers.timewait = now + self.config.time_wait
            return
        if (self.ts_ok and ts is not None and seq_lt(ts[0], self._ts_recent)) or seg.payload \
                or flags & SYN:
            self.rcv.ack_now = True
            return
        if seg.seq != self.rcv.nxt:
            self._oow_ack(now)

    def _paws_reject(self, plen: int, now: float) -> None:
        """RFC 7323 5.3: drop, answer with a (rate-limited when no data) dup ACK."""
        self.mib["TcpExtPAWSEstab"] += 1
        if plen:
            self.rcv.ack_now = True
        else:
            self._oow_ack(now)

    def _oow_ack(self, now: float) -> None:
        """ACK an unacceptable segment, at most one per challenge_ack_interval
        (Linux tcp_oow_rate_limited; data segments are never limited)."""
        if now - self._last_oow >= self.config.challenge_ack_interval:
            self._last_oow = now
            self.rcv.ack_now = True

    def _challenge_ack(self, now: float) -> None:
        """RFC 5961 challenge ACK <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>, rate-limited."""
        if now - self._last_oow >= self.config.challenge_ack_interval:
            self._last_oow = now
            self.mib["TcpExtTCPChallengeACK"] += 1
            self._emit(self._make(ACK, self.snd_nxt), now)

    # ----------------------------------------------------------------- timers
    def handle_timer(self, now: float) -> None:
        """Run every timer due at ``now`` (RFC 9293 3.10.8)."""
        self._now = now
        st = self.state
        if st is _CLOSED:
            return
        at = self.timers.timewait
        if at is not None and now >= at:
            self.timers.timewait = None
            if st is _TIME_WAIT or st is _FIN_WAIT_2:
                if st is _TIME_WAIT:
                    self.mib["TcpExtTW"] += 1
                self._become_closed()  # TIME-WAIT over / orphaned FIN-WAIT-2 timeout
                return
        rec = self._rec
        if self._rec_cfg is None:
            at = self.timers.rto
            if at is not None and now >= at:
                self._on_retransmit_timeout(now)  # SYN / SYN-ACK
                if self.state is _CLOSED:
                    return
        elif rec is not None:  # (no room yet: no xmit timer)
            xmit = rec.timer()
            if xmit is not None and now >= xmit[1]:
                self._on_xmit_timer(rec, xmit[0], now)
                if self.state is _CLOSED:
                    return
        at = self.timers.persist
        if at is not None and now >= at:
            self._on_persist_timeout(now)
        at = self.timers.delack
        if at is not None and now >= at:
            self.rcv.delack_expired()
            if self.rcv.ack_now:
                self.mib["TcpExtDelayedACKs"] += 1
        at = self.timers.keepalive
        if at is not None and now >= at:
            self._on_keepalive_timeout(now)
        at = self.timers.pacing
        if at is not None and now >= at:
            self.timers.pacing = None  # the sender may release the next burst

    def _on_retransmit_timeout(self, now: float) -> None:
        """SYN / SYN-ACK retransmission (RFC 6298 5.4-5.7, RFC 9293 3.8.1);
        the SYN timeline as Linux >= 6.5 (catalogue 10).  After the handshake
        the recovery room owns the timer (:meth:`_on_xmit_timer`)."""
        cfg = self.config
        st = self.state
        rtt = self.rtt
        self.timers.rto = None
        if st is _SYN_SENT:
            if self._retransmits >= cfg.syn_retries + cfg.syn_linear_timeouts or (
                    cfg.retries_timed and retries_timed_out(
                        self._retransmits, self._created, now, cfg.syn_retries,
                        cfg.rto_initial, cfg.rto_max)):
                # the count, or (Linux) the time syn_retries backed-off SYNs
                # take since the first (ustack.tcp.retry_budget)
                self._fail(E.ETIMEDOUT)
                return
            self._retransmits += 1
            self.total_retrans += 1
            self.mib["TcpRetransSegs"] += 1
            self._syn_retransmitted = True
            if self._retransmits > cfg.syn_linear_timeouts:
                rtt.backoff += 1
            self._emit(self._syn_segment(now), now)
            self.timers.rto = now + rtt.rto
            return
        if st is _SYN_RECEIVED:
            if self._retransmits >= cfg.synack_retries:
                if self._passive:
                    self._become_closed()  # Linux silently drops the request
                else:
                    self._fail(E.ETIMEDOUT)
                return
            self._retransmits += 1
            self.total_retrans += 1
            self.mib["TcpRetransSegs"] += 1
            self._syn_retransmitted = True
            rtt.backoff += 1
            self._emit(self._synack_segment(now), now)
            self.timers.rto = now + rtt.rto
            return

    def _on_xmit_timer(self, rec: Recovery, kind: str, now: float) -> None:
        """The recovery room's timer (one slot as Linux: RTO, tail loss probe
        or RACK reordering timeout) expired."""
        cfg = self.config
        mib = self.mib
        trace = self.trace
        uto = cfg.user_timeout
        if kind != "reorder" and self._rtx_stamp < self.last_ack:
            # the first RTO or tail loss probe since the last ACK of new data:
            # when the head was sent (Linux retrans_stamp), before the probe
            # or the retransmission resends it
            head = rec.sb.head
            self._rtx_stamp = head.sent if head is not None else now - self.rtt.rto
        if kind == "rto":
            if uto and now - self._rtx_stamp >= uto:
                self._fail(E.ETIMEDOUT)  # RFC 5482: unacknowledged for user_timeout
                return
            if self.snd_wnd == 0 and now - self.last_recv < cfg.rto_max:
                # the peer shrank its window to zero under in-flight data: our
                # retransmissions are window probes and must not time the
                # connection out while the peer answers (Linux tcp_retransmit_timer)
                pass
            else:
                # an orphan (closed by the application) gives up sooner: Linux
                # tcp_orphan_retries (0 means 8)
                limit = cfg.orphan_retries if self._app_closed else cfg.retries2
                if not uto and (retries_timed_out(self._retransmits, self.timers.rtx_first, now,
                                                  limit, cfg.rto_min, cfg.rto_max)
                                if cfg.retries_timed else self._retransmits >= limit):
                    # user_timeout replaces retries2; Linux counts the limit
                    # as a time budget (ustack.tcp.retry_budget)
                    self._fail(E.ETIMEDOUT)
                    return
                if not self._retransmits:
                    self.timers.rtx_first = now
                self._retransmits += 1
            mib["TcpExtTCPTimeouts"] += 1
            # RFC 6298 5.4-5.6 / RFC 5681 3.1: back off, everything presumed
            # lost, cwnd = pipe + 1 MSS, resend the head whatever the window
            # (Linux tcp_enter_loss + tcp_retransmit_skb)
            action = rec.on_timer(now)
            if trace is not None:
                trace(now, "recovery", {"reason": "rto", "seq": rec.una,
                                        "backoff": self.rtt.backoff})
            if action.retransmit is not None:
                self._send_range(rec, action.retransmit[0], action.retransmit[1], now)
                mib["TcpExtTCPSlowStartRetrans"] += 1
        elif kind == "probe":
            action = rec.on_timer(now, can_send_new=self._can_send_new())
            if action.probe_new:
                self.snd.probe = True  # the sender sends it at the next output
            elif action.retransmit is not None:
                self._send_range(rec, action.retransmit[0], action.retransmit[1], now)
            if action.probe_new or action.retransmit is not None:
                mib["TcpExtTCPLossProbes"] += 1
                if trace is not None:
                    trace(now, "recovery", {"reason": "tlp", "new": action.probe_new,
                                            "seq": action.retransmit[0]
                                            if action.retransmit else self.snd_nxt})
        else:
            prior = rec.state
            rec.on_timer(now)
            if rec.state is CaState.RECOVERY and prior is not CaState.RECOVERY:
                mib["TcpExtTCPSackRecovery"] += 1
                if trace is not None:
                    trace(now, "recovery", {"reason": "rack", "seq": rec.una,
                                            "lost": rec.sb.lost_out})
        xmit = rec.timer()
        if uto and xmit is not None and xmit[0] == "rto" and xmit[1] > self._rtx_stamp + uto:
            # Linux tcp_clamp_rto_to_user_timeout (the room's one timer slot)
            rec._timer_at = self._rtx_stamp + uto
        rec.apply_timers(self.timers)

    def _send_range(self, rec: Recovery, seq: int, length: int, now: float) -> int:
        """Resend up to one MSS at ``seq`` and tell the scoreboard."""
        n = self.snd.retransmit(self, seq, length)
        if n > 0:
            rec.on_sent(seq, n, now, tsval=self._ts_val(now) if self.ts_ok else None)
            self.total_retrans += 1
        return n

    def _on_persist_timeout(self, now: float) -> None:
        """Zero-window probe <SEQ=SND.UNA-1><ACK> (Linux tcp_xmit_probe_skb), backing off."""
        self.timers.persist = None
        if not _sending(self.state) or self.snd_nxt != self.snd_una:
            self._persist_backoff = 0
            return
        if self.snd_wnd:
            # SWS override timeout (RFC 9293 3.8.6.2.1): send what the window allows
            # (corked or MSG_MORE data too; Linux tcp_write_wakeup sets PSH)
            self.snd.force = True
            self.snd.more = False
            return
        if self._app_closed and self._persist_backoff >= self.config.orphan_retries:
            # an orphan facing a window that never opens (Linux tcp_probe_timer):
            # without this a closed connection could probe forever
            self._fail(E.ETIMEDOUT)
            return
        # Linux tcp_probe_timer: a peer that answers probes keeps the connection
        # (RFC 1122 4.2.2.17); retries2 unanswered probes, or user_timeout
        # (RFC 5482) since the first of them, abort it
        cfg = self.config
        if self._probes_out == 0 or self.last_recv >= self._probe_last:
            self._probes_out = 0
            self._probe_since = now
        if cfg.user_timeout:
            if now - self._probe_since >= cfg.user_timeout:
                self._fail(E.ETIMEDOUT)
                return
        elif self._probes_out >= cfg.retries2:
            self._fail(E.ETIMEDOUT)
            return
        self._emit(self._make(ACK, (self.snd_una - 1) & MASK), now)
        self._persist_backoff += 1
        self._probes_out += 1
        self._probe_last = now
        self.mib["TcpExtTCPWinProbe"] += 1
        rto = self.rtt.base_rto * (1 << min(self._persist_backoff, 20))
        self.timers.persist = now + min(rto, cfg.rto_max)
        if cfg.user_timeout and self.timers.persist > self._probe_since + cfg.user_timeout:
            self.timers.persist = self._probe_since + cfg.user_timeout

    def _on_keepalive_timeout(self, now: float) -> None:
        """RFC 1122 4.2.3.6 keepalive, Linux tcp_keepalive_timer timing."""
        cfg = self.config
        if self.state not in (_ESTABLISHED, _CLOSE_WAIT, _FIN_WAIT_2) \
                or self.snd_nxt != self.snd_una or self._unsent():
            self.timers.keepalive = now + cfg.keepalive_idle
            return
        if self._ka_probes >= cfg.keepalive_count:
            self._emit(self._make(RST | ACK, self.snd_nxt), now)
            self._fail(E.ETIMEDOUT)
            return
        self._emit(self._make(ACK, (self.snd_una - 1) & MASK), now)
        self._ka_probes += 1
        self.mib["TcpExtTCPKeepAlive"] += 1
        self.timers.keepalive = now + cfg.keepalive_interval

    # ----------------------------------------------------------------- output
    def segments_sent(self, now: float, left: float) -> None:
        """The segments :meth:`segments_to_send` returned for ``now`` were
        handed to the device at ``left`` (the driver's clock, just before the
        send call): their recorded send times move there
        (:meth:`Recovery.restamp`); timers and TSvals stay."""
        rec = self._rec
        if rec is not None:  # (no room yet: nothing was sent)
            rec.restamp(now, left)

    def segments_sent_each(self, now: float, segs: list[TcpSegment],
                           times: list[float]) -> None:
        """:meth:`segments_sent` with a device send time per segment
        (``times[i]`` for ``segs[i]``, the output of
        :meth:`segments_to_send` for ``now``, sent in one device call that
        timed each frame): each segment's records move to its own time
        (:meth:`Recovery.restamp_each`); timers and TSvals stay."""
        rec = self._rec
        if rec is None or not segs:
            return
        starts: list[int] = []
        spans: list[int] = []
        for seg in segs:
            starts.append(seg.seq)
            spans.append(len(seg.payload) + (1 if seg.flags & (SYN | FIN) else 0))
        rec.restamp_each(now, starts, spans, times)

    def segments_to_send(self, now: float) -> list[TcpSegment]:
        """Drain everything due: control segments queued by inputs, then data
        within min(SND.WND, cwnd) (Nagle, SWS avoidance), then a pending ACK."""
        self._now = now
        prior_nxt = self.snd_nxt
        early = self._early_nxt
        if early is not None:  # part of this batch went out in recovery
            prior_nxt = early
            self._early_nxt = None
        st = self.state
        # (ESTABLISHED first: the set lookup hashes the enum, interpreted)
        if st is _ESTABLISHED or _sending(st):
            self.snd.push(self, now)
            if (self._send_blocked and self.config.notsent_lowat
                    and self.snd_nxt != prior_nxt and self.send_space()):
                self._send_blocked = False  # sending made room under the low mark
                self._queue_event(ev.SEND_SPACE_AVAILABLE)
        if self.rcv.ack_now:
            self._queue_out(self._make(ACK, self.snd_nxt))
        out = self._out
        if not out:
            if out is not NO_OUT:
                self._out = NO_OUT  # (an empty list the sender made: back to the shared one)
            return []
        self._out = NO_OUT
        if self.snd.urg_up >= 0:  # urgent mode (send_urgent)
            if urgent_active(self.snd.urg_up, self.snd_una):
                out = urgent_mark(out, self.snd.urg_up, self.snd_nxt, self.send_mss)
            else:
                self.snd.urg_up = -1  # the urgent byte is acknowledged
        self.segs_out += len(out)
        self.last_send = now
        if self.trace is not None:
            # a retransmission starts below what was sent before this batch;
            # in the first batch nothing was (the SYN or SYN-ACK was queued
            # with SND.NXT already past it, so it would look resent)
            high = prior_nxt if self.segs_out > len(out) else self.iss
            for seg in out:
                d = _seg_data(seg, self.rcv_wscale)
                d["rtx"] = bool(seg.payload or seg.flags & (SYN | FIN)) and seq_lt(seg.seq, high)
                self.trace(now, "seg_sent", d)
        return out

    def _unsent(self) -> int:
        return self.snd.unsent(self.snd_una)

    def _options(self) -> TcpOptions:
        """Timestamps (RFC 7323 3) and SACK blocks (RFC 2018) for our next segment."""
        rcv = self.rcv
        if not self.ts_ok:
            if not rcv.has_blocks():
                return _EMPTY_OPTIONS
            return TcpOptions(sack_blocks=rcv.sack_blocks())
        tsval = (int(self._now * 1000) + self._ts_offset) & MASK
        recent = self._ts_recent
        if not rcv.has_blocks():
            cache = _TS_OPTIONS
            if cache.tsval == tsval and cache.recent == recent:
                return cache.opts
            opts = TcpOptions(timestamp=(tsval, recent))
            cache.tsval = tsval
            cache.recent = recent
            cache.opts = opts
            return opts
        return TcpOptions(timestamp=(tsval, recent), sack_blocks=rcv.sack_blocks())

    def _make(self, flags: int, seq: int, payload: bytes | memoryview = b"") -> TcpSegment:
        """Build a segment with the current ACK, window and options."""
        rcv = self.rcv
        if flags & ACK:
            rcv.sent_ack()
            ack = rcv.nxt
        else:
            ack = 0
        win = rcv.window()
        opts = self._options() if (self.ts_ok or self.sack_ok) else _EMPTY_OPTIONS
        return TcpSegment(self.local_port, self.remote_port, seq, ack, flags, win, 0, opts,
                          payload)

    def _emit(self, seg: TcpSegment, now: float) -> None:
        """Queue a control segment (data goes out through the sender)."""
        if seg.flags & RST:
            self.mib["TcpOutRsts"] += 1
        self._queue_out(seg)

    def _queue_out(self, seg: TcpSegment) -> None:
        """Append ``seg`` to the output queue (a list of its own first: an
        idle connection holds the shared empty ``NO_OUT``)."""
        out = self._out
        if out is NO_OUT:
            out = self._out = []
        out.append(seg)

    def _ts_val(self, now: float) -> int:
        return (int(now * 1000) + self._ts_offset) & MASK

    def _ts_clock(self) -> TsClock | None:
        """:meth:`_ts_val` for the recovery room (None without timestamps),
        holding no reference to the connection (:class:`TsClock`)."""
        return TsClock(self._ts_offset) if self.ts_ok else None

    def _syn_segment(self, now: float) -> TcpSegment:
        return TcpSegment(self.local_port, self.remote_port, self.iss, 0, SYN,
                          self.rcv.syn_window,
                          0, syn_options(self.config, self._ts_val(now)))

    def _synack_segment(self, now: float) -> TcpSegment:
        n = Negotiated(self.send_mss, self.wscale_ok, self.snd_wscale, self.rcv_wscale,
                       self.sack_ok, self.ts_ok)
        opts = synack_options(self.config, n, self._ts_val(now), self._ts_recent)
        self.rcv.acked = self.rcv.nxt
        return TcpSegment(self.local_port, self.remote_port, self.iss, self.rcv.nxt, SYN | ACK,
                          self.rcv.syn_window, 0, opts)

    # -------------------------------------------------------------- closing
    def _enter_time_wait(self, now: float) -> None:
        self._set_state(_TIME_WAIT)
        self.timers.stop_transmission()
        self.timers.timewait = now + self.config.time_wait

    def _fail(self, errno: int, quiet: bool = False) -> None:
        """Abort with an error (reported unless the app already closed)."""
        self.error = errno
        if errno == E.ETIMEDOUT:
            self.mib["TcpExtTCPAbortOnTimeout"] += 1
        if not quiet and not self._app_closed:
            self._queue_event(ev.ConnectionFailed(errno))
        self._become_closed()

    def _become_closed(self) -> None:
        self._set_state(_CLOSED)
        self.timers.stop_all()
        self.rcv.clear()
        if not self._closed_emitted:
            self._closed_emitted = True
            self._queue_event(ev.CLOSED)

    # ------------------------------------------------------------ introspection
    def info(self, now: float) -> TcpInfo:
        """A :class:`TcpInfo` snapshot for ss."""
        timer: tuple[str, float, int] | None = None
        rtt = self.rtt
        pending = self.timers.pending()
        if pending is not None:
            attr, name, at = pending
            count = (self._retransmits if attr == "rto" else self._persist_backoff
                     if attr == "persist" else self._ka_probes if attr == "keepalive" else 0)
            timer = (name, max(at - now, 0.0), count)
        mss = self.send_mss
        unacked_bytes = seq_sub(self.snd_nxt, self.snd_una)
        notsent = max(self._unsent(), 0)
        rec = self._rec
        # no room yet (idle): a new room's figures
        rcfg = self._rec_cfg
        busy, rwnd_limited, sndbuf_limited = self.snd.chrono.totals(now)
        return TcpInfo(
            state=self.state.ss_name,
            local_port=self.local_port,
            remote_port=self.remote_port,
            recv_q=len(self.rcv.buf),
            send_q=len(self.snd.buf),
            snd_una=self.snd_una,
            snd_nxt=self.snd_nxt,
            rcv_nxt=self.rcv.nxt,
            snd_wnd=self.snd_wnd,
            rcv_wnd=max(seq_sub(self.rcv.adv, self.rcv.nxt), 0),
            snd_wscale=self.snd_wscale,
            rcv_wscale=self.rcv_wscale,
            mss=mss,
            advmss=self.advmss,
            rcvmss=self.rcv.mss,
            srtt=rtt.srtt,
            rttvar=rtt.rttvar,
            rto=rtt.rto,
            min_rtt=rtt.min_rtt,
            ato=self.config.delack,
            backoff=rtt.backoff,
            cwnd=max(self.cc.cwnd // mss, 1) if mss else 0,
            # unset (0x7FFFFFFF bytes) reads as Linux's TCP_INFINITE_SSTHRESH
            ssthresh=(0x7FFFFFFF if self.cc.ssthresh >= 0x7FFFFFFF
                      else self.cc.ssthresh // mss) if mss else 0,
            ca_name=self.cc.name,
            bytes_sent=self.bytes_sent,
            bytes_retrans=self.bytes_retrans,
            bytes_acked=self.bytes_acked,
            bytes_received=self.bytes_received,
            segs_out=self.segs_out,
            segs_in=self.segs_in,
            data_segs_out=self.data_segs_out,
            data_segs_in=self.data_segs_in,
            retransmits=self._retransmits,
            total_retrans=self.total_retrans,
            lost=rec.sb.lost_out if rec is not None else 0,
            sacked=rec.sb.sacked_bytes if rec is not None else 0,
            dsack_dups=self.dsack_dups,
            reordering=(rec.reordering if rec is not None else rcfg.tcp_reordering
                        if rcfg is not None else self.config.dupack_threshold),
            unacked=(unacked_bytes + mss - 1) // mss if mss else 0,
            notsent=notsent,
            last_send=max(now - self.last_send, 0.0),
            last_recv=max(now - self.last_recv, 0.0),
            last_ack=max(now - self.last_ack, 0.0),
            timer=timer,
            ts_enabled=self.ts_ok,
            sack_enabled=self.sack_ok,
            wscale_enabled=self.wscale_ok,
            shut_rd=self._app_closed,
            shut_wr=self.snd.fin_queued,
            nodelay=self.config.nodelay,
            delivery_rate=self._delivery_rate(),
            pacing_rate=self.snd.pacing_rate,
            ca_state=int(rec.state) if rec is not None else 0,
            busy_time=busy,
            rwnd_limited=rwnd_limited,
            sndbuf_limited=sndbuf_limited,
        )

    def _delivery_rate(self) -> float:
        """The latest delivery-rate sample (bytes/s; Linux tcpi_delivery_rate)."""
        return self._rate

    def __repr__(self) -> str:
        return (f"<TcpConnection {self.local_port}->{self.remote_port} {self.state.ss_name} "
                f"una={self.snd_una} nxt={self.snd_nxt} rcv_nxt={self.rcv.nxt}>")
