"""``ustack demo``: ustack talking TCP to the Linux kernel, end to end.

Builds a lab (two namespaces and a veth), starts a kernel TCP server in the
peer namespace, opens a connection to it through ustack, uploads and then
downloads random data with a progress bar, checks both SHA-256 digests,
prints what ``tcp_info`` says about the connection, and tears the lab down.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import time
from typing import Any

from ustack.cli.errors import check_output_file, describe, raise_if_stdout_gone

#: The kernel side: stdlib only, run with ``python3 -c`` in the peer namespace.
#: Protocol: the client sends 16 bytes (upload length, download length, big
#: endian) and the upload; the server answers the upload's SHA-256 (64 hex
#: characters), the download, and the download's SHA-256.
KERNEL_SERVER = r"""
import hashlib, os, socket, sys
port = int(sys.argv[1])
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("0.0.0.0", port)); ls.listen(1)
print("READY", flush=True)
ls.settimeout(60)
c, _ = ls.accept(); c.settimeout(60)
def exact(n):
    buf = bytearray()
    while len(buf) < n:
        d = c.recv(min(1 << 20, n - len(buf)))
        if not d: raise SystemExit("client closed early")
        buf += d
    return bytes(buf)
hdr = exact(16); up, down = int.from_bytes(hdr[:8], "big"), int.from_bytes(hdr[8:], "big")
h = hashlib.sha256(); left = up
buf = bytearray(1 << 20); view = memoryview(buf)
while left:
    n = c.recv_into(buf, min(len(buf), left))
    if not n: raise SystemExit("client closed early")
    h.update(view[:n]); left -= n
c.sendall(h.hexdigest().encode())
block = os.urandom(1 << 20); h = hashlib.sha256(); left = down
while left:
    piece = block[: min(len(block), left)]
    c.sendall(piece); h.update(piece); left -= len(piece)
