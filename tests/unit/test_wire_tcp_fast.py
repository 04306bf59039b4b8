"""The exact-wire send/receive fast paths produce the same bytes as the plain
codecs: SegmentEncoder (incremental checksums, RFC 1071), encode_ipv4 (IPv4 +
TCP in one pack), the nop-nop-TS decode shortcut, IpLayer.send_tcp_many."""

from __future__ import annotations

import itertools
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ustack.net.ipv4 import IpLayer, _transport_sum_ok
from ustack.wire.checksum import (
    internet_checksum,
    partial_sum,
    payload_sum,
    pseudo_header_sum,
    reduce_sum,
    verify,
)
from ustack.wire.ipv4 import build_header
from ustack.wire.tcp import (
    HEADER,
    SegmentEncoder,
    TcpOptions,
    TcpSegment,
    decode_options,
)

u32 = st.integers(0, 2**32 - 1)
addr = st.binary(min_size=4, max_size=4)
options = st.builds(
    TcpOptions,
    mss=st.none() | st.integers(0, 0xFFFF),
    wscale=st.none() | st.integers(0, 14),
    sack_permitted=st.booleans(),
    sack_blocks=st.lists(st.tuples(u32, u32), max_size=3),
    timestamp=st.none() | st.tuples(u32, u32),
)
segments = st.builds(
    TcpSegment,
    src_port=st.integers(0, 0xFFFF),
    dst_port=st.integers(0, 0xFFFF),
    seq=u32,
    ack=u32,
    flags=st.integers(0, 0xFF),
    window=st.integers(0, 0xFFFF),
    urgent=st.integers(0, 0xFFFF),
    options=options,
    payload=st.binary(max_size=1500),
)


