#!/usr/bin/env python3
"""A spoofed SYN flood against a listener: ustack's and the kernel's, side by side.

One lab (``fl<pid>...``) per target.  A small C sender
(tests/integration/data/synflood.c) forges SYNs in Linux's option layout from
random sources in 198.18.0.0/15 in the peer namespace at ``--rate`` frames/s
for ``--seconds``; the target routes those sources through the peer, so
every SYN is one it could answer.  Meanwhile a kernel client in the peer
namespace connects to the same listener ten times a second during the first
4 s (5 s timeout each) and a kernel client that connected before the flood
streams bulk data into a second listener (cubic).  Printed per target:
flood rate reached, connect success, median / p90 connect time, bulk kept
(during / before), RSS growth (ustack), SYN-ACKs sent and their rate, the
SYNs the kernel dropped before the listener saw them, the cookie counters.

    sudo python3 bench/synflood.py [--rate 120000] [--seconds 10]
                                   [--target ustack,kernel] [--one-socket] [--json]

``--target kernel`` gives the stack namespace's veth a kernel address and
runs a kernel listener there (net.ipv4.tcp_syncookies=1, the default; its
drops are TcpExtListenDrops and the veth's rx drops).  Needs root and gcc.
tests/integration/test_syn_flood.py runs :func:`flood_ustack` from here.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import ipaddress
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from ustack.lab import Lab  # noqa: E402
from ustack.stack import Stack  # noqa: E402

SOURCE = HERE.parent / "tests" / "integration" / "data" / "synflood.c"
LISTEN_PORT = 8080
BULK_PORT = 9090
#: connects start during the first CONNECT_WINDOW seconds of the flood; each
#: may take CONNECT_TIMEOUT (the kernel resends its SYN after 1 and 3 s)
CONNECT_WINDOW = 4.0
CONNECT_EVERY = 0.1
CONNECT_TIMEOUT = 5.0
#: the pre-flood baseline: PRE_SECONDS of bulk transfer, its first PRE_SKIP
#: left out (2 s gave a 1.7 s baseline whose rate swung 147-214 MB/s from
#: run to run at load 6-9 with the CPU the stack got in those seconds)
PRE_SECONDS = 4.0
PRE_SKIP = 0.3
#: the flood's sources (RFC 2544 benchmark space), routed through the peer
FLOOD_NET = "198.18.0.0/15"

CONNECTER = textwrap.dedent('''
    import json, socket, sys, threading, time
    host, port, count, every = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    results = [None] * count
    def one(i):
        t0 = time.perf_counter()
        try:
            s = socket.create_connection((host, port), timeout=float(sys.argv[5]),
                                         source_address=(sys.argv[6], 0) if sys.argv[6] else None)
        except OSError as exc:
            results[i] = {"ok": False, "error": type(exc).__name__,
                          "ms": (time.perf_counter() - t0) * 1e3}
            return
        results[i] = {"ok": True, "ms": (time.perf_counter() - t0) * 1e3}
        s.close()
    threads = []
    start = time.perf_counter()
    for i in range(count):
        delay = start + i * every - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        t = threading.Thread(target=one, args=(i,))
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    print(json.dumps(results))
''')

BULK = textwrap.dedent('''
    import socket, sys, time
    host, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    s = socket.create_connection((host, port), timeout=10.0)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, b"cubic")
    chunk = b"x" * 65536
    start = time.perf_counter()
    sent = 0
    next_report = start + 0.1
    while True:
        sent += s.send(chunk)
        now = time.perf_counter()
        if now >= next_report:
            print(f"{now - start:.3f} {sent}", flush=True)
            next_report = now + 0.1
            if now - start >= seconds:
                break
    s.close()
''')

#: the kernel listener of --target kernel: accepts and closes on LISTEN_PORT,
#: drains BULK_PORT; prints "ready", then the accepted count on stdin EOF
KERNEL_SERVER = textwrap.dedent('''
    import socket, sys, threading
    addr, port, bulk_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    accepted = 0
    ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((addr, port)); ls.listen(128)
    bs = socket.socket(); bs.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    bs.bind((addr, bulk_port)); bs.listen(8)
    def accept_loop():
        global accepted
        while True:
            c, _ = ls.accept(); accepted += 1; c.close()
    def bulk_loop():
        while True:
            c, _ = bs.accept()
            while c.recv(1 << 20):
                pass
            c.close()
    threading.Thread(target=accept_loop, daemon=True).start()
    threading.Thread(target=bulk_loop, daemon=True).start()
    print("ready", flush=True)
    sys.stdin.read()
    print(accepted, flush=True)
''')


def compile_sender(directory: Path) -> Path:
    """Build the C flood sender into ``directory``; RuntimeError without gcc."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise RuntimeError("the SYN flood needs gcc for its C sender (apt-get install gcc)")
    binary = directory / "synflood"
    subprocess.run([gcc, "-O2", "-o", str(binary), str(SOURCE)], check=True)
    return binary


