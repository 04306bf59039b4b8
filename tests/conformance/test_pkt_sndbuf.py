"""Linux's send-buffer rule on both peers (real lab): SO_SNDBUF is doubled
and at least SOCK_MIN_SNDBUF, a write goes past the bound by what its
current skb allows, and a blocked writer (or poll's POLLOUT) comes back only
once at most two thirds of the buffer are charged (net/ipv4/tcp.c
tcp_sendmsg_locked, net/core/stream.c sk_stream_write_space)."""

from __future__ import annotations

import pytest

from conformance.pkt_run import run_pkt
from ustack.lab import Lab

pytestmark = pytest.mark.integration
both = pytest.mark.parametrize("kind", ["kernel", "ustack"])


run = run_pkt


def server(win: int) -> str:
    return f"""
`sysctl -q net.ipv4.tcp_min_tso_segs=10`
    0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
   +0 setsockopt(3, SOL_SOCKET, SO_REUSEADDR, [1], 4) = 0
   +0 bind(3, ..., ...) = 0
   +0 listen(3, 1) = 0
   +0 < S 0:0(0) win {win} <mss 1000,nop,wscale 0>
   +0 > S. 0:0(0) ack 1 <mss 1460,nop,wscale *>
 +.05 < . 1:1(0) ack 1 win {win}
   +0 accept(3, ..., ...) = 4
"""


@both
async def test_blocked_write_wakes_at_two_thirds(lab: Lab, kind: str) -> None:
    # size goal 20000 (half the peer's window), sk_sndbuf 30000: the first skb
    # goes out in part (cwnd 10), its unsent rest is filled up to the goal,
    # and no third skb starts at a 30000 + overhead charge: 30000 taken.  At
    # ACK 10001 20000 bytes (+ overhead) are above 2/3 of 30000: no wakeup;
    # at ACK 20001 the writer wakes and queues the last 11000.
    await run(lab, kind, server(40000) + """
   +0 setsockopt(4, SOL_SOCKET, SO_SNDBUF, [15000], 4) = 0
   +0 getsockopt(4, SOL_SOCKET, SO_SNDBUF, [30000], [4]) = 0
   +0...0.2 write(4, ..., 41000) = 41000
  +.1 < . 1:1(0) ack 10001 win 40000
  +.1 < . 1:1(0) ack 20001 win 40000
""")


@both
async def test_min_sndbuf_partial_write_and_pollout(lab: Lab, kind: str) -> None:
    # SO_SNDBUF 1000 -> SOCK_MIN_SNDBUF 4608; size goal 1000 (peer window
    # 2000): skbs start at charges 0, 2280 and 4560, the fourth would start
    # at 6840: 3000 of 10000 taken, then EAGAIN and no POLLOUT until at most
    # 2/3 of 4608 are charged (one 1000-byte skb left, ACK 2001)
    await run(lab, kind, server(2000) + """
   +0 fcntl(4, F_SETFL, O_RDWR|O_NONBLOCK) = 0
   +0 setsockopt(4, SOL_SOCKET, SO_SNDBUF, [1000], 4) = 0
   +0 getsockopt(4, SOL_SOCKET, SO_SNDBUF, [4608], [4]) = 0
   +0 write(4, ..., 10000) = 3000
   +0 write(4, ..., 1000) = -1 EAGAIN (Resource temporarily unavailable)
   +0 poll([{fd=4, events=POLLOUT, revents=0}], 1, 0) = 0
 +.05 < . 1:1(0) ack 1001 win 2000
   +0 poll([{fd=4, events=POLLOUT, revents=0}], 1, 0) = 0
 +.05 < . 1:1(0) ack 2001 win 2000
   +0 poll([{fd=4, events=POLLOUT, revents=POLLOUT}], 1, 0) = 1
""")
