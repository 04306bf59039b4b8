"""The optional C checksum accelerator (ustack.wire._csum) equals the
pure-Python fallback: the sum itself on random buffers of every kind, the
fused IPv4+TCP encoder and the receive-side checksum check with one and the
other, and USTACK_NO_ACCEL=1 really selects the fallback."""

from __future__ import annotations

import itertools
import os
import struct
import subprocess
import sys
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ustack.net import ipv4 as net_ipv4
from ustack.wire import checksum
from ustack.wire import tcp as wtcp
from ustack.wire.checksum import _py_payload_sum, partial_sum
from ustack.wire.tcp import ACK, PSH, SegmentEncoder, TcpOptions, TcpSegment


def _accel() -> ModuleType:
    try:
        from ustack.wire import _csum
    except ImportError:
        pytest.skip("the C accelerator ustack.wire._csum is not built (no compiler at install)")
    return _csum


@settings(max_examples=600, deadline=None)
@given(st.binary(max_size=4000), st.integers(0, 7), st.integers(0, 7))
def test_sum16_equals_fallback(data: bytes, head: int, tail: int) -> None:
    csum = _accel()
    view = memoryview(data)[head:len(data) - tail] if head + tail <= len(data) else view_empty()
    for buf in (data, bytearray(data), memoryview(data), view, bytes(view)):
        got = csum.sum16(buf)
        assert 0 <= got <= 0xFFFF
        assert got % 0xFFFF == _py_payload_sum(buf) % 0xFFFF == partial_sum(bytes(buf)) % 0xFFFF
        # 0 exactly for a buffer of zeros (so fold() gives the same either way)
        assert (got == 0) == (partial_sum(bytes(buf)) == 0)


def view_empty() -> memoryview:
    return memoryview(b"")


@pytest.mark.parametrize("n", [0, 1, 2, 3, 15, 16, 17, 1448, 1449, 65535, 1 << 20])
def test_sum16_edges(n: int) -> None:
    csum = _accel()
    for fill in (0x00, 0xFF, 0x80, 0x01):
        data = bytes([fill]) * n
        assert csum.sum16(data) % 0xFFFF == partial_sum(data) % 0xFFFF
    data = os.urandom(n)
    assert csum.sum16(data) % 0xFFFF == partial_sum(data) % 0xFFFF


def test_sum16_non_contiguous_and_bad_arguments() -> None:
    csum = _accel()
    data = bytes(range(256)) * 4
    strided = memoryview(data)[::3]
    assert csum.sum16(strided) % 0xFFFF == _py_payload_sum(strided) % 0xFFFF
    words = memoryview(bytearray(data)).cast("H")
    assert csum.sum16(words) % 0xFFFF == _py_payload_sum(words) % 0xFFFF
    for bad in (None, 3, "text"):
        with pytest.raises(TypeError):
            _py_payload_sum(bad)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            csum.sum16(bad)


u32 = st.integers(0, 2**32 - 1)
segments = st.builds(
    TcpSegment, src_port=st.integers(0, 0xFFFF), dst_port=st.integers(0, 0xFFFF), seq=u32,
    ack=u32, flags=st.sampled_from([ACK, ACK | PSH, 0x12, 0x11]),
    window=st.integers(0, 0xFFFF), urgent=st.integers(0, 0xFFFF),
    options=st.sampled_from([TcpOptions(), TcpOptions(timestamp=(7, 9)),
                             TcpOptions(timestamp=(1, 2), sack_blocks=[(5, 9)])]),
    payload=st.binary(max_size=1500))


@settings(max_examples=300, deadline=None)
@given(st.lists(segments, min_size=1, max_size=8), st.binary(min_size=4, max_size=4),
       st.binary(min_size=4, max_size=4))