def _rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _rate(samples: list[tuple[float, int]], t0: float, t1: float) -> float:
    inside = [(t, n) for t, n in samples if t0 <= t <= t1]
    if len(inside) < 2:
        return 0.0
    (ta, na), (tb, nb) = inside[0], inside[-1]
    return (nb - na) / (tb - ta) if tb > ta else 0.0


def _plain_priority() -> None:
    """In a child: the default nice value, whatever ``--stack-nice`` gave us."""
    os.setpriority(os.PRIO_PROCESS, 0, 0)


async def _in_peer(lab: Lab, *argv: str) -> asyncio.subprocess.Process:
    """Run ``argv`` in the peer namespace, in a session of its own: with
    autogroup scheduling (kernel.sched_autogroup_enabled, on here) the CPU
    is shared between sessions first, and a flood sender in the
    listener's session took its CPU out of the listener's own share (the
    stack's process fell from ~25 % to ~13 % of a CPU at load 7 when the
    flood started); a flood from another machine costs the listener
    none of its own."""
    return await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", lab.peer_ns, *argv,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        preexec_fn=_plain_priority, start_new_session=True)


#: the connecting client's own address with ``fresh_client``: on the peer's
#: link, never used before, so the target has no connection from it
FRESH_CLIENT_HOST = 201