def reference_encode(seg: TcpSegment, src: bytes, dst: bytes) -> bytes:
    """RFC 9293 3.1 literally: header with a zero checksum, then the checksum
    over pseudo-header + header + payload."""
    opt = seg.options.encode() if not seg.options.is_empty() else b""
    hlen = 20 + len(opt)
    header = HEADER.pack(seg.src_port, seg.dst_port, seg.seq, seg.ack, (hlen // 4) << 4,
                         seg.flags, seg.window, 0, seg.urgent) + opt
    pseudo = src + dst + struct.pack("!BBH", 0, 6, hlen + len(seg.payload))
    csum = internet_checksum(pseudo + header + seg.payload)
    return header[:16] + csum.to_bytes(2, "big") + header[18:] + seg.payload


@settings(max_examples=400, deadline=None)
@given(segments, addr, addr)
def test_encoder_matches_reference(seg: TcpSegment, src: bytes, dst: bytes) -> None:
    if len(seg.options.encode()) > 40:
        return
    expected = reference_encode(seg, src, dst)
    assert SegmentEncoder(src, dst).encode(seg) == expected
    assert seg.encode(src, dst) == expected
    assert seg.encode(src, dst, bad_checksum=True) != expected
    assert verify(pseudo_header_sum(src, dst, 6, len(expected)) + partial_sum(expected))


@settings(max_examples=300, deadline=None)
@given(segments, addr, addr, st.integers(0, 0xFFFF), st.integers(1, 255))
def test_encode_ipv4_matches_layers(seg: TcpSegment, src: bytes, dst: bytes, ident: int,
                                    ttl: int) -> None:
    if len(seg.options.encode()) > 40:
        return
    tcp = reference_encode(seg, src, dst)
    ip = build_header(src, dst, 6, len(tcp), ident, ttl=ttl)
    enc = SegmentEncoder(src, dst, ttl=ttl)
    assert enc.encode_ipv4(seg, ident, b"ETH") == b"ETH" + ip + tcp
    assert enc.header_len(seg) == (tcp[12] >> 4) * 4


ts_only = st.builds(lambda ts: TcpOptions(timestamp=ts),
                    st.tuples(u32 | st.sampled_from([0, 1, 0xFFFE, 0xFFFF, 0x10000, 2**32 - 1]),
                              u32 | st.sampled_from([0, 1, 0xFFFE, 0xFFFF, 0x10000, 2**32 - 1])))


@settings(max_examples=400, deadline=None)
@given(ts_only, segments, addr, addr, st.integers(0, 0xFFFF))
def test_timestamp_only_options_sum_matches_reference(opts: TcpOptions, seg: TcpSegment,
                                                      src: bytes, dst: bytes,
                                                      ident: int) -> None:
    """The timestamps-only options block (nearly every segment) gets its
    checksum share from the two TS words, not from its bytes: same bytes,
    in both encode paths, as the straightforward checksum."""
    seg.options = opts
    expected = reference_encode(seg, src, dst)
    enc = SegmentEncoder(src, dst)
    assert enc.encode(seg) == expected
    ip = build_header(src, dst, 6, len(expected), ident)
    assert SegmentEncoder(src, dst).encode_ipv4(seg, ident) == ip + expected


def test_encoder_reuses_options_across_segments() -> None:
    opts = TcpOptions(timestamp=(5, 6))
    enc = SegmentEncoder(b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02")
    for i, payload in enumerate((b"", b"a", b"abc" * 500)):
        seg = TcpSegment(1, 2, i, 3, 0x10, 4, 0, opts, payload)
        assert enc.encode(seg) == reference_encode(seg, enc.src_ip, enc.dst_ip)


@given(st.binary(max_size=70000))
def test_reduce_is_mod_0xffff(data: bytes) -> None:
    value = int.from_bytes(data, "big")
    assert reduce_sum(value) == value % 0xFFFF


@given(segments, st.integers(0, 40))
def test_timestamp_decode_fast_path(seg: TcpSegment, cut: int) -> None:
    seg.options = TcpOptions(timestamp=seg.options.timestamp or (1, 2))
    wire = seg.encode(b"\x01\x02\x03\x04", b"\x05\x06\x07\x08")
    assert wire[20:24] == b"\x01\x01\x08\x0a"
    got = TcpSegment.decode(wire)
    assert got.options == decode_options(wire[20:32])
    assert (got.seq, got.ack, got.flags, got.window, got.payload) == \
        (seg.seq, seg.ack, seg.flags, seg.window, seg.payload)
    # a truncated header still fails as the general path says
    short = wire[:min(cut, 31)]
    try:
        TcpSegment.decode(short)
    except Exception as exc:  # ParseError
        assert type(exc).__name__ == "ParseError"
    else:
        raise AssertionError("a truncated header decoded")


@settings(max_examples=400, deadline=None)
@given(segments, st.tuples(u32, u32), st.lists(st.tuples(u32, u32), min_size=1, max_size=3),
       st.integers(0, 60))
def test_timestamp_sack_decode_fast_path(seg: TcpSegment, ts: tuple[int, int],
                                         blocks: list[tuple[int, int]], cut: int) -> None:
    """A SACK ACK in Linux's layout (``nop, nop, TS, nop, nop, SACK``: every
    ACK of a lossy transfer) decodes as the general path does."""
    seg.options = TcpOptions(timestamp=ts, sack_blocks=list(blocks))
    wire = seg.encode(b"\x01\x02\x03\x04", b"\x05\x06\x07\x08")
    hlen = (wire[12] >> 4) * 4
    assert hlen == 36 + 8 * len(blocks) and wire[32:35] == b"\x01\x01\x05"
    got = TcpSegment.decode(wire)
    assert got.options == decode_options(wire[20:hlen])
    assert got.options.sack_blocks == blocks and got.options.timestamp == ts
    assert (got.seq, got.ack, got.flags, got.window, got.urgent, got.payload) == \
        (seg.seq, seg.ack, seg.flags, seg.window, seg.urgent, seg.payload)
    # a header cut inside the SACK blocks fails as the general path says
    if cut < hlen:
        try:
            TcpSegment.decode(wire[:cut])
        except Exception as exc:  # ParseError
            assert type(exc).__name__ == "ParseError"
        else:
            raise AssertionError("a truncated header decoded")


@settings(max_examples=600, deadline=None)
@given(st.binary(min_size=4, max_size=28), st.integers(0, 10), st.binary(max_size=8))
def test_decode_after_timestamps_matches_general_path(tail: bytes, words: int,
                                                      payload: bytes) -> None:
    """Whatever follows ``nop, nop, TS`` (a near-SACK prefix, a wrong SACK
    length, other options, any data offset), decode() agrees with
    decode_options() or fails as the general path does."""
    ts = bytes((1, 1, 8, 10)) + struct.pack("!II", 7, 9)
    if tail[:3] == b"\x01\x01\x05" and len(tail) >= 4:
        tail = tail[:3] + bytes((tail[3] % 30,)) + tail[4:]  # mostly plausible lengths
    opts = ts + tail
    off = 5 + min(words, (len(opts) + 3) // 4)
    header = HEADER.pack(1, 2, 3, 4, off << 4, 0x10, 5, 0, 0)
    wire = header + opts + payload
    hlen = off * 4
    if hlen > len(wire):
        return
    got = TcpSegment.decode(wire)
    assert got.options == (decode_options(wire[20:hlen]) if hlen > 20 else TcpOptions())
    assert got.payload == wire[hlen:]


def _layer(sent: list[bytes]) -> IpLayer:
    ip = IpLayer(address=b"\x0a\x4d\x00\x02", prefixlen=24, mac=b"\x02" * 6,
                 transmit=sent.append, transmit_many=sent.extend, clock=lambda: 0.0, ttl=61)
    ip._prefix[b"\x0a\x4d\x00\x01"] = (b"E" * 14, 1e9)
    ip._ident = itertools.count(0xFFFE)
    return ip


def test_send_tcp_many_equals_send_many() -> None:
    dst = b"\x0a\x4d\x00\x01"
    opts = TcpOptions(timestamp=(7, 8))
    segs = [TcpSegment(40000, 80, i * 1448, 9, 0x18, 10, 0, opts, bytes([i]) * (1448 - i))
            for i in range(4)]
    segs.append(TcpSegment(40000, 80, 0, 9, 0x10, 10, 0, opts, b"x" * 1449))  # too big
    fast: list[bytes] = []
    ip = _layer(fast)
    ip.send_tcp_many(dst, segs, ip.tcp_encoder(dst))
    slow: list[bytes] = []
    ip2 = _layer(slow)
    ip2.send_many(dst, 6, [SegmentEncoder(ip2.address, dst).encode(s) for s in segs])
    assert fast == slow and len(fast) == 4
    assert ip.frames_out == ip2.frames_out == 4
    assert ip.tx_drops == ip2.tx_drops == {"too-big": 1}


@settings(max_examples=100, deadline=None)
@given(st.lists(segments, max_size=6), addr, addr, st.integers(0, 2**20), st.integers(1, 255))
def test_encode_ipv4_many_matches_layers(segs: list[TcpSegment], src: bytes, dst: bytes,
                                              first: int, ttl: int) -> None:
    segs = [s for s in segs if len(s.options.encode()) <= 40]
    if segs and segs[0].options.timestamp is not None:  # a shared options object too
        segs.append(TcpSegment(1, 2, 3, 4, 0x10, 5, 0, segs[0].options, b"xyz"))
    many = SegmentEncoder(src, dst, ttl=ttl).encode_ipv4_many(segs, itertools.count(first),
                                                              b"L")
    expected = []
    for i, s in enumerate(segs):
        tcp = reference_encode(s, src, dst)
        ip = build_header(src, dst, 6, len(tcp), (first + i) & 0xFFFF, ttl=ttl)
        expected.append(b"L" + ip + tcp)
    assert many == expected


@given(st.binary(max_size=3000))
def test_payload_sum_is_the_big_endian_sum(data: bytes) -> None:
    assert payload_sum(data) % 0xFFFF == partial_sum(data) % 0xFFFF


@given(addr, addr, st.sampled_from([6, 17]), st.binary(max_size=3000), st.booleans())
def test_transport_sum_check_matches_rfc1071(src: bytes, dst: bytes, proto: int, data: bytes,
                                             fix: bool) -> None:
    """The receive-path check accepts exactly the segments whose pseudo-header
    plus segment sum is 0 modulo 0xFFFF (RFC 1071), odd lengths included."""
    if fix and len(data) >= 2:  # make it valid by adjusting the first word
        body = bytearray(data)
        body[0:2] = b"\0\0"
        total = pseudo_header_sum(src, dst, proto, len(body)) + partial_sum(body)
        c = (~(total % 0xFFFF)) & 0xFFFF
        body[0:2] = c.to_bytes(2, "big")
        data = bytes(body)
    expected = verify(pseudo_header_sum(src, dst, proto, len(data)) + partial_sum(data))
    assert _transport_sum_ok(src, dst, proto, memoryview(data)) == expected
    if fix and len(data) >= 2:
        assert expected


@given(st.binary(min_size=12, max_size=12), st.binary(max_size=64))
def test_decode_32_byte_header_agrees_with_decode_options(opts: bytes, payload: bytes) -> None:
    """A 32-byte header whose options are not Linux's ``nop, nop, TS`` leaves
    the fast path for the general decoder, with the same outcome."""
    head = HEADER.pack(1, 2, 3, 4, 8 << 4, 0x10, 5, 0, 0)
    try:
        want = decode_options(opts)
    except Exception as exc:  # ParseError
        with pytest.raises(type(exc)):
            TcpSegment.decode(head + opts + payload)
        return
    got = TcpSegment.decode(memoryview(head + opts + payload))
    assert got.options == want
    assert got.payload == payload


def test_tcp_encoder_is_kept_per_destination_and_reset() -> None:
    """IpLayer.tcp_encoder hands out one encoder per destination again, but
    reset: an options object changed between two batches is encoded anew
    (the bytes of a fresh encoder), and a new TTL or address gets a new one."""
    dst = b"\x0a\x4d\x00\x01"
    sent: list[bytes] = []
    ip = _layer(sent)
    opts = TcpOptions(timestamp=(7, 8))
    seg = TcpSegment(40000, 80, 1, 9, 0x18, 10, 0, opts, b"abc")
    enc = ip.tcp_encoder(dst)
    ip.send_tcp_many(dst, [seg], enc)
    opts.timestamp = (70, 80)  # the same object, changed
    opts.sack_blocks = [(1, 2)]
    again = ip.tcp_encoder(dst)
    assert again is enc
    ip.send_tcp_many(dst, [seg], again)
    assert sent[1][34:] == reference_encode(seg, ip.address, dst)
    assert sent[0][34:] != sent[1][34:]
    ip.ttl = 9
    assert ip.tcp_encoder(dst) is not enc and ip.tcp_encoder(dst).ttl == 9
    assert ip.tcp_encoder(b"\x0a\x4d\x00\x07").dst_ip == b"\x0a\x4d\x00\x07"