def test_encoder_same_bytes_with_and_without(segs: list[TcpSegment], src: bytes,
                                             dst: bytes) -> None:
    csum = _accel()
    names = vars(wtcp)  # the module's globals, as encode_ipv4_many reads them
    saved = names["_sum16"], names["_tcp4_frame"]
    try:
        names["_sum16"], names["_tcp4_frame"] = csum.sum16, csum.tcp4_frame
        fast = SegmentEncoder(src, dst).encode_ipv4_many(segs, itertools.count(5), b"E" * 14)
        names["_tcp4_frame"] = None  # the struct path with the C sum
        summed = SegmentEncoder(src, dst).encode_ipv4_many(segs, itertools.count(5), b"E" * 14)
        names["_sum16"] = None
        plain = SegmentEncoder(src, dst).encode_ipv4_many(segs, itertools.count(5), b"E" * 14)
    finally:
        names["_sum16"], names["_tcp4_frame"] = saved
    assert fast == summed == plain
    enc = SegmentEncoder(src, dst)
    assert [f[34:] for f in plain] == [enc.encode(s) for s in segs]


def _encode_outcome(segs: list[TcpSegment], src: bytes, dst: bytes, ttl: int,
                    frame_c: object) -> tuple[object, int]:
    """encode_ipv4_many's frames or exception type, and the next
    identification left in the iterator."""
    names = vars(wtcp)
    saved = names["_tcp4_frame"]
    idents = itertools.count(0xFFF0)
    try:
        names["_tcp4_frame"] = frame_c
        try:
            got: object = SegmentEncoder(src, dst, ttl=ttl).encode_ipv4_many(
                segs, idents, b"L" * 14)
        except (struct.error, ValueError, OverflowError) as exc:
            got = type(exc)
    finally:
        names["_tcp4_frame"] = saved
    return got, next(idents)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.builds(
           TcpSegment, src_port=st.integers(-2, 0x10001), dst_port=st.integers(0, 0x10001),
           seq=st.integers(-1, 2**33), ack=u32, flags=st.integers(0, 0x1FF),
           window=st.integers(0, 0x1FFFF), urgent=st.integers(-1, 0x1FFFF),
           options=st.sampled_from([TcpOptions(), TcpOptions(timestamp=(7, 9))]),
           payload=st.binary(max_size=300) | st.binary(max_size=40).map(memoryview)
           | st.sampled_from([b"p" * 65500])),
                min_size=1, max_size=5),
       st.binary(min_size=0, max_size=6), st.binary(min_size=4, max_size=4),
       st.sampled_from([64, 255, 256, -1]))
def test_c_frame_builder_equals_the_struct_path_at_the_edges(
        segs: list[TcpSegment], src: bytes, dst: bytes, ttl: int) -> None:
    """_csum.tcp4_frame against encode_ipv4_many's struct.pack code on
    arguments that pack refuses (ports and TTL out of range: struct.error),
    masks (seq, window, urgent, flags), pads (an address of 0..6 bytes) or
    rejects as too long (ValueError): the same frames or the same error,
    and the same number of identifications drawn."""
    csum = _accel()
    assert _encode_outcome(segs, src, dst, ttl, csum.tcp4_frame) == _encode_outcome(
        segs, src, dst, ttl, None)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=20, max_size=1600), st.binary(min_size=4, max_size=4),
       st.binary(min_size=4, max_size=4), st.booleans())
def test_receive_check_same_verdict(body: bytes, src: bytes, dst: bytes, fix: bool) -> None:
    csum = _accel()
    seg = bytearray(body)
    if fix:  # make it valid half of the time
        seg[16:18] = b"\0\0"
        total = checksum.pseudo_header_sum(src, dst, 6, len(seg)) + partial_sum(bytes(seg))
        seg[16:18] = checksum.fold(total).to_bytes(2, "big")
    view = memoryview(bytes(seg))
    names = vars(net_ipv4)
    saved = names["payload_sum"]
    try:
        names["payload_sum"] = csum.sum16
        fast = net_ipv4._transport_sum_ok(src, dst, 6, view)
        names["payload_sum"] = _py_payload_sum
        plain = net_ipv4._transport_sum_ok(src, dst, 6, view)
    finally:
        names["payload_sum"] = saved
    assert fast == plain
    if fix:
        assert plain


