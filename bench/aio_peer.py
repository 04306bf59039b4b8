#!/usr/bin/env python3
"""The asyncio side of the rr / cps / idle benchmarks, run as a subprocess
inside a lab namespace (``ip netns exec NS python bench/aio_peer.py ...``).

One process type for every figure: the *same* asyncio code runs on the
kernel's sockets (``--loop kernel-uvloop`` or ``kernel-asyncio``) or on ustack
(``--loop ustack-uvloop`` / ``ustack-asyncio``: ``ustack.loop_factory`` with
uvloop or the standard library's loop underneath, so ``asyncio.open_connection`` and
``asyncio.start_server`` go through the stack).

Roles:
  serve   ``asyncio.start_server`` on ``--ports``; every connection is echoed
          until EOF, then closed.  Prints ``READY`` once listening; runs until
          stdin closes (or SIGTERM), then prints one JSON line of counters.
  rr      one connection, ``--count`` request/response exchanges of each
          ``--sizes`` (after ``--warmup``); prints one JSON line with the
          latencies in µs.
  cps     for every ``--requests`` size and ``--inflights`` concurrency:
          ``--conns`` connections (``--seq-conns`` when sequential), each
          connect + close (size 0) or connect + N bytes echoed + close;
          prints one JSON line (connections/s, errors per run).
  idle    open ``--conns`` connections spread over ``--ports`` and keep them
          (``--api streams``: reader/writer pairs; ``protocol``: bare
          ``asyncio.Protocol`` transports, the smallest application);
          prints ``OPEN {json}`` when all are established, then waits for
          stdin to close and closes them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import resource
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

#: ustack-*: ustack.loop_factory over uvloop / the stdlib loop; kernel-*: plain loops
LOOPS = ("ustack-uvloop", "ustack-asyncio", "kernel-uvloop", "kernel-asyncio")


def raise_nofile(want: int) -> int:
    """Raise RLIMIT_NOFILE towards ``want`` (root may raise the hard limit up
    to fs.nr_open); returns the soft limit in force afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return soft
    try:
        with open("/proc/sys/fs/nr_open") as f:
            ceiling = int(f.read())
    except OSError:
        ceiling = hard
    target = min(want, max(hard, ceiling))
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, max(hard, target)))
    except (ValueError, OSError):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_bytes() -> int:
    """This process's resident set size (VmRSS of /proc/self/status)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _set_nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


# ------------------------------------------------------------------- server
class EchoServer:
    """Echo every connection until EOF; count what happened."""

    def __init__(self) -> None:
        self.accepted = 0
        self.open = 0
        self.errors = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.open += 1
        _set_nodelay(writer)
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                writer.write(data)
        except OSError:
            self.errors += 1
        finally:
            self.open -= 1
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


async def _stdin_closed() -> None:
    """Wait until our stdin reaches EOF (the parent closed its end).  A
    daemon thread reads it, so a SIGTERM exit never waits for that read."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def reader() -> None:
        with contextlib.suppress(OSError, ValueError):
            sys.stdin.read()
        with contextlib.suppress(RuntimeError):  # the loop may be closed already
            loop.call_soon_threadsafe(_resolve, done)

    threading.Thread(target=reader, daemon=True).start()
    await done


async def role_serve(args: argparse.Namespace) -> dict[str, Any]:
    echo = EchoServer()
    servers = []
    for port in args.ports:
        servers.append(await asyncio.start_server(echo.handle, args.bind, port,
                                                  backlog=args.backlog))
    print("READY " + " ".join(str(p) for p in args.ports), flush=True)
    stop = asyncio.get_running_loop().create_future()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        asyncio.get_running_loop().add_signal_handler(
            signal.SIGTERM, _resolve, stop)
    waiter = asyncio.ensure_future(_stdin_closed())
    await asyncio.wait([waiter, stop], return_when=asyncio.FIRST_COMPLETED)
    for s in servers:
        s.close()
    return {"role": "serve", "accepted": echo.accepted, "open": echo.open,
            "errors": echo.errors, "rss": rss_bytes()}


