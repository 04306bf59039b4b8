"""IpLayer.receive's fast path = its general path (differential).

Random frames near the fast path's edges (every field it checks made right
or wrong one at a time or together: MACs, EtherType, version/IHL, lengths,
fragments, addresses, protocols, both checksums, trusted, Ethernet padding,
truncation) go through two IP layers, one with ``fast_receive`` and one
without; deliveries, drop reasons, counters and the frames sent back (ICMP
errors, ARP) must be identical, with and without the C checksum.
"""

from __future__ import annotations

import struct
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ustack.net.ipv4 import IpLayer
from ustack.wire import checksum
from ustack.wire.checksum import partial_sum

US_MAC, PEER_MAC = bytes.fromhex("020000000002"), bytes.fromhex("020000000001")
US, PEER = bytes([10, 77, 0, 2]), bytes([10, 77, 0, 1])
BCAST_MAC = b"\xff" * 6

MACS = [US_MAC, BCAST_MAC, bytes.fromhex("020000000009")]
SOURCES = [PEER, bytes([10, 77, 0, 3]), bytes(4), bytes([224, 0, 0, 1]), US,
           bytes([10, 77, 0, 255]), b"\xff" * 4, bytes([192, 0, 2, 7])]
DESTS = [US, US, bytes([10, 77, 0, 255]), b"\xff" * 4, bytes([10, 77, 0, 9])]


def _frame(dst_mac: bytes, ethertype: int, vihl: int, proto: int, src: bytes, dst: bytes,
           frag: int, body: bytes, options: bytes, fix_l4: bool, fix_ip: bool,
           total_delta: int, extra: bytes, cut: int) -> bytes:
    seg = bytearray(body)
    at = {6: 16, 17: 6}.get(proto)
    if fix_l4 and at is not None and len(seg) >= at + 2:
        seg[at:at + 2] = b"\0\0"
        total = checksum.pseudo_header_sum(src, dst, proto, len(seg)) + partial_sum(bytes(seg))
        seg[at:at + 2] = checksum.fold(total).to_bytes(2, "big")
    hlen = 20 + len(options)
    if vihl == 0x45 and options:
        vihl = 0x40 | hlen // 4
    length = max(0, min(0xFFFF, hlen + len(seg) + total_delta))
    hdr = bytearray(struct.pack("!BBHHHBBH4s4s", vihl, 0, length, 7, frag, 64, proto, 0,
                                src, dst) + options)
    if fix_ip:
        hdr[10:12] = checksum.fold(partial_sum(bytes(hdr))).to_bytes(2, "big")
    frame = dst_mac + PEER_MAC + ethertype.to_bytes(2, "big") + bytes(hdr) + bytes(seg) + extra
    return frame[:len(frame) - cut] if cut else frame


#: per field of _frame: the value of a frame the fast path takes, then wrong ones
FIELDS: list[tuple[Any, list[Any]]] = [
    (US_MAC, [BCAST_MAC, bytes.fromhex("020000000009")]),
    (0x0800, [0x0806, 0x86DD]),
    (0x45, [0x46, 0x44, 0x55, 0x35]),
    (6, [17, 1, 99]),
    (PEER, list(SOURCES[1:])),
    (US, list(DESTS[2:])),
    (0x4000, [0, 0x2000, 0x0001, 0x8000]),
    (b"\x12" * 40, [b"", b"\x01" * 7, b"\xee" * 30, b"\xef" * 30, bytes(range(120))]),
    (b"", [b"\x01\x01\x01\x00", b"\x07\x03\x02\x00"]),
    (True, [False]),
    (True, [False]),
    (0, [1, -1, -20, 40]),
    (b"", [b"\0" * 6]),
    (0, [1, 30, 50]),
    (False, [True]),
]


