"""Receive-path rate of AfPacketDevice: frames/s Python can take off the socket.

Builds a lab, fills the stack-side socket (or mmap ring) with N frames from
the peer side (a raw socket there), then times how fast the device drains
them into batches: the per-frame cost of the receive path alone, without a
sender competing for the CPU.  Measured for each receive mode (``ring``: the
default PACKET_RX_RING; ``socket``: recvmsg_into + PACKET_AUXDATA; ``vnet``:
with a virtio_net_hdr, through the ring or recvmsg_into) and, for comparison, bare loops on the
socket (recv_into without auxdata = the figure DESIGN.md quotes).  The
device's receiver keeps each batch alive until it returns, as a stack would;
the bare loops drop each frame at once (so malloc reuses one buffer), which
flatters them.  The send side is measured too: send()/send_many() frames/s and
send_gso() 65,000-byte super-segments/s (to a MAC nobody owns).

    sudo python bench/link_rate.py [--frames 20000] [--size 1514] [--json]
"""

from __future__ import annotations

import argparse
import json
import socket
import struct
import time
from collections.abc import Callable, Sequence

from ustack.lab import Lab
from ustack.lab.fixtures import unique_lab_name
from ustack.link.af_packet import _ANCBUFSIZE, RX_BUFSIZE, AfPacketDevice
from ustack.link.base import ReceivedFrame


def fill(peer: socket.socket, frame: bytes, n: int) -> float:
    t0 = time.perf_counter()
    send = peer.send
    for _ in range(n):
        send(frame)
    return n / (time.perf_counter() - t0)


def drain_device(dev: AfPacketDevice, n: int) -> tuple[float, int]:
    got = 0

    def receiver(frames: Sequence[ReceivedFrame]) -> None:
        nonlocal got
        got += len(frames)

    dev._receiver = receiver
    t0 = time.perf_counter()
    while got < n:
        before = got
        dev._on_readable()
        if got == before:
            break
    return got / (time.perf_counter() - t0), got


def open_device(lab: Lab, *, rx_ring: bool = True, vnet_hdr: bool = False) -> AfPacketDevice:
    with lab.enter_stack_ns():
        return AfPacketDevice.open(lab.stack_if, rcvbuf=512 << 20, ring_frames=65536,
                                   rx_ring=rx_ring, vnet_hdr=vnet_hdr)


def drain_loop(sock: socket.socket, n: int, kind: str) -> tuple[float, int]:
    got = 0
    buf = bytearray(RX_BUFSIZE)
    mv = memoryview(buf)
    t0 = time.perf_counter()
    try:
        if kind == "recv_into":
            recv_into = sock.recv_into
            while got < n:
                k = recv_into(buf)
                _ = bytes(mv[:k])
                got += 1
        elif kind == "recv":
            recv = sock.recv
            while got < n:
                recv(RX_BUFSIZE)
                got += 1
        elif kind == "recvmsg_into":
            recvmsg_into = sock.recvmsg_into
            bufs = [buf]
            while got < n:
                k, anc, _flags, _addr = recvmsg_into(bufs, _ANCBUFSIZE)
                _ = (bytes(mv[:k]), bool(anc[0][2][0] & 0x88))
                got += 1
        elif kind == "recvmsg":
            recvmsg = sock.recvmsg
            while got < n:
                recvmsg(RX_BUFSIZE, _ANCBUFSIZE)
                got += 1
    except BlockingIOError:
        pass
    return got / (time.perf_counter() - t0), got


def _ipv4_tcp_frame(dst_mac: bytes, src_mac: bytes, payload_len: int) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", 40000, 9, 1, 1, 5 << 4, 0x10, 65535, 0, 0)
    total = 20 + len(tcp) + payload_len
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 1, 0x4000, 64, 6, 0,
                     socket.inet_aton("10.77.0.2"), socket.inet_aton("10.77.0.1"))
    return dst_mac + src_mac + b"\x08\x00" + ip + tcp + bytes(payload_len)