# ---------------------------------------------------------------- rr client
async def rr_exchange(host: str, port: int, size: int, count: int,
                      warmup: int) -> list[float]:
    """One connection, ``warmup + count`` exchanges of ``size`` bytes; the
    latencies (µs) of the last ``count``.  The code every loop runs."""
    reader, writer = await asyncio.open_connection(host, port)
    _set_nodelay(writer)
    msg = b"x" * size
    out: list[float] = []
    clock = time.perf_counter_ns
    try:
        for i in range(warmup + count):
            t0 = clock()
            writer.write(msg)
            await reader.readexactly(size)
            t1 = clock()
            if i >= warmup:
                out.append((t1 - t0) / 1000.0)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return out


async def role_rr(args: argparse.Namespace) -> dict[str, Any]:
    res: dict[str, Any] = {"role": "rr", "loop": args.loop, "sizes": {}}
    gc.disable()  # no collector pauses inside the timed loop (same for every loop)
    try:
        for size in args.sizes:
            res["sizes"][str(size)] = await rr_exchange(args.host, args.ports[0], size,
                                                        args.count, args.warmup)
    finally:
        gc.enable()
    return res


# --------------------------------------------------------------- cps client
class StageTimeout(Exception):
    """One step of a cps connection took longer than STAGE_TIMEOUT."""


#: seconds one step (connect, request, close) of a cps connection may take:
#: a connection that hangs is counted (``errors``), it does not hang the run
STAGE_TIMEOUT = 10.0


async def cps_one(host: str, port: int, request: bytes) -> None:
    """connect (+ one request/response) + close: the unit counted by cps."""
    stage = "connect"
    try:
        async with asyncio.timeout(STAGE_TIMEOUT):
            reader, writer = await asyncio.open_connection(host, port)
        if request:
            stage = "request"
            async with asyncio.timeout(STAGE_TIMEOUT):
                writer.write(request)
                await reader.readexactly(len(request))
        stage = "close"
        writer.close()
        async with asyncio.timeout(STAGE_TIMEOUT):
            await writer.wait_closed()
    except TimeoutError:
        raise StageTimeout(f"hung in {stage}") from None


async def cps_run(host: str, ports: list[int], total: int, inflight: int,
                  request: bytes) -> dict[str, Any]:
    """``total`` connections, ``inflight`` at a time, over ``ports`` in turn."""
    errors: dict[str, int] = {}
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < total:
            i = next_index
            next_index += 1
            try:
                await cps_one(host, ports[i % len(ports)], request)
            except StageTimeout as exc:
                errors[str(exc)] = errors.get(str(exc), 0) + 1
            except (OSError, asyncio.IncompleteReadError) as exc:
                key = type(exc).__name__
                errors[key] = errors.get(key, 0) + 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(inflight, total))))
    elapsed = time.perf_counter() - t0
    done = total - sum(errors.values())
    return {"conns": total, "inflight": inflight, "request": len(request),
            "seconds": elapsed, "ok": done, "errors": errors,
            "cps": done / elapsed if elapsed > 0 else 0.0}


async def role_cps(args: argparse.Namespace) -> dict[str, Any]:
    """Every (request size, in-flight) pair of ``--requests`` x
    ``--inflights``; sequential runs (in flight 1) use ``--seq-conns``."""
    # warm the path (ARP, code paths) outside the timed part
    with contextlib.suppress(OSError, asyncio.IncompleteReadError, StageTimeout):
        await cps_one(args.host, args.ports[0], b"x")
    runs = []
    for request in args.requests:
        for inflight in args.inflights:
            total = args.seq_conns if inflight == 1 else args.conns
            runs.append(await cps_run(args.host, args.ports, total, inflight,
                                      b"x" * request))
    return {"role": "cps", "loop": args.loop, "runs": runs}


