"""Every decoder raises only ParseError on arbitrary bytes (h11-style fuzzing)."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from ustack.wire import ParseError, arp, ethernet, icmp, ipv4, tcp


def _icmp_error(data: bytes) -> object:
    return icmp.IcmpError.from_message(icmp.IcmpMessage(3, 3, body=data))


DECODERS: list[Callable[[bytes], object]] = [
    ethernet.EthernetHeader.decode,
    arp.ArpPacket.decode,
    ipv4.Ipv4Packet.decode,
    lambda b: ipv4.Ipv4Packet.decode(b, verify_checksum=False, strict_length=False),
    icmp.IcmpMessage.decode,
    lambda b: icmp.IcmpMessage.decode(b, verify_checksum=False),
    lambda b: icmp.IcmpEcho.from_message(icmp.IcmpMessage.decode(b, verify_checksum=False)),
    _icmp_error,
    tcp.TcpSegment.decode,
]


def _valid_samples() -> list[bytes]:
    src, dst = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    seg = tcp.TcpSegment(1, 2, 3, 4, tcp.SYN | tcp.ACK, 5,
                         options=tcp.TcpOptions(mss=1460, wscale=7, sack_permitted=True,
                                                timestamp=(1, 2))).encode(src, dst)
    packet = ipv4.Ipv4Packet(src, dst, 6, seg).encode()
    return [
        arp.request(b"\x02" * 6, src, dst).encode(),
        packet,
        seg,
        icmp.IcmpEcho(1, 1, b"abc").encode(),
        icmp.build_error(3, 3, packet),
    ]


SAMPLES = _valid_samples()


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    base = bytearray(draw(st.sampled_from(SAMPLES)))
    for _ in range(draw(st.integers(0, 4))):
        if base:
            i = draw(st.integers(0, len(base) - 1))
            base[i] = draw(st.integers(0, 255))
    return bytes(base[: draw(st.integers(0, len(base)))])


@settings(max_examples=1500)
@given(st.one_of(st.binary(max_size=120), mutated()))
def test_decoders_raise_only_parse_error(data: bytes) -> None:
    for decode in DECODERS:
        for buf in (data, memoryview(data)):
            try:
                decode(buf)  # type: ignore[arg-type]
            except ParseError as exc:
                assert exc.reason and " " not in exc.reason