def test_env_var_forces_the_fallback() -> None:
    code = ("from ustack.wire import checksum, tcp; from ustack.link import af_packet; "
            "print(checksum.ACCELERATED, checksum.payload_sum is checksum._py_payload_sum, "
            "tcp._sum16, af_packet._sendmany, tcp._tcp4_frame)")
    env = dict(os.environ, USTACK_NO_ACCEL="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "True", "None", "None", "None"]
    if os.environ.get("USTACK_NO_ACCEL", "") in ("", "0"):
        csum = _accel()
        assert checksum.ACCELERATED and checksum.payload_sum is checksum.sum16
        assert wtcp._tcp4_frame is csum.tcp4_frame


US_MAC, PEER_MAC = bytes.fromhex("020000000002"), bytes.fromhex("020000000001")
US, PEER = bytes([10, 77, 0, 2]), bytes([10, 77, 0, 1])


def _ip_frame(proto: int, body: bytes, fix: bool, options: bytes, extra: bytes) -> bytes:
    """Ethernet + IPv4 (valid header checksum, maybe options) + ``body``
    (its transport checksum made valid when ``fix``) + trailing ``extra``."""
    seg = bytearray(body)
    at = 16 if proto == 6 else 6
    if fix and len(seg) >= at + 2:
        seg[at:at + 2] = b"\0\0"
        total = checksum.pseudo_header_sum(PEER, US, proto, len(seg)) + partial_sum(bytes(seg))
        seg[at:at + 2] = checksum.fold(total).to_bytes(2, "big")
    hlen = 20 + len(options)
    hdr = bytearray(struct.pack("!BBHHHBBH4s4s", 0x40 | hlen // 4, 0, hlen + len(seg), 1,
                                0x4000, 64, proto, 0, PEER, US) + options)
    hdr[10:12] = checksum.fold(partial_sum(bytes(hdr))).to_bytes(2, "big")
    return US_MAC + PEER_MAC + b"\x08\x00" + bytes(hdr) + bytes(seg) + extra


Verdicts = tuple[int, dict[str, int], list[tuple[int, bytes, bool]]]


def _run_layer(frames: list[tuple[bytes, bool]], sum16: object) -> Verdicts:
    names = vars(net_ipv4)
    saved = names["_sum16"]
    got: list[tuple[int, bytes, bool]] = []

    def handler(proto: int) -> net_ipv4.IpHandler:
        def take(src: bytes, dst: bytes, payload: net_ipv4.Buffer, trusted: bool) -> None:
            got.append((proto, bytes(payload), trusted))
        return take

    try:
        names["_sum16"] = sum16
        ip = net_ipv4.IpLayer(address=US, prefixlen=24, mac=US_MAC, transmit=lambda f: None,
                              clock=lambda: 1.0)
        for proto in (6, 17):
            ip.register(proto, handler(proto))
        ip.receive(frames)
    finally:
        names["_sum16"] = saved
    return ip.accepted, dict(ip.drops), got


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([6, 17]), st.binary(min_size=8, max_size=1600),
                          st.booleans(), st.sampled_from([b"", b"\x01\x01\x01\x00"]),
                          st.sampled_from([b"", b"\0", b"pad-pad"]), st.booleans()),
                min_size=1, max_size=12))
def test_ip_layer_fused_check_same_verdicts(items: list[tuple[int, bytes, bool, bytes, bytes,
                                                               bool]]) -> None:
    """IpLayer's one-call TCP/UDP check (no IP options, accelerator present)
    accepts and drops exactly the frames the _transport_sum_ok path does."""
    csum = _accel()
    frames = [(_ip_frame(proto, body, fix, opts, extra), trusted)
              for proto, body, fix, opts, extra, trusted in items]
    fast = _run_layer(frames, csum.sum16)
    plain = _run_layer(frames, None)
    assert fast == plain
    valid = sum(1 for proto, body, fix, _o, _e, trusted in items
                if (fix and len(body) >= (18 if proto == 6 else 8)) or trusted)
    assert fast[0] >= valid
