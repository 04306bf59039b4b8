"""packetdrill's language: statements, times, system calls, TCP_INFO decoding."""

from __future__ import annotations

import struct

import pytest

from ustack.probe.packet import ScriptSyntaxError
from ustack.probe.pktlang import (
    ELLIPSIS,
    BinOr,
    Call,
    Struct,
    Symbol,
    parse_expression,
    parse_syscall,
    split_statements,
)
from ustack.probe.script import parse_script
from ustack.probe.syscalls import symbol_value, to_int
from ustack.probe.tcpinfo import decode_tcp_info

SCRIPT = """\
--tolerance_usecs=10000
// a comment
`../common/defaults.sh
sysctl -q net.ipv4.tcp_sack=0`
/* a block
   comment */
    0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
   +0 setsockopt(3, SOL_SOCKET, SO_REUSEADDR, [1], 4) = 0
   +0 bind(3, ..., ...) = 0
   +0 listen(3, 1) = 0
   +0...0.200 accept(3, ..., ...) = 4
  +.1 < S 0:0(0) win 32792 <mss 1000,sackOK,TS val 100 ecr 0,nop,wscale 7>
   +0 > S. 0:0(0) ack 1 <mss 1460,sackOK,TS val 200 ecr 100,nop,wscale 8>
  +.1 < . 1:1(0) ack 1 win 257 <nop,nop,TS val 101 ecr 200>
   +0 recvmsg(4, {msg_name(...)=...,
                  msg_iov(1)=[{..., 2000}],
                  msg_flags=0}, 0) = 2000
   +0 connect(4, ..., ...) = -1 ECONNRESET (Connection reset by peer)
   +0 %{ assert tcpi_snd_cwnd == 10, tcpi_snd_cwnd }%
   +0 > P. 1:1001(1000) ack 1 <...>
  +.1 < - 1:1001(1000) win 20000
"""


def test_a_packetdrill_script_parses_into_events() -> None:
    script = parse_script(SCRIPT, "x.pkt")
    assert script.dialect == "packetdrill"
    assert script.options == {"tolerance_usecs": "10000"}
    kinds = [e.kind for e in script.events]
    assert kinds == ["command", "syscall", "syscall", "syscall", "syscall", "syscall",
                     "send", "expect", "send", "syscall", "syscall", "code", "expect", "send"]
    cmd = script.events[0]
    assert "defaults.sh" in cmd.body and "tcp_sack=0" in cmd.body
    accept = script.events[5].syscall
    assert accept is not None and accept.name == "accept" and accept.end == (True, 0.2)
    assert accept.result == 4
    synack = script.events[7]
    assert synack.ts_val == 200  # remembered for the TS mapping, not checked
    assert synack.spec is not None and synack.spec.options is not None
    ts = [o for o in synack.spec.options if o.kind == "TS"][0]
    assert ts.a is None and ts.b is None
    recvmsg = script.events[9]
    assert recvmsg.lineno == 15
    conn = script.events[10].syscall
    assert conn is not None and (conn.result, conn.errno) == (-1, "ECONNRESET")
    assert conn.note == "Connection reset by peer"
    assert script.events[12].spec is not None and script.events[12].spec.options is None
    noflags = script.events[13].spec
    assert noflags is not None and noflags.flags == "" and noflags.ack is None


def test_times() -> None:
    script = parse_script("0.1 close(3) = 0\n+.25 close(3) = 0\n* > . 1:1(0) ack 1\n"
                          "+0.1~+0.2 > . 1:1(0) ack 1\n+0 ... 0.5 read(3, ..., 1) = 1\n",
                          "t")
    t = [e.time for e in script.events]
    assert (t[0].relative, t[0].start) == (False, 0.1)
    assert (t[1].relative, t[1].start) == (True, 0.25)
    assert t[2].start is None
    assert (t[3].start, t[3].end) == (0.1, 0.2)
    read = script.events[4].syscall
    assert read is not None and read.end == (True, 0.5)


