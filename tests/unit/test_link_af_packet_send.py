"""AfPacketDevice's gathered send paths give the kernel the same bytes as the
plain concatenation: send_gso (sendmsg of views, no copy of the frame) equals
``gso_tcp_vnet_header(frame) + _with_pseudo_sum(frame)``, through the socket
and through the send queue.  A datagram socketpair stands in for the packet
socket (no root needed: one sendmsg is one datagram, read back whole)."""

from __future__ import annotations

import re
import socket
import struct

import pytest
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


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=20000), st.integers(0, 10), st.binary(min_size=4, max_size=4),
       st.binary(min_size=4, max_size=4), st.integers(0, 0xFFFF), st.integers(1, 9000),
       st.booleans())
def test_send_gso_parts_equals_send_gso(payload: bytes, opt_words: int, src: bytes, dst: bytes,
                                        csum: int, gso: int, queued: bool) -> None:
    frame = _frame(payload, opt_words, src, dst, csum)
    dev, peer = _device()
    try:
        if queued:
            dev._txq.append(b"first")
        dev.send_gso(frame, gso)
        dev.send_gso_parts(frame[:34], memoryview(frame)[34:], gso)
        if queued:
            assert len(dev._txq) == 3 and dev._txq[1] == dev._txq[2]
        else:
            assert peer.recv(1 << 17) == peer.recv(1 << 17)
        c = dev.counters()
        assert c["tx_gso_frames"] == 2
        assert c["tx_bytes"] == (0 if queued else 2 * len(frame))
    finally:
        dev._txq.clear()
        dev.close()
        peer.close()


def test_send_gso_parts_unusual_input_goes_the_send_gso_way() -> None:
    frame = _frame(b"x" * 3000, 3, b"\x0a\0\0\x02", b"\x0a\0\0\x01", 0)
    dev, peer = _device()
    try:
        # head not ending at the TCP header, not IPv4, too short, bad gso size
        dev.send_gso_parts(frame[:30], frame[30:], 1000)
        assert peer.recv(1 << 17) == gso_tcp_vnet_header(frame, 1000) + _with_pseudo_sum(frame)
        for head, seg, gso in ((frame[:12] + b"\x86\xdd" + frame[14:34], frame[34:], 1000),
                               (frame[:34], frame[34:40], 1000), (frame[:34], frame[34:], 0)):
            try:
                dev.send_gso(head + seg, gso)
            except ValueError as exc:
                with pytest.raises(ValueError, match=re.escape(str(exc))):
                    dev.send_gso_parts(head, seg, gso)
            else:
                raise AssertionError("send_gso accepted it")
    finally:
        dev.close()
        peer.close()


def test_ip_layer_send_gso_parts_same_frame_as_joined() -> None:
    """IpLayer.send_gso hands transmit_gso_parts the pieces of the very frame
    it would give transmit_gso."""
    from ustack.net.ipv4 import IpLayer

    us, peer = b"\x0a\0\0\x02", b"\x0a\0\0\x01"
    joined: list[bytes] = []
    pieces: list[bytes] = []

    def layer() -> IpLayer:
        ip = IpLayer(address=us, prefixlen=24, mac=b"\x02" * 6, transmit=lambda f: None,
                     clock=lambda: 1.0)
        ip.arp.learn(peer, b"\x04" * 6, 0.5)
        ip.send(peer, 6, b"warm the prefix cache")
        return ip

    plain, parted = layer(), layer()
    plain.transmit_gso = lambda frame, gso: joined.append(frame)
    parted.transmit_gso = lambda frame, gso: pytest.fail("the joined path was taken")
    parted.transmit_gso_parts = lambda head, seg, gso: pieces.append(head + bytes(seg))
    segment = _frame(b"y" * 30000, 3, us, peer, 0)[34:]
    assert plain.send_gso(peer, 6, segment, 1448) and parted.send_gso(peer, 6, segment, 1448)
    assert pieces == joined and len(joined[0]) == 34 + len(segment)


SendResult = tuple[list[bytes], list[bytes], dict[str, int]]