@st.composite
def frame_params(draw: st.DrawFn) -> tuple[Any, ...]:
    """A fast-path frame with zero to three fields changed."""
    values = [valid for valid, _ in FIELDS]
    for i in draw(st.lists(st.integers(0, len(FIELDS) - 1), max_size=3)):
        values[i] = draw(st.sampled_from([FIELDS[i][0], *FIELDS[i][1]]))
    return tuple(values)


Outcome = tuple[Any, ...]


def _run(frames: list[tuple[bytes, bool]], fast: bool, *, tcp_verify: bool = True,
         batches: int = 1) -> Outcome:
    sent: list[bytes] = []
    got: list[tuple[int, bytes, bytes, bytes, bool]] = []

    def handler(proto: int) -> object:
        def take(src: bytes, dst: bytes, payload: bytes | memoryview,
                 trusted: bool) -> str | None:
            data = bytes(payload)
            got.append((proto, src, dst, data, trusted))
            if data[:1] == b"\xee":
                return "proto-says-no"  # a handler's own drop reason
            if data[:1] == b"\xef":
                raise ValueError("a bug in a handler")
            return None
        return take

    ip = IpLayer(address=US, prefixlen=24, mac=US_MAC, transmit=sent.append,
                 transmit_many=sent.extend, clock=lambda: 1.0)
    ip.fast_receive = fast
    ip.register(6, handler(6), verify_checksum=tcp_verify)  # type: ignore[arg-type]
    ip.register(17, handler(17))  # type: ignore[arg-type]
    step = max(1, len(frames) // batches)
    for i in range(0, len(frames), step):
        ip.receive(frames[i:i + step])
    return (ip.frames_in, ip.accepted, dict(ip.drops), dict(ip.stats), got, sent,
            ip.counters())


@settings(max_examples=400, deadline=None)
@given(st.lists(frame_params(), min_size=1, max_size=16), st.booleans(), st.integers(1, 3))
def test_fast_receive_equals_general(params: list[tuple], tcp_verify: bool,  # type: ignore[type-arg]
                                     batches: int) -> None:
    frames = [(_frame(*p[:-1]), p[-1]) for p in params]
    fast = _run(frames, True, tcp_verify=tcp_verify, batches=batches)
    general = _run(frames, False, tcp_verify=tcp_verify, batches=batches)
    assert fast == general


def test_fast_path_frames_are_delivered() -> None:
    """Valid TCP and UDP frames (checksums right, or trusted) reach their
    handler through the fast path, as through the general one; a bad
    transport checksum, a bad header checksum and our own source do not."""
    good_tcp = _frame(US_MAC, 0x0800, 0x45, 6, PEER, US, 0x4000, b"\x12" * 40, b"", True, True,
                      0, b"", 0)
    good_udp = _frame(US_MAC, 0x0800, 0x45, 17, PEER, US, 0, b"\x13" * 30, b"", True, True,
                      0, b"\0" * 6, 0)
    bad_tcp = _frame(US_MAC, 0x0800, 0x45, 6, PEER, US, 0x4000, b"\x12" * 40, b"", False, True,
                     0, b"", 0)
    bad_ip = _frame(US_MAC, 0x0800, 0x45, 6, PEER, US, 0x4000, b"\x12" * 40, b"", True, False,
                    0, b"", 0)
    own_src = _frame(US_MAC, 0x0800, 0x45, 6, US, US, 0x4000, b"\x12" * 40, b"", True, True,
                     0, b"", 0)
    frames = [(good_tcp, False), (good_udp, False), (bad_tcp, False), (bad_tcp, True),
              (bad_ip, False), (own_src, False)]
    for fast in (True, False):
        frames_in, accepted, drops, _stats, got, _sent, _c = _run(frames, fast)
        assert frames_in == 6 and accepted == 3
        assert drops == {"tcp-bad-checksum": 1, "ip-bad-checksum": 1, "ip-bad-source": 1}
        assert [g[0] for g in got] == [6, 17, 6]
        assert got[1][3][8:] == b"\x13" * 22 and got[2][4] is True  # padding cut; trusted passed on
