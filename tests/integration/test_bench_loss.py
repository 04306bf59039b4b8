"""bench/loss.py end to end on a tiny transfer, so the benchmark cannot rot:
the nftables loss rule drops data segments at the asked rate, both senders
deliver the SHA-256-checked stream, the kernel's socket runs the algorithm
asked for."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ustack.lab.fixtures import require_netns, unique_lab_name

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]


def test_loss_bench_tiny_run() -> None:
    require_netns()
    if shutil.which("nft") is None:
        pytest.skip("nft not installed (.ci/install installs nftables)")
    name = unique_lab_name()
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "loss.py"), "--mb", "1", "--loss", "2",
         "--cc", "cubic", "--json", "--timeout", "120", "--name", name],
        capture_output=True, text=True, timeout=280, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    (run,) = out["runs"]
    assert run["loss_percent"] == 2 and run["congestion"] == "cubic"
    kernel, ours = run["kernel"], run["ustack"]
    assert kernel["ok"] and kernel["congestion"] == "cubic"
    assert ours["ok"] and ours["congestion"] == "cubic"
    assert run["ratio"] == pytest.approx(ours["mbps"] / kernel["mbps"])
    # both transfers crossed the rule (>= 1 MB of MSS-sized data segments) and
    # ~2 % of them were dropped: 0 drops in ~1400 has probability ~1e-12
    for side in (kernel, ours):
        assert side["segments"] >= 1_000_000 // 1500
    # the counters are per transfer (they used to add up over both senders)
    assert ours["segments"] < 1.5 * kernel["segments"], (kernel, ours)
    assert kernel["dropped"] + ours["dropped"] > 0
    # every dropped segment was sent again (the kernel counts segments; ustack
    # counts retransmissions, one per GSO burst, so it is only reported)
    assert kernel["retrans"] >= kernel["dropped"]
    assert ours["retrans"] >= 1
    # both senders' TCP counters, under the same nstat names (the kernel's from
    # nstat in the stack namespace, ustack's from its TcpMib)
    if shutil.which("nstat") is not None:
        assert kernel["counters"]["TcpRetransSegs"] >= kernel["dropped"]
    assert ours["counters"]["TcpRetransSegs"] == ours["retrans"]
    assert set(ours["counters"]) == set(kernel["counters"] or ours["counters"])
    # where the ustack sender's time went: on the CPU and waiting for it
    sched = ours["sched"]
    assert sched["on_cpu_s"] > 0 and sched["runqueue_wait_s"] >= 0
    assert sched["voluntary_switches"] + sched["involuntary_switches"] > 0
    total = kernel["segments"] + ours["segments"]
    assert (kernel["dropped"] + ours["dropped"]) / total < 0.08
    # the lab is gone
    assert name not in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                      text=True).stdout
