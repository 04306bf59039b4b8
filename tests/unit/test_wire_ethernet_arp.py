"""Ethernet and ARP codecs, cross-checked with dpkt."""

from __future__ import annotations

import dpkt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ustack.wire import ParseError
from ustack.wire import arp as warp
from ustack.wire import ethernet as eth

macs = st.binary(min_size=6, max_size=6)
ips = st.binary(min_size=4, max_size=4)


@given(macs, macs, st.integers(0, 0xFFFF), st.binary(max_size=100))
def test_ethernet_ours_decoded_by_dpkt(dst: bytes, src: bytes, etype: int, payload: bytes) -> None:
    frame = eth.encode_frame(dst, src, etype, payload, pad=False)
    h = eth.EthernetHeader.decode(frame)
    assert (h.dst, h.src, h.ethertype) == (dst, src, etype)
    assert frame[14:] == payload
    if etype >= 0x600 and etype not in (0x8100, 0x88A8, 0x9100):  # dpkt treats these specially
        d = dpkt.ethernet.Ethernet()
        d.unpack(frame)
        assert (d.dst, d.src, d.type) == (dst, src, etype)


def test_ethernet_padding_to_minimum() -> None:
    frame = eth.encode_frame(eth.BROADCAST, b"\x02" * 6, eth.ETHERTYPE_ARP, b"x" * 28)
    assert len(frame) == 60


@pytest.mark.parametrize("n", range(14))
def test_ethernet_truncated(n: int) -> None:
    with pytest.raises(ParseError) as info:
        eth.EthernetHeader.decode(b"\x00" * n)
    assert info.value.reason == "eth-truncated"


@pytest.mark.parametrize("text", ["", "02:00:00:00:00", "02:00:00:00:00:0g", "02:00:00:00:00:100",
                                  "1:2:3:4:5:6:7"])
def test_parse_mac_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid MAC"):
        eth.parse_mac(text)


def test_parse_format_mac() -> None:
    assert eth.parse_mac("02:0a:FF:00:1:2") == bytes([2, 10, 255, 0, 1, 2])
    assert eth.format_mac(bytes([2, 10, 255, 0, 1, 2])) == "02:0a:ff:00:01:02"


@given(st.sampled_from([warp.OP_REQUEST, warp.OP_REPLY]), macs, ips, macs, ips)
def test_arp_roundtrip_and_dpkt_decodes_ours(op: int, sha: bytes, spa: bytes, tha: bytes,
                                             tpa: bytes) -> None:
    pkt = warp.ArpPacket(op, sha, spa, tha, tpa)
    data = pkt.encode()
    assert warp.ArpPacket.decode(data) == pkt
    d = dpkt.arp.ARP(data)
    assert (d.op, d.sha, d.spa, d.tha, d.tpa) == (op, sha, spa, tha, tpa)
    assert (d.hrd, d.pro, d.hln, d.pln) == (1, 0x0800, 6, 4)


@given(st.sampled_from([1, 2]), macs, ips, macs, ips)
def test_arp_we_decode_dpkt(op: int, sha: bytes, spa: bytes, tha: bytes, tpa: bytes) -> None:
    d = dpkt.arp.ARP(op=op, sha=sha, spa=spa, tha=tha, tpa=tpa)
    pkt = warp.ArpPacket.decode(bytes(d))
    assert (pkt.op, pkt.sender_mac, pkt.sender_ip, pkt.target_mac, pkt.target_ip) == (
        op, sha, spa, tha, tpa)


def test_arp_rejects_non_ipv4_and_bad_op() -> None:
    good = warp.request(b"\x02" * 6, b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02").encode()
    with pytest.raises(ParseError) as info:
        warp.ArpPacket.decode(good[:27])
    assert info.value.reason == "arp-truncated"
    with pytest.raises(ParseError) as info:
        warp.ArpPacket.decode(b"\x00\x06" + good[2:])
    assert info.value.reason == "arp-unsupported"
    with pytest.raises(ParseError) as info:
        warp.ArpPacket.decode(good[:6] + b"\x00\x09" + good[8:])
    assert info.value.reason == "arp-bad-op"


def test_arp_helpers() -> None:
    me, ip = b"\x02\x00\x00\x00\x00\x01", b"\x0a\x00\x00\x02"
    ann = warp.announcement(me, ip)
    assert ann.is_gratuitous and ann.op == warp.OP_REQUEST and ann.target_ip == ip
    req = warp.request(b"\x02" * 6, b"\x0a\x00\x00\x01", ip)
    rep = warp.reply(me, ip, req)
    assert (rep.op, rep.target_mac, rep.target_ip, rep.sender_mac) == (
        warp.OP_REPLY, b"\x02" * 6, b"\x0a\x00\x00\x01", me)
