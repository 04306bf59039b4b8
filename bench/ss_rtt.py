#!/usr/bin/env python3
"""``ss -tni`` rtt of the kernel vs ``ustack ss -tni`` rtt, same veth path.

One lab (:class:`ustack.lab.Lab`); a kernel echo server in the peer
namespace.  The kernel client (stack namespace, a kernel address on the
stack-side veth for its turn only) and then a ustack client each open one
connection, exchange ``--rounds`` small request/response pairs (ping-pong:
no queueing, the RTT is the path's and the endpoints' answer time) and
keep the connection open while ``ss -tniH`` (kernel) or ``python -m ustack
ss -tniH`` (the separate-process view of the running stack) reads it.  Prints
the ``rtt:srtt/rttvar`` and ``minrtt`` of each and the ratios.

    sudo python3 bench/ss_rtt.py [--rounds 2000] [--size 64] [--json] [--name LAB]
    sudo python3 bench/ss_rtt.py --bulk 2000 [--cc cubic]   # ss sampled during bulk sends

Needs root (namespaces, AF_PACKET).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from throughput import PEER, _peer_result, _start_peer, _stop_peer, kernel_address  # noqa: E402

from ustack.lab import Lab  # noqa: E402

PORT = 5107
BULK_PORT = 5108

#: the kernel echo server (peer namespace): echoes every read back
ECHO = r"""
import socket, sys
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", int(sys.argv[1]))); srv.listen(8)
print("READY", flush=True)
while True:
    c, _ = srv.accept()
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        d = c.recv(65536)
        if not d:
            break
        c.sendall(d)
    c.close()
"""

#: the kernel client (stack namespace): ping-pong, then hold the connection
CLIENT = r"""
import socket, sys
host, port, rounds, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
s = socket.create_connection((host, port), timeout=10)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
msg = b"p" * size
for _ in range(rounds):
    s.sendall(msg)
    got = 0
    while got < size:
        got += len(s.recv(65536))
