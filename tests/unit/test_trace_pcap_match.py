"""Acceptance (issue 11): a 100 MB transfer with tracing on gives a trace
whose sent and acknowledged byte counts match the pcap of the same run.

Two real Stacks on a MemoryPair under the virtual clock; the sender's
device loses 0.5% of its frames (so there are retransmissions), the capture
records the stack side (every frame the stack sent, lost ones included,
exactly what the trace's seg_sent lines describe)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pcap_flow import pcap_flow

from ustack.link.faults import FaultDevice
from ustack.link.memory import MemoryPair
from ustack.sim import run
from ustack.stack import Stack
from ustack.trace import read_trace, validate_file

TOTAL = 100_000_000


def test_trace_counts_match_the_pcap(tmp_path: Path) -> None:
    pcap = tmp_path / "run.pcap"

    async def main() -> None:
        pair = MemoryPair()
        a = await Stack.start(address="10.9.0.1/24", pcap=pcap, pcap_side="stack",
                              device=FaultDevice(pair.a, seed=11, loss=0.005, directions="tx"),
                              diagnostics=False, trace_dir=tmp_path / "a")
        b = await Stack.start(address="10.9.0.2/24", device=pair.b, diagnostics=False)
        done = asyncio.Event()
        got = 0

        async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal got
            while chunk := await reader.read(1 << 20):
                got += len(chunk)
            writer.close()
            done.set()

        await b.start_server(sink, port=9)
        _, writer = await a.open_connection("10.9.0.2", 9)
        chunk = b"\x5a" * (1 << 20)
        left = TOTAL
        while left:
            n = min(left, len(chunk))
            writer.write(chunk[:n])
            left -= n
            await writer.drain()
        writer.write_eof()
        await asyncio.wait_for(done.wait(), 600)
        writer.close()
        await asyncio.sleep(70)  # TIME-WAIT over: the trace is closed by the table
        assert got == TOTAL
        await a.close()
        await b.close()

    run(main())
    (trace,) = (tmp_path / "a").iterdir()
    counts = validate_file(trace)
    assert counts["close"] == 1
    tr = read_trace(trace)
    sent, segs, rtx, acked = pcap_flow(pcap, bytes([10, 9, 0, 1]))
    assert tr.bytes_sent() == sent
    assert sum(1 for n in tr.sent_len if n) == segs
    # data retransmissions (the core also marks its first SYN rtx: reported to core)
    data_rtx = sum(r for r, n in zip(tr.sent_rtx, tr.sent_len, strict=True) if n)
    assert data_rtx == rtx > 0  # the losses were repaired
    assert tr.bytes_acked() == acked == TOTAL + 2  # SYN and FIN take one each
