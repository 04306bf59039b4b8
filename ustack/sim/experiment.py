"""Experiments: N bulk TCP flows of real Stacks over a simulated dumbbell.

    from ustack.sim import Experiment, Flow, LinkSpec, run_experiment
    result = run_experiment(Experiment(
        flows=[Flow("reno"), Flow("cubic")],
        link=LinkSpec(rate=100e6, delay=0.010, queue=100, loss=0.005),
        seconds=30, seed=1))
    print(result.format_text())

Every flow is its own sender :class:`~ustack.stack.Stack` on the left side
of a :class:`~ustack.sim.link.Dumbbell`; one receiver Stack on the right
accepts all flows on port 5001 and discards the data (counting it at the
application, i.e. goodput).  The forward link (left→right) is the
bottleneck; the reverse link carries the ACKs (same rate and delay, no loss,
unless ``reverse`` says otherwise).  Run under the virtual clock
(:func:`run_experiment` does), everything is deterministic: one seed, one
result, to the byte.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ustack.sim.clock import run as run_virtual
from ustack.sim.link import Dumbbell, LinkSpec, SimLink
from ustack.stack import Stack
from ustack.tcp.config import TcpConfig

SERVER_ADDRESS = "10.0.1.1"
SERVER_PORT = 5001
_CHUNK = b"\x00" * 65536


@dataclass(slots=True)
class Flow:
    """One bulk transfer: congestion control ``cc``, starting ``start``
    seconds into the run, sending ``size`` bytes (None: until the end)."""

    cc: str = "reno"
    start: float = 0.0
    size: int | None = None


@dataclass(slots=True)
class Experiment:
    flows: list[Flow]
    #: the bottleneck, left→right (the data direction)
    link: LinkSpec
    #: right→left (ACKs); None: same rate and delay, no loss
    reverse: LinkSpec | None = None
    seconds: float = 30.0
    seed: int = 1
    #: goodput counts bytes received after each flow's start + warmup
    warmup: float = 0.0
    #: srtt / cwnd sampling period, seconds
    sample_interval: float = 0.01
    #: base TCP settings of every stack (congestion is set per flow)
    tcp: TcpConfig | None = None
    #: per-stack JSON Lines traces (ustack.trace) in this directory
    trace_dir: str | None = None
    #: a pcap of every frame the hosts sent and received (simulated time stamps)
    pcap: str | None = None


@dataclass(slots=True)
class FlowResult:
    index: int
    cc: str
    start: float
    bytes: int
    goodput: float  # bit/s over the measured interval
    retrans_segs: int
    retrans_bytes: int
    rtt_p50: float  # seconds (srtt samples)
    rtt_p90: float
    rtt_p99: float
    cwnd_mean: float  # segments
    completed_at: float | None  # seconds, when a sized flow delivered everything
    #: goodput per second of the run, bit/s
    series: list[float] = field(default_factory=list)


@dataclass(slots=True)
class Result:
    seconds: float
    seed: int
    rate: float | None
    rtt: float
    flows: list[FlowResult]
    jain: float
    utilization: float  # forward link bytes out / (rate * seconds)
    queue_delay_p50: float
    queue_delay_p99: float
    queue_delay_mean: float
    link: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = _rounded(asdict(self))
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def format_text(self) -> str:
        rate = f"{self.rate / 1e6:g} Mbit/s" if self.rate else "unlimited rate"
        lines = [f"sim: {rate}, rtt {self.rtt * 1e3:g} ms, {self.seconds:g} s, "
                 f"seed {self.seed}, {len(self.flows)} flow(s)",
                 f"{'flow':>4}  {'cc':<8}{'goodput Mbit/s':>15}{'retrans':>9}"
                 f"{'rtt p50 ms':>12}{'p90':>8}{'p99':>8}{'cwnd':>8}"]
        for f in self.flows:
            lines.append(f"{f.index:>4}  {f.cc:<8}{f.goodput / 1e6:>15.3f}{f.retrans_segs:>9}"
                         f"{f.rtt_p50 * 1e3:>12.2f}{f.rtt_p90 * 1e3:>8.2f}"
                         f"{f.rtt_p99 * 1e3:>8.2f}{f.cwnd_mean:>8.1f}")
        link = self.link
        lines.append(f"jain fairness {self.jain:.4f}; link utilization "
                     f"{self.utilization * 100:.1f}%; queue delay p50 "
                     f"{self.queue_delay_p50 * 1e3:.2f} ms, p99 "
                     f"{self.queue_delay_p99 * 1e3:.2f} ms, mean "
                     f"{self.queue_delay_mean * 1e3:.2f} ms")
        lines.append(f"link drops: queue {link['drop_queue']}, loss {link['drop_loss']}, "
                     f"red {link['drop_red']}; max queue {link['queue_max']} frames")
        return "\n".join(lines) + "\n"


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 9) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def jain_index(values: Sequence[float]) -> float:
    """Jain's fairness index (sum x)^2 / (n * sum x^2): 1 = equal shares."""
    if not values:
        return 1.0
    sq = sum(v * v for v in values)
    return (sum(values) ** 2) / (len(values) * sq) if sq else 1.0


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of ``values``; 0.0 if empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


