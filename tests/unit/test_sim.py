"""ustack.sim: the virtual clock, the simulated link, experiments (issue 11 item 4)."""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from ustack.sim import (
    Dumbbell,
    Experiment,
    Flow,
    GilbertElliott,
    LinkSpec,
    Red,
    SimDeadlock,
    SimLink,
    VirtualClockLoop,
    jain_index,
    run,
    run_experiment,
)
from ustack.sim.units import parse_rate, parse_ratio, parse_time
from ustack.stack import Stack

ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------ clock


def test_virtual_clock_jumps_without_sleeping() -> None:
    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await asyncio.sleep(3600)
        fired: list[float] = []
        loop.call_later(0.25, lambda: fired.append(loop.time()))
        await asyncio.sleep(1)
        return loop.time() - t0, fired[0] - t0

    wall = time.perf_counter()
    elapsed, fired = run(main())
    assert elapsed == pytest.approx(3601.0)
    assert fired == pytest.approx(3600.25)
    assert time.perf_counter() - wall < 30  # not an hour: nothing really slept


def test_virtual_clock_timeout_and_deadlock() -> None:
    async def times_out() -> None:
        async with asyncio.timeout(5):
            await asyncio.get_running_loop().create_future()

    with pytest.raises(TimeoutError):
        run(times_out())

    async def waits_forever() -> None:
        await asyncio.get_running_loop().create_future()

    with pytest.raises(SimDeadlock):
        run(waits_forever())


# ------------------------------------------------------------------ link


def _drive(spec: LinkSpec, frames: list[tuple[float, bytes]], seed: int = 1,
           until: float = 10.0) -> tuple[list[tuple[float, bytes]], SimLink]:
    """Send each frame at its time; return (arrival time, frame) pairs."""
    loop = VirtualClockLoop()
    got: list[tuple[float, bytes]] = []
    link = SimLink(loop, spec, seed, lambda fs: got.extend((loop.time(), f) for f in fs))
    for when, frame in frames:
        loop.call_at(when, link.send, frame)
    loop.run_until_complete(asyncio.sleep(until))
    loop.close()
    return got, link


def test_link_rate_delay_and_drop_tail() -> None:
    # 1250-byte frames at 1 Mbit/s take 10 ms each; 50 ms propagation
    frames = [(i * 1e-7, bytes([i]) * 1250) for i in range(6)]
    got, link = _drive(LinkSpec(rate=1e6, delay=0.05, queue=3), frames)
    # one in service, three queued, two tail-dropped
    assert [f[0] for _, f in got] == [0, 1, 2, 3]
    assert [round(t, 6) for t, _ in got] == [0.06, 0.07, 0.08, 0.09]
    assert link.stats["drop_queue"] == 2
    assert link.stats["queue_max"] == 3
    assert [round(d, 5) for d in link.queue_delays] == [0.0, 0.01, 0.02, 0.03]


def test_link_without_rate_is_pure_delay_and_jitter_keeps_order() -> None:
    frames = [(i * 0.001, bytes([i]) * 100) for i in range(50)]
    got, _ = _drive(LinkSpec(delay=0.01, jitter=0.005), frames)
    assert [f[0] for _, f in got] == list(range(50))
    times = [t for t, _ in got]
    assert times == sorted(times)
    assert all(0.01 <= t - i * 0.001 <= 0.015 + 1e-9 or t > 0 for i, t in enumerate(times))


def test_bernoulli_loss_rate_and_seed() -> None:
    frames = [(i * 1e-4, b"x" * 100) for i in range(20000)]
    got1, link = _drive(LinkSpec(loss=0.1), frames, seed=7)
    got2, _ = _drive(LinkSpec(loss=0.1), frames, seed=7)
    got3, _ = _drive(LinkSpec(loss=0.1), frames, seed=8)
    assert [t for t, _ in got1] == [t for t, _ in got2]
    assert [t for t, _ in got1] != [t for t, _ in got3]
    assert link.stats["drop_loss"] == 20000 - len(got1)
    assert 0.09 < link.stats["drop_loss"] / 20000 < 0.11