async def _drive(lab: Lab, binary: Path, dst_mac: str, rate: int, seconds: float,
                 sample: Any = None, watch_pids: dict[str, int] | None = None,
                 fresh_client: bool = False, mark: Any = None) -> dict[str, Any]:
    """The flood, the connects and the bulk transfer against whatever listens
    on the stack address; ``sample()`` runs every 0.25 s during the flood,
    ``mark(name)`` at the start of the pre-flood window ("pre"), of the
    flood ("flood") and at its end ("end")."""
    py = sys.executable
    peer_before = _peer_tcp(lab)
    bulk = await _in_peer(lab, py, "-c", BULK, lab.stack_ip, str(BULK_PORT),
                          str(PRE_SECONDS + seconds + 1.0))
    samples: list[tuple[float, int]] = []

    async def read_bulk() -> None:
        assert bulk.stdout is not None
        async for line in bulk.stdout:
            t, n = line.split()
            samples.append((float(t), int(n)))

    bulk_reader = asyncio.ensure_future(read_bulk())
    while not samples:
        if bulk.returncode is not None:
            raise RuntimeError("the bulk client failed: " + (
                (await bulk.stderr.read()).decode() if bulk.stderr else ""))
        await asyncio.sleep(0.05)
    pre_watch = CpuWatch()
    pre_watch.start({**(watch_pids or {}), "bulk_sender": bulk.pid})
    if mark is not None:
        mark("pre")
    await asyncio.sleep(PRE_SECONDS)
    pre_watch.stop()
    if mark is not None:
        mark("flood")
    flood_t0 = samples[-1][0]
    flood = await _in_peer(lab, str(binary), lab.peer_if, dst_mac, lab.stack_ip,
                           str(LISTEN_PORT), str(rate), str(seconds))
    cpu_watch = CpuWatch()
    cpu_watch.start({**(watch_pids or {}), "flood_sender": flood.pid, "bulk_sender": bulk.pid})
    await asyncio.sleep(0.5)  # let the SYN queue fill: every later SYN gets a cookie
    count = int(CONNECT_WINDOW / CONNECT_EVERY)
    source = ""
    if fresh_client:
        network = ipaddress.ip_interface(lab.stack_address).network
        source = str(network.network_address + FRESH_CLIENT_HOST)
        lab.run_in_peer(["ip", "addr", "add", f"{source}/{network.prefixlen}", "dev",
                         lab.peer_if], check=True)
    connecter = await _in_peer(lab, py, "-c", CONNECTER, lab.stack_ip, str(LISTEN_PORT),
                               str(count), str(CONNECT_EVERY), str(CONNECT_TIMEOUT), source)

    async def watch() -> None:
        while True:
            cpu_watch.sample()
            if sample is not None:
                sample()
            await asyncio.sleep(0.25)

    watcher = asyncio.ensure_future(watch())
    flood_out, flood_err = await flood.communicate()
    cpu_watch.stop()
    if mark is not None:
        mark("end")
    conn_out, conn_err = await connecter.communicate()
    watcher.cancel()
    flood_t1 = samples[-1][0] if samples else flood_t0
    await bulk.wait()
    await bulk_reader
    if flood.returncode != 0:
        raise RuntimeError("the flood sender failed: " + flood_err.decode())
    if connecter.returncode != 0:
        raise RuntimeError("the connecting client failed: " + conn_err.decode())
    sent = flood_out.split()
    frames, took = int(sent[1]), float(sent[3])
    results = json.loads(conn_out)
    peer_after = _peer_tcp(lab)
    ok_ms = sorted(r["ms"] for r in results if r["ok"])
    before = _rate(samples, flood_t0 - PRE_SECONDS + PRE_SKIP, flood_t0)
    during = _rate(samples, flood_t0 + 0.5, flood_t1)
    return {
        "flood_frames": frames,
        "flood_seconds": took,
        "flood_rate": round(frames / took) if took else 0,
        "connects": len(results),
        "success_ratio": len(ok_ms) / len(results) if results else 0.0,
        "connect_ms_median": round(statistics.median(ok_ms), 2) if ok_ms else None,
        "connect_ms_p90": round(ok_ms[int(0.9 * (len(ok_ms) - 1))], 2) if ok_ms else None,
        "first_try_ratio": sum(1 for m in ok_ms if m < 900) / len(results) if results else 0.0,
        "bulk_mb_s_before": round(before / 1e6, 1),
        "bulk_mb_s_during": round(during / 1e6, 1),
        "bulk_ratio": round(during / before, 3) if before else None,
        "bulk_bytes_during": samples[-1][1] - next(
            (n for t, n in samples if t >= flood_t0), 0) if samples else 0,
        "peer_tcp": {k: peer_after.get(k, 0) - v for k, v in peer_before.items()},
        "cpu_before_flood": pre_watch.result,
        "cpu_during_flood": cpu_watch.result,
    }


def _peer_tcp(lab: Lab) -> dict[str, int]:
    """The peer kernel's retransmission counters (the bulk sender's)."""
    proc = lab.run_in_peer(["nstat", "-az", "-j"], capture_output=True, text=True)
    if proc.returncode != 0:
        return {}
    flat: dict[str, int] = {}
    for table in json.loads(proc.stdout).values():
        flat.update(table)
    return {k: flat.get(k, 0) for k in ("TcpRetransSegs", "TcpExtTCPTimeouts",
                                        "TcpExtTCPLossProbes")}


def _proc_cpu(pid: int) -> tuple[float, float, float]:
    """(user+system CPU seconds, seconds runnable but waiting for a CPU,
    seconds on a CPU) of ``pid``: /proc/PID/stat's utime+stime and
    /proc/PID/schedstat; zeros once gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        tick = os.sysconf("SC_CLK_TCK")
        cpu = (int(fields[11]) + int(fields[12])) / tick
        run_ns, wait_ns, _ = Path(f"/proc/{pid}/schedstat").read_text().split()
        return cpu, int(wait_ns) / 1e9, int(run_ns) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0, 0.0, 0.0


def _machine_cpu() -> dict[str, float]:
    """Machine-wide CPU seconds by kind from /proc/stat's ``cpu`` line."""
    names = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
    values = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:1 + len(names)]
    tick = os.sysconf("SC_CLK_TCK")
    return {k: int(v) / tick for k, v in zip(names, values, strict=False)}