# ------------------------------------------------------------------ applications


class _Source(asyncio.Protocol):
    """Writes ``size`` bytes (or forever) as fast as the transport takes them."""

    def __init__(self, size: int | None) -> None:
        self.left = size
        self.paused = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._fill()

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self._fill()

    def _fill(self) -> None:
        t = self.transport
        while t is not None and not self.paused and not t.is_closing():
            if self.left is None:
                t.write(_CHUNK)
                continue
            if self.left <= 0:
                t.write_eof()
                return
            n = min(self.left, len(_CHUNK))
            self.left -= n
            t.write(_CHUNK[:n])

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


class _Sink(asyncio.Protocol):
    """Counts the bytes the application receives."""

    def __init__(self, loop: asyncio.AbstractEventLoop,
                 on_made: Callable[[_Sink], None]) -> None:
        self.loop = loop
        self.bytes = 0
        self.peer: tuple[str, int] | None = None
        self.eof_at: float | None = None
        self._on_made = on_made

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.peer = transport.get_extra_info("peername")
        self._on_made(self)

    def data_received(self, data: bytes) -> None:
        self.bytes += len(data)

    def eof_received(self) -> bool | None:
        self.eof_at = self.loop.time()
        return None


# ------------------------------------------------------------------ running


def _seed_stack(stack: Stack, seed: int, name: str) -> None:
    """Deterministic ISNs: the table's RFC 6528 secret comes from the seed."""
    stack.tcp.set_isn_secret(hashlib.sha256(f"ustack-sim/{seed}/{name}".encode()).digest()[:16])


def _attach_trace(stack: Stack, directory: str) -> None:
    try:
        from ustack.trace import trace_stack
    except ImportError:
        raise ValueError("tracing is not available in this ustack (ustack.trace)") from None
    # simulated wall clock and no pid: one seed, one set of trace files
    trace_stack(stack, directory, header={"wall": 0.0, "pid": 0, "sim": True})


async def _start_stack(net: Dumbbell, side: str, name: str, address: str, exp: Experiment,
                       cc: str | None) -> Stack:
    dev = net.add_host(side, name=name)
    stack = await Stack.start(address=address, device=dev, diagnostics=False)
    if exp.trace_dir is not None:
        _attach_trace(stack, os.path.join(exp.trace_dir, name))
    _seed_stack(stack, exp.seed, name)
    config = exp.tcp if exp.tcp is not None else stack.tcp.config
    if cc is not None:
        config = config.with_(congestion=cc)
    stack.tcp.config = config
    return stack