# -------------------------------------------------------------- idle client
async def role_idle(args: argparse.Namespace) -> dict[str, Any]:
    ports = args.ports
    held: list[asyncio.StreamWriter | asyncio.BaseTransport] = []
    errors: dict[str, int] = {}
    gc.collect()
    rss0 = rss_bytes()
    sem = asyncio.Semaphore(args.inflight)
    loop = asyncio.get_running_loop()

    async def one(i: int) -> None:
        async with sem:
            try:
                if args.api == "streams":
                    _r, w = await asyncio.open_connection(args.host, ports[i % len(ports)])
                    held.append(w)
                else:
                    t, _p = await loop.create_connection(asyncio.Protocol, args.host,
                                                         ports[i % len(ports)])
                    held.append(t)
            except OSError as exc:
                key = type(exc).__name__
                errors[key] = errors.get(key, 0) + 1

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(args.conns)))
    elapsed = time.perf_counter() - t0
    await asyncio.sleep(0.5)  # let the last ACKs / window updates settle
    gc.collect()
    rss1 = rss_bytes()
    n = len(held)
    # a connection the peer reset or closed meanwhile is not idle-established
    lost = sum(1 for h in held if h.is_closing())
    info = {"role": "idle", "loop": args.loop, "api": args.api, "conns": n, "lost": lost,
            "asked": args.conns,
            "errors": errors, "open_seconds": elapsed, "rss_before": rss0, "rss_after": rss1,
            "rss_per_conn": (rss1 - rss0) / n if n else None, "pid": os.getpid()}
    print("OPEN " + json.dumps(info), flush=True)
    await _stdin_closed()
    for h in held:
        h.close()
    await asyncio.sleep(0.2)
    return info


ROLES: dict[str, Callable[[argparse.Namespace], Coroutine[Any, Any, dict[str, Any]]]] = {
    "serve": role_serve, "rr": role_rr, "cps": role_cps, "idle": role_idle}


def run_on_loop(loop: str, coro: Coroutine[Any, Any, dict[str, Any]], *,
                iface: str | None, address: str | None,
                offload: bool = True) -> dict[str, Any]:
    """Run ``coro`` on the named loop (see :data:`LOOPS`)."""
    if loop == "kernel-asyncio":
        return asyncio.run(coro)
    if loop == "kernel-uvloop":
        import uvloop

        return uvloop.run(coro)
    import ustack

    if not iface or not address:
        raise SystemExit("aio_peer: --iface and --address are needed for a ustack loop")
    factory = ustack.loop_factory(iface, address, use_uvloop=(loop == "ustack-uvloop"),
                                  offload=offload)
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


def write_line(text: str) -> None:
    """One line to stdout with every byte written.  The rr result is ~170 KB:
    a blocking pipe write interrupted by a signal returns short (seen: 131072
    of 165k bytes), and print() then lost the rest, so the parent's JSON parse
    failed at column 131073 about one run in three."""
    sys.stdout.flush()
    data = memoryview((text + "\n").encode())
    while data:
        try:
            n = os.write(1, data)
        except InterruptedError:
            continue
        data = data[n:]


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("role", choices=sorted(ROLES))
    p.add_argument("--loop", choices=LOOPS, default="kernel-uvloop")
    p.add_argument("--iface", default=None, help="ustack loops: the interface")
    p.add_argument("--address", default=None, help="ustack loops: A.B.C.D/PLEN")
    p.add_argument("--no-offload", action="store_true", help="ustack loops: exact wire")
    p.add_argument("--host", default="0.0.0.0", help="rr/cps/idle: the server's address")
    p.add_argument("--bind", default="0.0.0.0", help="serve: the address to listen on")
    p.add_argument("--ports", type=_ints, default=[7000])
    p.add_argument("--backlog", type=int, default=4096)
    p.add_argument("--sizes", type=_ints, default=[1])
    p.add_argument("--count", type=int, default=10000)
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--conns", type=int, default=2000)
    p.add_argument("--inflight", type=int, default=32)
    p.add_argument("--requests", type=_ints, default=[0],
                   help="cps: request sizes (0: connect + close)")
    p.add_argument("--inflights", type=_ints, default=[32], help="cps: concurrencies")
    p.add_argument("--seq-conns", type=int, default=500, help="cps: connections when sequential")
    p.add_argument("--api", choices=("streams", "protocol"), default="streams",
                   help="idle: asyncio.open_connection pairs, or bare asyncio.Protocol "
                   "transports (loop.create_connection)")
    p.add_argument("--nofile", type=int, default=0, help="raise RLIMIT_NOFILE to this")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.nofile:
        raise_nofile(args.nofile)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    result = run_on_loop(args.loop, ROLES[args.role](args), iface=args.iface,
                         address=args.address, offload=not args.no_offload)
    write_line(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
