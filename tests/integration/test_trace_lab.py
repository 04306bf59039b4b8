"""Tracing against the kernel (issue 11): a 100 MB transfer from ustack to a
kernel sink with a trace and a pcap; the trace's sent and acknowledged byte
counts equal the capture's."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pcap_flow import pcap_flow

from ustack.lab import Lab

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
PEER = ROOT / "bench" / "throughput_peer.py"
MB = 1_000_000


@pytest.mark.parametrize("offload", [True, False], ids=["gso", "exact-wire"])
async def test_100mb_trace_matches_pcap(lab: Lab, tmp_path: Path, offload: bool) -> None:
    from ustack.stack import Stack
    from ustack.trace import read_trace, validate_file

    pcap = tmp_path / "run.pcap"
    with lab.enter_stack_ns():
        stack = await Stack.start(iface=lab.stack_if, address=lab.stack_address, pcap=pcap,
                                  trace_dir=tmp_path / "trace", offload=offload)
    sink = lab.popen_in_peer([sys.executable, str(PEER), "sink", "--port", "5001"],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert sink.stdout is not None and sink.stdout.readline().startswith("READY")
        nbytes = 100 * MB
        reader, writer = await stack.open_connection(lab.peer_address, 5001, timeout=10)
        chunk = b"\xa5" * (1 << 20)
        left = nbytes
        while left:
            n = min(left, len(chunk))
            writer.write(chunk[:n])
            left -= n
            await writer.drain()
        writer.write_eof()
        reply = (await asyncio.wait_for(reader.read(), 120)).decode().split()
        assert reply[0] == str(nbytes)
        writer.close()
        await asyncio.sleep(0.5)  # the kernel's FIN and our last ACK
    finally:
        await stack.close()  # closes the trace (close event) and the pcap
        sink.kill()
        sink.wait()
    (trace,) = (tmp_path / "trace").iterdir()
    counts: dict[str, Any] = validate_file(trace)
    assert counts["close"] == 1 and counts["seg_sent"] > 0
    tr = read_trace(trace)
    flow = pcap_flow(pcap, bytes(map(int, lab.stack_ip.split("."))))
    sent, acked = flow.sent, flow.acked
    assert tr.bytes_sent() == sent >= nbytes
    assert tr.bytes_acked() == acked == nbytes + 2  # SYN and FIN count one each
