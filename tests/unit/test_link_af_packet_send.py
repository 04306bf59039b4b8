"""AfPacketDevice's gathered send paths give the kernel the same bytes as the
plain concatenation: send_gso (sendmsg of views, no copy of the frame) equals
``gso_tcp_vnet_header(frame) + _with_pseudo_sum(frame)``, through the socket
and through the send queue.  A datagram socketpair stands in for the packet
socket (no root needed: one sendmsg is one datagram, read back whole)."""

from __future__ import annotations

import socket
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from ustack.link.af_packet import AfPacketDevice, _with_pseudo_sum, gso_tcp_vnet_header


def _frame(payload: bytes, opt_words: int, src: bytes, dst: bytes, csum: int) -> bytes:
    hlen = 20 + 4 * opt_words
    tcp = struct.pack("!HHIIBBHHH", 40000, 80, 1, 2, (hlen // 4) << 4, 0x18, 500, csum, 0)
    tcp += b"\x01" * (4 * opt_words)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(payload), 1, 0x4000, 64, 6,
                     0, src, dst)
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip + tcp + payload


def _device() -> tuple[AfPacketDevice, socket.socket]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    ours.setblocking(False)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    dev = AfPacketDevice(ours, "test0", 1, b"\x02" * 6, 1500, vnet_hdr=True)
    return dev, theirs


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=20000), st.integers(0, 10), st.binary(min_size=4, max_size=4),
       st.binary(min_size=4, max_size=4), st.integers(0, 0xFFFF), st.integers(1, 9000))
def test_send_gso_gathers_the_plain_bytes(payload: bytes, opt_words: int, src: bytes,
                                          dst: bytes, csum: int, gso: int) -> None:
    frame = _frame(payload, opt_words, src, dst, csum)
    expected = gso_tcp_vnet_header(frame, gso) + _with_pseudo_sum(frame)
    dev, peer = _device()
    try:
        dev.send_gso(frame, gso)
        assert peer.recv(1 << 17) == expected
        # with frames waiting in the send queue the frame joins the queue, whole
        dev._txq.append(b"first")
        dev.send_gso(frame, gso)
        assert list(dev._txq) == [b"first", expected]
        c = dev.counters()
        assert (c["tx_gso_frames"], c["tx_frames"], c["tx_bytes"]) == (2, 1, len(frame))
    finally:
        dev._txq.clear()
        dev.close()
        peer.close()
