"""IP_TOS, IP_MTU_DISCOVER and IP_FREEBIND on both peers (real lab): the
connection's IPv4 headers carry the TOS byte and the DF bit as set (Linux
ip_queue_xmit takes both from the socket; ip_dont_fragment: DF for
IP_PMTUDISC_WANT and _DO only), accepted sockets inherit the listener's."""

from __future__ import annotations

import pytest

from conformance.pkt_run import run_pkt
from ustack.lab import Lab
from ustack.probe.script import ScriptError

pytestmark = pytest.mark.integration
both = pytest.mark.parametrize("kind", ["kernel", "ustack"])


run = run_pkt


CLIENT = """
    0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
   +0 setsockopt(3, SOL_IP, IP_MTU_DISCOVER, [IP_PMTUDISC_DONT], 1) = 0
   +0 getsockopt(3, SOL_IP, IP_MTU_DISCOVER, [IP_PMTUDISC_DONT], [4]) = 0
   +0...0.010 connect(3, ..., ...) = 0
   +0 > S 0:0(0) <...> nodf tos 0x0
 +.01 < S. 0:0(0) ack 1 win 65535 <mss 1460,nop,wscale 2,nop,nop,sackOK>
   +0 > . 1:1(0) ack 1 nodf
"""


@both
async def test_ip_tos_and_pmtudisc_shape_the_headers(lab: Lab, kind: str) -> None:
    await run(lab, kind, CLIENT + """
   +0 setsockopt(3, SOL_IP, IP_TOS, [0x20], 1) = 0
   +0 getsockopt(3, SOL_IP, IP_TOS, [0x20], [4]) = 0
   +0 write(3, ..., 100) = 100
   +0 > P. 1:101(100) ack 1 tos 0x20 nodf
 +.01 < . 1:1(0) ack 101 win 65535
   +0 setsockopt(3, SOL_IP, IP_MTU_DISCOVER, [IP_PMTUDISC_DO], 1) = 0
   +0 write(3, ..., 3000) = 3000
   +0 > P. 101:3101(3000) ack 1 tos 0x20 df
 +.01 < . 1:1(0) ack 3101 win 65535
   +0 setsockopt(3, SOL_IP, IP_TOS, [0], 1) = 0
   +0 write(3, ..., 100) = 100
   +0 > P. 3101:3201(100) ack 1 tos 0x0 df
""")


@both
async def test_a_wrong_tos_expectation_fails(lab: Lab, kind: str) -> None:
    with pytest.raises(ScriptError, match="TOS differs"):
        await run(lab, kind, CLIENT + """
   +0 setsockopt(3, SOL_IP, IP_TOS, [0x20], 1) = 0
   +0 write(3, ..., 100) = 100
   +0 > P. 1:101(100) ack 1 tos 0x0
""")


@both
async def test_accepted_socket_inherits_tos_and_freebind_is_accepted(lab: Lab,
                                                                     kind: str) -> None:
    await run(lab, kind, """
    0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
   +0 setsockopt(3, SOL_SOCKET, SO_REUSEADDR, [1], 4) = 0
   +0 setsockopt(3, SOL_IP, IP_FREEBIND, [1], 4) = 0
   +0 getsockopt(3, SOL_IP, IP_FREEBIND, [1], [4]) = 0
   +0 setsockopt(3, SOL_IP, IP_TOS, [0x10], 1) = 0
   +0 setsockopt(3, SOL_IP, IP_MTU_DISCOVER, [IP_PMTUDISC_DONT], 1) = 0
   +0 bind(3, ..., ...) = 0
   +0 listen(3, 1) = 0
   +0 < S 0:0(0) win 32792 <mss 1000,sackOK,nop,nop,nop,wscale 7>
   +0 > S. 0:0(0) ack 1 <...>
 +.02 < . 1:1(0) ack 1 win 257
   +0 accept(3, ..., ...) = 4
   +0 getsockopt(4, SOL_IP, IP_TOS, [0x10], [4]) = 0
   +0 write(4, ..., 100) = 100
   +0 > P. 1:101(100) ack 1 tos 0x10 nodf
""")


@both
async def test_ip_mtu_discover_out_of_range_is_einval(lab: Lab, kind: str) -> None:
    await run(lab, kind, """
    0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
   +0 setsockopt(3, SOL_IP, IP_MTU_DISCOVER, [9], 4) = -1 EINVAL (Invalid argument)
""")
