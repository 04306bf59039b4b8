"""``struct tcp_info`` (Linux ``include/uapi/linux/tcp.h``) as ``tcpi_*`` names.

:func:`decode_tcp_info` reads the bytes ``getsockopt(IPPROTO_TCP, TCP_INFO)``
returns (any length: fields past the end are absent, as on older kernels);
:func:`tcpi_from_ustack` gives the same names for a ustack
:class:`~ustack.tcp.info.TcpInfo` (times in microseconds or milliseconds as
Linux reports them).  packetdrill's ``%{ assert tcpi_... }%`` blocks are
evaluated against these dictionaries.
"""

from __future__ import annotations

import struct
from typing import Any

#: (name, struct code) after the eight leading bytes, in the kernel's order
_FIELDS: list[tuple[str, str]] = [
    *[(n, "I") for n in (
        "rto", "ato", "snd_mss", "rcv_mss", "unacked", "sacked", "lost", "retrans",
        "fackets", "last_data_sent", "last_ack_sent", "last_data_recv", "last_ack_recv",
        "pmtu", "rcv_ssthresh", "rtt", "rttvar", "snd_ssthresh", "snd_cwnd", "advmss",
        "reordering", "rcv_rtt", "rcv_space", "total_retrans")],
    ("pacing_rate", "Q"), ("max_pacing_rate", "Q"), ("bytes_acked", "Q"),
    ("bytes_received", "Q"), ("segs_out", "I"), ("segs_in", "I"),
    ("notsent_bytes", "I"), ("min_rtt", "I"), ("data_segs_in", "I"),
    ("data_segs_out", "I"), ("delivery_rate", "Q"), ("busy_time", "Q"),
    ("rwnd_limited", "Q"), ("sndbuf_limited", "Q"), ("delivered", "I"),
    ("delivered_ce", "I"), ("bytes_sent", "Q"), ("bytes_retrans", "Q"),
    ("dsack_dups", "I"), ("reord_seen", "I"), ("rcv_ooopack", "I"), ("snd_wnd", "I"),
    ("rcv_wnd", "I"), ("rehash", "I"), ("total_rto", "H"), ("total_rto_recoveries", "H"),
    ("total_rto_time", "I"), ("received_ce", "I"),
]

#: TCPI_OPT_* bits of tcpi_options
TCPI_OPT_TIMESTAMPS = 1
TCPI_OPT_SACK = 2
TCPI_OPT_WSCALE = 4
TCPI_OPT_ECN = 8

#: Linux TCP states (include/net/tcp_states.h) by ss name
LINUX_STATES = {"ESTAB": 1, "SYN-SENT": 2, "SYN-RECV": 3, "FIN-WAIT-1": 4, "FIN-WAIT-2": 5,
                "TIME-WAIT": 6, "UNCONN": 7, "CLOSE-WAIT": 8, "LAST-ACK": 9, "LISTEN": 10,
                "CLOSING": 11}

#: bytes to ask the kernel for (it copies min(len, sizeof))
TCP_INFO_LEN = 512


def decode_tcp_info(data: bytes) -> dict[str, int]:
    """The ``tcpi_*`` fields present in ``data`` (C layout, natural alignment)."""
    out: dict[str, int] = {}
    if len(data) >= 8:
        (state, ca_state, retransmits, probes, backoff, options, wscale,
         flags) = struct.unpack_from("8B", data)
        out.update(tcpi_state=state, tcpi_ca_state=ca_state, tcpi_retransmits=retransmits,
                   tcpi_probes=probes, tcpi_backoff=backoff, tcpi_options=options,
                   tcpi_snd_wscale=wscale & 0xF, tcpi_rcv_wscale=wscale >> 4,
                   tcpi_delivery_rate_app_limited=flags & 1,
                   tcpi_fastopen_client_fail=(flags >> 1) & 3)
    offset = 8
    for name, code in _FIELDS:
        size = struct.calcsize(code)
        offset = (offset + size - 1) // size * size  # natural alignment
        if offset + size > len(data):
            break
        out["tcpi_" + name] = struct.unpack_from("=" + code, data, offset)[0]
        offset += size
    return out


