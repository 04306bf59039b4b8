"""Seeded whole-stack scenarios whose every frame is digested: the TCP
driver (ustack.driver), the IPv4/ARP/ICMP/UDP layers (ustack.net) and the
link devices and wrappers (ustack.link: the in-memory pair, the fault
injector, the pcap writer) under streams, on the simulated clock
(ustack.sim.VirtualClockLoop).  Run once in pure Python and once on the
compiled build, the digests must be equal (tests/unit/test_accel_differential.py;
docs/compiled.md "Proof").  The TCP core alone is covered by accel_scenarios.py.

``python tests/unit/accel_stack_scenarios.py`` prints ``{"accel": mode,
"scenarios": {name: sha256}}``; ``--dump NAME`` prints one scenario's trace.

Observed per scenario: every frame each stack's device sent and was given
(simulated time, direction, the bytes), what each application read and
every exception it saw, the final counters of both stacks (IP, ARP, ICMP,
UDP, the table's and the TCP MIB, the devices' and the fault injector's), the
``ss`` records of both stacks at three points (open, after the closes, after
TIME-WAIT) and the frames of the pcap capture.  Workloads: request/response
of growing sizes, bulk both ways at once, short connections closed by either
side (TIME-WAIT and its compact records), a refused connect (RST), a connect
to an address nobody answers (ARP failure), a listener's backlog with SYN
cookies, UDP datagrams and an ICMP port unreachable, ping; on a clean link
and on seeded lossy, duplicating, reordering and corrupting ones.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import dpkt

import ustack
from ustack.link.base import Device, Frame, ReceivedFrame, Receiver
from ustack.link.faults import FaultDevice
from ustack.link.memory import MemoryPair
from ustack.link.pcap import PcapDevice
from ustack.sim import Experiment, Flow, LinkSpec, run, run_experiment
from ustack.stack import Stack
from ustack.tcp.config import TcpConfig
from ustack.tcp.ports import PortAllocator
from ustack.tcp.syncookies import CookieJar

A, B = "10.77.0.1", "10.77.0.2"
NOBODY = "10.77.0.99"  # in the subnet, no host: ARP gives up
MAC_A, MAC_B = bytes.fromhex("020000000a01"), bytes.fromhex("020000000b02")


class Tap(Device):
    """``inner`` with a log of every frame it is given to send and every
    frame it delivers, stamped with the (simulated) loop time."""

    def __init__(self, inner: Device, tag: str, log: list[str]) -> None:
        self.inner = inner
        self.tag = tag
        self.log = log
        self.name = inner.name
        self.mac = inner.mac
        self.mtu = inner.mtu
        self._loop: asyncio.AbstractEventLoop | None = None
        self._receiver: Receiver | None = None

    def _note(self, what: str, frame: bytes) -> None:
        t = self._loop.time() if self._loop is not None else -1.0
        self.log.append(f"{t:.6f} {self.tag} {what} {bytes(frame).hex()}")

    def attach(self, loop: asyncio.AbstractEventLoop, receiver: Receiver) -> None:
        self._loop = loop
        self._receiver = receiver
        self.inner.attach(loop, self._on_frames)

    def _on_frames(self, frames: Sequence[ReceivedFrame]) -> None:
        for frame, trusted in frames:
            self._note(f"rx{int(trusted)}", frame)
        if self._receiver is not None:
            self._receiver(frames)

    def send(self, frame: Frame) -> None:
        self._note("tx", frame)
        self.inner.send(frame)

    def send_many(self, frames: Sequence[Frame]) -> None:
        for frame in frames:
            self._note("tx", frame)
        self.inner.send_many(frames)

    def close(self) -> None:
        self.inner.close()

    def counters(self) -> dict[str, int]:
        return self.inner.counters()


@dataclass(frozen=True)
class Scenario:
    name: str
    #: FaultDevice options on A's link (both directions); empty: clean
    faults: dict[str, float] = field(default_factory=dict)
    seed: int = 1
    #: TcpConfig keyword arguments for both stacks
    tcp: dict[str, Any] = field(default_factory=dict)
    bulk: int = 150_000
    short_conns: int = 12
    #: the in-memory "kernel" stamps each frame's arrival (ustack.link.rxtime)
    stamped: bool = False


def scenarios() -> list[Scenario]:
    lossy = {"loss": 0.03, "duplicate": 0.02, "reorder": 0.05}
    return [
        Scenario("clean"),
        Scenario("clean-nots", tcp={"timestamps": False, "sack": False}),
        Scenario("lossy", lossy, seed=2, stamped=True),
        Scenario("lossy-bbr", lossy, seed=3, tcp={"congestion": "bbr"}),
        Scenario("lossy-reno-nows", lossy, seed=4,
                 tcp={"congestion": "reno", "window_scaling": False}),
        Scenario("corrupt", {"corrupt": 0.03, "loss": 0.01}, seed=5),
        Scenario("delay-jitter", {"delay": 0.002, "jitter": 0.003, "loss": 0.01}, seed=6,
                 stamped=True),
        Scenario("heavy", {"loss": 0.1, "reorder": 0.1, "duplicate": 0.05}, seed=7,
                 bulk=60_000, short_conns=6),
    ]


def _seed(stack: Stack, name: str) -> None:
    """Deterministic ISNs, SYN cookies, ephemeral ports and ping ident."""
    key = hashlib.sha256(f"accel-stack/{name}".encode()).digest()
    stack._ping_ident = int.from_bytes(key[:2], "big")
    table: Any = stack.tcp
    table.set_isn_secret(key[:16])
    table._cookies = CookieJar(key)
    table._ports = PortAllocator(*table.EPHEMERAL_RANGE, secret=key)


#: SocketRecord fields of the process, not of the stack (pid, inode, address)
_PROCESS_FIELDS = frozenset({"pid", "comm", "uid", "ino", "sk"})


def _records(stack: Stack) -> list[str]:
    """The stack's ``ss`` records (ustack.diag.SocketRecord), sorted."""
    return sorted(repr({k: v for k, v in rec._asdict().items() if k not in _PROCESS_FIELDS})
                  for rec in stack.sockets())