def test_gilbert_elliott_mean_loss_and_bursts() -> None:
    frames = [(i * 1e-4, b"x" * 100) for i in range(40000)]
    model = GilbertElliott(p=0.01, r=0.25)
    got, link = _drive(LinkSpec(loss=model), frames, seed=3)
    mean = 0.01 / (0.01 + 0.25)
    assert abs(link.stats["drop_loss"] / 40000 - mean) < 0.01
    # losses come in bursts: mean burst length about 1/r = 4
    arrived = {round(t, 6) for t, _ in got}
    lost = [round(i * 1e-4, 6) not in arrived for i in range(40000)]
    bursts = sum(1 for i in range(1, len(lost)) if lost[i] and not lost[i - 1])
    assert 2.5 < sum(lost) / bursts < 6


def test_reorder_and_duplicate() -> None:
    frames = [(i * 0.001, bytes([i % 256]) * 100) for i in range(400)]
    got, link = _drive(LinkSpec(delay=0.01, reorder=0.1, reorder_delay=0.003,
                                duplicate=0.05), frames)
    assert link.stats["reordered"] > 10 and link.stats["duplicated"] > 5
    assert len(got) == 400 + link.stats["duplicated"]
    order = [f[0] for _, f in got]
    assert order != sorted(order)


def test_red_drops_before_the_queue_is_full() -> None:
    frames = [(i * 0.0005, b"x" * 1250) for i in range(2000)]  # 2x the 10 Mbit/s rate
    _, link = _drive(LinkSpec(rate=10e6, queue=200, red=Red(5, 50, 0.1, weight=0.01)),
                     frames)
    assert link.stats["drop_red"] > 0
    assert link.stats["queue_max"] < 200


def test_dumbbell_forwards_by_mac_and_broadcast() -> None:
    loop = VirtualClockLoop()
    net = Dumbbell(loop, LinkSpec(delay=0.01))
    a, b, c = net.add_host("left"), net.add_host("left"), net.add_host("right")
    got: dict[str, list[tuple[float, bytes]]] = {"a": [], "b": [], "c": []}
    def receiver(name: str) -> Callable[[Sequence[tuple[bytes, bool]]], None]:
        return lambda fs: got[name].extend((loop.time(), f) for f, _ in fs)

    for name, dev in (("a", a), ("b", b), ("c", c)):
        dev.attach(loop, receiver(name))
    loop.call_soon(a.send, c.mac + a.mac + b"\x08\x00" + b"1")
    loop.call_soon(a.send, b"\xff" * 6 + a.mac + b"\x08\x06" + b"2")
    loop.run_until_complete(asyncio.sleep(1))
    loop.close()
    assert [f[-1:] for _, f in got["c"]] == [b"1", b"2"]
    assert all(t == pytest.approx(0.01) for t, _ in got["c"])
    assert [f[-1:] for _, f in got["b"]] == [b"2"] and got["b"][0][0] == 0
    assert got["a"] == []


def test_units() -> None:
    assert parse_rate("100mbit") == 100e6
    assert parse_rate("1gbit") == 1e9
    assert parse_rate("10mbps") == 80e6  # tc: bytes per second
    assert parse_time("20ms") == pytest.approx(0.02)
    assert parse_time("1.5") == 1.5
    assert parse_ratio("0.5%") == pytest.approx(0.005)
    assert parse_ratio("0.01") == 0.01
    for bad in ("fast", "10furlongs"):
        with pytest.raises(ValueError):
            parse_rate(bad)
    with pytest.raises(ValueError):
        parse_ratio("150%")


def test_jain_index() -> None:
    assert jain_index([5, 5, 5]) == pytest.approx(1.0)
    assert jain_index([1, 0]) == pytest.approx(0.5)


# ------------------------------------------------------------------ experiments


def test_experiment_is_deterministic_and_saturates_the_link() -> None:
    exp = Experiment(flows=[Flow("reno"), Flow("cubic", start=0.5)],
                     link=LinkSpec(rate=10e6, delay=0.01, queue=50, loss=0.002),
                     seconds=4, seed=5)
    r1, r2 = run_experiment(exp), run_experiment(exp)
    assert r1.to_json() == r2.to_json()
    assert 0.85 < r1.utilization <= 1.0
    total = sum(f.bytes for f in r1.flows) * 8 / 4
    assert 7e6 < total <= 10e6
    assert all(f.retrans_segs > 0 for f in r1.flows)  # loss and queue overflow
    r3 = run_experiment(Experiment(flows=exp.flows, link=exp.link, seconds=4, seed=6))
    assert r3.to_json() != r1.to_json()


def test_sized_flow_completes() -> None:
    r = run_experiment(Experiment(flows=[Flow("reno", size=1_000_000)],
                                  link=LinkSpec(rate=10e6, delay=0.005), seconds=3))
    f = r.flows[0]
    assert f.bytes == 1_000_000
    assert f.completed_at is not None and 0.8 < f.completed_at < 3


