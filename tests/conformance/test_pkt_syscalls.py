"""packetdrill scripts with system calls against both peers (real lab).

One short script per system call and socket option; each asserts on the
wire what the call must cause (or the value it returns), so a call that
silently did nothing fails.  Options ustack's TCP core lacks must be reported
as ``unsupported on ustack: ...``, never silently skipped.
"""

from __future__ import annotations

import pytest

from conformance.pkt_run import run_pkt
from ustack.lab import Lab
from ustack.probe.script import ScriptError, ScriptUnsupported

pytestmark = pytest.mark.integration
both = pytest.mark.parametrize("kind", ["kernel", "ustack"])

#: a passive open: the peer listens on 8080, the probe connects
SERVER = """
    0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
   +0 setsockopt(3, SOL_SOCKET, SO_REUSEADDR, [1], 4) = 0
   +0 bind(3, ..., ...) = 0
   +0 listen(3, 1) = 0
   +0 < S 0:0(0) win 32792 <mss 1000,sackOK,nop,nop,nop,wscale 7>
   +0 > S. 0:0(0) ack 1 <mss 1460,nop,nop,sackOK,nop,wscale *>
 +.02 < . 1:1(0) ack 1 win 257
   +0 accept(3, ..., ...) = 4
"""


async def run(lab: Lab, kind: str, body: str, *, prefix: str = SERVER) -> None:
    await run_pkt(lab, kind, prefix + body)


async def run_or_unsupported(lab: Lab, kind: str, body: str, option: str) -> None:
    """Kernel: must pass.  ustack: pass, or unsupported naming ``option``."""
    try:
        await run(lab, kind, body)
    except ScriptUnsupported as exc:
        assert kind == "ustack", str(exc)
        assert option in str(exc) and "unsupported on ustack" in str(exc), str(exc)


@both
async def test_accept_write_read_close(lab: Lab, kind: str) -> None:
    await run(lab, kind, """
   +0 write(4, ..., 1000) = 1000
   +0 > P. 1:1001(1000) ack 1
   +0 < P. 1:501(500) ack 1001 win 257
   +0 > . 1001:1001(0) ack 501
   +0 read(4, ..., 1000) = 500
   +0 close(4) = 0
   +0 > F. 1001:1001(0) ack 501
""")


@both
async def test_blocking_accept_returns_when_the_handshake_completes(lab: Lab, kind: str) -> None:
    await run(lab, kind, """
   +0...0.2 accept(3, ..., ...) = 4
   +.2 < S 0:0(0) win 32792 <mss 1000,nop,wscale 7>
   +0 > S. 0:0(0) ack 1 <mss 1460,nop,wscale *>
   +0 < . 1:1(0) ack 1 win 257
""", prefix="""
    0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
   +0 bind(3, ..., ...) = 0
   +0 listen(3, 1) = 0
""")


@both
async def test_blocking_read_returns_with_the_data(lab: Lab, kind: str) -> None:
    await run(lab, kind, """
   +0...0.1 read(4, ..., 2000) = 1000
   +.1 < P. 1:1001(1000) ack 1 win 257
   +0 > . 1:1(0) ack 1001
""")


@both
async def test_connect_nonblocking_einprogress_then_so_error(lab: Lab, kind: str) -> None:
    await run(lab, kind, """
    0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
   +0 fcntl(3, F_GETFL) = 0x2 (flags O_RDWR)
   +0 fcntl(3, F_SETFL, O_RDWR|O_NONBLOCK) = 0
   +0 connect(3, ..., ...) = -1 EINPROGRESS (Operation now in progress)
   +0 > S 0:0(0) <mss 1460,sackOK,TS val 100 ecr 0,nop,wscale *>
 +.01 < S. 0:0(0) ack 1 win 5792 <mss 1200,sackOK,TS val 700 ecr 100,nop,wscale 7>
   +0 > . 1:1(0) ack 1 <nop,nop,TS val 101 ecr 700>
   +0 getsockopt(3, SOL_SOCKET, SO_ERROR, [0], [4]) = 0
   +0 getsockopt(3, SOL_TCP, TCP_MAXSEG, [1188], [4]) = 0
   +0 read(3, ..., 100) = -1 EAGAIN (Resource temporarily unavailable)
   +0 write(3, ..., 100) = 100
   +0 > P. 1:101(100) ack 1 <nop,nop,TS val 102 ecr 700>
""", prefix="")


