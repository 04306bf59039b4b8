"""Runs the user controller of docs/congestion.md, extracted from the
markdown, so the documentation cannot rot."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

from ustack.tcp.config import TcpConfig
from ustack.tcp.congestion import CongestionController, RateSample, available, create

DOC = Path(__file__).resolve().parents[2] / "docs" / "congestion.md"
MSS = 1000


def _doc_example() -> str:
    text = DOC.read_text()
    m = re.search(r"<!-- the block below is run by [^>]*-->\n```python\n(.*?)\n```", text, re.S)
    assert m, "the marked python block is missing from docs/congestion.md"
    return m.group(1)


def _load() -> type[CongestionController]:
    ns: dict[str, Any] = {"__name__": "hk_congestion_doc"}
    exec(compile(_doc_example(), str(DOC), "exec"), ns)  # noqa: S102
    cls = ns["VegasLite"]
    assert isinstance(cls, type) and issubclass(cls, CongestionController)
    return cls


def test_doc_example_is_about_thirty_lines() -> None:
    lines = [ln for ln in _doc_example().splitlines() if ln.strip()]
    assert len(lines) <= 40


def test_doc_controller_registers_and_reacts_to_queueing_delay() -> None:
    cls = _load()
    assert "vegas-lite" in available()
    cc = create("vegas-lite", MSS, 10)
    assert type(cc) is cls
    delivered = 0

    def round_trip(rtt: float) -> None:
        nonlocal delivered
        start = delivered
        for _ in range(cc.cwnd // MSS):
            delivered += MSS
            cc.on_ack(RateSample(acked_sacked=MSS, rtt=rtt, prior_delivered=start,
                                 delivered_total=delivered), 0.0)

    for _ in range(3):
        round_trip(0.010)  # no queue: slow start doubles
    assert cc.cwnd == 80 * MSS and cc.ssthresh > cc.cwnd
    round_trip(0.020)  # half the window is queue: leave slow start, back off
    assert cc.ssthresh == cc.cwnd < 160 * MSS
    top = cc.cwnd
    for _ in range(5):
        round_trip(0.020)
    assert cc.cwnd == top - 5 * MSS  # one MSS less per round trip
    for _ in range(5):
        round_trip(0.010)
    assert cc.cwnd == top - 5 * MSS + 5 * MSS  # one more per round without queue
    assert cc.ssthresh_on_loss(1.0, cc.cwnd) == cc.cwnd * 3 // 4


def test_doc_controller_carries_a_lossy_transfer() -> None:
    from ustack.tcp.testing import BulkApp, MemoryPair, WireProfile

    _load()
    cfg = TcpConfig(congestion="vegas-lite")
    pair = MemoryPair(cfg, cfg, seed=3, profile=WireProfile(delay=0.002, loss=0.01))
    data = random.Random(1).randbytes(300_000)
    app_a = BulkApp(lambda: pair.client.conn, data, random.Random(2))
    app_b = BulkApp(lambda: pair.server.conn, b"", random.Random(3))

    def app(now: float) -> float | None:
        wakes = [w for w in (app_a(now), app_b(now)) if w is not None]
        return min(wakes) if wakes else None

    pair.run(lambda: app_b.eof, app=app, max_time=1000)
    assert bytes(app_b.received) == data
    assert pair.a.cc.name == "vegas-lite"