def test_single_reno_flow_matches_mathis() -> None:
    """Goodput under 1% Bernoulli loss within 25% of MSS/RTT * sqrt(3/2) / sqrt(p)."""
    r = run_experiment(Experiment(flows=[Flow("reno")],
                                  link=LinkSpec(rate=100e6, delay=0.01, queue=100, loss=0.01),
                                  seconds=60, seed=1))
    mss, rtt, p = 1448, 0.02, 0.01
    mathis = mss * 8 / rtt * math.sqrt(1.5) / math.sqrt(p)
    ratio = r.flows[0].goodput / mathis
    assert 0.75 <= ratio <= 1.25, (r.flows[0].goodput, mathis)


def test_two_reno_flows_converge_to_fairness() -> None:
    r = run_experiment(Experiment(flows=[Flow("reno"), Flow("reno", start=1.0)],
                                  link=LinkSpec(rate=20e6, delay=0.01, queue=100),
                                  seconds=30, seed=1, warmup=5))
    assert r.jain >= 0.95
    assert r.utilization > 0.9


def test_docs_example_experiment() -> None:
    """docs/sim.md's example (throughput against loss for each algorithm) runs."""
    text = (ROOT / "docs" / "sim.md").read_text()
    start = text.index("```python\n# example: throughput vs loss")
    code = text[start + len("```python\n"):text.index("```", start + 10)]
    scope: dict[str, object] = {"SECONDS": 3}
    exec(compile(code, "docs/sim.md", "exec"), scope)
    table = scope["table"]
    assert isinstance(table, dict) and table
    for per_loss in table.values():
        values = list(per_loss.values())
        assert values == sorted(values, reverse=True)  # more loss, less goodput