@both
async def test_connect_refused(lab: Lab, kind: str) -> None:
    await run(lab, kind, """
    0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
   +0...0.05 connect(3, ..., ...) = -1 ECONNREFUSED (Connection refused)
   +0 > S 0:0(0) <...>
 +.05 < R. 0:0(0) ack 1 win 0
""", prefix="")


@both
async def test_send_msg_oob_marks_the_last_byte_urgent(lab: Lab, kind: str) -> None:
    # send(MSG_OOB): URG, the pointer one past the last byte (RFC 6093),
    # on every segment before it, Nagle bypassed; once the urgent byte is
    # acknowledged, segments are plain again
    await run(lab, kind, """
   +0 send(4, ..., 10, 0) = 10
   +0 > P. 1:11(10) ack 1
   +0 send(4, ..., 5, MSG_OOB) = 5
   +0 > PU. 11:16(5) ack 1 urg 5
   +0 < . 1:1(0) ack 16 win 257
   +0 send(4, ..., 5, 0) = 5
   +0 > P. 16:21(5) ack 1
""")


@both
async def test_send_recv_sendto_recvfrom_sendmsg_recvmsg(lab: Lab, kind: str) -> None:
    await run(lab, kind, """
   +0 setsockopt(4, SOL_TCP, TCP_NODELAY, [1], 4) = 0
   +0 send(4, ..., 100, 0) = 100
   +0 > P. 1:101(100) ack 1
   +0 sendto(4, ..., 200, 0, ..., ...) = 200
   +0 > P. 101:301(200) ack 1
   +0 sendmsg(4, {msg_name(...)=..., msg_iov(2)=[{..., 30}, {..., 70}], msg_flags=0}, 0) = 100
   +0 > P. 301:401(100) ack 1
   +0 < P. 1:301(300) ack 401 win 257
   +0 recv(4, ..., 100, 0) = 100
   +0 recvfrom(4, ..., 100, 0, ..., ...) = 100
   +0 recvmsg(4, {msg_name(...)=..., msg_iov(1)=[{..., 1000}], msg_flags=0}, 0) = 100
   +0 recv(4, ..., 100, MSG_DONTWAIT) = -1 EAGAIN (Resource temporarily unavailable)
""")


@both
async def test_shutdown_wr_sends_fin_and_write_gets_epipe(lab: Lab, kind: str) -> None:
    await run(lab, kind, """
   +0 shutdown(4, SHUT_WR) = 0
   +0 > F. 1:1(0) ack 1
   +0 write(4, ..., 10) = -1 EPIPE (Broken pipe)
   +0 < F. 1:1(0) ack 2 win 257
   +0 > . 2:2(0) ack 2
   +0 read(4, ..., 10) = 0
""")


@both
async def test_reset_gives_econnreset(lab: Lab, kind: str) -> None:
    await run(lab, kind, """
   +0 < R. 1:1(0) ack 1 win 0
   +0 read(4, ..., 10) = -1 ECONNRESET (Connection reset by peer)
""")


@both
async def test_poll_and_siocinq(lab: Lab, kind: str) -> None:
    await run(lab, kind, """
   +0 poll([{fd=4, events=POLLIN|POLLOUT, revents=POLLOUT}], 1, 0) = 1
   +0 < P. 1:1001(1000) ack 1 win 257
   +0 > . 1:1(0) ack 1001
   +0 poll([{fd=4, events=POLLIN, revents=POLLIN}], 1, 0) = 1
   +0 ioctl(4, SIOCINQ, [1000]) = 0
   +0 read(4, ..., 400) = 400
   +0 ioctl(4, SIOCINQ, [600]) = 0
""")


@both
async def test_poll_blocks_until_data(lab: Lab, kind: str) -> None:
    await run(lab, kind, """
   +0...0.1 poll([{fd=4, events=POLLIN, revents=POLLIN}], 1, 1000) = 1
 +.1 < P. 1:11(10) ack 1 win 257
""")