class CpuWatch:
    """Who had the CPUs during the flood: the machine's idle, softirq and
    busy seconds and, per watched process, CPU seconds and seconds spent
    runnable but waiting for a CPU (schedstat), over [start, stop]."""

    def __init__(self) -> None:
        self.pids: dict[str, int] = {}
        self._start: dict[str, Any] = {}
        self._last: dict[str, tuple[float, float, float]] = {}
        self.result: dict[str, Any] = {}
        self._t0 = 0.0

    def start(self, pids: dict[str, int]) -> None:
        self.pids = dict(pids)
        self._t0 = time.monotonic()
        self._start = {"machine": _machine_cpu(),
                       **{k: _proc_cpu(v) for k, v in self.pids.items()}}

    def sample(self) -> None:
        """Remember each process's figures now (one that exits before
        :meth:`stop` keeps its last sample)."""
        for k, pid in self.pids.items():
            now = _proc_cpu(pid)
            if now[2]:
                self._last[k] = now

    def stop(self) -> None:
        self.sample()
        wall = time.monotonic() - self._t0
        m0, m1 = self._start["machine"], _machine_cpu()
        out: dict[str, Any] = {"wall_s": round(wall, 2)}
        out["machine"] = {k: round(m1[k] - m0[k], 2) for k in m0}
        for k in self.pids:
            a, b = self._start[k], self._last.get(k, self._start[k])
            out[k] = {"cpu_s": round(b[0] - a[0], 2), "runqueue_wait_s": round(b[1] - a[1], 2)}
        self.result = out


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


