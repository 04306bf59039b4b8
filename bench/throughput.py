#!/usr/bin/env python3
"""Bulk TCP throughput: ustack to kernel, kernel to ustack, kernel to kernel.

All three run over the same kind of link: a veth pair between two network
namespaces built by :class:`ustack.lab.Lab`.  The kernel peer is
``bench/throughput_peer.py`` (plain sockets).  Each figure is payload bytes
divided by the time from the first byte written to the receiver's
confirmation that it has everything (ustack to kernel: the sink's reply after
our FIN; kernel to ustack: our reading EOF), i.e. what an application sees.
``cpu_seconds`` (in ``--json``) is this process's CPU time over the same
interval: the stack side only (the kernel peer is another process).

    sudo python3 bench/throughput.py --mb 200 [--json] [--profile out.prof]

Needs root (namespaces, AF_PACKET).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PEER = HERE / "throughput_peer.py"
sys.path.insert(0, str(HERE))

from throughput_peer import pattern_chunks, pattern_sha256  # noqa: E402

from ustack.lab import Lab  # noqa: E402


def _start_peer(lab: Lab, mode: str, port: int, *extra: str,
                stack_side: bool = False) -> subprocess.Popen[str]:
    argv = [sys.executable, str(PEER), mode, "--port", str(port), *extra]
    popen = lab.popen_in_stack if stack_side else lab.popen_in_peer
    proc = popen(argv, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    if mode != "send":
        line = proc.stdout.readline()
        if not line.startswith("READY"):
            proc.kill()
            raise RuntimeError(f"kernel peer did not start: {line!r}")
    return proc


def _peer_result(proc: subprocess.Popen[str], timeout: float = 120) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=timeout)
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    return json.loads(lines[-1]) if lines else {}


def _stop_peer(proc: subprocess.Popen[str]) -> None:
    """Let a peer finish (30 s at most), then kill it if it is still running."""
    with contextlib.suppress(Exception):
        _peer_result(proc, timeout=30)
    if proc.poll() is None:
        proc.kill()


@contextlib.contextmanager
def kernel_address(lab: Lab) -> Iterator[None]:
    """Give the stack-side veth a kernel address for the block only (no
    ustack may run on it meanwhile: DESIGN.md trap 1)."""
    addr = lab.stack_address
    subprocess.run(["ip", "-n", lab.stack_ns, "addr", "add", addr, "dev", lab.stack_if],
                   check=True)
    try:
        yield
    finally:
        subprocess.run(["ip", "-n", lab.stack_ns, "addr", "flush", "dev", lab.stack_if],
                       check=True)
        subprocess.run(["ip", "-n", lab.stack_ns, "neigh", "flush", "all"], check=False)
        subprocess.run(["ip", "-n", lab.peer_ns, "neigh", "flush", "all"], check=False)


def _cc_args(cc: str | None) -> list[str]:
    return ["--congestion", cc] if cc else []


def kernel_to_kernel(lab: Lab, nbytes: int, cc: str | None = None) -> float:
    with kernel_address(lab):
        sink = _start_peer(lab, "sink", 5101, "--no-hash")
        sender = lab.popen_in_stack(
            [sys.executable, str(PEER), "send", "--port", "5101", "--connect",
             lab.peer_address, "--bytes", str(nbytes), *_cc_args(cc)],
            stdout=subprocess.PIPE, text=True)
        res = _peer_result(sender)
        _peer_result(sink)
        return nbytes / float(res["seconds"]) / 1e6


async def ustack_to_kernel(stack: Any, lab: Lab, nbytes: int, verify: bool) -> dict[str, Any]:
    sink = _start_peer(lab, "sink", 5102, *([] if verify else ["--no-hash"]))
    try:
        reader, writer = await stack.open_connection(lab.peer_address, 5102, timeout=10)
        chunks = pattern_chunks(nbytes, seed=7)
        t0 = time.perf_counter()
        c0 = time.process_time()
        for piece in chunks:
            writer.write(piece)
            await writer.drain()
        writer.write_eof()
        reply = await reader.read()
        elapsed = time.perf_counter() - t0
        cpu = time.process_time() - c0
        info = writer.get_extra_info("tcp_info")
        writer.close()
        await writer.wait_closed()
        got, _, sha = reply.decode().strip().partition(" ")
        ok = int(got) == nbytes and (not verify or sha == pattern_sha256(nbytes, 7))
        return {"mbps": nbytes / elapsed / 1e6, "ok": ok, "seconds": elapsed,
                "cpu_seconds": cpu, "retrans": getattr(info, "total_retrans", None),
                "congestion": getattr(info, "ca_name", None)}
    finally:
        _stop_peer(sink)


async def kernel_to_ustack(stack: Any, lab: Lab, nbytes: int, verify: bool,
                           cc: str | None = None) -> dict[str, Any]:
    source = _start_peer(lab, "source", 5103, "--bytes", str(nbytes), "--seed", "9",
                         *_cc_args(cc))
    try:
        reader, writer = await stack.open_connection(lab.peer_address, 5103, timeout=10,
                                                     limit=1 << 20)
        h = hashlib.sha256()
        got = 0
        t0 = time.perf_counter()
        c0 = time.process_time()
        while True:
            data = await reader.read(1 << 20)
            if not data:
                break
            got += len(data)
            if verify:
                h.update(data)
        elapsed = time.perf_counter() - t0
        cpu = time.process_time() - c0
        info = writer.get_extra_info("tcp_info")
        writer.close()
        await writer.wait_closed()
        ok = got == nbytes and (not verify or h.hexdigest() == pattern_sha256(nbytes, 9))
        return {"mbps": nbytes / elapsed / 1e6, "ok": ok, "seconds": elapsed,
                "cpu_seconds": cpu, "retrans": getattr(info, "total_retrans", None)}
    finally:
        _stop_peer(source)


async def run_ustack(lab: Lab, nbytes: int, verify: bool, directions: list[str],
                     profile: str | None, gso: bool,
                     cc: str | None = None) -> dict[str, dict[str, Any]]:
    from ustack.stack import Stack

    with lab.enter_stack_ns():
        stack = await Stack.start(iface=lab.stack_if, address=lab.stack_address, offload=gso,
                                  diagnostics=False)
    if cc:  # TcpConfig(congestion=cc) for the connections opened below
        stack.tcp.config.congestion = cc
    results: dict[str, dict[str, Any]] = {}
    prof = None
    if profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    try:
        if "up" in directions:
            results["ustack_to_kernel"] = await ustack_to_kernel(stack, lab, nbytes, verify)
        if "down" in directions:
            results["kernel_to_ustack"] = await kernel_to_ustack(stack, lab, nbytes, verify,
                                                                 cc)
    finally:
        if prof is not None:
            prof.disable()
            prof.dump_stats(profile)  # type: ignore[arg-type]
        await stack.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=200, help="megabytes per direction")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--verify", action="store_true", help="also check SHA-256")
    parser.add_argument("--only", default="up,down,kk",
                        help="comma list of up (ustack->kernel), down, kk")
    parser.add_argument("--profile", default=None, help="cProfile the ustack runs to FILE")
    parser.add_argument("--gso", action=argparse.BooleanOptionalAction, default=True,
                        help="PACKET_VNET_HDR device: TCP segmentation offload on send, "
                        "coalesced frames on receive (--no-gso: exact wire both ways, RX ring, "
                        "peer veth without offloads)")
    parser.add_argument("--uvloop", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--cc", default=None,
                        help="congestion control of every sender: the kernel's (its "
                        "TCP_CONGESTION; the host default here is bbr) and ustack's "
                        "(TcpConfig.congestion, default cubic); unset: each side's default")
    args = parser.parse_args()
    nbytes = args.mb * 1_000_000
    directions = args.only.split(",")
    # a SIGTERM (e.g. `timeout`) must still run the finally that removes the lab
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # --no-gso is the exact wire both ways: the peer veth gets no TSO/GSO or
    # checksum offload either, so the kernel sends MSS-sized, checksummed frames
    lab = Lab.create(f"hxb{os.getpid() % 100000}", offloads=args.gso)
    results: dict[str, Any] = {"bytes": nbytes, "gso": args.gso,
                               "loop": "uvloop" if args.uvloop else "asyncio",
                               "congestion": args.cc}
    lab.up()
    try:
        if "kk" in directions:
            results["kernel_to_kernel"] = {"mbps": kernel_to_kernel(lab, nbytes, args.cc)}
        if "up" in directions or "down" in directions:
            coro = run_ustack(lab, nbytes, args.verify, directions, args.profile, args.gso,
                              args.cc)
            if args.uvloop:
                import uvloop

                results.update(uvloop.run(coro))
            else:
                results.update(asyncio.run(coro))
    finally:
        lab.down()
    kk = results.get("kernel_to_kernel", {}).get("mbps")
    for key in ("ustack_to_kernel", "kernel_to_ustack"):
        if key in results and kk:
            results[key]["ratio_to_kernel"] = results[key]["mbps"] / kk
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        for key in ("ustack_to_kernel", "kernel_to_ustack", "kernel_to_kernel"):
            if key in results:
                r = results[key]
                extra = ""
                if "ratio_to_kernel" in r:
                    extra = f"  ({r['ratio_to_kernel']:.4f} of kernel)"
                if "retrans" in r:
                    extra += f"  retrans={r['retrans']} ok={r['ok']}"
                print(f"{key:18s} {r['mbps']:9.1f} MB/s{extra}")
    bad = [k for k, v in results.items() if isinstance(v, dict) and v.get("ok") is False]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