@both
async def test_tcp_info_block(lab: Lab, kind: str) -> None:
    await run(lab, kind, """
   +0 %{ assert tcpi_snd_mss == 1000, tcpi_snd_mss }%
   +0 %{ assert tcpi_state == 1 and tcpi_options & TCPI_OPT_SACK, tcpi_options }%
   +0 %{ assert tcpi_snd_wscale == 7, tcpi_snd_wscale }%
""")


@both
async def test_backtick_sysctl_reaches_the_peer(lab: Lab, kind: str) -> None:
    await run(lab, kind, """
    0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
   +0 bind(3, ..., ...) = 0
   +0 listen(3, 1) = 0
   +0 < S 0:0(0) win 32792 <mss 1000,sackOK,TS val 1 ecr 0,nop,wscale 7>
   +0 > S. 0:0(0) ack 1 <mss 1460,nop,wscale *>
""", prefix="`sysctl -q net.ipv4.tcp_timestamps=0 net.ipv4.tcp_sack=0`\n")


# ---------------------------------------------------------------- options
@both
async def test_tcp_nodelay_sends_a_small_segment_at_once(lab: Lab, kind: str) -> None:
    # Nagle holds the second small write while the first is unacknowledged
    await run(lab, kind, """
   +0 write(4, ..., 10) = 10
   +0 > P. 1:11(10) ack 1
   +0 write(4, ..., 10) = 10
   +0 > nothing for 0.1
   +0 setsockopt(4, SOL_TCP, TCP_NODELAY, [1], 4) = 0
   +0 getsockopt(4, SOL_TCP, TCP_NODELAY, [1], [4]) = 0
   +0 write(4, ..., 10) = 10
   +0 > P. 11:31(20) ack 1
""")


@both
async def test_tcp_maxseg_before_connect_sets_the_mss(lab: Lab, kind: str) -> None:
    await run(lab, kind, """
    0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
   +0 setsockopt(3, SOL_TCP, TCP_MAXSEG, [1100], 4) = 0
   +0 fcntl(3, F_SETFL, O_RDWR|O_NONBLOCK) = 0
   +0 connect(3, ..., ...) = -1 EINPROGRESS (Operation now in progress)
   +0 > S 0:0(0) <mss 1100,sackOK,TS val 100 ecr 0,nop,wscale *>
""", prefix="")


@both
async def test_so_keepalive_with_keepidle_probes(lab: Lab, kind: str) -> None:
    await run(lab, kind, """
   +0 setsockopt(4, SOL_SOCKET, SO_KEEPALIVE, [1], 4) = 0
   +0 setsockopt(4, SOL_TCP, TCP_KEEPINTVL, [1], 4) = 0
   +0 setsockopt(4, SOL_TCP, TCP_KEEPIDLE, [1], 4) = 0
   +1~+1.3 > . 0:0(0) ack 1
""")


@both
async def test_so_sndbuf_is_doubled(lab: Lab, kind: str) -> None:
    await run_or_unsupported(lab, kind, """
   +0 setsockopt(4, SOL_SOCKET, SO_SNDBUF, [21000], 4) = 0
   +0 getsockopt(4, SOL_SOCKET, SO_SNDBUF, [42000], [4]) = 0
""", "SO_SNDBUF")


@both
async def test_tcp_congestion(lab: Lab, kind: str) -> None:
    # the kernel peer's sockets are pinned to cubic (the host default is bbr)
    first = '   +0 getsockopt(4, SOL_TCP, TCP_CONGESTION, "cubic", [16]) = 0\n' \
        if kind == "kernel" else ""
    await run_or_unsupported(lab, kind, first + """
   +0 setsockopt(4, SOL_TCP, TCP_CONGESTION, "reno", 4) = 0
   +0 getsockopt(4, SOL_TCP, TCP_CONGESTION, "reno", [16]) = 0
   +0 setsockopt(4, SOL_TCP, TCP_CONGESTION, "nosuchcc", 8) = -1 ENOENT (No such file or directory)
""", "TCP_CONGESTION")


@both
async def test_tcp_cork_holds_small_writes(lab: Lab, kind: str) -> None:
    await run_or_unsupported(lab, kind, """
   +0 setsockopt(4, SOL_TCP, TCP_CORK, [1], 4) = 0
   +0 write(4, ..., 100) = 100
   +0 > nothing for 0.1
   +0 setsockopt(4, SOL_TCP, TCP_CORK, [0], 4) = 0
   +0 > P. 1:101(100) ack 1
""", "TCP_CORK")