async def flood_ustack(lab: Lab, binary: Path, *, rate: int, seconds: float,
                       syn_channel: bool | None = None,
                       fresh_client: bool = False) -> dict[str, Any]:
    """The flood against a ustack listener in ``lab``'s stack namespace
    (``fresh_client``: the connecting client uses an address of its own,
    not the bulk sender's; ``syn_channel`` None: the stack's default)."""
    with lab.enter_stack_ns():
        stack = await Stack.start(iface=lab.stack_if, address=lab.stack_address,
                                  gateway=lab.peer_address, syn_channel=syn_channel)
    syn_channel = stack.syn_device is not None
    try:
        accepted = 0

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal accepted
            accepted += 1
            writer.close()

        sinks: set[asyncio.Task[Any]] = set()

        async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            if task is not None:
                sinks.add(task)
            try:
                while await reader.read(1 << 20):
                    pass
                writer.close()
            finally:
                sinks.discard(task)

        server = await stack.start_server(on_connect, port=LISTEN_PORT)
        bulk_server = await stack.start_server(sink, port=BULK_PORT)
        # the gateway's MAC first, so the flood's SYN-ACKs need no ARP
        await stack.resolve(lab.peer_address, timeout=5)
        rss_before = _rss()
        rss_max = rss_before
        load = _load()
        cpu0 = time.process_time()
        # process CPU seconds in SYN-channel wakeups, the main-device reads
        # they start with, and the number of wakeups
        syn_cpu = [0.0, 0.0, 0]
        syn_dev: Any = stack.syn_device
        if stack.syn_batch is not None and syn_dev is not None:
            handler = stack._on_syn_readable
            device: Any = stack.device
            poll = device.poll

            def timed_poll() -> None:
                t = time.process_time()
                poll()
                syn_cpu[1] += time.process_time() - t

            device.poll = timed_poll

            def timed() -> None:
                t = time.process_time()
                handler()
                syn_cpu[0] += time.process_time() - t
                syn_cpu[2] += 1

            stack.loop.remove_reader(syn_dev.fileno())
            stack.loop.add_reader(syn_dev.fileno(), timed)
            stack._syn_wakeup = timed  # what the end of a pause watches for again

        def sample() -> None:
            nonlocal rss_max
            rss_max = max(rss_max, _rss())

        marks: dict[str, tuple[float, dict[str, int], list[float]]] = {}

        def mark(name: str) -> None:
            counters = stack.counters()
            for gen, st in enumerate(gc.get_stats()):
                counters[f"gc{gen}"] = st["collections"]
            marks[name] = (time.process_time(), counters, list(syn_cpu))

        report = await _drive(lab, binary, stack.mac, rate, seconds, sample,
                              {"ustack": os.getpid()}, fresh_client, mark)
        cpu = time.process_time() - cpu0
        counters = stack.counters()
        server.close()
        bulk_server.close()
        # let the bulk sink read its EOF: a handler task still running when
        # the stack closes is cancelled, and Python 3.11's StreamReaderProtocol
        # then logs a CancelledError traceback (task.exception() on it)
        if sinks:
            await asyncio.wait(list(sinks), timeout=3.0)
        syn_in = counters.get("syn_dev.rx_frames", 0) if syn_channel else counters.get(
            "dev.rx_frames", 0)
        dropped = counters.get("syn_dev.rx_kernel_drops", 0) + counters.get(
            "dev.rx_kernel_drops", 0)
        keys = ("TcpExtSyncookiesSent", "TcpExtSyncookiesRecv", "TcpExtSyncookiesFailed",
                "TcpExtTCPReqQFullDoCookies", "TcpExtListenOverflows", "TcpExtListenDrops",
                "TcpPassiveOpens", "frames_in", "drops", "dev.rx_kernel_drops",
                "dev.tx_drops_queue_full", "syn_dev.rx_frames", "syn_dev.rx_kernel_drops",
                "syn_dev.tx_frames", "syn_dev.rx_wakeups", "dev.rx_truncated", "dev.rx_frames",
                "dev.tx_frames", "dev.tx_errors", "dev.rx_wakeups")
        report.update({
            "target": "ustack",
            "fresh_client": fresh_client,
            "syn_channel": syn_channel,
            "batch": stack.syn_batch is not None,
            "server_accepted": accepted,
            "rss_growth_mb": round((rss_max - rss_before) / 1e6, 2),
            "synacks_sent": counters.get("TcpExtSyncookiesSent", 0),
            "synack_rate": round(counters.get("TcpExtSyncookiesSent", 0)
                                 / report["flood_seconds"]),
            "syns_seen": syn_in,
            "kernel_drops": dropped,
            "stack_cpu_s": round(cpu, 2),
            "syn_wakeup_cpu_s": round(syn_cpu[0] - syn_cpu[1], 3),
            "syn_wakeup_main_poll_cpu_s": round(syn_cpu[1], 3),
            "syn_wakeups": syn_cpu[2],
            "syn_cpu_us_per_synack": round((syn_cpu[0] - syn_cpu[1]) / max(1, counters.get(
                "TcpExtSyncookiesSent", 0)) * 1e6, 2),
            "load_before": load,
            "load_after": _load(),
            "counters": {k: counters.get(k, 0) for k in keys},
        })
        report["phases"] = _phases(marks)
        batch = stack.syn_batch
        if batch is not None:
            report["syn_batch"] = {
                "answered": batch.answered, "handed_back": batch.handed_back,
                "shed": batch.shed, "resent_kept": batch.resent_kept,
                "proven_kept": batch.proven_kept, "proven_peers": len(batch.proven),
                "cpu_spent_s": round(batch.cpu.spent, 3),
                "cpu_other_s": round(batch.cpu.other, 3),
                "cpu_skipped": batch.cpu.skipped,
                "cost_us_per_row": round(batch.cpu.cost * 1e6, 2)}
        return report
    finally:
        await stack.close()


def _phases(marks: dict[str, tuple[float, dict[str, int], list[float]]]) -> dict[str, Any]:
    """Per phase (pre-flood, flood): the stack's CPU seconds (all, in SYN
    wakeups but their main-device poll, the rest), the main device's
    frames, bytes and wakeups, frames sent: what the bulk path did per
    CPU-second before and during the flood."""
    out: dict[str, Any] = {}
    for name, a, b in (("before", "pre", "flood"), ("during", "flood", "end")):
        if a not in marks or b not in marks:
            continue
        (c0, k0, s0), (c1, k1, s1) = marks[a], marks[b]

        def d(key: str, k0: dict[str, int] = k0, k1: dict[str, int] = k1) -> int:
            return k1.get(key, 0) - k0.get(key, 0)

        cpu = c1 - c0
        syn = (s1[0] - s0[0]) - (s1[1] - s0[1])
        main = cpu - syn
        out[name] = {
            "cpu_s": round(cpu, 3), "syn_cpu_s": round(syn, 3), "main_cpu_s": round(main, 3),
            "rx_frames": d("dev.rx_frames"), "rx_mb": round(d("dev.rx_bytes") / 1e6, 1),
            "rx_wakeups": d("dev.rx_wakeups"), "tx_frames": d("dev.tx_frames"),
            "mb_per_main_cpu_s": round(d("dev.rx_bytes") / 1e6 / main, 1) if main > 0 else None,
            "frames_per_wakeup": round(d("dev.rx_frames") / max(1, d("dev.rx_wakeups")), 1),
            "syn_wakeups": int(s1[2] - s0[2]),
            "gc": [d("gc0"), d("gc1"), d("gc2")],
        }
    return out