c.sendall(h.hexdigest().encode())
c.shutdown(socket.SHUT_WR)
while c.recv(65536): pass
c.close()
"""

PORT = 8080


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "demo",
        help="build a lab, move data between ustack and the kernel, check it, tear down",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--mb", type=int, default=64, help="megabytes each way (default 64)")
    parser.add_argument("--name", default=None, help="lab name (default: demo<pid>)")
    parser.add_argument("--pcap", default=None, metavar="FILE", help="capture the stack's frames")
    parser.add_argument("--pcap-fill-checksums", action="store_true",
                        help="write offloaded (partial) checksums as computed in the capture")
    parser.set_defaults(func=run)


class Progress:
    """A one-line progress bar on stderr (plain lines when not a terminal)."""

    def __init__(self, label: str, total: int) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.start = time.perf_counter()
        self.tty = sys.stderr.isatty()
        self._last = 0.0
        self._last_decile = -1

    def update(self, n: int) -> None:
        self.done += n
        now = time.perf_counter()
        if self.tty and now - self._last < 0.05 and self.done < self.total:
            return
        self._last = now
        frac = self.done / self.total if self.total else 1.0
        rate = self.done / max(now - self.start, 1e-9) / 1e6
        if self.tty:
            width = 30
            bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
            sys.stderr.write(f"\r  {self.label:9s} [{bar}] {frac * 100:5.1f}% {rate:8.1f} MB/s")
            sys.stderr.flush()
        else:
            decile = int(frac * 4)
            if decile != self._last_decile:
                self._last_decile = decile
                print(f"  {self.label:9s} {frac * 100:5.1f}% {rate:8.1f} MB/s", file=sys.stderr)

    def finish(self) -> float:
        elapsed = time.perf_counter() - self.start
        if self.tty:
            sys.stderr.write("\n")
        return elapsed


def _fail(message: str) -> int:
    print(f"ustack demo: {message}", file=sys.stderr)
    return 1


def run(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        return _fail("needs root to build network namespaces and open AF_PACKET "
                     "(CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_NET_RAW); run it with sudo")
    if args.mb <= 0:
        return _fail("--mb must be positive")
    if args.mb > 1_000_000:
        return _fail("--mb must be at most 1000000 (1 TB each way)")
    if args.pcap is not None:
        problem = check_output_file(args.pcap, "--pcap")
        if problem:
            return _fail(problem)
    from ustack.lab import Lab, LabError

    # a SIGTERM must still run the finally that removes the lab
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        lab = Lab.create(args.name or f"demo{os.getpid()}")
    except ValueError as exc:  # a bad --name
        return _fail(describe(exc))
    print(f"building lab {lab.name}: kernel {lab.peer_address} in {lab.peer_ns}, "
          f"ustack {lab.stack_address} on {lab.stack_if} in {lab.stack_ns}")
    try:
        lab.up()
    except (LabError, OSError) as exc:
        with contextlib.suppress(Exception):  # report the first error
            lab.down()
        return _fail(str(exc))
    server: subprocess.Popen[str] | None = None
    try:
        server = lab.popen_in_peer([sys.executable, "-c", KERNEL_SERVER, str(PORT)],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert server.stdout is not None
        if server.stdout.readline().strip() != "READY":
            return _fail("the kernel server did not start: " + (server.stderr.read()
                                                                 if server.stderr else ""))
        print(f"kernel TCP server listening on {lab.peer_address}:{PORT} (python socket)")
        import uvloop

        try:
            return uvloop.run(_exchange(lab, args.mb * 1_000_000, args.pcap,
                                        args.pcap_fill_checksums))
        except (ConnectionError, TimeoutError, OSError) as exc:
            raise_if_stdout_gone(exc)
            return _fail(f"{type(exc).__name__}: {describe(exc)}")
    finally:
        if server is not None and server.poll() is None:
            server.kill()
            server.wait()
        lab.down()
        print(f"lab {lab.name} removed")


async def _exchange(lab: Any, nbytes: int, pcap: str | None, fill: bool = False) -> int:
    from ustack.stack import Stack
    from ustack.streams import open_connection

    with lab.enter_stack_ns():
        stack = await Stack.start(iface=lab.stack_if, address=lab.stack_address, pcap=pcap)
    if fill:
        from ustack.cli.nc import fill_pcap_checksums

        fill_pcap_checksums(stack)
    try:
        t0 = time.perf_counter()
        reader, writer = await open_connection(lab.peer_address, PORT, stack=stack,
                                               timeout=10, limit=1 << 20)
        connect_ms = (time.perf_counter() - t0) * 1e3
        src, dst = writer.get_extra_info("sockname"), writer.get_extra_info("peername")
        print(f"connected {src[0]}:{src[1]} -> {dst[0]}:{dst[1]} in {connect_ms:.1f} ms")

        writer.write(nbytes.to_bytes(8, "big") + nbytes.to_bytes(8, "big"))
        block = os.urandom(1 << 20)
        up_hash = hashlib.sha256()
        bar = Progress("upload", nbytes)
        left = nbytes
        while left:
            piece = block[: min(len(block), left)]
            writer.write(piece)
            up_hash.update(piece)
            await writer.drain()
            left -= len(piece)
            bar.update(len(piece))
        kernel_up = (await asyncio.wait_for(reader.readexactly(64), 60)).decode()
        up_s = bar.finish()

        down_hash = hashlib.sha256()
        bar = Progress("download", nbytes)
        left = nbytes
        while left:
            data = await asyncio.wait_for(reader.read(min(1 << 20, left)), 60)
            if not data:
                raise ConnectionError("the kernel closed the connection early")
            down_hash.update(data)
            left -= len(data)
            bar.update(len(data))
        down_s = bar.finish()
        kernel_down = (await asyncio.wait_for(reader.readexactly(64), 60)).decode()
        info = writer.get_extra_info("tcp_info")
        rest = await asyncio.wait_for(reader.read(), 30)  # the kernel's FIN
        writer.close()
        await writer.wait_closed()

        up_ok = kernel_up == up_hash.hexdigest()
        down_ok = kernel_down == down_hash.hexdigest() and rest == b""
        mb = nbytes / 1e6
        print(f"upload    {mb:.0f} MB in {up_s:.2f} s = {mb / up_s:7.1f} MB/s  "
              f"sha256 {'OK' if up_ok else 'MISMATCH'} {up_hash.hexdigest()[:16]}")
        print(f"download  {mb:.0f} MB in {down_s:.2f} s = {mb / down_s:7.1f} MB/s  "
              f"sha256 {'OK' if down_ok else 'MISMATCH'} {down_hash.hexdigest()[:16]}")
        if info is not None:
            print(_describe(info))
        return 0 if up_ok and down_ok else 1
    finally:
        await stack.close()


def _describe(info: Any) -> str:
    def g(name: str, default: Any = "?") -> Any:
        return getattr(info, name, default)

    def ms(value: Any) -> str:
        # microseconds, as ss -i prints them (rtt:0.607): min_rtt on a veth is a
        # few us, which two decimals of a ms showed as "min 0.00 ms"
        return f"{value * 1e3:.3f} ms" if isinstance(value, (int, float)) else "?"

    return (
        f"tcp_info  rtt {ms(g('srtt'))} (var {ms(g('rttvar'))}, min {ms(g('min_rtt'))})  "
        f"rto {ms(g('rto'))}  mss {g('mss')}  cwnd {g('cwnd')}  "
        f"retransmits {g('total_retrans')}  segs out/in {g('segs_out')}/{g('segs_in')}  "
        f"cc {g('ca_name')}"
    )