def _sim_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("PYTHONHASHSEED", None)
    return subprocess.run([sys.executable, "-m", "ustack", "sim", *argv], env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_same_seed_same_bytes() -> None:
    argv = ("--rate", "20mbit", "--rtt", "30ms", "--queue", "50", "--loss", "0.5%",
            "--flows", "cubic,reno", "--seconds", "3", "--seed", "3", "--json")
    a, b = _sim_cli(*argv), _sim_cli(*argv)
    assert a.returncode == 0, a.stderr
    assert a.stdout == b.stdout
    doc = json.loads(a.stdout)
    assert [f["cc"] for f in doc["flows"]] == ["cubic", "reno"]
    for key in ("jain", "queue_delay_p50", "queue_delay_p99", "utilization"):
        assert key in doc
    for f in doc["flows"]:
        for key in ("goodput", "retrans_segs", "rtt_p50", "rtt_p90", "rtt_p99"):
            assert key in f
    text = _sim_cli(*argv[:-1])
    assert text.returncode == 0 and "jain fairness" in text.stdout and "cubic" in text.stdout


def test_cli_errors_are_one_line() -> None:
    for argv in (("--flows", "nosuchcc"), ("--rate", "fast"), ("--loss", "200%")):
        r = _sim_cli(*argv, "--seconds", "1")
        assert r.returncode == 1
        assert r.stderr.startswith("ustack sim: ") and r.stderr.count("\n") == 1, r.stderr


def test_pcap_of_a_run_is_identical_for_one_seed(tmp_path: Path) -> None:
    import dpkt

    paths = [tmp_path / "a.pcap", tmp_path / "b.pcap"]
    for path in paths:
        run_experiment(Experiment(flows=[Flow("reno")], link=LinkSpec(rate=10e6, delay=0.005),
                                  seconds=1, pcap=str(path)))
    assert paths[0].read_bytes() == paths[1].read_bytes()
    with paths[0].open("rb") as f:
        records = list(dpkt.pcap.Reader(f))
    tcp = [dpkt.ethernet.Ethernet(buf) for _, buf in records]
    syns = [e for e in tcp if isinstance(e.data, dpkt.ip.IP)
            and isinstance(e.data.data, dpkt.tcp.TCP) and e.data.data.flags & dpkt.tcp.TH_SYN]
    assert len(syns) == 2  # SYN and SYN-ACK
    times = [ts for ts, _ in records]
    assert times == sorted(times) and times[-1] - times[0] <= 1.0 + 1e-6


def test_traces_of_a_run_are_identical_for_one_seed(tmp_path: Path) -> None:
    from ustack.trace import validate_file

    for name in ("a", "b"):
        run_experiment(Experiment(flows=[Flow("reno")],
                                  link=LinkSpec(rate=10e6, delay=0.005, loss=0.01),
                                  seconds=1, trace_dir=str(tmp_path / name)))
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.jsonl"))
    assert [str(f.parent) for f in files] == ["flow0", "server"]
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
        counts = validate_file(tmp_path / "a" / f)
        assert counts["seg_sent"] > 0 and counts["seg_recv"] > 0


def test_isn_secret_seam_gives_repeatable_isns() -> None:
    """``TcpTable.set_isn_secret`` (the seam ustack.sim seeds ISNs through):
    the same secret, 4-tuple and clock give the same ISN, another secret
    another one; a short secret is refused."""
    from ustack.stack import Stack

    async def iss(secret: bytes | None) -> int:
        net = Dumbbell(asyncio.get_running_loop(), LinkSpec())
        stack = await Stack.start(address="10.0.0.1/16", device=net.add_host("left"),
                                  diagnostics=False)
        try:
            if secret is not None:
                stack.tcp.set_isn_secret(secret)
            ep = stack.tcp.connect(b"\x0a\x00\x01\x01", 5001, None,  # type: ignore[arg-type]
                                   local_port=40000)
            return int(ep.live.iss)
        finally:
            await stack.close()

    a1, a2, b, r1, r2 = (run(iss(s)) for s in (b"a" * 16, b"a" * 16, b"b" * 16, None, None))
    assert a1 == a2 and a1 != b
    assert r1 != r2  # without the seam: a random secret per stack
    with pytest.raises(ValueError):
        run(iss(b"short"))


def test_lean_virtual_loop_matches_asyncio_own_loop_to_the_byte() -> None:
    """Differential test of VirtualClockLoop's fast paths (its own
    _run_once/call_soon/call_at and float timer heap): the same experiment
    on asyncio's unmodified loop with only the virtual selector and clock
    gives the same JSON, byte for byte."""
    from ustack.sim.clock import VirtualClock, VirtualSelector
    from ustack.sim.experiment import run_async

    class PlainVirtualLoop(asyncio.SelectorEventLoop):
        def __init__(self) -> None:
            self.clock = VirtualClock(0.0)
            super().__init__(VirtualSelector(self.clock))
            self._clock_resolution = 1e-9

        def time(self) -> float:
            return self.clock.now

    def exp() -> Experiment:
        return Experiment(
            flows=[Flow("reno"), Flow("cubic", start=0.3), Flow("bbr", start=0.1, size=300_000)],
            link=LinkSpec(rate=20e6, delay=0.01, jitter=0.002, queue=40, loss=0.01,
                          reorder=0.01, duplicate=0.01),
            seconds=2, seed=5, sample_interval=0.005)

    outputs = []
    for make in (VirtualClockLoop, PlainVirtualLoop):
        loop = make()
        try:
            asyncio.set_event_loop(loop)
            outputs.append(loop.run_until_complete(run_async(exp())).to_json())
        finally:
            asyncio.set_event_loop(None)
            loop.close()
    assert json.loads(outputs[0])["flows"][0]["bytes"] > 0
    assert outputs[0] == outputs[1]


def test_series_has_one_entry_per_second_summing_to_the_bytes() -> None:
    # each entry is the bits delivered in that second: none may be lost or doubled
    r = run_experiment(Experiment(flows=[Flow("reno")],
                                  link=LinkSpec(rate=10e6, delay=0.01, queue=50), seconds=3))
    f = r.flows[0]
    assert len(f.series) == 3
    assert sum(f.series) == f.bytes * 8
    assert all(bits > 5e6 for bits in f.series)  # a saturated 10 Mbit/s link every second


def test_ping_on_simulated_time_measures_the_simulated_path() -> None:
    # 10 ms each way: the round trip is 20 ms of simulated time, whatever the wall clock did
    loop = VirtualClockLoop()
    net = Dumbbell(loop, LinkSpec(delay=0.01))

    async def main() -> list[float]:
        a = await Stack.start(address="10.0.0.1/16", device=net.add_host("left"), tcp=False)
        b = await Stack.start(address="10.0.0.2/16", device=net.add_host("right"), tcp=False)
        async with a, b:
            await a.ping("10.0.0.2")  # ARP first
            return [await a.ping("10.0.0.2") for _ in range(3)]

    rtts = loop.run_until_complete(main())
    loop.close()
    assert rtts == [pytest.approx(0.02)] * 3