@both
async def test_tcp_user_timeout_ends_retransmission(lab: Lab, kind: str) -> None:
    # Linux 6.18: retransmissions at ~0.23, ~0.46, ~0.92 s; the first RTO
    # after the 500 ms have passed ends the connection (no RST).  ustack
    # (RFC 5482 3) gives up once data has been unacknowledged for 500 ms.
    end = "0.96" if kind == "kernel" else "0.5"
    await run_or_unsupported(lab, kind, f"""
   +0 setsockopt(4, SOL_TCP, TCP_USER_TIMEOUT, [500], 4) = 0
   +0 getsockopt(4, SOL_TCP, TCP_USER_TIMEOUT, [500], [4]) = 0
   +0 write(4, ..., 100) = 100
   +0 > P. 1:101(100) ack 1
   +0...{end} read(4, ..., 10) = -1 ETIMEDOUT (Connection timed out)
   +.2~+.3 > P. 1:101(100) ack 1
""", "TCP_USER_TIMEOUT")


@both
async def test_tcp_notsent_lowat_is_read_back(lab: Lab, kind: str) -> None:
    await run_or_unsupported(lab, kind, """
   +0 setsockopt(4, SOL_TCP, TCP_NOTSENT_LOWAT, [1000], 4) = 0
   +0 getsockopt(4, SOL_TCP, TCP_NOTSENT_LOWAT, [1000], [4]) = 0
""", "TCP_NOTSENT_LOWAT")


@both
async def test_tcp_inq_reports_the_bytes_left_to_read(lab: Lab, kind: str) -> None:
    # Linux tcp_inq_hint: what is still queued after this read; 1 once the
    # peer's FIN is in and nothing is left ("keep reading: EOF next")
    await run(lab, kind, """
   +0 setsockopt(4, SOL_TCP, TCP_INQ, [1], 4) = 0
   +0 getsockopt(4, SOL_TCP, TCP_INQ, [1], [4]) = 0
   +0 < P. 1:3001(3000) ack 1 win 257
   +0 > . 1:1(0) ack 3001
   +0 recvmsg(4, {msg_name(...)=..., msg_iov(1)=[{..., 1000}], msg_flags=0,
                  msg_control=[{cmsg_level=SOL_TCP, cmsg_type=TCP_CM_INQ,
                                cmsg_data=2000}]}, 0) = 1000
   +0 < F. 3001:4001(1000) ack 1 win 257
   +0 recvmsg(4, {msg_name(...)=..., msg_iov(1)=[{..., 5000}], msg_flags=0,
                  msg_control=[{cmsg_level=SOL_TCP, cmsg_type=TCP_CM_INQ,
                                cmsg_data=1}]}, 0) = 3000
   +0 read(4, ..., 100) = 0
""")


@both
async def test_epoll_edge_triggered_reports_each_arrival_once(lab: Lab, kind: str) -> None:
    # EPOLLET: a report per wakeup (new data each time), with the whole mask
    await run(lab, kind, """
   +0 fcntl(4, F_SETFL, O_RDWR|O_NONBLOCK) = 0
   +0 epoll_create(1) = 5
   +0 epoll_ctl(5, EPOLL_CTL_ADD, 4, {events=EPOLLOUT|EPOLLIN|EPOLLET, fd=4}) = 0
   +0 epoll_wait(5, {events=EPOLLOUT, fd=4}, 1, 0) = 1
   +0 epoll_wait(5, {events=0, ptr=0}, 1, 0) = 0
   +0 < P. 1:1001(1000) ack 1 win 257
   +0 epoll_wait(5, {events=EPOLLIN|EPOLLOUT, fd=4}, 1, 0) = 1
   +0 epoll_wait(5, {events=0, ptr=0}, 1, 0) = 0
   +0 < P. 1001:2001(1000) ack 1 win 257
   +0 epoll_wait(5, {events=EPOLLIN|EPOLLOUT, fd=4}, 1, 0) = 1
   +0 read(4, ..., 500) = 500
   +0 epoll_wait(5, {events=0, ptr=0}, 1, 0) = 0
""")