async def run_async(exp: Experiment) -> Result:
    """Run ``exp`` on the running loop (a VirtualClockLoop for simulated time)."""
    if not exp.flows:
        raise ValueError("an experiment needs at least one flow")
    if len(exp.flows) > 250:
        raise ValueError("at most 250 flows")
    from ustack.tcp import congestion

    for flow in exp.flows:
        if flow.cc not in congestion.available():
            raise ValueError(f"unknown congestion control {flow.cc!r}; available: "
                             f"{', '.join(congestion.available())}")
    loop = asyncio.get_running_loop()
    net = Dumbbell(loop, exp.link, exp.reverse, seed=exp.seed)
    pcap = None
    if exp.pcap is not None:
        from ustack.sim.capture import SimCapture

        pcap = SimCapture(net, exp.pcap)
    stacks: list[Stack] = []
    n = len(exp.flows)
    sinks: dict[str, _Sink] = {}
    try:
        server = await _start_stack(net, "right", "server", f"{SERVER_ADDRESS}/16", exp, None)
        stacks.append(server)
        await server.create_server(
            lambda: _Sink(loop, lambda s: sinks.__setitem__(s.peer[0] if s.peer else "", s)),
            port=SERVER_PORT, backlog=max(128, n))
        senders = []
        for i, flow in enumerate(exp.flows):
            st = await _start_stack(net, "left", f"flow{i}", f"10.0.0.{i + 1}/16", exp, flow.cc)
            stacks.append(st)
            senders.append(st)
        t0 = loop.time()
        conns: list[Any] = [None] * n
        samples: list[tuple[list[float], list[float]]] = [([], []) for _ in range(n)]
        marks: list[list[int]] = [[] for _ in range(n)]
        base_bytes = [0] * n

        async def start_flow(i: int, flow: Flow) -> None:
            await asyncio.sleep(flow.start)
            transport, _ = await senders[i].create_connection(
                lambda: _Source(flow.size), SERVER_ADDRESS, SERVER_PORT, local_port=40000 + i)
            conns[i] = transport.get_extra_info("tcp_connection")

        def sink_bytes(i: int) -> int:
            sink = sinks.get(f"10.0.0.{i + 1}")
            return sink.bytes if sink is not None else 0

        def mark_warmup(i: int) -> None:
            base_bytes[i] = sink_bytes(i)

        def sample() -> None:
            now = loop.time()
            for i, conn in enumerate(conns):
                if conn is None or conn.state.ss_name != "ESTAB":
                    continue
                info = conn.info(now)
                if info.srtt > 0:
                    samples[i][0].append(info.srtt)
                samples[i][1].append(info.cwnd)
            if now + exp.sample_interval < t0 + exp.seconds:
                loop.call_at(now + exp.sample_interval, sample)

        def mark_second(k: int) -> None:
            # the end of second k (at t0 + k + 1); the next mark ends second k + 1
            for i in range(n):
                marks[i].append(sink_bytes(i))
            if k + 2 <= exp.seconds:
                loop.call_at(t0 + k + 2, mark_second, k + 1)

        tasks = [loop.create_task(start_flow(i, f)) for i, f in enumerate(exp.flows)]
        for i, flow in enumerate(exp.flows):
            if flow.start + exp.warmup > 0:
                loop.call_at(t0 + flow.start + exp.warmup, mark_warmup, i)
        loop.call_at(t0 + exp.sample_interval, sample)
        loop.call_at(t0 + 1, mark_second, 0)
        await asyncio.sleep(exp.seconds)
        end = loop.time()
        for i in range(n):  # the last whole second's mark may be due at this same instant
            if len(marks[i]) < int(exp.seconds):
                marks[i].append(sink_bytes(i))
        for task in tasks:
            if not task.done():
                task.cancel()
        results = []
        for i, flow in enumerate(exp.flows):
            received = sink_bytes(i) - base_bytes[i]
            measured = exp.seconds - flow.start - exp.warmup
            conn = conns[i]
            info = conn.info(end) if conn is not None else None
            rtts, cwnds = samples[i]
            series = []
            prev = 0
            for b in marks[i]:
                series.append((b - prev) * 8.0)
                prev = b
            sink = sinks.get(f"10.0.0.{i + 1}")
            results.append(FlowResult(
                index=i, cc=flow.cc, start=flow.start, bytes=received,
                goodput=received * 8 / measured if measured > 0 else 0.0,
                retrans_segs=info.total_retrans if info else 0,
                retrans_bytes=info.bytes_retrans if info else 0,
                rtt_p50=percentile(rtts, 50), rtt_p90=percentile(rtts, 90),
                rtt_p99=percentile(rtts, 99),
                cwnd_mean=sum(cwnds) / len(cwnds) if cwnds else 0.0,
                completed_at=(sink.eof_at - t0) if sink is not None and sink.eof_at else None,
                series=series))
        fwd: SimLink = net.forward
        delays = fwd.queue_delays
        rate = exp.link.rate
        return Result(
            seconds=exp.seconds, seed=exp.seed, rate=rate,
            rtt=exp.link.delay + (exp.reverse.delay if exp.reverse else exp.link.delay),
            flows=results, jain=jain_index([r.goodput for r in results]),
            utilization=(fwd.stats["bytes_out"] * 8 / (rate * exp.seconds)) if rate else 0.0,
            queue_delay_p50=percentile(delays, 50), queue_delay_p99=percentile(delays, 99),
            queue_delay_mean=(sum(delays) / len(delays)) if delays else 0.0,
            link=dict(fwd.stats))
    finally:
        for st in stacks:
            await st.close()
        net.close()
        if pcap is not None:
            pcap.close()


def run_experiment(exp: Experiment) -> Result:
    """Run ``exp`` in simulated time on a fresh VirtualClockLoop."""
    return run_virtual(run_async(exp))


__all__ = ["Experiment", "Flow", "FlowResult", "Result", "jain_index", "percentile",
           "run_async", "run_experiment"]
