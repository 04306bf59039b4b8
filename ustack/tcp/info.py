"""TcpInfo: a snapshot of one connection with what an ``ss -tanoiem`` line shows
(Linux ``struct tcp_info`` in spirit; times in seconds, windows in bytes)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class TcpInfo:
    state: str  # ss name: ESTAB, SYN-SENT, ...
    local_port: int
    remote_port: int
    recv_q: int  # bytes received in order, not yet read by the application
    send_q: int  # bytes in the send buffer (unacked + not yet sent)
    snd_una: int
    snd_nxt: int
    rcv_nxt: int
    snd_wnd: int  # peer's window, bytes (scaled)
    rcv_wnd: int  # window we currently advertise, bytes
    snd_wscale: int
    rcv_wscale: int
    mss: int  # send MSS (payload bytes per segment, options excluded)
    advmss: int  # MSS we advertised
    rcvmss: int  # largest segment payload seen from the peer
    srtt: float
    rttvar: float
    rto: float
    min_rtt: float
    ato: float  # delayed-ACK timeout
    backoff: int
    cwnd: int  # segments
    ssthresh: int  # segments (large when unset)
    ca_name: str
    bytes_sent: int
    bytes_retrans: int
    bytes_acked: int
    bytes_received: int
    segs_out: int
    segs_in: int
    data_segs_out: int
    data_segs_in: int
    retransmits: int  # consecutive unanswered timeouts (Linux tcpi_retransmits)
    total_retrans: int
    lost: int  # segments believed lost (currently outstanding retransmissions)
    sacked: int  # bytes the peer SACKed above SND.UNA
    dsack_dups: int
    reordering: int
    unacked: int  # segments in flight
    notsent: int  # bytes queued, never sent
    last_send: float  # seconds since the last segment sent
    last_recv: float  # seconds since the last segment received
    last_ack: float  # seconds since the last ACK that acknowledged new data
    timer: tuple[str, float, int] | None  # (name, seconds until expiry, count)
    ts_enabled: bool
    sack_enabled: bool
    wscale_enabled: bool
    shut_rd: bool
    shut_wr: bool
    nodelay: bool
    delivery_rate: float  # bytes/s over the last RTT sample window (approximate)
    pacing_rate: float = 0.0  # bytes/s the sender paces at, 0 = not paced
    #: Linux enum tcp_ca_state: 0 Open, 1 Disorder, 2 CWR, 3 Recovery, 4 Loss
    ca_state: int = 0
    #: seconds with data queued (Linux tcpi_busy_time, all chronographs)
    busy_time: float = 0.0
    #: of which the peer's receive window held sending back (tcpi_rwnd_limited)
    rwnd_limited: float = 0.0
    #: of which the send buffer was the limit: everything sent, the
    #: application blocked on a full buffer (tcpi_sndbuf_limited)
    sndbuf_limited: float = 0.0
