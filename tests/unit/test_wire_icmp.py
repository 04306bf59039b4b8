"""ICMP codec: echo, errors quoting a packet, cross-checked with dpkt."""

from __future__ import annotations

import dpkt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ustack.wire import ParseError, icmp, ipv4
from ustack.wire.tcp import ACK, SYN, TcpSegment

SRC, DST = bytes([10, 77, 0, 2]), bytes([10, 77, 0, 1])


@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.binary(max_size=300), st.booleans())
def test_echo_ours_decoded_by_dpkt(ident: int, seq: int, data: bytes, reply: bool) -> None:
    raw = icmp.IcmpEcho(ident, seq, data, reply).encode()
    d = dpkt.icmp.ICMP(raw)
    assert d.type == (0 if reply else 8) and d.code == 0
    assert (d.data.id, d.data.seq, d.data.data) == (ident, seq, data)
    assert dpkt.in_cksum(raw[:2] + b"\0\0" + raw[4:]) == d.sum
    back = icmp.IcmpEcho.from_message(icmp.IcmpMessage.decode(raw))
    assert back == icmp.IcmpEcho(ident, seq, data, reply)


@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.binary(max_size=300))
def test_echo_we_decode_dpkt(ident: int, seq: int, data: bytes) -> None:
    d = dpkt.icmp.ICMP(type=8, code=0, data=dpkt.icmp.ICMP.Echo(id=ident, seq=seq, data=data))
    msg = icmp.IcmpMessage.decode(bytes(d))
    echo = icmp.IcmpEcho.from_message(msg)
    assert (echo.ident, echo.seq, echo.data, echo.reply) == (ident, seq, data, False)
    reply = icmp.IcmpMessage.decode(icmp.echo_reply_for(msg))
    assert reply.type == icmp.TYPE_ECHO_REPLY and reply.rest == msg.rest
    assert bytes(reply.body) == data


def test_bad_checksum_and_truncated() -> None:
    raw = bytearray(icmp.IcmpEcho(1, 2, b"hello").encode())
    raw[-1] ^= 0xFF
    with pytest.raises(ParseError) as info:
        icmp.IcmpMessage.decode(bytes(raw))
    assert info.value.reason == "icmp-bad-checksum"
    assert icmp.IcmpMessage.decode(bytes(raw), verify_checksum=False).type == 8
    with pytest.raises(ParseError) as info:
        icmp.IcmpMessage.decode(b"\x08\x00\x00")
    assert info.value.reason == "icmp-truncated"


def _syn_packet() -> bytes:
    seg = TcpSegment(40000, 8080, 0x01020304, 0, SYN, 65535)
    return ipv4.Ipv4Packet(SRC, DST, ipv4.PROTO_TCP, seg.encode(SRC, DST), ident=7).encode()


@pytest.mark.parametrize("code", [icmp.CODE_PORT_UNREACH, icmp.CODE_HOST_UNREACH])
def test_build_error_quotes_header_and_8_bytes(code: int) -> None:
    original = _syn_packet()
    raw = icmp.build_error(icmp.TYPE_DEST_UNREACH, code, original)
    assert len(raw) == 8 + 20 + 8
    # dpkt decodes ours
    d = dpkt.icmp.ICMP(raw)
    assert (d.type, d.code) == (3, code)
    quoted = d.data.data
    assert isinstance(quoted, dpkt.ip.IP)
    assert (quoted.src, quoted.dst, quoted.p) == (SRC, DST, 6)
    # and we decode ours
    err = icmp.IcmpError.from_message(icmp.IcmpMessage.decode(raw))
    assert (err.type, err.code) == (3, code)
    assert (err.quoted.src, err.quoted.dst, err.quoted.protocol) == (SRC, DST, 6)
    assert (err.quoted.src_port, err.quoted.dst_port, err.quoted.tcp_seq) == (
        40000, 8080, 0x01020304)


def test_we_decode_dpkt_unreach_and_frag_needed() -> None:
    original = _syn_packet()
    d = dpkt.icmp.ICMP(type=3, code=3, data=dpkt.icmp.ICMP.Unreach(data=original[:28]))
    err = icmp.IcmpError.from_message(icmp.IcmpMessage.decode(bytes(d)))
    assert (err.code, err.quoted.dst_port, err.quoted.tcp_seq) == (3, 8080, 0x01020304)
    raw = icmp.build_error(3, icmp.CODE_FRAG_NEEDED, original, mtu=1280)
    assert icmp.IcmpError.from_message(icmp.IcmpMessage.decode(raw)).mtu == 1280
    d2 = dpkt.icmp.ICMP(raw)
    assert d2.data.mtu == 1280


def test_time_exceeded_and_parameter_problem() -> None:
    original = _syn_packet() + b"more"
    raw = icmp.build_error(icmp.TYPE_TIME_EXCEEDED, 0, original, quote_payload=28)
    err = icmp.IcmpError.from_message(icmp.IcmpMessage.decode(raw))
    assert err.type == 11 and len(err.quoted.transport) == 8
    raw = icmp.build_error(icmp.TYPE_PARAMETER_PROBLEM, 0, original, pointer=9)
    assert icmp.IcmpError.from_message(icmp.IcmpMessage.decode(raw)).pointer == 9


def test_error_with_short_quote_is_parse_error() -> None:
    original = _syn_packet()
    for cut in (0, 10, 20, 27):
        raw = icmp.IcmpMessage(3, 3, body=original[:cut]).encode()
        with pytest.raises(ParseError) as info:
            icmp.IcmpError.from_message(icmp.IcmpMessage.decode(raw))
        assert info.value.reason == "icmp-bad-quote"
    with pytest.raises(ParseError):
        icmp.IcmpError.from_message(icmp.IcmpMessage(8, 0))
    with pytest.raises(ParseError):
        icmp.IcmpEcho.from_message(icmp.IcmpMessage(3, 0))
    assert ACK  # imported flag constants are ints