def _send_many_run(frames: list[bytes], batched: bool, queued: bool,
                   vnet: bool) -> SendResult:
    from ustack.link import af_packet

    names = vars(af_packet)
    saved = names["_sendmany"]
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    ours.setblocking(False)
    theirs.setblocking(False)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)  # EAGAIN part-way
    dev = AfPacketDevice(ours, "test0", 1, b"\x02" * 6, 1500, vnet_hdr=vnet)
    try:
        if batched:
            try:
                from ustack.link import _batch
            except ImportError:
                pytest.skip("the C accelerator ustack.link._batch is not built "
                            "(no compiler at install)")
            names["_sendmany"] = _batch.sendmany
        else:
            names["_sendmany"] = None
        if queued:
            dev._txq.append(b"first")
        dev.send_many(frames)
        got = []
        while True:
            try:
                got.append(theirs.recv(1 << 17))
            except BlockingIOError:
                break
        c = dev.counters()
        keys = ("tx_frames", "tx_bytes", "tx_errors", "tx_queued", "tx_drops_queue_full")
        return (got, [bytes(f) for f in dev._txq], {k: c[k] for k in keys})
    finally:
        names["_sendmany"] = saved
        dev._txq.clear()
        dev.close()
        theirs.close()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([60, 1514, 9000, 70000]).flatmap(
           lambda n: st.binary(min_size=n, max_size=n)) | st.binary(max_size=200),
                max_size=40),
       st.booleans(), st.booleans())
def test_send_many_batched_equals_plain(frames: list[bytes], queued: bool, vnet: bool) -> None:
    """sendmmsg (ustack.link._batch) and the send() loop: same datagrams out,
    same queue (EAGAIN part-way: a 16 KiB send buffer nobody reads), same
    errors (70000-byte frames: EMSGSIZE), same counters."""
    try:
        from ustack.link import _batch  # noqa: F401
    except ImportError:
        pytest.skip("the C accelerator ustack.link._batch is not built (no compiler at install)")
    assert _send_many_run(frames, True, queued, vnet) == _send_many_run(frames, False, queued,
                                                                       vnet)


@pytest.mark.parametrize("vnet", [False, True])
def test_send_many_batched_takes_non_bytes_the_plain_way(vnet: bool) -> None:
    frames: list[bytes] = [b"a" * 100, bytearray(b"b" * 50), b"c" * 10]  # type: ignore[list-item]
    assert _send_many_run(frames, True, False, vnet) == _send_many_run(frames, False, False,
                                                                      vnet)
    lead = bytes(10) if vnet else b""
    assert _send_many_run(frames, True, False, vnet)[0] == [
        lead + b"a" * 100, lead + b"b" * 50, lead + b"c" * 10]


@pytest.mark.parametrize("frames", [
    [b"a" * 60, b"E" * 70000, b"b" * 60, b"c" * 1514],   # an error, then more frames
    [b"E" * 70000, b"E" * 70001, b"d" * 60],              # errors first
    [b"x" * 1514] * 20 + [b"E" * 70000] + [b"z" * 60] * 3,  # EAGAIN before the error
    [b"x" * 1514] * 5 + [b"E" * 70000] + [b"y" * 1514] * 10,  # error, then EAGAIN
    [],
])
@pytest.mark.parametrize("queued", [False, True])
@pytest.mark.parametrize("vnet", [False, True])
def test_send_many_batched_equals_plain_cases(frames: list[bytes], queued: bool,
                                              vnet: bool) -> None:
    """The same, with and without the vnet header (the C helper sends it as
    its own iovec; the queue and the errors get the joined frame)."""
    try:
        from ustack.link import _batch  # noqa: F401
    except ImportError:
        pytest.skip("the C accelerator ustack.link._batch is not built (no compiler at install)")
    fast = _send_many_run(frames, True, queued, vnet)
    assert fast == _send_many_run(frames, False, queued, vnet)
    lead = bytes(10) if vnet else b""
    if not queued and frames and frames[0] == b"a" * 60:
        assert fast[0] == [lead + b"a" * 60, lead + b"b" * 60, lead + b"c" * 1514]
        assert fast[2]["tx_errors"] == 1
    if vnet and not queued and fast[1]:  # EAGAIN part-way: queued whole, header first
        assert all(f[:10] == lead for f in fast[1])