def _pcap_frames(path: str) -> list[str]:
    with open(path, "rb") as f:
        return [buf.hex() for _, buf in dpkt.pcap.Reader(f)]


async def _scenario(sc: Scenario, log: list[str]) -> None:
    loop = asyncio.get_running_loop()
    pair = MemoryPair(MAC_A, MAC_B)
    if sc.stamped:
        pair.a.stamp = pair.b.stamp = loop.time
    with tempfile.TemporaryDirectory() as tmp:
        pcap_path = os.path.join(tmp, "a.pcap")
        inner_a: Device = pair.a
        if sc.faults:
            inner_a = FaultDevice(pair.a, sc.seed, **sc.faults)  # type: ignore[arg-type]
        dev_a = Tap(PcapDevice(inner_a, pcap_path), "A", log)
        dev_b = Tap(pair.b, "B", log)
        cfg = TcpConfig(**sc.tcp) if sc.tcp else None
        a = await Stack.start(address=f"{A}/24", device=dev_a, diagnostics=False,
                              tcp_config=cfg, arp_retry_interval=0.2)
        b = await Stack.start(address=f"{B}/24", device=dev_b, diagnostics=False,
                              tcp_config=cfg, arp_retry_interval=0.2)
        _seed(a, f"{sc.name}/a")
        _seed(b, f"{sc.name}/b")
        try:
            await _workload(sc, loop, a, b, log)
        finally:
            await a.close()
            await b.close()
        for stack, tag in ((a, "A"), (b, "B")):
            for key, value in sorted(stack.counters().items()):
                log.append(f"counter {tag} {key} {value}")
        log.extend(f"pcap {h}" for h in _pcap_frames(pcap_path))


