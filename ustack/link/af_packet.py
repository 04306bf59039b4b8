"""The AF_PACKET device: whole Ethernet frames on one Linux interface.

* ``SOCK_RAW`` packet socket bound to the interface with ``ETH_P_ALL``,
  non-blocking, registered with the running loop through ``add_reader``; each
  wakeup reads every pending frame (up to :attr:`AfPacketDevice.rx_budget`)
  and hands the batch to the receiver in one call.
* Receiving, three modes:
  - ``rx_ring`` (default): a ``PACKET_RX_RING`` (TPACKET_V2) shared with the
    kernel through mmap; no system call per frame (2-4x the frame rate of
    ``recvmsg``, see bench/link_rate.py).  ``tp_status`` is in each slot.
  - socket: ``recvmsg_into`` with ``PACKET_AUXDATA`` for ``tp_status``.
  - ``vnet_hdr``: every frame carries a ``virtio_net_hdr`` (DESIGN.md trap
    3), so ``send_gso`` can hand the kernel a TCP super-segment.
  Either way a frame is *trusted* (its L4 checksum needs no software check)
  when the kernel marks it ``TP_STATUS_CSUMNOTREADY`` or
  ``TP_STATUS_CSUM_VALID`` (``VIRTIO_NET_HDR_F_NEEDS_CSUM`` /
  ``_DATA_VALID`` with a vnet header), DESIGN.md trap 2.
* A classic BPF filter drops, in the kernel, everything but ARP and IPv4 to
  our MAC or broadcast, and our own transmissions (trap 6).
* ``send()`` never blocks: when the socket is full the frame waits in a
  bounded queue flushed by ``add_writer``; overflow is counted and dropped.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import fcntl
import mmap
import os
import socket
import struct
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

from ustack.link import bpf
from ustack.link.base import Device, Frame, ReceivedFrame, Receiver
from ustack.link.rxtime import SENT as _SENT
from ustack.link.rxtime import StampedBatch, to_monotonic
from ustack.wire.ethernet import parse_mac

Buffer = bytes | bytearray | memoryview


def _load_sendmany() -> Callable[..., tuple[int, int, int]] | None:
    """``ustack.link._batch.sendmany`` (sendmmsg) unless it is missing or
    USTACK_NO_ACCEL is set (then send_many loops over send())."""
    if os.environ.get("USTACK_NO_ACCEL", "") not in ("", "0"):
        return None
    try:
        from ustack.link import _batch
    except ImportError:
        return None
    return _batch.sendmany


_sendmany = _load_sendmany()


def _unwatch(remove: Callable[[int], object], fd: int) -> None:
    """``loop.remove_reader(fd)`` / ``remove_writer(fd)``, result ignored:
    typeshed says they return bool, uvloop's can return None, and compiled
    code checks a declared bool even when it is dropped (TypeError)."""
    remove(fd)


def _batch_function(name: str) -> Any:
    """``ustack.link._batch.<name>``, or None when the C helper is missing,
    is an older build without that function, or USTACK_NO_ACCEL is set:
    the caller then takes its Python path, with the same result."""
    if os.environ.get("USTACK_NO_ACCEL", "") not in ("", "0"):
        return None
    try:
        from ustack.link import _batch
    except ImportError:
        return None
    return getattr(_batch, name, None)


def _load_sendgather() -> Callable[[int, list[tuple[Buffer, ...]], int],
                                   tuple[int, int, int, list[float]]] | None:
    """``sendgather`` (one gathered sendmsg per frame, each stamped); without
    it send_round calls send / send_gso_parts per frame."""
    fn: Callable[[int, list[tuple[Buffer, ...]], int],
                 tuple[int, int, int, list[float]]] | None = _batch_function("sendgather")
    return fn


_sendgather = _load_sendgather()


def _load_sendround() -> Callable[[int, list[Any], int],
                                  tuple[int, int, int, list[float], int] | None] | None:
    """``sendround`` (send_round's whole loop in C: the virtio_net_hdr and
    pseudo-header sum of each super-segment built there); without it
    sendgather."""
    fn: Callable[[int, list[Any], int],
                 tuple[int, int, int, list[float], int] | None] | None = _batch_function(
        "sendround")
    return fn


_sendround = _load_sendround()


def _load_ring_read() -> Callable[[mmap.mmap, int, int, int, int, int, int,
                                   list[ReceivedFrame], list[float], float, float],
                                  tuple[int, int, int, int, int]] | None:
    """``ring_read`` (the receive ring's slot loop in C); without it
    ``_on_readable_ring`` reads every slot itself, with the same result."""
    fn: Callable[[mmap.mmap, int, int, int, int, int, int, list[ReceivedFrame],
                  list[float], float, float],
                 tuple[int, int, int, int, int]] | None = _batch_function("ring_read")
    return fn


_ring_read = _load_ring_read()

#: one TCP super-segment of :meth:`AfPacketDevice.send_round`: the Ethernet
#: and IPv4 headers, the TCP header (checksum field 0), the payload, gso_size
GsoFrame = tuple[bytes, bytes, Buffer, int]

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

ETH_P_ALL: Final = 0x0003
SOL_PACKET: Final = 263
PACKET_ADD_MEMBERSHIP: Final = 1
PACKET_MR_PROMISC: Final = 1
PACKET_STATISTICS: Final = 6
PACKET_RX_RING: Final = 5
PACKET_TX_RING: Final = 13
#: a TX ring slot: tpacket2_hdr, then the frame at TX_DATA (TPACKET2_HDRLEN -
#: sizeof(sockaddr_ll)), up to TX_SLOT - TX_DATA bytes
TX_SLOT: Final = 256
TX_DATA: Final = 32
TP_STATUS_AVAILABLE: Final = 0
TP_STATUS_SEND_REQUEST: Final = 1
TP_STATUS_WRONG_FORMAT: Final = 4
PACKET_AUXDATA: Final = 8
PACKET_VERSION: Final = 10
PACKET_VNET_HDR: Final = 15
PACKET_IGNORE_OUTGOING: Final = 23
PACKET_OUTGOING: Final = 4

SO_SNDBUFFORCE: Final = 32
SO_RCVBUFFORCE: Final = 33

SIOCGIFMTU: Final = 0x8921
SIOCGIFHWADDR: Final = 0x8927

TPACKET_V2: Final = 1
TP_STATUS_KERNEL: Final = 0
TP_STATUS_USER: Final = 0x1
TP_STATUS_COPY: Final = 0x2
PACKET_COPY_THRESH: Final = 7
#: tpacket2_hdr (32 bytes) then sockaddr_ll; sll_pkttype sits at 32 + 10
_SLOT_PKTTYPE: Final = 42
#: frame data starts at most this far into a slot (TPACKET_ALIGN(52 + 16) + slack)
_SLOT_OVERHEAD: Final = 96
_RING_BLOCK: Final = 1 << 16

VIRTIO_NET_HDR_F_NEEDS_CSUM: Final = 1
VIRTIO_NET_HDR_F_DATA_VALID: Final = 2
VIRTIO_NET_HDR_GSO_NONE: Final = 0
VIRTIO_NET_HDR_GSO_TCPV4: Final = 1
#: struct virtio_net_hdr: flags, gso_type, hdr_len, gso_size, csum_start, csum_offset
VNET_HDR: Final = struct.Struct("=BBHHHH")
VNET_HDR_LEN: Final = VNET_HDR.size
_VNET_NONE: Final = bytes(VNET_HDR_LEN)
_VNET_TRUSTED: Final = VIRTIO_NET_HDR_F_NEEDS_CSUM | VIRTIO_NET_HDR_F_DATA_VALID

TP_STATUS_CSUMNOTREADY: Final = 0x8
TP_STATUS_CSUM_VALID: Final = 0x80
#: both bits sit in the first (little-endian) byte of tpacket_auxdata.tp_status
_TRUSTED_BITS: Final = TP_STATUS_CSUMNOTREADY | TP_STATUS_CSUM_VALID

#: receive buffer: a GRO/GSO frame can be 64 KiB plus headers
RX_BUFSIZE: Final = 65536 + 64
#: room for one cmsg with struct tpacket_auxdata (20 bytes)
_ANCBUFSIZE: Final = socket.CMSG_SPACE(20)

_MSG_TRUNC: Final = socket.MSG_TRUNC
#: tp_len, tp_snaplen, tp_mac of tpacket2_hdr (after the 4-byte tp_status)
_SLOT_HDR: Final = struct.Struct("<IIH")
#: the same plus tp_net, tp_sec, tp_nsec: the kernel's receive timestamp
#: (CLOCK_REALTIME, ustack.link.rxtime)
#: tpacket2_hdr from tp_status: status, len, snaplen, mac, net, sec, nsec
_SLOT_STATUS_HDR_TS: Final = struct.Struct("<IIIHHII")
#: its unpack_from and the two clocks, bound once (compiled code calls them
#: without a lookup per batch)
_SLOT_UNPACK_FROM: Final = _SLOT_STATUS_HDR_TS.unpack_from
_MONOTONIC: Final = time.monotonic
_REALTIME: Final = time.time
_ZERO4: Final = bytes(4)


def as_mac(mac: bytes | str) -> bytes:
    """A MAC given as 6 bytes or as text (``wire.ethernet.parse_mac``) → 6 bytes."""
    if isinstance(mac, str):
        return parse_mac(mac)
    if len(mac) != 6:
        raise ValueError(f"invalid MAC address {mac!r}: need 6 bytes")
    return bytes(mac)


def interface_info(iface: str) -> tuple[int, bytes, int]:
    """(ifindex, MAC, MTU) of ``iface`` in the calling thread's namespace.

    Uses ioctls on a socket (not /sys, which shows the namespace /sys was
    mounted in, not the thread's).  OSError(ENODEV) names a missing interface.
    """
    try:
        ifindex = socket.if_nametoindex(iface)
    except (OSError, ValueError):
        raise OSError(
            errno.ENODEV, f"no network interface named {iface!r} in this network namespace"
        ) from None
    name = iface.encode()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        hw = fcntl.ioctl(probe.fileno(), SIOCGIFHWADDR, struct.pack("16s16x", name))
        mtu_req = fcntl.ioctl(probe.fileno(), SIOCGIFMTU, struct.pack("16s16x", name))
    mac = hw[18:24]
    (mtu,) = struct.unpack_from("i", mtu_req, 16)
    return ifindex, mac, mtu


def _open_packet_socket() -> socket.socket:
    try:
        # protocol 0: receives nothing until bind(), so no frame slips in
        # before the filter is attached
        return socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    except PermissionError:
        raise PermissionError(
            errno.EPERM,
            "opening an AF_PACKET socket needs CAP_NET_RAW: run as root "
            "(e.g. sudo ip netns exec NS ...) or grant the capability "
            "(setcap cap_net_raw+ep on the Python binary)",
        ) from None


class AfPacketDevice(Device):
    """A Device on a Linux interface through an AF_PACKET socket.

    Open with :meth:`open`; ``counters()`` gives frames/bytes in and out and
    drops by reason.
    """

    #: most frames read per wakeup (keeps a flood from starving the loop)
    rx_budget = 4096
    #: hand ring batches on with each frame's kernel receive time
    #: (ustack.link.rxtime: RTT samples from arrival, not from our wake-up)
    rx_timestamps = True

    def __init__(
        self,
        sock: socket.socket,
        name: str,
        ifindex: int,
        mac: bytes,
        mtu: int,
        *,
        max_send_queue: int = 8192,
        ring: tuple[mmap.mmap, int, int] | None = None,
        vnet_hdr: bool = False,
        tx_ring_slots: int = 0,
        tx_sock: socket.socket | None = None,
    ) -> None:
        self.name = name
        self.ifindex = ifindex
        self.mac = mac
        self.mtu = mtu
        self.supports_gso = vnet_hdr
        self.vnet_hdr = vnet_hdr
        self._tx_overhead = VNET_HDR_LEN if vnet_hdr else 0
        self._sock = sock
        self._fd = sock.fileno()
        #: the socket frames leave by: ``sock`` itself, or (a vnet device
        #: with a receive ring) a second one with the vnet header that
        #: receives nothing, so ``sock`` reads frames without that header
        self._tx = tx_sock if tx_sock is not None else sock
        self._tx_fd = self._tx.fileno()
        #: bytes before the frame in a socket read (a vnet header, or none)
        self._rx_overhead = VNET_HDR_LEN if vnet_hdr and tx_sock is None else 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._receiver: Receiver | None = None
        self._closed = False
        self._rx_buf = bytearray(RX_BUFSIZE + VNET_HDR_LEN)
        self._rx_bufs = [self._rx_buf]
        self._rx_view = memoryview(self._rx_buf)
        self._ring: mmap.mmap | None = None
        self._ring_slot = 0
        self._ring_slots = 0
        self._ring_head = 0
        if ring is not None:
            self._ring, self._ring_slot, self._ring_slots = ring
        #: PACKET_TX_RING slots (after the receive ring in the same mmap)
        self._tx_slots = tx_ring_slots
        self._tx_head = 0
        #: numpy views of the rings for :meth:`read_fixed` / :meth:`send_fixed`
        self._np: _RingArrays | None = None
        #: the owner's callback when attached with :meth:`attach_polled`
        self._polled: Callable[[], None] | None = None
        self.rx_mode = "ring" if ring is not None else "vnet" if vnet_hdr else "socket"
        self._txq: collections.deque[Buffer] = collections.deque()
        self._max_send_queue = max_send_queue
        #: :meth:`send_round`'s C helper (None: one send call per frame; the
        #: differential tests switch it off per device)
        self.gather: Callable[[int, list[tuple[Buffer, ...]], int],
                              tuple[int, int, int, list[float]]] | None = _sendgather
        #: :meth:`send_round`'s loop in C (frames and super-segments as they
        #: come, no pieces built here); None: :attr:`gather` with pieces
        self.round_send: Callable[[int, list[Any], int],
                                  tuple[int, int, int, list[float], int] | None] | None = \
            _sendround
        #: :meth:`_on_readable_ring`'s C slot loop (None: the Python loop; the
        #: differential tests switch it off per device)
        self.ring_reader: Callable[[mmap.mmap, int, int, int, int, int, int,
                                    list[ReceivedFrame], list[float], float, float],
                                   tuple[int, int, int, int, int]] | None = _ring_read
        self._writer_armed = False
        self._retry_handle: asyncio.TimerHandle | None = None
        #: :meth:`_deliver`'s counts (counters() adds them to ``_stats``)
        self._rx_frames = 0
        self._rx_bytes = 0
        self._rx_wakeups = 0
        self._stats: dict[str, int] = dict.fromkeys(
            (
                "rx_frames",
                "rx_bytes",
                "rx_wakeups",
                "rx_outgoing_ignored",
                "rx_truncated",
                "rx_errors",
                "rx_kernel_drops",
                "tx_frames",
                "tx_bytes",
                "tx_gso_frames",
                "tx_ring_frames",
                "tx_ring_busy",
                "tx_queued",
                "tx_drops_queue_full",
                "tx_errors",
            ),
            0,
        )

    # ------------------------------------------------------------------ open
    @classmethod
    def open(
        cls,
        iface: str,
        *,
        mac: bytes | str | None = None,
        filter: bool = True,
        rx_ring: bool = True,
        ring_frames: int = 4096,
        vnet_hdr: bool = False,
        rcvbuf: int = 8 << 20,
        sndbuf: int = 4 << 20,
        max_send_queue: int = 8192,
        tcp_syn: str = "all",
        ring_slot: int | None = None,
        tx_ring_frames: int = 0,
    ) -> AfPacketDevice:
        """Open ``iface`` in the calling thread's network namespace.

        ``mac`` overrides the interface's own MAC (the filter then accepts
        that MAC and the interface goes promiscuous).  ``filter=False`` skips
        the BPF filter (every frame on the interface reaches Python).
        ``rx_ring`` receives through an mmap ring of ``ring_frames`` slots
        (frames bigger than a slot, such as TSO super-frames from a veth peer,
        are read from the socket: TP_STATUS_COPY).  ``vnet_hdr=True`` enables
        offloads (``send_gso``); with ``rx_ring`` too, receiving still uses
        the ring (``rx_mode == "ring"``), else ``rx_mode == "vnet"``.
        ``tcp_syn`` splits the traffic between two devices on one interface
        (:func:`bpf.split_tcp_syn`): ``"exclude"`` receives everything but
        pure TCP SYNs, ``"only"`` nothing else (the stack's SYN channel).
        ``ring_slot`` sets the ring's slot size (a power of two; default:
        room for an MTU-sized frame): the SYN channel uses small slots, so a
        deep ring costs little memory.  ``tx_ring_frames`` (with ``rx_ring``)
        adds a PACKET_TX_RING of that many 256-byte slots for
        :meth:`send_fixed`: many small frames, one system call.
        Raises PermissionError without CAP_NET_RAW and OSError(ENODEV) for
        an unknown interface.
        """
        if tcp_syn not in ("all", "exclude", "only"):
            raise ValueError(f"tcp_syn must be 'all', 'exclude' or 'only', not {tcp_syn!r}")
        sock = _open_packet_socket()
        tx_sock: socket.socket | None = None
        try:
            ifindex, if_mac, mtu = interface_info(iface)
            our_mac = if_mac if mac is None else as_mac(mac)
            sock.setblocking(False)
            with contextlib.suppress(OSError):  # Linux >= 4.20; the filter does it too
                sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
            _set_buffer(sock, socket.SO_RCVBUF, SO_RCVBUFFORCE, rcvbuf)
            _set_buffer(sock, socket.SO_SNDBUF, SO_SNDBUFFORCE, sndbuf)
            if filter:
                bpf.attach(sock, bpf.ethernet_filter(our_mac) if tcp_syn == "all"
                           else bpf.split_tcp_syn(our_mac, syn_only=tcp_syn == "only"))
            ring = None
            split = vnet_hdr and rx_ring and sys.byteorder == "little"
            if split:
                # two sockets: this one receives through the ring without the
                # vnet header (a frame bigger than a slot is then read from
                # the socket as exactly its bytes, no copy to strip the
                # header), the other sends with it (_open_vnet_sender)
                tx_sock = _open_vnet_sender(iface, sndbuf)
            elif vnet_hdr:  # before the ring: the kernel refuses it afterwards
                sock.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
            if rx_ring and sys.byteorder == "little":
                ring = _setup_ring(sock, mtu, ring_frames, ring_slot,
                                   0 if vnet_hdr else tx_ring_frames)
            if ring is None and not vnet_hdr:
                sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
            sock.bind((iface, ETH_P_ALL))
            if our_mac != if_mac:
                mreq = struct.pack("iHH8s", ifindex, PACKET_MR_PROMISC, 0, b"")
                sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
        except BaseException:
            sock.close()
            if tx_sock is not None:
                tx_sock.close()
            raise
        return cls(sock, iface, ifindex, our_mac, mtu, max_send_queue=max_send_queue,
                   ring=ring[:3] if ring is not None else None, vnet_hdr=vnet_hdr,
                   tx_ring_slots=ring[3] if ring is not None else 0, tx_sock=tx_sock)

    # --------------------------------------------------------------- receive
    def attach(self, loop: asyncio.AbstractEventLoop, receiver: Receiver) -> None:
        if self._closed:
            raise RuntimeError(f"device {self.name} is closed")
        if self._loop is not None:
            _unwatch(self._loop.remove_reader, self._fd)
        self._loop = loop
        self._receiver = receiver
        loop.add_reader(self._fd, self._handler())
        if self._txq:
            self._arm_writer()

    def attach_polled(self, loop: asyncio.AbstractEventLoop,
                      on_readable: Callable[[], None]) -> None:
        """Call ``on_readable()`` whenever the socket is readable; it reads
        the frames itself (:meth:`read_fixed`, :meth:`poll`)."""
        self._polled = on_readable
        self.attach(loop, lambda frames: None)

    def poll(self) -> None:
        """Read pending frames now and hand them to the receiver, as a
        readable wakeup would (a no-op when none are pending)."""
        if not self._closed and self._receiver is not None:
            self._handler()()

    def _handler(self) -> Callable[[], None]:
        polled = self._polled
        if polled is not None:
            return polled
        return {"ring": self._on_readable_ring, "vnet": self._on_readable_vnet,
                "socket": self._on_readable_socket}[self.rx_mode]

    def _on_readable(self) -> None:
        """Read every pending frame and hand them to the receiver."""
        self._handler()()

    def _on_readable_ring(self) -> None:
        now = _MONOTONIC()
        # rxtime.realtime_offset, inlined
        self._read_ring(now, _REALTIME() - _MONOTONIC())

    def _read_ring(self, now: float, offset: float) -> None:
        """The ring's ready slots, up to ``rx_budget``, to the receiver;
        ``now`` and ``offset``: the batch's clock (ustack.link.rxtime)."""
        ring = self._ring
        if ring is None:
            return
        slot_size = self._ring_slot
        nslots = self._ring_slots
        head = self._ring_head
        # each frame's arrival time (ustack.link.rxtime): the slot's stamp on
        # the monotonic clock, one offset per batch, never after `now`; the
        # batch is built as the StampedBatch it goes out as (list.__new__:
        # without its interpreted __init__ and a copy)
        batch: StampedBatch | None = None
        frames: list[ReceivedFrame] = []
        if self.rx_timestamps:
            batch = list.__new__(StampedBatch)
            frames = batch
        times: list[float] = []
        nbytes = 0
        skipped = 0
        truncated = 0
        budget = self.rx_budget
        reader = self.ring_reader
        while budget:
            if reader is not None:
                # the C loop takes the slots the loop below would take the
                # same way, and stops before one it leaves to it (stop)
                head, taken, got, skip, stop = reader(ring, slot_size, nslots, head, budget,
                                                      _SLOT_PKTTYPE, _TRUSTED_BITS, frames,
                                                      times, offset, now)
                budget -= taken
                nbytes += got
                skipped += skip
                if not stop or not budget:
                    break
            off = head * slot_size
            # the slot header in one unpack, tp_status first (the rest is
            # only used once the status says the slot is ours)
            status, tp_len, snaplen, mac_off, _net, sec, nsec = _SLOT_UNPACK_FROM(ring, off)
            if not status & TP_STATUS_USER:
                break
            budget -= 1
            if snaplen != tp_len:
                # a frame bigger than a slot (a GSO/GRO super-frame from a veth
                # peer with TSO): PACKET_COPY_THRESH queued the whole frame on
                # the socket too (TP_STATUS_COPY); read it from there
                full = self._recv_copy() if status & TP_STATUS_COPY else None
                if full is None:
                    truncated += 1
                else:
                    frames.append((full, bool(status & _TRUSTED_BITS)))
                    times.append(to_monotonic(sec, nsec, offset, now))
                    nbytes += len(full)
            elif ring[off + _SLOT_PKTTYPE] == PACKET_OUTGOING:
                skipped += 1
            else:
                start = off + mac_off
                frames.append((ring[start : start + snaplen], status & _TRUSTED_BITS != 0))
                t = sec + nsec * 1e-9 - offset  # rxtime.to_monotonic, inlined
                times.append(t if t < now else now)
                nbytes += snaplen
            ring[off : off + 4] = _ZERO4  # hand the slot back (TP_STATUS_KERNEL)
            head += 1
            if head == nslots:
                head = 0
        self._ring_head = head
        if not frames and not skipped and not truncated:
            # woken with nothing in the ring: a pending socket error (ENETDOWN
            # when the interface goes down or away) keeps poll() reporting
            # readiness until read; read it here or the loop would spin
            self._consume_socket_error()
        if batch is not None:
            batch.times = times
        self._deliver(frames, nbytes, skipped, truncated)

    def ring_state(self) -> tuple[mmap.mmap, int, int, int, int, int] | None:
        """For a reader that takes receive-ring slots in place
        (``ustack.driver._synbatch.ring_shed``): (ring, slot size, slots,
        head, offset of sll_pkttype in a slot, the tp_status bits that mean
        a trusted checksum); None without the ring.  The reader hands the
        slots it takes back to the kernel and reports them (:meth:`ring_taken`)."""
        ring = self._ring
        if ring is None or self._closed:
            return None
        return (ring, self._ring_slot, self._ring_slots, self._ring_head, _SLOT_PKTTYPE,
                _TRUSTED_BITS)

    def ring_taken(self, slots: int, nbytes: int) -> None:
        """Such a reader took ``slots`` frames (``nbytes`` bytes) from the
        head on: counted as :meth:`read_fixed` counts them."""
        stats = self._stats
        stats["rx_wakeups"] += 1
        if slots == 0:
            self._consume_socket_error()
            return
        self._ring_head = (self._ring_head + slots) % self._ring_slots
        stats["rx_frames"] += slots
        stats["rx_bytes"] += nbytes

    def read_fixed(self, width: int, budget: int) -> tuple[
            NDArray[np.uint8], NDArray[np.bool_], list[ReceivedFrame]]:
        """Up to ``budget`` ring frames in one go, without Python work per
        frame (needs numpy and ``rx_mode == "ring"``): those exactly
        ``width`` bytes long as the rows of an ``(n, width)`` array with
        their trusted flags, every other frame as a ReceivedFrame (in ring
        order among themselves).  Counts like the ring's reader; the caller
        hands the frames on itself (nothing goes to the attached receiver).
        Touches only the slots it takes (a binary search over the status
        words finds the ready ones: the kernel fills slots in ring order).
        """
        import numpy as np

        arrays = self._np
        if arrays is None:
            if self._ring is None:
                raise RuntimeError("read_fixed needs the receive ring (rx_mode 'ring')")
            arrays = self._np = _RingArrays(self._ring, self._ring_slot, self._ring_slots,
                                            self._tx_slots)
        self._stats["rx_wakeups"] += 1
        rows, trusted, others, n = self._read_span(arrays, width, budget)
        if n == 0:
            self._consume_socket_error()
        elif self._ring_head == 0 and n < budget:  # went up to the ring's end: go on
            more = self._read_span(arrays, width, budget - n)
            if more[3]:
                rows = np.concatenate((rows, more[0]))
                trusted = np.concatenate((trusted, more[1]))
                others += more[2]
        return rows, trusted, others

    def _read_span(self, arrays: _RingArrays, width: int, budget: int) -> tuple[
            NDArray[np.uint8], NDArray[np.bool_], list[ReceivedFrame], int]:
        """:meth:`read_fixed` over the ready slots from the head on, up to
        ``budget`` and at most up to the ring's end; also the slots taken."""
        import numpy as np

        nslots = self._ring_slots
        head = self._ring_head
        stats = self._stats
        # one contiguous span of slots, up to the ring's end: slices, no
        # index arrays; the kernel fills slots in ring order, so a binary
        # search bounds the ready ones before anything is gathered (the
        # status words of a whole 16384-slot ring cost ~0.7 ms to scan)
        status_words = arrays.status
        span = min(budget, nslots - head)
        n = 0
        if span > 0 and status_words[head] & TP_STATUS_USER:
            lo, hi = 1, span
            while lo < hi:
                mid = (lo + hi) >> 1
                if status_words[head + mid] & TP_STATUS_USER:
                    lo = mid + 1
                else:
                    hi = mid
            ready = status_words[head:head + lo] & TP_STATUS_USER != 0
            n = lo if ready.all() else int(ready.argmin())
        if n == 0:
            return arrays.empty(width), np.zeros(0, dtype=bool), [], 0
        end = head + n
        hdr = arrays.header[head:end]  # tp_status, tp_len, tp_snaplen, tp_mac | tp_net << 16
        status = hdr[:, 0]
        slots = arrays.flat.reshape(nslots, self._ring_slot)
        outgoing = slots[head:end, _SLOT_PKTTYPE] == PACKET_OUTGOING
        whole = hdr[:, 1] == hdr[:, 2]
        fixed = whole & (hdr[:, 1] == width) & ~outgoing
        every = bool(fixed.all())
        macs = hdr[:, 3] & 0xFFFF if every else hdr[fixed, 3] & 0xFFFF
        if len(macs) and macs.min() == macs.max():  # the usual case: one frame offset
            m = int(macs[0])
            rows = slots[head:end, m:m + width] if every else slots[head:end][fixed, m:m + width]
            rows = np.ascontiguousarray(rows)  # a copy: the slots go back to the kernel
        else:
            starts = (np.flatnonzero(fixed) + head) * self._ring_slot + macs
            rows = arrays.flat[starts[:, None] + np.arange(width)]
        trusted = status & _TRUSTED_BITS != 0
        if not every:
            trusted = trusted[fixed]
        others: list[ReceivedFrame] = []
        truncated = 0
        nbytes = len(rows) * width
        ring = self._ring
        assert ring is not None
        if not every:
            for i in np.flatnonzero(~fixed & ~outgoing).tolist():
                slot = head + i
                off = slot * self._ring_slot
                st, tp_len, snaplen, mac = (int(v) for v in hdr[i])
                if snaplen != tp_len:
                    full = self._recv_copy() if st & TP_STATUS_COPY else None
                    if full is None:
                        truncated += 1
                        continue
                    others.append((full, bool(st & _TRUSTED_BITS)))
                    nbytes += len(full)
                else:
                    start = off + (mac & 0xFFFF)
                    others.append((ring[start:start + snaplen], bool(st & _TRUSTED_BITS)))
                    nbytes += snaplen
        status_words[head:end] = TP_STATUS_KERNEL  # hand the slots back
        self._ring_head = end % nslots
        skipped = 0 if every else int(outgoing.sum())
        if skipped:
            stats["rx_outgoing_ignored"] += skipped
        if truncated:
            stats["rx_truncated"] += truncated
        stats["rx_frames"] += len(rows) + len(others)
        stats["rx_bytes"] += nbytes
        return rows, trusted, others, n

    def _consume_socket_error(self) -> None:
        try:
            err = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        except OSError:
            err = -1
        if err:
            self._stats["rx_errors"] += 1
            self._rearm_reader()

    def _rearm_reader(self) -> None:
        """Register the reader again after a socket error: libuv (uvloop)
        stops a poll handle that reported POLLERR, so without this no frame
        would be read after the link goes down and up again."""
        loop = self._loop
        if loop is None or self._closed:
            return
        loop.call_soon(self._reregister)

    def _reregister(self) -> None:
        loop = self._loop
        if loop is None or self._closed:
            return
        _unwatch(loop.remove_reader, self._fd)
        loop.add_reader(self._fd, self._handler())

    def _recv_copy(self) -> bytes | None:
        """The full copy of a ring frame flagged TP_STATUS_COPY."""
        skip = self._rx_overhead
        try:
            if not skip:  # the frame's bytes as they are: one copy (the kernel's)
                return self._sock.recv(RX_BUFSIZE)
            n = self._sock.recv_into(self._rx_buf)
        except OSError:
            return None
        return self._rx_view[skip:n].tobytes()  # without the vnet header

    def _on_readable_socket(self) -> None:
        # recvmsg_into a preallocated buffer + one exact-size copy
        recvmsg_into = self._sock.recvmsg_into
        bufs = self._rx_bufs
        view = self._rx_view
        frames: list[ReceivedFrame] = []
        append = frames.append
        nbytes = 0
        skipped = 0
        truncated = 0
        budget = self.rx_budget
        while budget:
            budget -= 1
            try:
                n, anc, flags, addr = recvmsg_into(bufs, _ANCBUFSIZE)
            except BlockingIOError:
                break
            except InterruptedError:
                continue
            except OSError:
                self._stats["rx_errors"] += 1
                self._rearm_reader()
                break
            if addr[2] == PACKET_OUTGOING:
                skipped += 1
                continue
            if flags & _MSG_TRUNC:
                truncated += 1
                continue
            # anc == [(SOL_PACKET, PACKET_AUXDATA, tpacket_auxdata)]
            append((view[:n].tobytes(), bool(anc and anc[0][2][0] & _TRUSTED_BITS)))
            nbytes += n
        self._deliver(frames, nbytes, skipped, truncated)

    def _on_readable_vnet(self) -> None:
        recvmsg_into = self._sock.recvmsg_into
        bufs = self._rx_bufs
        buf = self._rx_buf
        view = self._rx_view
        frames: list[ReceivedFrame] = []
        append = frames.append
        nbytes = 0
        skipped = 0
        truncated = 0
        budget = self.rx_budget
        while budget:
            budget -= 1
            try:
                n, _anc, flags, addr = recvmsg_into(bufs)
            except BlockingIOError:
                break
            except InterruptedError:
                continue
            except OSError:
                self._stats["rx_errors"] += 1
                self._rearm_reader()
                break
            if addr[2] == PACKET_OUTGOING:
                skipped += 1
                continue
            if flags & _MSG_TRUNC or n < VNET_HDR_LEN:
                truncated += 1
                continue
            # virtio_net_hdr.flags: NEEDS_CSUM (partial) or DATA_VALID
            append((view[VNET_HDR_LEN:n].tobytes(), bool(buf[0] & _VNET_TRUSTED)))
            nbytes += n - VNET_HDR_LEN
        self._deliver(frames, nbytes, skipped, truncated)

    def _deliver(self, frames: list[ReceivedFrame], nbytes: int, skipped: int,
                 truncated: int) -> None:
        # (the three counters of every wakeup as ints: counters() adds them
        # to the dict's; three string-keyed dict updates per batch before)
        self._rx_wakeups += 1
        if skipped:
            self._stats["rx_outgoing_ignored"] += skipped
        if truncated:
            self._stats["rx_truncated"] += truncated
        if frames:
            self._rx_frames += len(frames)
            self._rx_bytes += nbytes
            receiver = self._receiver
            if receiver is not None:
                receiver(frames)

    # ------------------------------------------------------------------ send
    def _send_via_ring(self, frame: Buffer) -> None:
        import numpy as np

        if len(frame) > TX_SLOT - TX_DATA:
            self._stats["tx_errors"] += 1
            return
        self.send_fixed(np.frombuffer(bytes(frame), dtype=np.uint8).reshape(1, -1))

    def send(self, frame: Frame) -> None:
        if self._tx_slots:
            self._send_via_ring(frame)
            return
        if self.vnet_hdr:
            frame = _VNET_NONE + frame
        if self._txq:
            self._enqueue(frame)
            return
        if _SENT.t is None:  # the send time of the TCP driver's round (rxtime)
            _SENT.t = time.monotonic()
        try:
            self._tx.send(frame)
        except (BlockingIOError, InterruptedError):
            self._enqueue(frame)
            self._arm_writer()
        except OSError as exc:
            self._send_error(frame, exc)
        else:
            stats = self._stats
            stats["tx_frames"] += 1
            stats["tx_bytes"] += len(frame) - self._tx_overhead

    def send_many(self, frames: Sequence[Buffer]) -> None:
        if self._tx_slots:  # every send of a TX-ring socket goes through the ring
            for frame in frames:
                self._send_via_ring(frame)
            return
        if _sendmany is not None and not self._txq:
            if _SENT.t is None:  # the send time of the TCP driver's round (rxtime)
                _SENT.t = _MONOTONIC()
            # (with a vnet header: the C helper sends it as the first iovec
            # of each frame, the frames as given, no joined copies)
            self._send_many_batched(frames if type(frames) is list else list(frames),
                                    _VNET_NONE if self.vnet_hdr else b"")
            return
        if self.vnet_hdr:
            frames = [_VNET_NONE + f for f in frames]
        if self._txq:
            for frame in frames:
                self._enqueue(frame)
            return
        if _SENT.t is None:  # the send time of the TCP driver's round (rxtime)
            _SENT.t = time.monotonic()
        self._send_many_plain(frames)

    def _send_many_batched(self, frames: list[Buffer], lead: bytes = b"") -> None:
        """:meth:`_send_many_plain` of ``lead + frame`` for each frame with
        sendmmsg (``ustack.link._batch``; the lead, a vnet header, sent as
        its own iovec): the same frames sent, queued, retried and counted,
        fewer calls and no joined copies."""
        assert _sendmany is not None
        fd = self._tx_fd
        n = len(frames)
        i = 0
        sent = 0
        nbytes = 0
        while i < n:
            try:
                k, size, err = (_sendmany(fd, frames, i, lead) if lead
                                else _sendmany(fd, frames, i))
            except TypeError:  # not all bytes: the plain loop takes the rest
                self._send_many_plain([lead + f for f in frames[i:]] if lead else frames[i:])
                break
            sent += k
            nbytes += size
            i += k
            if not err:
                break
            if err in (errno.EAGAIN, errno.EWOULDBLOCK):
                for rest in frames[i:]:
                    self._enqueue(lead + rest if lead else rest)
                self._arm_writer()
                break
            self._send_error(lead + frames[i] if lead else frames[i],
                             OSError(err, os.strerror(err)))
            i += 1
            if self._txq:
                for rest in frames[i:]:
                    self._enqueue(lead + rest if lead else rest)
                break
        self._stats["tx_frames"] += sent
        self._stats["tx_bytes"] += nbytes - sent * self._tx_overhead

    def _send_many_plain(self, frames: Sequence[Buffer]) -> None:
        send = self._tx.send
        sent = 0
        nbytes = 0
        for i, frame in enumerate(frames):
            try:
                send(frame)
            except (BlockingIOError, InterruptedError):
                for rest in frames[i:]:
                    self._enqueue(rest)
                self._arm_writer()
                break
            except OSError as exc:
                self._send_error(frame, exc)
                if self._txq:
                    for rest in frames[i + 1 :]:
                        self._enqueue(rest)
                    break
            else:
                sent += 1
                nbytes += len(frame)
        self._stats["tx_frames"] += sent
        self._stats["tx_bytes"] += nbytes - sent * self._tx_overhead

    def send_fixed(self, rows: NDArray[np.uint8]) -> None:
        """Send the rows of an ``(n, width)`` array as ``n`` frames of
        ``width`` bytes: through the TX ring in one system call when the
        device has one (``tx_ring_frames``), else with :meth:`send_many`.
        Rows the ring has no free slot for are dropped and counted
        (``tx_ring_busy``), as a full queue would drop them."""
        n, width = rows.shape
        arrays = self._np
        if arrays is None and self._tx_slots and self._ring is not None:
            arrays = self._np = _RingArrays(self._ring, self._ring_slot, self._ring_slots,
                                            self._tx_slots)
        if (arrays is None or arrays.tx is None or self._txq or self.vnet_hdr
                or width > TX_SLOT - TX_DATA or n == 0):
            data = rows.tobytes()
            self.send_many([data[i:i + width] for i in range(0, n * width, width)])
            return
        import numpy as np

        nslots = self._tx_slots
        head = self._tx_head
        idx = np.arange(head, head + min(n, nslots)) % nslots
        status = arrays.tx_words[idx, 0]
        wrong = status == TP_STATUS_WRONG_FORMAT
        if wrong.any():  # a frame the kernel refused: count it, free its slot
            self._stats["tx_errors"] += int(wrong.sum())
            arrays.tx_words[idx[wrong], 0] = TP_STATUS_AVAILABLE
            status = arrays.tx_words[idx, 0]
        free = status == TP_STATUS_AVAILABLE
        k = len(idx) if free.all() else int(free.argmin())
        if k:
            use = idx[:k]
            arrays.tx[use, TX_DATA:TX_DATA + width] = rows[:k]
            arrays.tx_words[use, 1] = width  # tp_len
            arrays.tx_words[use, 0] = TP_STATUS_SEND_REQUEST  # last: the kernel may go
            self._tx_head = (head + k) % nslots
            # on an error the frames stay requested: the next send_fixed flushes them
            with contextlib.suppress(BlockingIOError, InterruptedError, OSError):
                self._sock.send(b"")
            stats = self._stats
            stats["tx_frames"] += k
            stats["tx_ring_frames"] += k
            stats["tx_bytes"] += k * width
        if k < n:  # the ring is full (a socket with a TX ring sends only through it)
            self._stats["tx_ring_busy"] += n - k

    def send_gso(self, frame: Frame, gso_size: int) -> None:
        """Send an Ethernet+IPv4+TCP frame of any size up to 64 KiB; the kernel
        cuts it into ``gso_size``-byte segments and fills in the TCP checksums
        (DESIGN.md trap 3).  Needs ``open(..., vnet_hdr=True)``.

        The frame's IPv4 total length covers the whole super-segment; the TCP
        checksum field is overwritten here with the pseudo-header sum the
        kernel expects (RFC 9293 section 3.1 pseudo-header, length = all TCP
        bytes).  The kernel gives each segment its own IP total length, IP ID
        (incrementing), header checksum, sequence number and checksum; FIN and
        PSH only on the last segment.
        """
        if not self.vnet_hdr:
            raise RuntimeError("send_gso needs AfPacketDevice.open(..., vnet_hdr=True)")
        vnet = gso_tcp_vnet_header(frame, gso_size)
        # gathered by the kernel (sendmsg): the frame is not copied in Python,
        # only its first bytes up to the checksum field and the pseudo-sum are
        # new (the same bytes as vnet + _with_pseudo_sum(frame))
        l4 = 14 + (frame[14] & 0x0F) * 4
        view = memoryview(frame)
        self._send_gathered((vnet, view[:l4 + 16], _pseudo_sum(frame, l4), view[l4 + 18:]),
                            len(frame))

    def send_gso_parts(self, head: bytes, segment: Buffer, gso_size: int) -> None:
        """:meth:`send_gso` of ``head + segment`` (``head``: the Ethernet and
        IPv4 headers, ``segment``: the TCP header and payload) without joining
        them: the same bytes reach the kernel, the payload is not copied."""
        if not self.vnet_hdr:
            raise RuntimeError("send_gso needs AfPacketDevice.open(..., vnet_hdr=True)")
        l4 = len(head)
        view = memoryview(segment)
        if (l4 < 34 or l4 != 14 + (head[14] & 0x0F) * 4 or len(view) < 20
                or head[12:14] != b"\x08\x00" or head[23] != 6 or not 0 < gso_size <= 65535):
            # anything unusual: send_gso's own checks, errors and bytes
            self.send_gso(head + bytes(view), gso_size)
            return
        tcp_hlen = (view[12] >> 4) * 4
        frame_len = l4 + len(view)
        split = frame_len - l4 - tcp_hlen > gso_size
        vnet = VNET_HDR.pack(
            VIRTIO_NET_HDR_F_NEEDS_CSUM,
            VIRTIO_NET_HDR_GSO_TCPV4 if split else VIRTIO_NET_HDR_GSO_NONE,
            l4 + tcp_hlen, gso_size if split else 0, l4, 16)
        total = (int.from_bytes(head[26:30], "big") + int.from_bytes(head[30:34], "big")
                 + 6 + len(view))
        pseudo = (total % 0xFFFF or 0xFFFF).to_bytes(2, "big")
        self._send_gathered((vnet, head, view[:16], pseudo, view[18:]), frame_len)

    def send_round(self, frames: Sequence[bytes | GsoFrame]) -> list[float]:
        """One output round in one call: each of ``frames`` is a whole
        frame (as :meth:`send`) or a TCP super-segment ``(head, tcp_header,
        payload, gso_size)`` (as :meth:`send_gso_parts` of ``head`` and
        ``tcp_header + payload``; the payload is not copied, not even
        joined to its header).  Same bytes, order, queueing and counters as
        those calls one after the other (tests/unit/test_link_af_packet_send.py);
        with ``ustack.link._batch`` one call into C for the round.

        Returns, per frame, the monotonic time it was handed to the kernel
        (just before its system call; a frame that waits in the send queue:
        the time it was queued).  The TCP driver makes these the send times
        of the segments' RTT samples (Linux stamps each skb, a TSO skb once,
        in __tcp_transmit_skb)."""
        gather = self.gather
        if gather is None or not self.vnet_hdr or self._tx_slots or self._txq:
            return self._send_round_plain(frames)
        round_send = self.round_send
        if round_send is not None and type(frames) is list:
            if _SENT.t is None:  # the send time of the TCP driver's round (rxtime)
                _SENT.t = time.monotonic()
            got = round_send(self._tx_fd, frames, 0)
            if got is not None:
                k, nbytes, err, stamps, gso = got
                stats = self._stats
                stats["tx_gso_frames"] += gso
                stats["tx_frames"] += k
                stats["tx_bytes"] += nbytes
                if err:  # the rest as the pieces path does it (queued, or an error)
                    stamps.extend(self._round_rest(frames, k, err))
                return stamps
        return self._send_round_pieces(frames)

    def _round_rest(self, frames: Sequence[bytes | GsoFrame], k: int, err: int) -> list[float]:
        """:meth:`send_round` after frames[k] failed with ``err``: what the
        pieces path does from there (EAGAIN: the rest queued behind the
        writer; another error: that frame reported and the rest sent on)."""
        items: list[tuple[Buffer, ...]] = []
        for f in frames[k:]:
            if isinstance(f, bytes):
                items.append((_VNET_NONE, f))
            else:
                head, tcp, payload, size = f
                pieces = _gso_pieces(head, tcp, payload, size)
                assert pieces is not None  # (sendround took it)
                items.append(pieces)
        return self._gather_errors(items, [sum(len(p) for p in it[1:]) for it in items],
                                   0, err, [])

    def _send_round_pieces(self, frames: Sequence[bytes | GsoFrame]) -> list[float]:
        """:meth:`send_round` through :attr:`gather` (the pieces of each
        frame built here)."""
        gather = self.gather
        assert gather is not None
        items: list[tuple[Buffer, ...]] = []
        lens: list[int] = []
        gso = 0
        for f in frames:
            if isinstance(f, bytes):
                items.append((_VNET_NONE, f))
                lens.append(len(f))
                continue
            head, tcp, payload, size = f
            pieces = _gso_pieces(head, tcp, payload, size)
            if pieces is None:  # unusual input: send_gso_parts' own checks and errors
                return self._send_round_plain(frames)
            items.append(pieces)
            lens.append(len(head) + len(tcp) + len(payload))
            gso += 1
        stats = self._stats
        stats["tx_gso_frames"] += gso
        if _SENT.t is None:  # the send time of the TCP driver's round (rxtime)
            _SENT.t = time.monotonic()
        n = len(items)
        k, _nbytes, err, stamps = gather(self._tx_fd, items, 0)
        nbytes = sum(lens) if k == n else sum(lens[:k])
        stats["tx_frames"] += k
        stats["tx_bytes"] += nbytes
        if err:
            self._gather_errors(items, lens, k, err, stamps)
        return stamps

    def _gather_errors(self, items: list[tuple[Buffer, ...]], lens: list[int], i: int,
                       err: int, stamps: list[float]) -> list[float]:
        """items[i] failed with ``err``: queue the rest (EAGAIN) or report
        that one and send on; ``stamps`` gets a time per item from i on.
        Counts what it sends; returns ``stamps``."""
        gather = self.gather
        assert gather is not None
        stats = self._stats
        n = len(items)
        sent = nbytes = 0
        while err:
            at = time.monotonic()
            if err in (errno.EAGAIN, errno.EWOULDBLOCK):
                for rest in items[i:]:
                    self._enqueue(b"".join(rest))
                    stamps.append(at)
                self._arm_writer()
                break
            self._send_error(b"".join(items[i]), OSError(err, os.strerror(err)))
            stamps.append(at)
            i += 1
            if self._txq:  # (ENOBUFS queued it: the rest waits behind it)
                for rest in items[i:]:
                    self._enqueue(b"".join(rest))
                    stamps.append(at)
                break
            if i >= n:
                break
            k, _nbytes, err, more = gather(self._tx_fd, items, i)
            stamps.extend(more)
            sent += k
            nbytes += sum(lens[i:i + k])
            i += k
        stats["tx_frames"] += sent
        stats["tx_bytes"] += nbytes
        return stamps

    def _send_round_plain(self, frames: Sequence[bytes | GsoFrame]) -> list[float]:
        """:meth:`send_round` one frame at a time (no C helper, a TX ring,
        frames already queued, or unusual input)."""
        stamps: list[float] = []
        clock = time.monotonic
        for f in frames:
            stamps.append(clock())
            if isinstance(f, bytes):
                self.send(f)
            else:
                head, tcp, payload, size = f
                self.send_gso_parts(head, tcp + bytes(payload), size)
        return stamps

    def _send_gathered(self, pieces: tuple[Buffer, ...], frame_len: int) -> None:
        """One vnet frame given in pieces (sendmsg gathers them)."""
        self._stats["tx_gso_frames"] += 1
        if self._txq:
            self._enqueue(b"".join(pieces))
            return
        if _SENT.t is None:  # the send time of the TCP driver's round (rxtime)
            _SENT.t = time.monotonic()
        try:
            self._tx.sendmsg(pieces)
        except (BlockingIOError, InterruptedError):
            self._enqueue(b"".join(pieces))
            self._arm_writer()
        except OSError as exc:
            self._send_error(b"".join(pieces), exc)
        else:
            self._stats["tx_frames"] += 1
            self._stats["tx_bytes"] += frame_len

    def send_raw_vnet(self, data: bytes) -> None:
        """Send ``virtio_net_hdr + frame`` as built by the caller (vnet mode)."""
        if self._txq:
            self._enqueue(data)
            return
        try:
            self._tx.send(data)
        except (BlockingIOError, InterruptedError):
            self._enqueue(data)
            self._arm_writer()
        except OSError as exc:
            self._send_error(data, exc)
        else:
            self._stats["tx_frames"] += 1
            self._stats["tx_bytes"] += len(data) - VNET_HDR_LEN

    def _send_error(self, frame: Buffer, exc: OSError) -> None:
        if exc.errno == errno.ENOBUFS:  # the peer's backlog is full: retry shortly
            self._enqueue(frame)
            self._arm_retry()
        else:  # EMSGSIZE, ENETDOWN, ENXIO...: this frame cannot go out
            self._stats["tx_errors"] += 1

    def _enqueue(self, frame: Buffer) -> None:
        if len(self._txq) >= self._max_send_queue:
            self._stats["tx_drops_queue_full"] += 1
            return
        self._txq.append(frame)
        self._stats["tx_queued"] += 1

    def _arm_writer(self) -> None:
        if self._writer_armed or self._closed:
            return
        loop = self._loop or _running_loop()
        if loop is None:
            return
        self._loop = loop
        loop.add_writer(self._tx_fd, self._flush)
        self._writer_armed = True

    def _arm_retry(self) -> None:
        if self._retry_handle is not None or self._closed:
            return
        loop = self._loop or _running_loop()
        if loop is None:
            return
        self._loop = loop
        self._retry_handle = loop.call_later(0.0005, self._retry)

    def _retry(self) -> None:
        self._retry_handle = None
        self._flush()

    def _flush(self) -> None:
        txq = self._txq
        send = self._tx.send
        stats = self._stats
        while txq:
            frame = txq[0]
            try:
                send(frame)
            except (BlockingIOError, InterruptedError):
                self._arm_writer()
                return
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    self._disarm_writer()
                    self._arm_retry()
                    return
                txq.popleft()
                stats["tx_errors"] += 1
                continue
            txq.popleft()
            stats["tx_frames"] += 1
            stats["tx_bytes"] += len(frame) - self._tx_overhead
        self._disarm_writer()

    def _disarm_writer(self) -> None:
        if self._writer_armed and self._loop is not None:
            _unwatch(self._loop.remove_writer, self._tx_fd)
        self._writer_armed = False

    # ----------------------------------------------------------------- misc
    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        ring, self._ring = self._ring, None
        self._np = None  # numpy views export the mmap's buffer: drop them first
        if self._loop is not None:
            with contextlib.suppress(Exception):
                _unwatch(self._loop.remove_reader, self._fd)
            self._disarm_writer()
        if self._retry_handle is not None:
            self._retry_handle.cancel()
            self._retry_handle = None
        self._txq.clear()
        self._sock.close()
        if self._tx is not self._sock:
            self._tx.close()
        if ring is not None:
            ring.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def fileno(self) -> int:
        return self._fd

    def counters(self) -> dict[str, int]:
        """Frame/byte counts plus drops by reason (``rx_kernel_drops``: the ring or
        socket buffer overflowed; ``tx_drops_queue_full``: send queue full).
        Byte counts are Ethernet frame bytes (without any vnet header)."""
        if not self._closed:
            with contextlib.suppress(OSError):
                raw = self._sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
                _packets, drops = struct.unpack("II", raw)
                self._stats["rx_kernel_drops"] += drops
        out = dict(self._stats)
        out["rx_frames"] += self._rx_frames
        out["rx_bytes"] += self._rx_bytes
        out["rx_wakeups"] += self._rx_wakeups
        out["tx_queue_len"] = len(self._txq)
        return out

    def __repr__(self) -> str:
        return f"AfPacketDevice({self.name!r}, mac={self.mac.hex(':')}, mtu={self.mtu})"


class _RingArrays:
    """numpy views of a TPACKET_V2 ring: the whole ring as bytes, each slot's
    tp_status, and each slot's first four header words."""

    __slots__ = ("flat", "status", "header", "tx", "tx_words")

    def __init__(self, ring: mmap.mmap, slot: int, nslots: int, tx_slots: int = 0) -> None:
        import numpy as np

        self.flat: Any = np.frombuffer(ring, dtype=np.uint8, count=slot * nslots)
        words = np.frombuffer(ring, dtype="<u4", count=slot * nslots // 4).reshape(
            nslots, slot // 4)
        self.status: Any = words[:, 0]
        self.header: Any = words[:, :4]
        self.tx: Any = None
        self.tx_words: Any = None
        if tx_slots:
            size = TX_SLOT * tx_slots
            self.tx = np.frombuffer(ring, dtype=np.uint8, count=size,
                                    offset=slot * nslots).reshape(tx_slots, TX_SLOT)
            self.tx_words = np.frombuffer(ring, dtype="<u4", count=size // 4,
                                          offset=slot * nslots).reshape(tx_slots, TX_SLOT // 4)

    @staticmethod
    def empty(width: int) -> Any:
        import numpy as np

        return np.zeros((0, width), dtype=np.uint8)


def _open_vnet_sender(iface: str, sndbuf: int) -> socket.socket:
    """A packet socket on ``iface`` that only sends, frames with a
    ``virtio_net_hdr`` (PACKET_VNET_HDR): bound with protocol 0, so the
    kernel hands it no frame at all (packet(7))."""
    tx = _open_packet_socket()
    try:
        tx.setblocking(False)
        _set_buffer(tx, socket.SO_SNDBUF, SO_SNDBUFFORCE, sndbuf)
        tx.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
        tx.bind((iface, 0))
    except BaseException:
        tx.close()
        raise
    return tx


def _setup_ring(sock: socket.socket, mtu: int, ring_frames: int,
                slot_size: int | None = None,
                tx_frames: int = 0) -> tuple[mmap.mmap, int, int, int]:
    """PACKET_RX_RING (TPACKET_V2) sized for ``mtu`` (or with ``slot_size``-byte
    slots; bigger frames then arrive TP_STATUS_COPY), and ``tx_frames``
    PACKET_TX_RING slots of TX_SLOT bytes mapped after it: (mmap, slot size,
    slots, TX slots)."""
    if slot_size is not None:
        if slot_size < 128 or slot_size & (slot_size - 1):
            raise ValueError(f"ring_slot must be a power of two >= 128, not {slot_size}")
        slot = slot_size
    else:
        need = _SLOT_OVERHEAD + 14 + 4 + mtu  # + Ethernet + one VLAN tag
        slot = 2048
        while slot < need:
            slot <<= 1
    block = max(_RING_BLOCK, slot)  # both powers of two: slots never straddle
    per_block = block // slot       # blocks, so slot i sits at i * slot
    blocks = max(1, -(-ring_frames // per_block))
    sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V2)
    sock.setsockopt(SOL_PACKET, PACKET_COPY_THRESH, 1)  # oversized frames: TP_STATUS_COPY
    req = struct.pack("IIII", block, blocks, slot, per_block * blocks)
    sock.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
    size = block * blocks
    tx_slots = 0
    if tx_frames:
        tx_per_block = _RING_BLOCK // TX_SLOT
        tx_blocks = max(1, -(-tx_frames // tx_per_block))
        tx_slots = tx_per_block * tx_blocks
        sock.setsockopt(SOL_PACKET, PACKET_TX_RING,
                        struct.pack("IIII", _RING_BLOCK, tx_blocks, TX_SLOT, tx_slots))
        size += _RING_BLOCK * tx_blocks
    ring = mmap.mmap(sock.fileno(), size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    return ring, slot, per_block * blocks, tx_slots


_ADDRS = struct.Struct("!II")
_U16 = struct.Struct("!H")


def _gso_pieces(head: bytes, tcp: bytes, payload: Buffer,
                gso_size: int) -> tuple[Buffer, ...] | None:
    """The sendmsg pieces :meth:`AfPacketDevice.send_gso_parts` gives the
    kernel for ``head`` and ``tcp + payload``, payload untouched; None
    unless ``head`` is Ethernet + a 20-byte IPv4 header of a TCP packet and
    ``tcp`` a whole TCP header (send_gso_parts' own checks and errors then
    take it)."""
    hlen = len(tcp)
    if (len(head) != 34 or head[14] != 0x45 or head[12] != 8 or head[13] or head[23] != 6
            or hlen < 20 or (tcp[12] >> 4) << 2 != hlen or not 0 < gso_size <= 65535):
        return None  # (a head with IP options: send_gso_parts' way)
    plen = len(payload)
    split = plen > gso_size
    vnet = VNET_HDR.pack(VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4, 34 + hlen,
                         gso_size, 34, 16) if split else \
        VNET_HDR.pack(VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_NONE, 34 + hlen, 0, 34, 16)
    src, dst = _ADDRS.unpack_from(head, 26)
    pseudo = _U16.pack((src + dst + 6 + hlen + plen) % 0xFFFF or 0xFFFF)
    return (vnet, head, tcp[:16], pseudo, tcp[18:], payload)


def gso_tcp_vnet_header(frame: bytes, gso_size: int) -> bytes:
    """The virtio_net_hdr for an Ethernet+IPv4+TCP ``frame`` (NEEDS_CSUM, and
    GSO_TCPV4 when the payload is longer than ``gso_size``)."""
    if len(frame) < 54 or frame[12:14] != b"\x08\x00" or frame[23] != 6:
        raise ValueError("send_gso needs an Ethernet + IPv4 + TCP frame")
    l4 = 14 + (frame[14] & 0x0F) * 4
    if len(frame) < l4 + 20:
        raise ValueError("frame too short for its TCP header")
    hdr_len = l4 + (frame[l4 + 12] >> 4) * 4
    if not 0 < gso_size <= 65535:
        raise ValueError(f"bad gso_size {gso_size}")
    segment = len(frame) - hdr_len > gso_size
    return VNET_HDR.pack(
        VIRTIO_NET_HDR_F_NEEDS_CSUM,
        VIRTIO_NET_HDR_GSO_TCPV4 if segment else VIRTIO_NET_HDR_GSO_NONE,
        hdr_len,
        gso_size if segment else 0,
        l4,  # csum_start: the TCP header
        16,  # csum_offset: TCP checksum field
    )


def _pseudo_sum(frame: Frame, l4: int) -> bytes:
    """The folded (not inverted) pseudo-header sum of the TCP segment at
    ``l4`` in ``frame``, as CHECKSUM_PARTIAL wants it in the checksum field."""
    total = (int.from_bytes(frame[26:30], "big") + int.from_bytes(frame[30:34], "big")
             + 6 + len(frame) - l4)
    partial = total % 0xFFFF or 0xFFFF
    return partial.to_bytes(2, "big")


def _with_pseudo_sum(frame: bytes) -> bytes:
    """``frame`` with the TCP checksum field holding the folded (not inverted)
    pseudo-header sum, as CHECKSUM_PARTIAL wants it."""
    l4 = 14 + (frame[14] & 0x0F) * 4
    return frame[: l4 + 16] + _pseudo_sum(frame, l4) + frame[l4 + 18 :]


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _set_buffer(sock: socket.socket, opt: int, force_opt: int, size: int) -> None:
    """Set SO_RCVBUF/SO_SNDBUF, past the sysctl limit when we may (root)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, force_opt, size)
    except OSError:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, opt, size)
