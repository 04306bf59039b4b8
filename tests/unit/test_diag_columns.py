"""The columnar ``ss -tan`` path (issue 14: ``ustack ss -tan`` over 100k
connections in under 1.5 s): the endpoint answers ``"columns": true`` with one
list per field, the client checks and renders them.  Every step must give
what the record path gives: the snapshot's columns equal the first seven
fields of its ``detail=False`` records, the rendered table equals
``format_table`` of the records, and a columnar reply is checked as strictly
as rows are."""

from __future__ import annotations

import asyncio
import marshal
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ustack.diag import client, protocol
from ustack.diag.endpoint import DiagnosticsServer
from ustack.diag.fake import golden_records, synthetic_records
from ustack.diag.format import FormatOptions, format_table, format_table_columns
from ustack.diag.records import (
    ALL_STATES,
    FIELDS,
    STATE_BITS,
    TABLE_FIELD_COUNT,
    RowError,
    validate_columns,
)

pytest.importorskip("ustack.tcp.connection")

from ustack.diag.snapshot import iter_table_columns, snapshot  # noqa: E402
from ustack.link.memory import MemoryPair  # noqa: E402
from ustack.stack import Stack  # noqa: E402

N = TABLE_FIELD_COUNT


def _columns(records: list[Any]) -> list[list[Any]]:
    return [[r[i] for r in records] for i in range(N)]


def _merge(chunks: list[list[list[Any]]]) -> list[list[Any]]:
    out: list[list[Any]] = [[] for _ in range(N)]
    for chunk in chunks:
        for col, part in zip(out, chunk, strict=True):
            col.extend(part)
    return out


@pytest.mark.parametrize("opts", [
    FormatOptions(), FormatOptions(numeric=True), FormatOptions(header=False),
    FormatOptions(numeric=True, show_state=False), FormatOptions(show_netid=True),
    FormatOptions(numeric=True, screen_width=80), FormatOptions(numeric=True, screen_width=200),
])
def test_format_table_columns_equals_format_table(opts: FormatOptions) -> None:
    for records in (synthetic_records(3000, seed=5), golden_records(), []):
        assert format_table_columns(_columns(records), opts) == format_table(records, opts)


def test_format_table_columns_refuses_the_detailed_views() -> None:
    with pytest.raises(ValueError):
        format_table_columns(_columns(golden_records()), FormatOptions(info=True))
    with pytest.raises(ValueError):
        format_table_columns(_columns(golden_records()), FormatOptions(processes=True))
    with pytest.raises(ValueError):
        format_table_columns([[]] * 3, FormatOptions())


def test_validate_columns_accepts_good_and_rejects_bad_replies() -> None:
    names = list(FIELDS[:N])
    good = _columns(synthetic_records(500))
    assert validate_columns(names, good) == (tuple(names), good)
    bad_cases: list[tuple[Any, Any]] = [
        (names, good[:-1]),                                # a column missing
        (names, [*good[:-1], good[-1][:-1]]),              # ragged
        (names, [tuple(c) for c in good]),                 # not lists
        (names, "columns"),
        (names[:-1] + ["nonsense"], good),                 # unknown field
        (names[:5], good[:5]),                             # send_q missing
        (names, [good[0], good[1], [70000] * 500, *good[3:]]),   # port > 65535
        (names, [["ESTAB?"] * 500, *good[1:]]),            # unknown state
        (names, [good[0], ["10.0.0"] * 500, *good[2:]]),   # not a dotted quad
        (names, [*good[:5], [-1] * 500, good[6]]),         # negative queue
        (names, [*good[:5], ["1"] * 500, good[6]]),        # a str for an int
    ]
    for bad_names, bad_cols in bad_cases:
        with pytest.raises(RowError):
            validate_columns(bad_names, bad_cols)


def test_decode_columns_reads_columns_and_old_row_replies() -> None:
    records = synthetic_records(200)
    names = list(FIELDS[:N])
    cols = _columns(records)
    data = marshal.dumps((protocol.VERSION, "columns", names, cols))
    assert client.decode_columns("x", data) == (tuple(names), cols)
    rows = marshal.dumps((protocol.VERSION, names, [r[:N] for r in records]))
    assert client.decode_columns("x", rows) == (tuple(names), cols)
    empty = marshal.dumps((protocol.VERSION, names, []))
    assert client.decode_columns("x", empty) == (tuple(names), [[] for _ in names])
    for garbage in (b"\x00garbage", marshal.dumps((protocol.VERSION, "error", "boom")),
                    marshal.dumps((2, "columns", names, cols)),
                    marshal.dumps((protocol.VERSION, "columns", names, cols[:3]))):
        with pytest.raises(client.EndpointError):
            client.decode_columns("x", garbage)


async def _ask(server: DiagnosticsServer, states: int, columns: bool,
               filter_text: str = "") -> bytes:
    return await server.respond_async(
        client._request(states, filter_text, False, N, "tcp", columns=columns))


async def test_endpoint_columns_equal_rows_for_every_state_mask() -> None:
    records = synthetic_records(5000, seed=3)
    server = DiagnosticsServer(lambda detail: records, path="/nonexistent/unused")
    masks = [ALL_STATES, STATE_BITS["ESTAB"], STATE_BITS["TIME-WAIT"] | STATE_BITS["LISTEN"], 0]
    for states in masks:
        rows = client.decode_reply("x", await _ask(server, states, False))
        names, cols = client.decode_columns("x", await _ask(server, states, True))
        assert names == FIELDS[:N]
        assert cols == _columns(rows)
    # a filter expression: the columns of the filtered rows
    rows = client.decode_reply("x", await _ask(server, ALL_STATES, False, "dport = :80"))
    _names, cols = client.decode_columns("x", await _ask(server, ALL_STATES, True,
                                                         "dport = :80"))
    assert cols == _columns(rows) and set(cols[4]) == {80}