async def _workload(sc: Scenario, loop: asyncio.AbstractEventLoop, a: Stack, b: Stack,
                    log: list[str]) -> None:
    def note(what: str) -> None:
        log.append(f"{loop.time():.6f} app {what}")

    async def echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
            w.close()
        except OSError as exc:
            note(f"echo {type(exc).__name__} {exc.errno}")

    async def sink(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        total = hashlib.sha256()
        n = 0
        while data := await r.read(65536):
            total.update(data)
            n += len(data)
        note(f"sink got {n} {total.hexdigest()[:16]}")
        w.write(bytes(range(256)) * (sc.bulk // 256))  # the download, after the upload
        await w.drain()
        w.close()

    async def short(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        data = await r.readexactly(100)
        w.write(data[::-1])
        await w.drain()
        if data[0] % 2:  # the server closes first: TIME-WAIT on B
            w.close()
        else:
            await r.read()
            w.close()

    servers = [await b.start_server(echo, port=7), await b.start_server(sink, port=9),
               await b.start_server(short, port=80, backlog=4)]
    # request/response of growing sizes
    r, w = await a.open_connection(B, 7)
    log.append("ss-open " + " | ".join(_records(a) + _records(b)))
    for size in (1, 10, 100, 1000, 1460, 1461, 3000, 20000):
        for i in range(3):
            w.write(bytes([size % 251, i]) * (size // 2 + 1))
            got = await r.readexactly((size // 2 + 1) * 2)
            note(f"rr {size} {hashlib.sha256(got).hexdigest()[:16]}")
    # bulk both ways at once: an upload to the sink, the echo stream in parallel
    r2, w2 = await a.open_connection(B, 9)
    up = bytes((i * 7) & 0xFF for i in range(sc.bulk))
    w2.write(up)
    w2.write_eof()
    w.write(b"e" * sc.bulk)
    echoed, down = await asyncio.gather(r.readexactly(sc.bulk), r2.read())
    note(f"bulk echo {hashlib.sha256(echoed).hexdigest()[:16]} down {len(down)} "
         f"{hashlib.sha256(down).hexdigest()[:16]}")
    w.close()
    w2.close()
    # short connections, several at once (more than the backlog), either side
    # closing first
    async def one(i: int) -> None:
        try:
            rs, ws = await a.open_connection(B, 80)
            ws.write(bytes([i]) * 100)
            back = await rs.readexactly(100)
            note(f"short {i} {back[:1].hex()}")
            if i % 2 == 0:
                ws.close()
            else:
                await rs.read()
                ws.close()
        except OSError as exc:
            note(f"short {i} {type(exc).__name__} {exc.errno}")

    await asyncio.gather(*(one(i) for i in range(sc.short_conns)))
    # a refused connect, and one to an address nobody has
    for host, port in ((B, 5555), (NOBODY, 80)):
        try:
            await asyncio.wait_for(a.open_connection(host, port), 10)
        except (TimeoutError, OSError) as exc:
            note(f"connect {host}:{port} {type(exc).__name__} {getattr(exc, 'errno', None)}")
    # UDP both ways and an ICMP port unreachable
    usock = b.udp.bind(53)
    asock = a.udp.bind(5353)
    asock.on_error = lambda exc: note(f"udp error {type(exc).__name__} {exc.errno}")
    baddr = socket.inet_aton(B)
    for i in range(5):
        asock.sendto(bytes([i]) * (i * 100 + 1), baddr, 53)
    asock.sendto(b"nobody", baddr, 54)
    await asyncio.sleep(0.5)
    while (item := usock.recv()) is not None:
        data, addr = item
        note(f"udp {len(data)} {addr}")
        usock.sendto(data[:10], socket.inet_aton(addr[0]), addr[1])
    await asyncio.sleep(0.5)
    while (item := asock.recv()) is not None:
        note(f"udp back {item[0].hex()} {item[1]}")
    usock.close()
    asock.close()
    try:
        await a.ping(B, timeout=2.0)  # (its RTT is wall-clock time)
        note("ping answered")
    except (TimeoutError, OSError) as exc:
        note(f"ping {type(exc).__name__}")
    await asyncio.sleep(1.0)
    log.append("ss-closed " + " | ".join(_records(a) + _records(b)))
    for server in servers:
        server.close()
    await asyncio.sleep(65.0)  # past TIME-WAIT (2 MSL = 60 s)
    log.append("ss-after " + " | ".join(_records(a) + _records(b)))


def _dumbbell(name: str) -> list[str]:
    """ustack.sim's dumbbell (SimDevice hosts, a lossy bottleneck): three
    bulk flows of different controllers; the result and every frame of its
    pcap (simulated time stamps)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "sim.pcap")
        reorder = name.endswith("reorder")
        exp = Experiment(
            flows=[Flow("cubic"), Flow("bbr", start=0.3), Flow("reno", start=0.6, size=400_000)],
            link=LinkSpec(rate=50e6, delay=0.005, queue=60, loss=0.005,
                          reorder=0.02 if reorder else 0.0,
                          duplicate=0.01 if reorder else 0.0),
            seconds=2.0, seed=11, pcap=path)
        result = run_experiment(exp)
        with open(path, "rb") as f:
            frames = [f"{ts:.6f} {buf.hex()}" for ts, buf in dpkt.pcap.Reader(f)]
    return [result.to_json(), *frames]


#: the ustack.sim scenarios (not Scenario: their own workload)
DUMBBELLS = ("dumbbell", "dumbbell-reorder")


def trace(name: str) -> list[str]:
    log: list[str] = []
    try:
        if name in DUMBBELLS:
            log.extend(_dumbbell(name))
        else:
            run(_scenario({s.name: s for s in scenarios()}[name], log))
    except Exception as exc:  # noqa: BLE001 - an exception is an observable too
        log.append(f"exception {type(exc).__name__}: {exc}")
    return log


def main(argv: list[str]) -> int:
    names = [s.name for s in scenarios()] + list(DUMBBELLS)
    if argv[:1] == ["--dump"]:
        for line in trace(argv[1]):
            print(line)
        return 0
    digests = {}
    for name in names:
        digests[name] = hashlib.sha256("\n".join(trace(name)).encode()).hexdigest()
    print(json.dumps({"accel": ustack.accel_status()["mode"], "scenarios": digests}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
