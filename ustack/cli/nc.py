"""``ustack nc``: netcat on ustack.

Connect mode pipes stdin to the connection and the connection to stdout,
sends FIN when stdin ends and exits once both directions are finished.
``-l PORT`` accepts one connection (``-k``: keep accepting, one at a time).
Exit status 0 on a clean close; 1 with one line on stderr when the
connection is refused, times out, is reset or the host is unreachable;
2 for bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import ipaddress
import os
import sys
import threading
from typing import Any

from ustack.cli.errors import (
    check_output_file,
    describe,
    positive_seconds,
    raise_if_stdout_gone,
)

_READ_SIZE = 64 * 1024


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "nc",
        help="netcat over ustack: connect or listen, pipe stdin/stdout",
        description="A netcat whose TCP/IP is ustack, driving IFACE through AF_PACKET. "
        "Connect: ustack nc --iface IF --address A/PLEN HOST PORT.  "
        "Listen: ustack nc --iface IF --address A/PLEN -l PORT [-k].",
    )
    parser.add_argument("--iface", required=True, help="interface ustack drives (no kernel IPv4)")
    parser.add_argument("--address", required=True, metavar="A/PLEN",
                        help="ustack's IPv4 address with prefix, e.g. 10.77.0.2/24")
    parser.add_argument("--gateway", default=None, help="default gateway for off-link hosts")
    parser.add_argument("--trace", metavar="DIR", default=None, help="write a JSON Lines "
                        "trace of every TCP connection into DIR (docs/trace.md)")
    parser.add_argument("--pcap", default=None, metavar="FILE",
                        help="record every frame in and out to FILE")
    parser.add_argument("--pcap-fill-checksums", action="store_true",
                        help="write checksums the kernel or the NIC fills in (offloaded: "
                        "partial on the wire of a veth) as computed, so that tshark -o "
                        "tcp.check_checksum:TRUE reports none bad")
    parser.add_argument("-l", "--listen", type=int, default=None, metavar="PORT",
                        help="listen on PORT and accept one connection")
    parser.add_argument("-k", "--keep-listening", action="store_true",
                        help="with -l: accept connections one after another until interrupted")
    parser.add_argument("-w", "--timeout", type=positive_seconds, default=10.0,
                        metavar="SECONDS", help="connect timeout (default 10 s)")
    parser.add_argument("target", nargs="*", metavar="HOST PORT",
                        help="where to connect (connect mode)")
    parser.set_defaults(func=run)


def _fail(message: str, code: int = 1) -> int:
    print(f"ustack nc: {message}", file=sys.stderr)
    return code


def run(args: argparse.Namespace) -> int:
    if args.listen is None:
        if len(args.target) != 2:
            return _fail("give HOST PORT to connect to, or -l PORT to listen", 2)
        host, port_text = args.target
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return _fail(f"HOST must be an IPv4 address, not {host!r}", 2)
        try:
            port = int(port_text)
            if not 0 < port < 65536:
                raise ValueError
        except ValueError:
            return _fail(f"PORT must be 1..65535, not {port_text!r}", 2)
    else:
        if args.target:
            return _fail("-l PORT takes no HOST PORT arguments", 2)
        if not 0 < args.listen < 65536:
            return _fail(f"port must be 1..65535, not {args.listen}", 2)
        host, port = "", args.listen
    if args.keep_listening and args.listen is None:
        return _fail("-k needs -l PORT", 2)
    if args.pcap is not None:
        problem = check_output_file(args.pcap, "--pcap")
        if problem:
            return _fail(problem, 2)
    from ustack.stack import parse_interface

    try:
        parse_interface(args.address)
    except ValueError as exc:
        return _fail(f"--address: {exc}", 2)
    try:
        import uvloop

        return uvloop.run(_main(args, host, port))
    except ConnectionRefusedError:
        return _fail(f"connection to {host}:{port} refused")
    except TimeoutError:
        return _fail(f"connection to {host}:{port} timed out")
    except ConnectionResetError:
        return _fail("connection reset by peer")
    except OSError as exc:  # PermissionError names CAP_NET_RAW
        raise_if_stdout_gone(exc)  # our reader left: the dispatcher ends quietly
        if exc.errno == errno.EHOSTUNREACH:
            return _fail(f"{host}: host unreachable (no ARP reply)")
        return _fail(describe(exc))
    except ValueError as exc:
        return _fail(describe(exc), 2)


class _Stdin:
    """stdin in a daemon thread (works for files, pipes and ttys alike, and a
    blocked read never keeps the process alive), with back-pressure."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=8)
        self.eof = False
        threading.Thread(target=self._run, name="ustack-nc-stdin", daemon=True).start()

    def _run(self) -> None:
        fd = sys.stdin.fileno() if sys.stdin is not None else -1
        while True:
            try:
                data = os.read(fd, _READ_SIZE) if fd >= 0 else b""
            except OSError:
                data = b""
            try:
                asyncio.run_coroutine_threadsafe(self.queue.put(data), self.loop).result()
            except RuntimeError:  # loop closed
                return
            if not data:
                return

    async def read(self) -> bytes:
        if self.eof:
            return b""
        data = await self.queue.get()
        if not data:
            self.eof = True
        return data


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, stdin: _Stdin) -> None:
    out = sys.stdout.buffer

    async def upstream() -> None:
        while True:
            data = await stdin.read()
            if not data:
                break
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()

    async def downstream() -> None:
        while True:
            data = await reader.read(_READ_SIZE)
            if not data:
                break
            out.write(data)
            out.flush()

    up = asyncio.ensure_future(upstream())
    down = asyncio.ensure_future(downstream())
    try:
        await asyncio.gather(up, down)
    finally:
        for task in (up, down):
            task.cancel()
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def fill_pcap_checksums(stack: Any) -> None:
    """Make the stack's capture (a PcapDevice somewhere in its device chain)
    write offloaded checksums computed (``--pcap-fill-checksums``)."""
    from ustack.link.pcap import PcapDevice

    device = getattr(stack, "device", None)
    while device is not None:
        if isinstance(device, PcapDevice):
            device.fill_checksums = True
            return
        device = getattr(device, "inner", None)


async def _main(args: argparse.Namespace, host: str, port: int) -> int:
    from ustack.stack import Stack
    from ustack.streams import open_connection, start_server

    loop = asyncio.get_running_loop()
    stack = await Stack.start(iface=args.iface, address=args.address, gateway=args.gateway,
                              pcap=args.pcap, trace_dir=args.trace)
    if args.pcap_fill_checksums:
        fill_pcap_checksums(stack)
    try:
        stdin = _Stdin(loop)
        if args.listen is None:
            reader, writer = await open_connection(host, port, stack=stack, timeout=args.timeout)
            await _pipe(reader, writer, stdin)
            return 0
        lock = asyncio.Lock()
        done: asyncio.Future[None] = loop.create_future()
        errors: list[BaseException] = []

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            async with lock:
                try:
                    await _pipe(reader, writer, stdin)
                except (ConnectionError, TimeoutError) as exc:
                    errors.append(exc)
                finally:
                    if not args.keep_listening and not done.done():
                        done.set_result(None)

        server = await start_server(serve, port=port, stack=stack, backlog=1)
        try:
            await done
        finally:
            server.close()
        if errors:
            raise errors[0]
        return 0
    finally:
        await stack.close()