def test_own_format_is_not_packetdrill() -> None:
    script = parse_script("peer listen 8080\n0 < S 0:0(0) win 1000  # comment\n", "own.pkt")
    assert script.dialect == "probe"


def test_statements_join_open_brackets_and_drop_comments() -> None:
    sts = split_statements("a(1,\n  2) = 0 // c\n/* x\ny */ b() = 1\n")
    assert [(s.lineno, s.text) for s in sts] == [(1, "a(1, 2) = 0"), (4, "b() = 1")]


def test_expressions() -> None:
    assert parse_expression("...") is ELLIPSIS
    assert parse_expression("0x10") == 16
    assert parse_expression("-1") == -1
    value = parse_expression("O_RDWR|O_NONBLOCK")
    assert isinstance(value, BinOr) and to_int(value) == 0o2 | 0o4000
    assert parse_expression('"cubic"') == "cubic"
    assert parse_expression("[1]") == [1]
    st = parse_expression("{l_onoff=1, l_linger=0}")
    assert isinstance(st, Struct) and st.fields == {"l_onoff": 1, "l_linger": 0}
    call = parse_expression("htons(8080)")
    assert isinstance(call, Call) and to_int(call) == 8080
    poll = parse_expression("[{fd=4, events=POLLIN, revents=POLLIN}]")
    assert isinstance(poll, list) and isinstance(poll[0], Struct)
    assert isinstance(poll[0].fields["events"], Symbol)


def test_symbols() -> None:
    assert symbol_value("SOL_TCP") == 6
    assert symbol_value("TCP_NOTSENT_LOWAT") == 25
    assert symbol_value("SO_REUSEADDR") == 2
    assert symbol_value("EPOLLOUT") == 4
    with pytest.raises(ValueError, match="unknown symbol"):
        symbol_value("NO_SUCH_THING")


@pytest.mark.parametrize("text, message", [
    ("read(3, ..., 10)", "= RESULT"),
    ("read(3, ..., 10 = 0", "unbalanced"),
    ("read(3, ..., 10) = 0 enoent", "bad errno"),
])
def test_bad_syscalls(text: str, message: str) -> None:
    with pytest.raises(ScriptSyntaxError, match=message):
        parse_syscall(text)


def test_bad_lines_name_the_line() -> None:
    with pytest.raises(ScriptSyntaxError, match="t.pkt:2"):
        parse_script("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 read(3, ..., = 1\n",
                     "t.pkt")
    with pytest.raises(ScriptSyntaxError, match="unterminated"):
        parse_script("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n`sysctl -q x=1\n", "t.pkt")


def test_tcp_info_layout() -> None:
    head = bytes([1, 0, 2, 0, 3, 7, 0x87, 1])  # state .. wscales (rcv 8, snd 7), app limited
    u32 = list(range(100, 124))  # rto .. total_retrans
    body = struct.pack("=24I", *u32)
    tail = struct.pack("=QQQQII", 1, 2, 3, 4, 5, 6)  # pacing .. bytes_received, segs
    info = decode_tcp_info(head + body + tail)
    assert info["tcpi_state"] == 1 and info["tcpi_retransmits"] == 2
    assert info["tcpi_backoff"] == 3 and info["tcpi_options"] == 7
    assert (info["tcpi_snd_wscale"], info["tcpi_rcv_wscale"]) == (7, 8)
    assert info["tcpi_delivery_rate_app_limited"] == 1
    assert info["tcpi_rto"] == 100 and info["tcpi_snd_cwnd"] == 100 + 18
    assert info["tcpi_total_retrans"] == 123
    assert info["tcpi_pacing_rate"] == 1 and info["tcpi_bytes_received"] == 4
    assert info["tcpi_segs_out"] == 5 and info["tcpi_segs_in"] == 6
    assert "tcpi_notsent_bytes" not in info  # past the end: absent, as on old kernels