def tcpi_from_ustack(info: Any) -> dict[str, int]:
    """The ``tcpi_*`` names for a ustack ``TcpInfo`` (fields ustack does not
    keep are absent, so an assertion naming them fails with NameError)."""
    def us(seconds: float) -> int:
        return int(round(seconds * 1_000_000))

    def ms(seconds: float) -> int:
        return int(round(seconds * 1000))

    options = ((TCPI_OPT_TIMESTAMPS if info.ts_enabled else 0)
               | (TCPI_OPT_SACK if info.sack_enabled else 0)
               | (TCPI_OPT_WSCALE if info.wscale_enabled else 0))
    mss = max(1, info.mss)
    return {
        "tcpi_state": LINUX_STATES.get(info.state, 0),
        "tcpi_retransmits": info.retransmits,
        "tcpi_backoff": info.backoff,
        "tcpi_options": options,
        "tcpi_snd_wscale": info.snd_wscale,
        "tcpi_rcv_wscale": info.rcv_wscale,
        "tcpi_rto": us(info.rto),
        "tcpi_ato": us(info.ato),
        "tcpi_snd_mss": info.mss,
        "tcpi_rcv_mss": info.rcvmss,
        "tcpi_unacked": info.unacked,
        "tcpi_sacked": (info.sacked + mss - 1) // mss,
        "tcpi_lost": info.lost,
        "tcpi_retrans": info.lost,
        "tcpi_last_data_sent": ms(info.last_send),
        "tcpi_last_data_recv": ms(info.last_recv),
        "tcpi_last_ack_recv": ms(info.last_ack),
        "tcpi_rtt": us(info.srtt),
        "tcpi_rttvar": us(info.rttvar),
        "tcpi_snd_ssthresh": info.ssthresh,
        "tcpi_snd_cwnd": info.cwnd,
        "tcpi_advmss": info.advmss,
        "tcpi_reordering": info.reordering,
        "tcpi_total_retrans": info.total_retrans,
        "tcpi_bytes_acked": info.bytes_acked,
        "tcpi_bytes_received": info.bytes_received,
        "tcpi_segs_out": info.segs_out,
        "tcpi_segs_in": info.segs_in,
        "tcpi_notsent_bytes": info.notsent,
        "tcpi_min_rtt": us(info.min_rtt),
        "tcpi_data_segs_in": info.data_segs_in,
        "tcpi_data_segs_out": info.data_segs_out,
        "tcpi_delivery_rate": int(info.delivery_rate),
        "tcpi_bytes_sent": info.bytes_sent,
        "tcpi_bytes_retrans": info.bytes_retrans,
        "tcpi_dsack_dups": info.dsack_dups,
        "tcpi_ca_state": info.ca_state,
        "tcpi_busy_time": us(info.busy_time),
        "tcpi_rwnd_limited": us(info.rwnd_limited),
        "tcpi_sndbuf_limited": us(info.sndbuf_limited),
        "tcpi_snd_wnd": info.snd_wnd,
        "tcpi_rcv_wnd": info.rcv_wnd,
    }


def code_namespace(tcpi: dict[str, int]) -> dict[str, Any]:
    """Globals for a ``%{ }%`` block: the tcpi values and the TCPI_OPT_* bits."""
    env: dict[str, Any] = dict(tcpi)
    env.update(TCPI_OPT_TIMESTAMPS=TCPI_OPT_TIMESTAMPS, TCPI_OPT_SACK=TCPI_OPT_SACK,
               TCPI_OPT_WSCALE=TCPI_OPT_WSCALE, TCPI_OPT_ECN=TCPI_OPT_ECN,
               # include/net/tcp.h enum tcp_ca_state
               TCP_CA_Open=0, TCP_CA_Disorder=1, TCP_CA_CWR=2, TCP_CA_Recovery=3,
               TCP_CA_Loss=4)
    return env
