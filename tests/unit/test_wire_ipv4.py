"""IPv4 codec, cross-checked with dpkt in both directions."""

from __future__ import annotations

import dpkt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ustack.wire import ParseError, ipv4

ips = st.binary(min_size=4, max_size=4)
SRC, DST = bytes([10, 77, 0, 1]), bytes([10, 77, 0, 2])


@given(ips, ips, st.integers(0, 255), st.binary(max_size=200), st.integers(1, 255),
       st.integers(0, 255), st.integers(0, 0xFFFF), st.sampled_from([0, 0x4000, 0x2000, 0x0010]),
       st.sampled_from([b"", b"\x01\x01\x01\x00", b"\x07\x07\x04" + b"\x00" * 5]))
def test_ours_decoded_by_dpkt(src: bytes, dst: bytes, proto: int, payload: bytes, ttl: int,
                              tos: int, ident: int, ff: int, options: bytes) -> None:
    pkt = ipv4.Ipv4Packet(src, dst, proto, payload, ttl, tos, ident, ff, options)
    data = pkt.encode()
    d = dpkt.ip.IP(data)
    assert (d.src, d.dst, d.p, d.ttl, d.tos, d.id) == (src, dst, proto, ttl, tos, ident)
    assert d.len == len(data) and d.hl * 4 == 20 + len(options)
    assert (d.df, d.mf, d.offset) == (bool(ff & 0x4000), bool(ff & 0x2000), ff & 0x1FFF)
    # dpkt's checksum of our header (checksum field zeroed) is what we wrote
    hl = d.hl * 4
    assert dpkt.in_cksum(data[:10] + b"\0\0" + data[12:hl]) == d.sum
    back = ipv4.Ipv4Packet.decode(data)
    assert (back.src, back.dst, back.protocol, bytes(back.payload), back.options) == (
        src, dst, proto, payload, options)
    assert back.is_fragment == bool(ff & 0x3FFF)


@given(ips, ips, st.integers(0, 255), st.binary(max_size=200), st.integers(0, 255),
       st.integers(0, 0xFFFF))
def test_we_decode_dpkt(src: bytes, dst: bytes, proto: int, payload: bytes, ttl: int,
                        ident: int) -> None:
    d = dpkt.ip.IP(src=src, dst=dst, p=proto, ttl=ttl, id=ident, data=payload)
    data = bytes(d)
    pkt = ipv4.Ipv4Packet.decode(data)
    assert (pkt.src, pkt.dst, pkt.protocol, pkt.ttl, pkt.ident) == (src, dst, proto, ttl, ident)
    assert bytes(pkt.payload) == payload and pkt.total_length == len(data)


def test_build_header_matches_full_encoder() -> None:
    hdr = ipv4.build_header(SRC, DST, 6, 100, 77)
    full = ipv4.Ipv4Packet(SRC, DST, 6, b"\x00" * 100, ident=77).encode()
    assert hdr == full[:20]
    assert ipv4.header_checksum_ok(hdr)


def test_padding_after_total_length_is_not_payload() -> None:
    data = ipv4.Ipv4Packet(SRC, DST, 1, b"abcd").encode() + b"\x00" * 20
    assert bytes(ipv4.Ipv4Packet.decode(data).payload) == b"abcd"


def _good() -> bytes:
    return ipv4.Ipv4Packet(SRC, DST, 6, b"x" * 20).encode()


@pytest.mark.parametrize(("mutate", "reason"), [
    (lambda b: b[:19], "ip-truncated"),
    (lambda b: b"\x65" + b[1:], "ip-bad-version"),
    (lambda b: b"\x44" + b[1:], "ip-bad-ihl"),
    (lambda b: b"\x4f" + b[1:], "ip-truncated"),
    (lambda b: b[:2] + (10).to_bytes(2, "big") + b[4:], "ip-bad-length"),
    (lambda b: b[:2] + (41).to_bytes(2, "big") + b[4:], "ip-bad-length"),
    (lambda b: b[:8] + bytes([b[8] ^ 1]) + b[9:], "ip-bad-checksum"),
])
def test_malformed(mutate: object, reason: str) -> None:
    with pytest.raises(ParseError) as info:
        ipv4.Ipv4Packet.decode(mutate(_good()))  # type: ignore[operator]
    assert info.value.reason == reason


def test_options_are_skipped() -> None:
    # record-route option, 40 bytes of options
    opts = b"\x07\x27\x04" + b"\x00" * 37
    pkt = ipv4.Ipv4Packet(SRC, DST, 6, b"payload", options=opts)
    back = ipv4.Ipv4Packet.decode(pkt.encode())
    assert back.header_len == 60 and bytes(back.payload) == b"payload"
    with pytest.raises(ValueError):
        ipv4.Ipv4Packet(SRC, DST, 6, b"", options=opts + b"\x01" * 4).encode()


def test_address_helpers() -> None:
    assert ipv4.parse_address("10.77.0.2") == DST
    assert ipv4.format_address(DST) == "10.77.0.2"
    with pytest.raises(ValueError, match="10.77.0.256"):
        ipv4.parse_address("10.77.0.256")
