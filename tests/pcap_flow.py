"""The TCP flow one address sent in a capture, counted the way a trace counts
it: shared by the tests that compare a trace with the pcap of the same run
(tests/unit/test_trace_pcap_match.py, tests/integration/test_trace_lab.py).
pytest puts this directory on sys.path (tests/conftest.py lives here)."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import dpkt


class FlowCounts(NamedTuple):
    sent: int  #: payload bytes sent by the source
    segments: int  #: data segments sent
    retransmitted: int  #: data segments ending at or below the highest byte sent before
    acked: int  #: highest ACK from the peer minus the source's ISN


def pcap_flow(path: Path, src: bytes) -> FlowCounts:
    """Count the segments ``src`` (4-byte IPv4 address) sent in the capture
    at ``path`` and the peer's ACKs, relative to ``src``'s SYN."""
    sent = segs = rtx = 0
    isn: int | None = None
    high = 0
    best_ack = 0
    with open(path, "rb") as f:
        for _, buf in dpkt.pcap.Reader(f):
            ip = dpkt.ethernet.Ethernet(buf).data
            if not isinstance(ip, dpkt.ip.IP) or not isinstance(ip.data, dpkt.tcp.TCP):
                continue
            tcp = ip.data
            if bytes(ip.src) == src:
                if tcp.flags & dpkt.tcp.TH_SYN:
                    isn = tcp.seq
                n = len(tcp.data)
                if n:
                    assert isn is not None, "data before the SYN in the capture"
                    rel = (tcp.seq - isn) & 0xFFFFFFFF
                    sent += n
                    segs += 1
                    if rel + n <= high:
                        rtx += 1
                    high = max(high, rel + n)
            elif isn is not None and tcp.flags & dpkt.tcp.TH_ACK:
                best_ack = max(best_ack, (tcp.ack - isn) & 0xFFFFFFFF)
    return FlowCounts(sent, segs, rtx, best_ack)
