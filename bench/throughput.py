#!/usr/bin/env python3
"""Bulk TCP throughput: ustack to kernel, kernel to ustack, kernel to kernel.

All three run over the same kind of link: a veth pair between two network
namespaces built by :class:`ustack.lab.Lab`.  The kernel peer is
``bench/throughput_peer.py`` (plain sockets).  Each figure is payload bytes
divided by the time from the first byte written to the receiver's
confirmation that it has everything (ustack to kernel: the sink's reply after
our FIN; kernel to ustack: our reading EOF, ``reader.read(--read-size)`` in a
loop), i.e. what an application sees.
``cpu_seconds`` (in ``--json``) is this process's CPU time over the same
interval: the stack side only (the kernel peer is another process).

    sudo python3 bench/throughput.py --mb 200 [--json] [--profile out.prof]
    sudo python3 bench/throughput.py --exact-wire --runs 5 --json

``--exact-wire`` (= ``--no-gso``) is the exact wire both ways.  ``--runs N``
repeats the three measurements N times, interleaved in one lab (the machine
is shared: only figures from the same run compare); each direction then
reports the median as ``mbps`` with ``mbps_min``/``mbps_max``, every run's
figure in ``runs``, and ``us_cpu_per_segment`` (stack-process CPU per
MSS-sized segment of payload, median); ``loadavg`` is the 1-minute load
before and after.  ``run_share``/``wait_share`` (the run picked): the share of
the transfer the stack process ran on a CPU, and the share it was runnable
but waited for one (/proc schedstat): a high wait share means a busy machine,
whose MB/s say little about the stack.

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
import statistics
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


def _sched() -> tuple[int, int]:
    """This thread's (ns on a CPU, ns runnable but waiting for one) from
    /proc/thread-self/schedstat; (0, 0) where there is none."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            run, wait, _ = f.read().split()
        return int(run), int(wait)
    except (OSError, ValueError):
        return 0, 0


def _shares(s0: tuple[int, int], elapsed: float) -> dict[str, float]:
    """``run_share``/``wait_share``: of the interval, the fraction the stack
    ran and the fraction it was runnable but waited for a CPU (a busy
    machine: the MB/s then say more about the others than about the stack)."""
    s1 = _sched()
    if not s1[0] or elapsed <= 0:
        return {}
    return {"run_share": (s1[0] - s0[0]) / 1e9 / elapsed,
            "wait_share": (s1[1] - s0[1]) / 1e9 / elapsed}


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
        s0 = _sched()
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
                "congestion": getattr(info, "ca_name", None), **_shares(s0, elapsed)}
    finally:
        _stop_peer(sink)


async def kernel_to_ustack(stack: Any, lab: Lab, nbytes: int, verify: bool,
                           read_size: int = 1 << 16, cc: str | None = None) -> dict[str, Any]:
    source = _start_peer(lab, "source", 5103, "--bytes", str(nbytes), "--seed", "9",
                         *_cc_args(cc))
    try:
        reader, writer = await stack.open_connection(lab.peer_address, 5103, timeout=10,
                                                     limit=1 << 20)
        h = hashlib.sha256()
        got = 0
        t0 = time.perf_counter()
        c0 = time.process_time()
        s0 = _sched()
        while True:
            data = await reader.read(read_size)
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
        counters = getattr(stack.tcp, "counters", {})
        dev = stack.device.counters() if hasattr(stack.device, "counters") else {}
        return {"mbps": nbytes / elapsed / 1e6, "ok": ok, "seconds": elapsed,
                "cpu_seconds": cpu, "retrans": getattr(info, "total_retrans", None),
                # receive runs (segments taken without their own decode) and
                # frames per device wakeup, over the stack's life so far
                "segs_merged": counters.get("tcp_segs_merged"),
                "segs_in": counters.get("tcp_segs_in"),
                "rx_frames_per_wakeup": dev.get("rx_frames", 0) / max(1, dev.get("rx_wakeups", 1)),
                **_shares(s0, elapsed)}
    finally:
        _stop_peer(source)


async def run_ustack(lab: Lab, nbytes: int, verify: bool, directions: list[str],
                     profile: str | None, gso: bool,
                     read_size: int = 1 << 16,
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
                                                                 read_size, cc)
    finally:
        if prof is not None:
            prof.disable()
            prof.dump_stats(profile)  # type: ignore[arg-type]
        await stack.close()
    return results