async def test_endpoint_fast_columns_fall_back_when_the_getters_fail() -> None:
    records = synthetic_records(300)

    def broken() -> Any:
        raise AttributeError("send_queue")
        yield  # pragma: no cover

    server = DiagnosticsServer(lambda detail: records, path="/nonexistent/unused",
                               columns_fn=broken)
    _names, cols = client.decode_columns("x", await _ask(server, ALL_STATES, True))
    assert cols == _columns(records)


async def _established_stacks(b_diagnostics: bool = True) -> tuple[Stack, Stack, list[Any]]:
    a_dev, b_dev = MemoryPair()
    a = await Stack.start(device=a_dev, address="10.9.0.1/24")
    b = await Stack.start(device=b_dev, address="10.9.0.2/24", diagnostics=b_diagnostics)
    accepted: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        accepted.append((r, w))

    await a.start_server(handler, port=8080)
    await a.start_server(handler, port=9090)
    writers = []
    for i in range(40):
        _r, w = await b.open_connection("10.9.0.1", 8080 if i % 3 else 9090)
        writers.append(w)
    for _ in range(200):
        if len(accepted) == 40:
            break
        await asyncio.sleep(0.01)
    for w in [w for _r, w in accepted] + writers:  # data stays in the TCP queues
        transport = w.transport
        assert isinstance(transport, asyncio.ReadTransport)
        transport.pause_reading()
    writers[0].write(b"unread bytes")  # Recv-Q on a's side
    await writers[0].drain()
    writers[1].write_eof()  # FIN-WAIT-2 / CLOSE-WAIT
    writers[2].close()  # b closes first: TIME-WAIT after a closes too
    await asyncio.sleep(0.05)
    accepted[2][1].close()
    accepted[3][1].write(b"x" * 3_000_000)  # Send-Q on a's side (b reads nothing)
    await asyncio.sleep(0.2)
    return a, b, writers


def _snapshot_fn(st: Stack) -> Callable[[bool], list[Any]]:
    return lambda detail: snapshot(st, detail)


def _columns_fn(st: Stack, calls: list[int]) -> Callable[[], Iterator[list[list[Any]]]]:
    def fn() -> Iterator[list[list[Any]]]:
        calls.append(1)
        return iter_table_columns(st, 7)
    return fn


async def test_snapshot_columns_equal_the_record_path_on_real_stacks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("USTACK_RUN_DIR", str(tmp_path))
    a, b, _writers = await _established_stacks()
    try:
        for st in (a, b):
            records = snapshot(st, detail=False)
            states = {r.state for r in records}
            assert len(records) >= 40
            for chunk in (1, 7, 10_000):
                assert _merge(list(iter_table_columns(st, chunk))) == _columns(records)
            # the endpoint's fast path (columns_fn) answers what the rows say
            calls: list[int] = []
            server = DiagnosticsServer(_snapshot_fn(st), path="/nonexistent/unused",
                                       columns_fn=_columns_fn(st, calls))
            for mask in (ALL_STATES, STATE_BITS["ESTAB"] | STATE_BITS["LISTEN"]):
                rows = client.decode_reply("x", await _ask(server, mask, False))
                _names, cols = client.decode_columns("x", await _ask(server, mask, True))
                assert cols == _columns(rows)
            assert len(calls) == 2
            if st is a:
                assert {"LISTEN", "ESTAB", "CLOSE-WAIT"} <= states
                assert any(r.recv_q for r in records) and any(r.send_q for r in records)
            else:
                assert {"ESTAB", "FIN-WAIT-2", "TIME-WAIT"} <= states
    finally:
        await b.close()
        await a.close()


async def test_ss_tan_output_is_the_record_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    run_ss: Callable[..., Awaitable[str]]
) -> None:
    """``ustack ss -tan`` (the columnar path) prints what format_table prints
    for the stack's records, for several option sets (one stack serves
    diagnostics, so the order of stacks plays no part)."""
    monkeypatch.setenv("USTACK_RUN_DIR", str(tmp_path))
    a, b, _writers = await _established_stacks(b_diagnostics=False)
    try:
        from ustack.diag.filter import parse

        for argv, numeric, words in ((["-tan"], True, []), (["-tn"], True, []),
                                     (["-ta"], False, []),
                                     (["-tanH", "state", "established"], True,
                                      ["state", "established"])):
            flt = parse(words)
            mask = flt.state_mask(all="a" in argv[0], listening=False)
            opts = FormatOptions(numeric=numeric, header="H" not in argv[0],
                                 show_state=len(words) == 0)
            for _attempt in range(20):
                # the queues may still move (window probes): compare a run of
                # ss with the records only when they were the same before and
                # after it
                before = [tuple(r)[:N] for r in snapshot(a, detail=False)]
                text = await run_ss(*argv)
                records = [r for r in snapshot(a, detail=False) if STATE_BITS[r.state] & mask]
                if [tuple(r)[:N] for r in snapshot(a, detail=False)] == before:
                    break
                await asyncio.sleep(0.1)
            else:
                pytest.fail("the stack never held still for one ss run")
            assert len(records) >= 30
            assert text == format_table(records, opts), argv
    finally:
        await b.close()
        await a.close()