def _nstat(lab: Lab) -> dict[str, int]:
    out = lab.run_in_stack(["nstat", "-az", "-j"], capture_output=True, text=True,
                           check=True).stdout
    data = json.loads(out)
    flat: dict[str, int] = {}
    for table in data.values():
        flat.update(table)
    return flat


def _link_drops(lab: Lab) -> int:
    out = lab.run_in_stack(["ip", "-s", "-j", "link", "show", "dev", lab.stack_if],
                           capture_output=True, text=True, check=True).stdout
    stats = json.loads(out)[0]["stats64"]["rx"]
    return int(stats.get("dropped", 0)) + int(stats.get("missed", 0))


async def flood_kernel(lab: Lab, binary: Path, *, rate: int, seconds: float,
                       fresh_client: bool = False) -> dict[str, Any]:
    """The same flood against the kernel's own listener: the stack
    namespace's veth gets the stack address and a route to the flood's
    sources through the peer."""
    addr = lab.stack_address
    lab.run_in_stack(["ip", "addr", "add", addr, "dev", lab.stack_if], check=True)
    lab.run_in_stack(["ip", "route", "add", FLOOD_NET, "via", lab.peer_address], check=True)
    lab.run_in_stack(["sysctl", "-qw", "net.ipv4.tcp_syncookies=1"], check=True)
    mac = json.loads(lab.run_in_stack(["ip", "-j", "link", "show", "dev", lab.stack_if],
                                      capture_output=True, text=True,
                                      check=True).stdout)[0]["address"]
    server = lab.popen_in_stack([sys.executable, "-c", KERNEL_SERVER, lab.stack_ip,
                                 str(LISTEN_PORT), str(BULK_PORT)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                preexec_fn=_plain_priority)
    try:
        assert server.stdout is not None and server.stdin is not None
        if server.stdout.readline().strip() != "ready":
            raise RuntimeError("the kernel listener did not start")
        # the peer learns the stack's MAC before the flood
        lab.run_in_peer(["ping", "-c1", "-W2", lab.stack_ip], capture_output=True)
        before = _nstat(lab)
        drops_before = _link_drops(lab)
        load = _load()
        report = await _drive(lab, binary, mac, rate, seconds, None,
                              {"kernel_listener": server.pid}, fresh_client)
        after = _nstat(lab)
        server.stdin.close()
        accepted = int(server.stdout.readline() or 0)
        keys = ("TcpExtSyncookiesSent", "TcpExtSyncookiesRecv", "TcpExtSyncookiesFailed",
                "TcpExtTCPReqQFullDoCookies", "TcpExtListenOverflows", "TcpExtListenDrops",
                "TcpPassiveOpens")
        diff = {k: after.get(k, 0) - before.get(k, 0) for k in keys}
        report.update({
            "target": "kernel",
            "fresh_client": fresh_client,
            "server_accepted": accepted,
            "rss_growth_mb": None,
            "synacks_sent": diff["TcpExtSyncookiesSent"],
            "synack_rate": round(diff["TcpExtSyncookiesSent"] / report["flood_seconds"]),
            "kernel_drops": _link_drops(lab) - drops_before + diff["TcpExtListenDrops"],
            "load_before": load,
            "load_after": _load(),
            "counters": diff,
        })
        return report
    finally:
        server.kill()
        server.wait()


def _row(r: dict[str, Any]) -> str:
    median = r["connect_ms_median"]
    rss = r["rss_growth_mb"]
    return (f"{r['target']:<7} flood {r['flood_rate']:>7}/s  connect {r['success_ratio']:6.1%}"
            f"  median {median if median is not None else '-':>8} ms"
            f"  p90 {r['connect_ms_p90'] if r['connect_ms_p90'] is not None else '-':>8} ms"
            f"  bulk kept {r['bulk_ratio'] if r['bulk_ratio'] is not None else '-'}"
            f" ({r['bulk_mb_s_before']} -> {r['bulk_mb_s_during']} MB/s)"
            f"  RSS +{rss if rss is not None else '-'} MB"
            f"  SYN-ACKs {r['synacks_sent']} ({r['synack_rate']}/s)"
            f"  dropped before the listener {r['kernel_drops']}"
            f"  load {r['load_before']} -> {r['load_after']}"
            f"  {_cpu_summary(r)}")


def _cpu_summary(r: dict[str, Any]) -> str:
    """The listener's process: CPU seconds / seconds waiting for a CPU,
    before the flood (per second) and during it."""
    name = "ustack" if r["target"] == "ustack" else "kernel_listener"
    parts = []
    for when in ("before", "during"):
        block = r.get(f"cpu_{when}_flood") or {}
        proc, wall = block.get(name), block.get("wall_s")
        if proc and wall:
            parts.append(f"{when} {proc['cpu_s'] / wall:.0%} of a CPU "
                         f"(waited {proc['runqueue_wait_s'] / wall:.0%})")
    flood = (r.get("cpu_during_flood") or {}).get("flood_sender")
    if flood:
        parts.append(f"sender {flood['cpu_s']:.2f} s CPU")
    return name + ": " + ", ".join(parts) if parts else ""


async def _main(args: argparse.Namespace) -> int:
    results = []
    with tempfile.TemporaryDirectory(prefix="fl-synflood-") as tmp:
        binary = compile_sender(Path(tmp))
        for target in args.target.split(","):
            name = f"fl{os.getpid() % 0xFFFF:x}{target[0]}"
            lab = Lab.create(name)
            lab.up()
            try:
                if target == "ustack":
                    r = await flood_ustack(lab, binary, rate=args.rate, seconds=args.seconds,
                                           syn_channel=False if args.one_socket else None,
                                           fresh_client=args.fresh_client)
                elif target == "kernel":
                    r = await flood_kernel(lab, binary, rate=args.rate, seconds=args.seconds,
                                           fresh_client=args.fresh_client)
                else:
                    print(f"synflood: unknown target {target!r}", file=sys.stderr)
                    return 2
            finally:
                lab.down()
            results.append(r)
            print(_row(r), flush=True)
    if args.json:
        print(json.dumps(results, indent=1))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=120_000, help="SYNs per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--target", default="ustack,kernel",
                        help="comma-separated: ustack, kernel")
    parser.add_argument("--one-socket", action="store_true",
                        help="ustack without its SYN channel")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--syn-share", type=float, metavar="F",
                        help="Stack.SYN_CPU_SHARE for the ustack target (default "
                             f"{Stack.SYN_CPU_SHARE})")
    parser.add_argument("--syn-pause", type=float, metavar="S",
                        help="Stack.SYN_PAUSE for the ustack target (default "
                             f"{Stack.SYN_PAUSE}; 0: watch the SYN socket all the time)")
    parser.add_argument("--fresh-client", action="store_true",
                        help="connect from an address of its own (.201 on the peer's link) "
                             "that never had a connection with the target, not from the "
                             "bulk sender's")
    parser.add_argument("--stack-nice", type=int, default=0, metavar="N",
                        help="run the stack (this process) at nice N; the senders, the "
                             "connecting client and the kernel listener keep nice 0 "
                             "(a diagnostic: how ustack fares with a CPU share of its own)")
    parser.add_argument("--profile", metavar="FILE",
                        help="cProfile the whole run into FILE (pstats format)")
    args = parser.parse_args()
    if not re.fullmatch(r"[a-z,]+", args.target):
        parser.error("--target: names separated by commas")
    if args.stack_nice:
        os.setpriority(os.PRIO_PROCESS, 0, args.stack_nice)
    if args.syn_share is not None:
        Stack.SYN_CPU_SHARE = args.syn_share
    if args.syn_pause is not None:
        Stack.SYN_PAUSE = args.syn_pause
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        try:
            return profiler.runcall(asyncio.run, _main(args))
        finally:
            profiler.dump_stats(args.profile)
    return asyncio.run(_main(args))


if __name__ == "__main__":
    sys.exit(main())