def _summarise(runs: list[dict[str, Any]], nbytes: int, gso: bool) -> dict[str, Any]:
    """One run: as measured.  Several: per direction the run closest to the
    median MB/s, with ``mbps`` the median, ``mbps_min``/``mbps_max``, each
    run's MB/s and ratio to kernel-to-kernel (``runs``/``ratios``)."""
    segments = nbytes / 1448
    for one in runs:
        kk = one.get("kernel_to_kernel", {}).get("mbps")
        for key in ("ustack_to_kernel", "kernel_to_ustack"):
            r = one.get(key)
            if r is None:
                continue
            if "cpu_seconds" in r:
                r["us_cpu_per_segment"] = r["cpu_seconds"] / segments * 1e6
            if kk:
                r["ratio_to_kernel"] = r["mbps"] / kk
    if len(runs) == 1:
        return runs[0]
    out: dict[str, Any] = {}
    for key in ("ustack_to_kernel", "kernel_to_ustack", "kernel_to_kernel"):
        got = [one[key] for one in runs if key in one]
        if not got:
            continue
        figures = [r["mbps"] for r in got]
        median = statistics.median(figures)
        pick = dict(min(got, key=lambda r: abs(r["mbps"] - median)))
        pick.update(mbps=median, mbps_min=min(figures), mbps_max=max(figures), runs=figures,
                    ok=all(r.get("ok", True) for r in got))
        if "ratio_to_kernel" in got[0]:
            pick["ratio_to_kernel"] = statistics.median(r["ratio_to_kernel"] for r in got)
            pick["ratios"] = [r["ratio_to_kernel"] for r in got]
        if "us_cpu_per_segment" in got[0]:
            pick["us_cpu_per_segment"] = statistics.median(r["us_cpu_per_segment"]
                                                           for r in got)
        out[key] = pick
    return out


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
    parser.add_argument("--exact-wire", dest="gso", action="store_false",
                        help="the same as --no-gso")
    parser.add_argument("--read-size", type=int, default=1 << 16,
                        help="kernel->ustack: bytes per reader.read() (default 65536, "
                        "asyncio's stream buffer size; 1 MB reads cost a fresh 1 MB "
                        "allocation each, ~1/3 of the stack's CPU in GSO mode)")
    parser.add_argument("--runs", type=int, default=1,
                        help="repeat N times in one lab; median, min and max")
    parser.add_argument("--uvloop", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--name", default=None, help="lab name (default hxb<pid>)")
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
    lab = Lab.create(args.name or f"hxb{os.getpid() % 100000}", offloads=args.gso)
    results: dict[str, Any] = {"bytes": nbytes, "gso": args.gso, "read_size": args.read_size,
                               "loop": "uvloop" if args.uvloop else "asyncio",
                               "congestion": args.cc}
    load0 = os.getloadavg()[0]
    runs: list[dict[str, Any]] = []
    lab.up()
    try:
        for _ in range(max(1, args.runs)):
            one: dict[str, Any] = {}
            if "kk" in directions:
                one["kernel_to_kernel"] = {"mbps": kernel_to_kernel(lab, nbytes, args.cc)}
            if "up" in directions or "down" in directions:
                coro = run_ustack(lab, nbytes, args.verify, directions, args.profile, args.gso,
                                  args.read_size, args.cc)
                if args.uvloop:
                    import uvloop

                    one.update(uvloop.run(coro))
                else:
                    one.update(asyncio.run(coro))
            runs.append(one)
    finally:
        lab.down()
    results.update(_summarise(runs, nbytes, args.gso))
    results["loadavg"] = [load0, os.getloadavg()[0]]
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        for key in ("ustack_to_kernel", "kernel_to_ustack", "kernel_to_kernel"):
            if key in results:
                r = results[key]
                extra = ""
                if "mbps_min" in r:
                    extra = f"  [{r['mbps_min']:.1f}..{r['mbps_max']:.1f}]"
                if "ratio_to_kernel" in r:
                    extra += f"  ({r['ratio_to_kernel']:.4f} of kernel)"
                if "us_cpu_per_segment" in r:
                    extra += f"  {r['us_cpu_per_segment']:.2f} us CPU/segment"
                if "wait_share" in r:
                    extra += f"  run {r['run_share']:.0%} wait {r['wait_share']:.0%}"
                if "retrans" in r:
                    extra += f"  retrans={r['retrans']} ok={r['ok']}"
                print(f"{key:18s} {r['mbps']:9.1f} MB/s{extra}")
        print(f"load average {results['loadavg'][0]:.2f} -> {results['loadavg'][1]:.2f}")
    bad = [k for k, v in results.items() if isinstance(v, dict) and v.get("ok") is False]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
