"""Stack.start(pcap=..., pcap_side=...): a capture below or above a FaultDevice
(issue 11 item 5).  Runs under the virtual clock, so lossy TCP is quick."""

from __future__ import annotations

import asyncio
from pathlib import Path

import dpkt
import pytest

from ustack.link.faults import FaultDevice
from ustack.link.memory import MemoryPair
from ustack.link.pcap import PcapDevice, wrap_pcap
from ustack.sim import run
from ustack.stack import Stack


def _count(path: Path, src_mac: bytes) -> tuple[int, int]:
    """(frames from src_mac, frames to it) in the capture."""
    out = into = 0
    with open(path, "rb") as f:
        for _, buf in dpkt.pcap.Reader(f):
            if buf[6:12] == src_mac:
                out += 1
            else:
                into += 1
    return out, into


async def _transfer(tmp_path: Path, side: str) -> dict[str, int]:
    pair = MemoryPair()
    fault = FaultDevice(pair.a, seed=4, loss=0.05, duplicate=0.03)
    path = tmp_path / f"{side}.pcap"
    a = await Stack.start(address="10.9.0.1/24", device=fault, pcap=path, pcap_side=side,
                          diagnostics=False)
    b = await Stack.start(address="10.9.0.2/24", device=pair.b, diagnostics=False)
    got = bytearray()
    done = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got.extend(await reader.read(-1))
        writer.close()
        done.set()

    await b.start_server(serve, port=7)
    reader, writer = await a.open_connection("10.9.0.2", 7)
    writer.write(b"x" * 300_000)
    await writer.drain()
    writer.write_eof()
    await asyncio.wait_for(done.wait(), 120)
    await asyncio.sleep(1)
    await a.close()
    await b.close()
    await asyncio.sleep(1)
    counters = a.counters()
    out, into = _count(path, pair.a.mac)
    assert len(got) == 300_000
    assert counters["dev.fault_tx_lost"] > 0 and counters["dev.fault_rx_lost"] > 0
    assert counters["dev.fault_tx_duplicated"] > 0
    return {"out": out, "in": into, "b_rx": pair.b.counters()["rx_frames"],
            "b_tx": pair.b.counters()["tx_frames"], **counters}


def test_wire_side_records_what_crossed_the_link(tmp_path: Path) -> None:
    c = run(_transfer(tmp_path, "wire"))
    # every frame B received is in the capture, nothing the injector lost is
    assert c["out"] == c["b_rx"]
    assert c["in"] == c["b_tx"]  # incoming: before the injector's loss
    assert c["out"] == (c["frames_out"] - c["dev.fault_tx_lost"]
                        + c["dev.fault_tx_duplicated"])


def test_stack_side_records_what_the_stack_saw(tmp_path: Path) -> None:
    c = run(_transfer(tmp_path, "stack"))
    assert c["out"] == c["frames_out"]  # including the frames the link then lost
    assert c["out"] > c["b_rx"] - c["dev.fault_tx_duplicated"]
    assert c["in"] == c["b_tx"] - c["dev.fault_rx_lost"] + c["dev.fault_rx_duplicated"]


def test_wrap_pcap_places_the_capture(tmp_path: Path) -> None:
    pair = MemoryPair()
    inner = FaultDevice(pair.a, seed=1)
    outer = FaultDevice(inner, seed=2)
    dev = wrap_pcap(outer, tmp_path / "w.pcap", side="wire")
    assert dev is outer and isinstance(inner.inner, PcapDevice)
    assert inner.inner.inner is pair.a
    dev.close()
    dev2 = wrap_pcap(FaultDevice(pair.b, seed=1), tmp_path / "s.pcap", side="stack")
    assert isinstance(dev2, PcapDevice)
    dev2.close()
    plain = wrap_pcap(MemoryPair().a, tmp_path / "p.pcap")
    assert isinstance(plain, PcapDevice)
    plain.close()
    with pytest.raises(ValueError, match="pcap_side"):
        wrap_pcap(MemoryPair().a, tmp_path / "x.pcap", side="both")