@both
async def test_epoll_level_triggered_reports_while_readable(lab: Lab, kind: str) -> None:
    await run(lab, kind, """
   +0 fcntl(4, F_SETFL, O_RDWR|O_NONBLOCK) = 0
   +0 epoll_create(1) = 5
   +0 epoll_ctl(5, EPOLL_CTL_ADD, 4, {events=EPOLLIN, fd=4}) = 0
   +0 epoll_wait(5, {events=0, ptr=0}, 1, 0) = 0
   +0 < P. 1:1001(1000) ack 1 win 257
   +0 epoll_wait(5, {events=EPOLLIN, fd=4}, 1, 0) = 1
   +0 epoll_wait(5, {events=EPOLLIN, fd=4}, 1, 0) = 1
   +0 read(4, ..., 1000) = 1000
   +0 epoll_wait(5, {events=0, ptr=0}, 1, 0) = 0
""")


@both
async def test_tcp_quickack_acks_at_once(lab: Lab, kind: str) -> None:
    await run_or_unsupported(lab, kind, """
   +0 setsockopt(4, SOL_TCP, TCP_QUICKACK, [1], 4) = 0
   +0 < P. 1:101(100) ack 1 win 257
   +0 > . 1:1(0) ack 101
""", "TCP_QUICKACK")


@both
async def test_so_rcvbuf_is_doubled(lab: Lab, kind: str) -> None:
    await run_or_unsupported(lab, kind, """
   +0 setsockopt(4, SOL_SOCKET, SO_RCVBUF, [20000], 4) = 0
   +0 getsockopt(4, SOL_SOCKET, SO_RCVBUF, [40000], [4]) = 0
""", "SO_RCVBUF")


@both
async def test_so_linger_zero_resets_on_close(lab: Lab, kind: str) -> None:
    await run(lab, kind, """
   +0 setsockopt(4, SOL_SOCKET, SO_LINGER, {l_onoff=1, l_linger=0}, 8) = 0
   +0 getsockopt(4, SOL_SOCKET, SO_LINGER, {l_onoff=1, l_linger=0}, [8]) = 0
   +0 close(4) = 0
   +0 > R. 1:1(0) ack 1
""")


@both
async def test_so_linger_nonzero_close_blocks_until_the_fin_is_acked(lab: Lab,
                                                                     kind: str) -> None:
    # Linux tcp_close -> sk_stream_wait_close: close() returns when the state
    # leaves FIN-WAIT-1, here when the probe ACKs the FIN 0.2 s later
    await run(lab, kind, """
   +0 setsockopt(4, SOL_SOCKET, SO_LINGER, {l_onoff=1, l_linger=5}, 8) = 0
   +0...0.2 close(4) = 0
   +0 > F. 1:1(0) ack 1
  +.2 < . 1:1(0) ack 2 win 257
""")


@both
async def test_so_linger_close_waits_for_the_send_queue(lab: Lab, kind: str) -> None:
    # the data goes first, the FIN after it; an ACK of the data alone does not
    # end the wait, the ACK of the FIN does
    await run(lab, kind, """
   +0 setsockopt(4, SOL_SOCKET, SO_LINGER, {l_onoff=1, l_linger=5}, 8) = 0
   +0 write(4, ..., 1000) = 1000
   +0 > P. 1:1001(1000) ack 1
   +0...0.3 close(4) = 0
   +0 > F. 1001:1001(0) ack 1
  +.1 < . 1:1(0) ack 1001 win 257
  +.2 < . 1:1(0) ack 1002 win 257
""")


@both
async def test_so_linger_close_returns_when_the_time_is_up(lab: Lab, kind: str) -> None:
    # nothing ACKs the FIN: close() returns 0 after l_linger seconds (the FIN
    # retransmissions meanwhile are the orphan's business, not checked here)
    await run(lab, kind, """
   +0 setsockopt(4, SOL_SOCKET, SO_LINGER, {l_onoff=1, l_linger=1}, 8) = 0
   +0...1 close(4) = 0
   +0 > F. 1:1(0) ack 1
""")


@both
async def test_a_wrong_result_fails_naming_the_line(lab: Lab, kind: str) -> None:
    with pytest.raises(ScriptError) as info:
        await run(lab, kind, """
   +0 write(4, ..., 100) = 99
""")
    assert "t.pkt:11" in str(info.value) and "returned 100, expected 99" in str(info.value)
