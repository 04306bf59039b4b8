"""The send MSS floor, Linux net.ipv4.tcp_min_snd_mss (catalogue 19c):
a peer MSS below 48 is raised to 48; the timestamp option is taken off after
the clamp (Linux __tcp_mtu_to_mss / tcp_mtu_to_mss)."""

from __future__ import annotations

import pytest

from ustack.tcp.config import TcpConfig
from ustack.tcp.connection import TcpConnection
from ustack.tcp.options import negotiate
from ustack.tcp.testing import Script
from ustack.wire.tcp import SYN, TcpOptions, TcpSegment

ISS = 10_000


def established(opts: TcpOptions, cfg: TcpConfig | None = None) -> Script:
    syn = TcpSegment(40000, 80, 0, 0, SYN, 65535, 0, opts)
    s = Script(TcpConnection.accept(syn, ISS, 0.0, cfg), ISS, 0)
    s.drain()
    ts = TcpOptions(timestamp=(101, s.conn._ts_val(0.0))) if s.conn.ts_ok else None
    s.inject(s.seg(".", 1, 1, options=ts))
    return s


@pytest.mark.parametrize(("peer", "floor", "mss"), [
    (40, 48, 48), (1, 48, 48), (48, 48, 48), (49, 48, 49), (536, 48, 536),
    (40, 64, 64), (100, 88, 100),
])
def test_negotiated_send_mss_has_the_floor(peer: int, floor: int, mss: int) -> None:
    n = negotiate(TcpConfig(tcp_min_snd_mss=floor), TcpOptions(mss=peer))
    assert n.send_mss == mss


def test_19c_mss_40_gets_48_byte_segments() -> None:
    s = established(TcpOptions(mss=40))
    assert s.conn.send_mss == 48
    s.conn.send(b"x" * 100, 0.0)
    assert s.lines(s.drain()) == [". 1:49(48) ack 1 win 65535", ". 49:97(48) ack 1 win 65535",
                                  "P. 97:101(4) ack 1 win 65535"]


def test_19c_timestamps_come_off_after_the_floor() -> None:
    s = established(TcpOptions(mss=40, timestamp=(100, 0)))
    assert s.conn.ts_ok and s.conn.send_mss == 36  # 48 - 12, as Linux


def test_the_floor_is_a_knob_named_after_the_sysctl() -> None:
    assert TcpConfig().tcp_min_snd_mss == 48
    s = established(TcpOptions(mss=40), TcpConfig(tcp_min_snd_mss=64))
    assert s.conn.send_mss == 64