print("DONE", s.getsockname()[1], flush=True)
sys.stdin.readline()
s.close()
"""

_RTT = re.compile(r"\brtt:([\d.]+)/([\d.]+)")
_MINRTT = re.compile(r"\bminrtt:([\d.]+)")


def parse_ss(text: str, lport: int | None) -> dict[str, float] | None:
    """rtt, rttvar and minrtt (ms) of the connection from local port ``lport``
    (None: the first one) in ``ss -tniH`` output (one socket = its line plus
    the info line)."""
    flat = " ".join(text.split("\n"))
    for chunk in re.split(r"(?=\bESTAB\b)", flat):
        if lport is not None and f":{lport} " not in chunk:
            continue
        m = _RTT.search(chunk)
        if m is None:
            return None
        mm = _MINRTT.search(chunk)
        return {"rtt_ms": float(m.group(1)), "rttvar_ms": float(m.group(2)),
                "minrtt_ms": float(mm.group(1)) if mm else float("nan")}
    return None


def kernel_bulk(lab: Lab, nbytes: int, cc: str) -> dict[str, Any]:
    """The kernel sends ``nbytes`` to the sink; ss reads it mid-transfer."""
    with kernel_address(lab):
        sink = _start_peer(lab, "sink", BULK_PORT, "--no-hash")
        try:
            sender = lab.popen_in_stack(
                [sys.executable, str(PEER), "send", "--port", str(BULK_PORT), "--connect",
                 lab.peer_address, "--bytes", str(nbytes), "--congestion", cc],
                stdout=subprocess.PIPE, text=True)
            texts: list[str] = []
            while sender.poll() is None and len(texts) < 20:
                texts.append(lab.run_in_stack(
                    ["ss", "-tniH", "state", "established", "dport", "=", f":{BULK_PORT}"],
                    capture_output=True, text=True).stdout)
            _peer_result(sender, timeout=120)
        finally:
            _stop_peer(sink)
    samples = [r for t in texts for r in [parse_ss(t, None)] if r is not None]
    if not samples:
        raise RuntimeError("no ss sample of the kernel sender")
    return _median(samples)


async def ustack_bulk(lab: Lab, nbytes: int, cc: str, run_dir: str) -> dict[str, Any]:
    from ustack.stack import Stack

    os.environ["USTACK_RUN_DIR"] = run_dir
    with lab.enter_stack_ns():
        stack = await Stack.start(iface=lab.stack_if, address=lab.stack_address)
    stack.tcp.config.congestion = cc
    sink = _start_peer(lab, "sink", BULK_PORT, "--no-hash")
    texts: list[str] = []
    try:
        reader, writer = await stack.open_connection(lab.peer_address, BULK_PORT, timeout=10)
        done = False

        async def send() -> None:
            nonlocal done
            chunk = b"b" * (1 << 20)
            left = nbytes
            while left > 0:
                writer.write(chunk[:left])
                left -= len(chunk)
                await writer.drain()
            writer.write_eof()
            await reader.read()
            done = True

        task = asyncio.ensure_future(send())
        while not done and len(texts) < 20:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "ustack", "ss", "-tniH", "state", "established",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                env={**os.environ, "USTACK_RUN_DIR": run_dir})
            out, _ = await asyncio.wait_for(proc.communicate(), 60)
            if not done:
                texts.append(out.decode())
        await asyncio.wait_for(task, 120)
        writer.close()
        await writer.wait_closed()
    finally:
        _stop_peer(sink)
        await stack.close()
    samples = [r for t in texts for r in [parse_ss(t, None)] if r is not None]
    if not samples:
        raise RuntimeError("no ustack ss sample of the transfer")
    return _median(samples)


def _median(samples: list[dict[str, float]]) -> dict[str, Any]:
    out: dict[str, Any] = {"samples": len(samples)}
    for key in samples[0]:
        vals = sorted(x[key] for x in samples)
        out[key] = vals[len(vals) // 2]
    return out


def kernel_side(lab: Lab, rounds: int, size: int) -> dict[str, Any]:
    with kernel_address(lab):
        cli = lab.popen_in_stack([sys.executable, "-c", CLIENT, lab.peer_address, str(PORT),
                                  str(rounds), str(size)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert cli.stdout is not None and cli.stdin is not None
        try:
            line = cli.stdout.readline()
            if not line.startswith("DONE"):
                raise RuntimeError(f"kernel client failed: {line!r}")
            lport = int(line.split()[1])
            text = lab.run_in_stack(["ss", "-tniH", "state", "established"],
                                    capture_output=True, text=True, check=True).stdout
        finally:
            cli.stdin.write("\n")
            cli.stdin.flush()
            cli.wait(timeout=10)
    res = parse_ss(text, lport)
    if res is None:
        raise RuntimeError(f"no rtt for port {lport} in ss output: {text!r}")
    return res


async def ustack_side(lab: Lab, rounds: int, size: int, run_dir: str) -> dict[str, Any]:
    from ustack.stack import Stack

    os.environ["USTACK_RUN_DIR"] = run_dir
    with lab.enter_stack_ns():
        stack = await Stack.start(iface=lab.stack_if, address=lab.stack_address)
    try:
        reader, writer = await stack.open_connection(lab.peer_address, PORT, timeout=10)
        writer.transport.set_write_buffer_limits(0)
        msg = b"p" * size
        for _ in range(rounds):
            writer.write(msg)
            await reader.readexactly(size)
        lport = writer.get_extra_info("sockname")[1]
        # the separate-process view, as a user runs it while the stack runs
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ustack", "ss", "-tniH", "state", "established",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "USTACK_RUN_DIR": run_dir})
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        info = writer.get_extra_info("tcp_info")
        writer.close()
        await writer.wait_closed()
    finally:
        await stack.close()
    text = out.decode()
    res = parse_ss(text, lport)
    if res is None:
        raise RuntimeError(f"no rtt for port {lport} in ustack ss: {text!r} {err!r}")
    res["tcp_info_srtt_ms"] = info.srtt * 1e3
    res["tcp_info_min_rtt_ms"] = info.min_rtt * 1e3
    return res


def run(rounds: int, size: int, name: str | None = None, bulk_mb: float = 0.0,
        cc: str = "cubic") -> dict[str, Any]:
    lab = Lab.create(name or f"hsr{os.getpid() % 100000}")
    lab.up()
    try:
        if bulk_mb > 0:
            nbytes = int(bulk_mb * 1e6)
            kb = kernel_bulk(lab, nbytes, cc)
            with tempfile.TemporaryDirectory() as run_dir:
                ub = asyncio.run(ustack_bulk(lab, nbytes, cc, run_dir))
            return {"mode": "bulk", "bytes": nbytes, "congestion": cc, "kernel": kb,
                    "ustack": ub, "rtt_ratio": ub["rtt_ms"] / kb["rtt_ms"],
                    "minrtt_ratio": ub["minrtt_ms"] / kb["minrtt_ms"],
                    "load": os.getloadavg()[0]}
        echo = lab.popen_in_peer([sys.executable, "-c", ECHO, str(PORT)],
                                 stdout=subprocess.PIPE, text=True)
        assert echo.stdout is not None
        try:
            if not echo.stdout.readline().startswith("READY"):
                raise RuntimeError("echo server did not start")
            kernel = kernel_side(lab, rounds, size)
            with tempfile.TemporaryDirectory() as run_dir:
                ours = asyncio.run(ustack_side(lab, rounds, size, run_dir))
        finally:
            echo.kill()
            echo.wait()
    finally:
        lab.down()
    return {"mode": "ping-pong", "rounds": rounds, "size": size, "kernel": kernel,
            "ustack": ours,
            "rtt_ratio": ours["rtt_ms"] / kernel["rtt_ms"] if kernel["rtt_ms"] else None,
            "minrtt_ratio": (ours["minrtt_ms"] / kernel["minrtt_ms"]
                             if kernel["minrtt_ms"] else None),
            "load": os.getloadavg()[0]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=2000)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--json", action="store_true")
    p.add_argument("--name", default=None, help="lab name (default hsr<pid>)")
    p.add_argument("--bulk", type=float, default=0.0, metavar="MB",
                   help="instead of ping-pong: a bulk transfer of MB megabytes each, ss "
                        "sampled during it (median of the samples)")
    p.add_argument("--cc", default="cubic", help="congestion control of both senders (bulk)")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("bench/ss_rtt.py: needs root (namespaces, AF_PACKET)", file=sys.stderr)
        return 2
    r = run(args.rounds, args.size, args.name, args.bulk, args.cc)
    if args.json:
        print(json.dumps(r, indent=1))
        return 0
    k, u = r["kernel"], r["ustack"]
    print("| side | ss rtt (ms) | rttvar | minrtt |")
    print("|---|---|---|---|")
    print(f"| kernel (ss -tni) | {k['rtt_ms']:.3f} | {k['rttvar_ms']:.3f} | {k['minrtt_ms']:.3f} |")
    print(f"| ustack (ustack ss -tni) | {u['rtt_ms']:.3f} | {u['rttvar_ms']:.3f} | "
          f"{u['minrtt_ms']:.3f} |")
    what = (f"bulk {args.bulk:g} MB {args.cc}, median of {k['samples']}/{u['samples']} samples"
            if args.bulk else f"{args.rounds} x {args.size} B ping-pong")
    print(f"ratio ustack/kernel: rtt {r['rtt_ratio']:.2f}, minrtt {r['minrtt_ratio']:.2f} "
          f"(load {r['load']:.1f}, {what})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
