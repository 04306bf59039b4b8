"""ustack.trace: the JSON Lines writer, schema, reader, and where traces are
enabled (per connection, per stack, USTACK_TRACE).  Issue 11 item 1."""

from __future__ import annotations

import asyncio
import io
import json
import os
from pathlib import Path
from typing import Any

import pytest

from ustack.link.memory import MemoryPair
from ustack.sim import run
from ustack.stack import Stack
from ustack.trace import (
    TraceSchemaError,
    TraceWriter,
    read_trace,
    validate_event,
    validate_file,
)

SEG = {"seq": 1000, "ack": 5000, "len": 1448, "flags": "A", "win": 65535, "sack": [],
       "rtx": False}
CC = {"cwnd": 14480, "ssthresh": float("inf"), "in_flight": 2896, "pacing_rate": None,
      "delivery_rate": 1.25e6, "srtt": 0.0201, "rttvar": 0.002, "min_rtt": 0.02,
      "rto": 0.21, "ca_state": "open"}


def _fake_connection(hook: Any) -> None:
    """Every event of the contract (ustack.tcp.trace), as the core would call it."""
    hook(10.0, "state", {"old": "UNCONN", "new": "SYN-SENT"})
    hook(10.001, "seg_sent", dict(SEG, len=0, flags="S", seq=999))
    hook(10.021, "seg_recv", {"seq": 4999, "ack": 1000, "len": 0, "flags": "SA",
                              "win": 65535, "sack": []})
    hook(10.021, "state", {"old": "SYN-SENT", "new": "ESTAB"})
    hook(10.022, "seg_sent", SEG)
    hook(10.022, "seg_sent", dict(SEG, seq=2448))
    hook(10.042, "seg_recv", {"seq": 5000, "ack": 1000, "len": 0, "flags": "A",
                              "win": 65535, "sack": [[2448, 3896]]})
    hook(10.043, "recovery", {"reason": "dupthresh", "seq": 1000, "lost": 1})
    hook(10.043, "seg_sent", dict(SEG, rtx=True))
    hook(10.043, "cc", CC)
    hook(10.063, "seg_recv", {"seq": 5000, "ack": 3896, "len": 0, "flags": "A",
                              "win": 60000, "sack": []})
    hook(10.063, "recovery", {"reason": "exit"})


def test_writer_output_follows_the_schema(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    w = TraceWriter(path, local="10.0.0.1:40000", remote="10.0.1.1:5001", now=10.0)
    _fake_connection(w)
    w(10.07, "close", {"local": "10.0.0.1:40000", "remote": "10.0.1.1:5001", "errno": None})
    w(10.08, "state", {"old": "ESTAB", "new": "CLOSED"})  # after close: ignored
    counts = validate_file(path)
    assert counts == {"open": 1, "state": 2, "seg_sent": 4, "seg_recv": 3, "recovery": 2,
                      "cc": 1, "close": 1}
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0]["format"] == "ustack-trace" and lines[0]["version"] == 1
    assert lines[0]["start"] == 10.0 and lines[0]["local"] == "10.0.0.1:40000"
    assert lines[-1]["ev"] == "close" and lines[-1]["errno"] is None
    assert lines[2] == {"t": 0.001, "ev": "seg_sent", "seq": 999, "ack": 5000, "len": 0,
                        "flags": "S", "win": 65535, "sack": [], "rtx": False}
    cc = next(x for x in lines if x["ev"] == "cc")
    assert cc["ssthresh"] is None and cc["pacing_rate"] is None  # inf / None → null
    assert cc["t"] == pytest.approx(0.043)
    # the hand-formatted fast path writes what json.dumps would
    fast = [x for x in lines if x["ev"] in ("seg_sent", "seg_recv")]
    assert fast[4]["sack"] == [[2448, 3896]] and fast[5]["rtx"] is True


def test_writer_extra_keys_and_streams() -> None:
    buf = io.StringIO()
    w = TraceWriter(buf, local="a:1", remote="b:2", now=1.0)
    w(1.5, "seg_sent", dict(SEG, gso=3))  # extra key: generic path keeps it
    w.close(2.0, 104)
    lines = [json.loads(x) for x in buf.getvalue().splitlines()]
    assert lines[1]["gso"] == 3 and lines[1]["t"] == 0.5
    assert lines[2] == {"t": 1.0, "ev": "close", "local": "a:1", "remote": "b:2",
                        "errno": 104}
    for n, line in enumerate(lines):
        validate_event(line, first=(n == 0))


