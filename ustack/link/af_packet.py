"""The AF_PACKET device: whole Ethernet frames on one Linux interface.

* ``SOCK_RAW`` packet socket bound to the interface with ``ETH_P_ALL``,
  non-blocking, registered with the running loop through ``add_reader``; each
  wakeup reads every pending frame (up to :attr:`AfPacketDevice.rx_budget`)
  and hands the batch to the receiver in one call.
* ``PACKET_AUXDATA``: each frame's ``tp_status``; the frame is *trusted* (the
  L4 checksum needs no software check) when the kernel marks it
  ``TP_STATUS_CSUMNOTREADY`` or ``TP_STATUS_CSUM_VALID`` (DESIGN.md trap 2).
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
import socket
import struct
from collections.abc import Sequence

from ustack.link import bpf
from ustack.link.base import Device, Frame, ReceivedFrame, Receiver

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_STATISTICS = 6
PACKET_AUXDATA = 8
PACKET_VNET_HDR = 15
PACKET_IGNORE_OUTGOING = 23
PACKET_OUTGOING = 4

SO_SNDBUFFORCE = 32
SO_RCVBUFFORCE = 33

SIOCGIFMTU = 0x8921
SIOCGIFHWADDR = 0x8927

TP_STATUS_CSUMNOTREADY = 0x8
TP_STATUS_CSUM_VALID = 0x80
#: both bits sit in the first (little-endian) byte of tpacket_auxdata.tp_status
_TRUSTED_BITS = TP_STATUS_CSUMNOTREADY | TP_STATUS_CSUM_VALID

#: receive buffer: a GRO/GSO frame can be 64 KiB plus headers
RX_BUFSIZE = 65536 + 64
#: room for one cmsg with struct tpacket_auxdata (20 bytes)
_ANCBUFSIZE = socket.CMSG_SPACE(20)

_MSG_TRUNC = socket.MSG_TRUNC


def parse_mac(mac: bytes | str) -> bytes:
    """``b"\\x02..."`` or ``"02:00:00:00:00:01"`` → 6 bytes (ValueError otherwise)."""
    if isinstance(mac, str):
        try:
            raw = bytes.fromhex(mac.replace(":", "").replace("-", ""))
        except ValueError:
            raise ValueError(f"invalid MAC address {mac!r}") from None
    else:
        raw = bytes(mac)
    if len(raw) != 6:
        raise ValueError(f"invalid MAC address {mac!r}: need 6 bytes")
    return raw


def interface_info(iface: str) -> tuple[int, bytes, int]:
    """(ifindex, MAC, MTU) of ``iface`` in the calling thread's namespace.

    Uses ioctls on a socket (not /sys, which shows the namespace /sys was
    mounted in, not the thread's).  OSError(ENODEV) names a missing interface.
    """
    try:
        ifindex = socket.if_nametoindex(iface)
    except OSError:
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
    """A Device on a Linux interface through an AF_PACKET socket."""

    #: most frames read per wakeup (keeps a flood from starving the loop)
    rx_budget = 4096
    supports_gso = False

    def __init__(
        self,
        sock: socket.socket,
        name: str,
        ifindex: int,
        mac: bytes,
        mtu: int,
        *,
        max_send_queue: int = 8192,
    ) -> None:
        self.name = name
        self.ifindex = ifindex
        self.mac = mac
        self.mtu = mtu
        self._sock = sock
        self._fd = sock.fileno()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._receiver: Receiver | None = None
        self._closed = False
        self._txq: collections.deque[Frame] = collections.deque()
        self._max_send_queue = max_send_queue
        self._writer_armed = False
        self._retry_handle: asyncio.TimerHandle | None = None
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
        rcvbuf: int = 8 << 20,
        sndbuf: int = 4 << 20,
        max_send_queue: int = 8192,
    ) -> AfPacketDevice:
        """Open ``iface`` in the calling thread's network namespace.

        ``mac`` overrides the interface's own MAC (the filter then accepts
        that MAC and the interface goes promiscuous).  ``filter=False`` skips
        the BPF filter (every frame on the interface reaches Python).
        """
        sock = _open_packet_socket()
        try:
            ifindex, if_mac, mtu = interface_info(iface)
            our_mac = if_mac if mac is None else parse_mac(mac)
            sock.setblocking(False)
            sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
            with contextlib.suppress(OSError):  # Linux >= 4.20; the filter does it too
                sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
            _set_buffer(sock, socket.SO_RCVBUF, SO_RCVBUFFORCE, rcvbuf)
            _set_buffer(sock, socket.SO_SNDBUF, SO_SNDBUFFORCE, sndbuf)
            if filter:
                bpf.attach(sock, bpf.ethernet_filter(our_mac))
            sock.bind((iface, ETH_P_ALL))
            if our_mac != if_mac:
                mreq = struct.pack("iHH8s", ifindex, PACKET_MR_PROMISC, 0, b"")
                sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
        except BaseException:
            sock.close()
            raise
        return cls(sock, iface, ifindex, our_mac, mtu, max_send_queue=max_send_queue)

    # --------------------------------------------------------------- receive
    def attach(self, loop: asyncio.AbstractEventLoop, receiver: Receiver) -> None:
        if self._closed:
            raise RuntimeError(f"device {self.name} is closed")
        if self._loop is not None:
            self._loop.remove_reader(self._fd)
        self._loop = loop
        self._receiver = receiver
        loop.add_reader(self._fd, self._on_readable)
        if self._txq:
            self._arm_writer()

    def _on_readable(self) -> None:
        recvmsg = self._sock.recvmsg
        frames: list[ReceivedFrame] = []
        append = frames.append
        nbytes = 0
        ignored = 0
        truncated = 0
        budget = self.rx_budget
        while budget:
            budget -= 1
            try:
                data, anc, flags, addr = recvmsg(RX_BUFSIZE, _ANCBUFSIZE)
            except BlockingIOError:
                break
            except InterruptedError:
                continue
            except OSError:
                self._stats["rx_errors"] += 1
                break
            if addr[2] == PACKET_OUTGOING:
                ignored += 1
                continue
            if flags & _MSG_TRUNC:
                truncated += 1
                continue
            # anc == [(SOL_PACKET, PACKET_AUXDATA, tpacket_auxdata)]
            append((data, bool(anc and anc[0][2][0] & _TRUSTED_BITS)))
            nbytes += len(data)
        stats = self._stats
        stats["rx_wakeups"] += 1
        if ignored:
            stats["rx_outgoing_ignored"] += ignored
        if truncated:
            stats["rx_truncated"] += truncated
        if frames:
            stats["rx_frames"] += len(frames)
            stats["rx_bytes"] += nbytes
            receiver = self._receiver
            if receiver is not None:
                receiver(frames)

    # ------------------------------------------------------------------ send
    def send(self, frame: Frame) -> None:
        if self._txq:
            self._enqueue(frame)
            return
        try:
            self._sock.send(frame)
        except (BlockingIOError, InterruptedError):
            self._enqueue(frame)
            self._arm_writer()
        except OSError as exc:
            self._send_error(frame, exc)
        else:
            stats = self._stats
            stats["tx_frames"] += 1
            stats["tx_bytes"] += len(frame)

    def send_many(self, frames: Sequence[Frame]) -> None:
        if self._txq:
            for frame in frames:
                self._enqueue(frame)
            return
        send = self._sock.send
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
        self._stats["tx_bytes"] += nbytes

    def _send_error(self, frame: Frame, exc: OSError) -> None:
        if exc.errno == errno.ENOBUFS:  # the peer's backlog is full: retry shortly
            self._enqueue(frame)
            self._arm_retry()
        else:  # EMSGSIZE, ENETDOWN, ENXIO...: this frame cannot go out
            self._stats["tx_errors"] += 1

    def _enqueue(self, frame: Frame) -> None:
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
        loop.add_writer(self._fd, self._flush)
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
        send = self._sock.send
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
            stats["tx_bytes"] += len(frame)
        self._disarm_writer()

    def _disarm_writer(self) -> None:
        if self._writer_armed and self._loop is not None:
            self._loop.remove_writer(self._fd)
        self._writer_armed = False

    # ----------------------------------------------------------------- misc
    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._fd)
            self._disarm_writer()
        if self._retry_handle is not None:
            self._retry_handle.cancel()
            self._retry_handle = None
        self._txq.clear()
        self._sock.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def fileno(self) -> int:
        return self._fd

    def counters(self) -> dict[str, int]:
        """Frame/byte counts plus drops by reason (``rx_kernel_drops``: the
        socket buffer overflowed; ``tx_drops_queue_full``: send queue full)."""
        if not self._closed:
            with contextlib.suppress(OSError):
                raw = self._sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
                _packets, drops = struct.unpack("II", raw)
                self._stats["rx_kernel_drops"] += drops
        out = dict(self._stats)
        out["tx_queue_len"] = len(self._txq)
        return out

    def __repr__(self) -> str:
        return f"AfPacketDevice({self.name!r}, mac={self.mac.hex(':')}, mtu={self.mtu})"


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