def measure_send(lab: Lab, vnet_dev: AfPacketDevice, dev: AfPacketDevice,
                 args: argparse.Namespace) -> dict[str, object]:
    """send() frames/s and send_gso() bytes/s, to a MAC nobody has (the peer
    kernel drops them at once as PACKET_OTHERHOST)."""
    nobody = bytes.fromhex("02000000ee01")
    out: dict[str, object] = {}
    frame = _ipv4_tcp_frame(nobody, dev.mac, args.size - 54)
    super_frame = _ipv4_tcp_frame(nobody, dev.mac, 65000)
    n = args.frames
    def send_each() -> None:
        for _ in range(n):
            dev.send(frame)

    def send_gso_each() -> None:
        for _ in range(n // 20):
            vnet_dev.send_gso(super_frame, 1448)

    tests: dict[str, tuple[Callable[[], None], int, int]] = {
        "send() frames": (send_each, n, len(frame)),
        "send_many() frames": (lambda: dev.send_many([frame] * n), n, len(frame)),
        "send_gso() 65000-byte super-segments": (send_gso_each, n // 20, len(super_frame)),
    }
    for label, (fn, count, size) in tests.items():
        best = 0.0
        for _ in range(args.rounds):
            errors = dev.counters()["tx_errors"] + vnet_dev.counters()["tx_errors"]
            t0 = time.perf_counter()
            fn()
            rate = count / (time.perf_counter() - t0)
            if dev.counters()["tx_errors"] + vnet_dev.counters()["tx_errors"] != errors:
                print(f"  warning: {label}: send errors")
            best = max(best, rate)
        out[label] = round(best)
        if not args.json:
            print(f"{label:<40} {best:>10,.0f} calls/s   ({best * size * 8 / 1e6:,.0f} Mbit/s)")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=20000)
    ap.add_argument("--size", type=int, default=1514)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    lab = Lab.create(unique_lab_name()).up()
    results: dict[str, object] = {"frames": args.frames, "size": args.size}
    try:
        ring_dev = open_device(lab)
        vnet_dev = open_device(lab, vnet_hdr=True, rx_ring=False)
        vnet_ring_dev = open_device(lab, vnet_hdr=True)
        dev = open_device(lab, rx_ring=False)
        with lab.enter_peer_ns():
            peer = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        peer.bind((lab.peer_if, 0))
        frame = dev.mac + lab.mac("peer") + b"\x08\x00" + bytes(args.size - 14)

        # every open socket gets its own copy of each frame: after each
        # measurement all of them are emptied
        devices = [ring_dev, vnet_ring_dev, vnet_dev, dev]
        variants: dict[str, Callable[[], tuple[float, int]]] = {
            "device, ring (default)": lambda: drain_device(ring_dev, args.frames),
            "device, socket (recvmsg_into+auxdata)": lambda: drain_device(dev, args.frames),
            "device, vnet + ring": lambda: drain_device(vnet_ring_dev, args.frames),
            "device, vnet socket (recvmsg_into)": lambda: drain_device(vnet_dev, args.frames),
            "bare recv_into+bytes (no auxdata)": lambda: drain_loop(dev._sock, args.frames,
                                                                   "recv_into"),
            "bare recv(64K)": lambda: drain_loop(dev._sock, args.frames, "recv"),
            "bare recvmsg(64K, anc)": lambda: drain_loop(dev._sock, args.frames, "recvmsg"),
            "bare recvmsg_into+bytes": lambda: drain_loop(dev._sock, args.frames,
                                                          "recvmsg_into"),
        }
        for label, fn in variants.items():
            best = 0.0
            for _ in range(args.rounds):
                dev.counters()
                send_rate = fill(peer, frame, args.frames)
                time.sleep(0.05)
                drops = sum(d.counters()["rx_kernel_drops"] for d in devices)
                rate, got = fn()
                for d in devices:
                    drain_device(d, 1 << 30)
                best = max(best, rate)
                if got != args.frames:
                    print(f"  warning: {label}: drained {got}/{args.frames} "
                          f"(kernel drops so far {drops})")
            results[label] = round(best)
            mbit = best * args.size * 8 / 1e6
            if not args.json:
                print(f"{label:<40} {best:>10,.0f} frames/s  ({mbit:,.0f} Mbit/s)  "
                      f"[fill {send_rate:,.0f}/s]")
        results["kernel_drops"] = sum(d.counters()["rx_kernel_drops"] for d in devices)
        results.update(measure_send(lab, vnet_dev, dev, args))
        for d in devices:
            d.close()
        peer.close()
    finally:
        lab.down()
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