def test_reader_columns(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    w = TraceWriter(path, local="l:1", remote="r:2", now=10.0)
    _fake_connection(w)
    w.close(10.1)
    tr = read_trace(path)
    assert tr.local == "l:1" and tr.remote == "r:2"
    assert list(tr.sent_seq) == [999, 1000, 2448, 1000]
    assert list(tr.sent_rtx) == [0, 0, 0, 1]
    assert tr.bytes_sent() == 3 * 1448
    assert tr.bytes_acked() == 3896 - 999
    assert list(tr.sack_start) == [2448] and list(tr.sack_end) == [3896]
    assert tr.cc["cwnd"][0] == 14480 and tr.cc["ssthresh"][0] != tr.cc["ssthresh"][0]  # NaN
    assert [r for _, r, _ in tr.recovery] == ["dupthresh", "exit"]
    assert tr.close is not None


@pytest.mark.parametrize("line,why", [
    ({"t": -1, "ev": "state", "old": "A", "new": "B"}, "'t'"),
    ({"t": 0, "ev": "nosuch"}, "unknown event"),
    ({"t": 0, "ev": "state", "old": "A"}, "missing key 'new'"),
    ({"t": 0, "ev": "seg_sent", **dict(SEG, rtx=1)}, "'rtx'"),
    ({"t": 0, "ev": "seg_sent", **dict(SEG, len=True)}, "bool"),
    ({"t": 0, "ev": "seg_sent", **dict(SEG, seq=1 << 32)}, "32-bit"),
    ({"t": 0, "ev": "seg_recv", **{k: v for k, v in SEG.items() if k != "rtx"},
      "sack": [[1]]}, "SACK block"),
    ({"t": 0, "ev": "recovery", "reason": "magic"}, "unknown reason"),
    ({"t": 0, "ev": "cc", **{k: v for k, v in CC.items() if k != "rto"}}, "'rto'"),
])
def test_schema_rejects(line: dict[str, Any], why: str) -> None:
    with pytest.raises(TraceSchemaError, match=why):
        validate_event(line)


def test_schema_first_line_is_the_header(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"t":0,"ev":"state","old":"A","new":"B"}\n')
    with pytest.raises(TraceSchemaError, match="first line"):
        validate_file(path)
    path.write_text('{"t":0,"ev":"open","local":"a","remote":"b"}\n')
    with pytest.raises(TraceSchemaError, match="header"):
        validate_file(path)


# ------------------------------------------------------------------ enabling


async def _pair(**a_kwargs: Any) -> tuple[Stack, Stack]:
    pair = MemoryPair()
    a = await Stack.start(address="10.9.0.1/24", device=pair.a, diagnostics=False, **a_kwargs)
    b = await Stack.start(address="10.9.0.2/24", device=pair.b, diagnostics=False)
    return a, b


async def _echo_once(a: Stack, b: Stack, **open_kwargs: Any) -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.read(-1))
        writer.close()

    await b.start_server(serve, port=7)
    reader, writer = await a.open_connection("10.9.0.2", 7, **open_kwargs)
    writer.write(b"hello" * 1000)
    writer.write_eof()
    assert await reader.read(-1) == b"hello" * 1000
    writer.close()
    await asyncio.sleep(120)  # past TIME-WAIT: the connections leave the table


def test_trace_per_connection_path(tmp_path: Path) -> None:
    path = tmp_path / "one.jsonl"

    async def main() -> None:
        a, b = await _pair()
        await _echo_once(a, b, trace=path)
        await a.close()
        await b.close()

    run(main())
    counts = validate_file(path)
    assert counts["open"] == 1 and counts["close"] == 1 and counts["state"] >= 4
    tr = read_trace(path)
    assert tr.local.startswith("10.9.0.1:") and tr.remote == "10.9.0.2:7"
    states = [new for _, _, new in tr.states]
    assert states[0] == "SYN-SENT" and "ESTAB" in states
    assert len(list(tmp_path.iterdir())) == 1  # only that connection


def test_trace_per_connection_callable() -> None:
    got: list[tuple[float, str, dict[str, Any]]] = []

    async def main() -> None:
        a, b = await _pair()
        await _echo_once(a, b, trace=lambda now, ev, data: got.append((now, ev, data)))
        await a.close()
        await b.close()

    run(main())
    names = [ev for _, ev, _ in got]
    assert names[0] == "open" and names[-1] == "close" and "state" in names
    assert got[0][2]["remote"] == "10.9.0.2:7"
    times = [t for t, _, _ in got]
    assert times == sorted(times)


def test_trace_dir_per_stack_both_directions(tmp_path: Path) -> None:
    async def main() -> None:
        a, b = await _pair(trace_dir=tmp_path / "a")
        from ustack.trace import trace_stack

        trace_stack(b, tmp_path / "b")
        await _echo_once(a, b)
        await a.close()
        await b.close()

    run(main())
    (fa,) = (tmp_path / "a").iterdir()
    (fb,) = (tmp_path / "b").iterdir()
    assert fa.name.startswith("10.9.0.1.") and "-10.9.0.2.7-" in fa.name
    assert fb.name.startswith("10.9.0.2.7-10.9.0.1.")
    for f in (fa, fb):
        validate_file(f)
    assert read_trace(fb).states[0][2] == "SYN-RECV"


def test_ustack_trace_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USTACK_TRACE", str(tmp_path / "env"))

    async def main() -> None:
        a, b = await _pair()
        await _echo_once(a, b)
        await a.close()
        await b.close()

    run(main())
    files = sorted(p.name for p in (tmp_path / "env").iterdir())
    assert len(files) == 2  # both stacks of this process
    assert all(name.startswith(f"{os.getpid()}-") for name in files)


def test_tracing_is_off_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("USTACK_TRACE", raising=False)

    async def main() -> None:
        a, b = await _pair()
        assert a.tcp.tracer is None
        await b.start_server(lambda r, w: w.close(), port=7)
        _, writer = await a.open_connection("10.9.0.2", 7)
        assert writer.get_extra_info("tcp_connection").trace is None
        writer.close()
        await a.close()
        await b.close()

    run(main())


def test_first_syn_and_synack_are_not_retransmissions_a_resent_syn_is() -> None:
    """``rtx`` in seg_sent: the SYN (and the SYN-ACK) of the first batch are
    originals though SND.NXT was already past them; the SYN resent by the
    retransmission timer is one."""
    from ustack.tcp import TcpConnection
    from ustack.tcp.listener import listener_action

    events: list[tuple[str, dict[str, Any]]] = []
    hook = lambda now, ev, data: events.append((ev, data))  # noqa: E731
    a = TcpConnection.connect(40000, 5001, 1000, 0.0, trace=hook)
    syn = a.segments_to_send(0.0)[0]
    deadline = a.next_deadline()
    assert deadline is not None
    a.handle_timer(deadline)  # no answer: the SYN goes again
    resent = a.segments_to_send(deadline)
    assert resent and resent[0].flags & 0x02
    sent = [d for ev, d in events if ev == "seg_sent"]
    assert [(d["flags"], d["rtx"]) for d in sent] == [("S", False), ("S", True)]
    assert listener_action(syn) == "syn"
    passive: list[dict[str, Any]] = []
    b = TcpConnection.accept(syn, 7000, 0.0, trace=lambda now, ev, d: passive.append(d)
                             if ev == "seg_sent" else None)
    b.segments_to_send(0.0)
    assert [(d["flags"], d["rtx"]) for d in passive] == [("S.", False)]


@pytest.mark.parametrize("writer_style", [True, False])
def test_a_segment_without_ack_acknowledges_nothing(tmp_path: Path, writer_style: bool) -> None:
    """The peer's RST to a stray ACK (flags "R", ack 0: RFC 9293 3.10.7.4)
    after the transfer must not count as an acknowledgment: bytes_acked of
    the 100 MB lab trace came out as 2.7e9 when the kernel's TLP of its FIN
    met our TIME-WAIT.  Both the fast (hand-formatted lines) and the general
    (any JSON layout) reader paths."""
    path = tmp_path / "r.jsonl"
    w = TraceWriter(path, local="l:1", remote="r:2", now=10.0)
    _fake_connection(w)
    w(10.07, "seg_recv", {"seq": 5001, "ack": 0, "len": 0, "flags": "R", "win": 0, "sack": []})
    w.close(10.1)
    if not writer_style:  # the general path: the same lines, keys in another order
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        path.write_text("".join(json.dumps(dict(reversed(list(o.items())))) + "\n"
                                for o in lines))
    tr = read_trace(path)
    assert tr.bytes_acked() == 3896 - 999
    assert 0 not in list(tr.recv_ack)
