"""The diagnostics endpoint and ``ustack ss`` as a separate process: socket
file mode and removal, stale endpoints, merging stacks, server-side filters,
exit statuses and option parsing."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ustack.cli.ss import UsageError, parse_argv
from ustack.diag import protocol
from ustack.diag.client import endpoint_paths, query_endpoint, query_stacks
from ustack.diag.endpoint import DiagnosticsServer
from ustack.diag.fake import golden_records, synthetic_records
from ustack.diag.filter import select
from ustack.diag.records import ALL_STATES, FIELDS, SocketRecord


class LoopThread:
    """An asyncio loop in a thread, serving endpoints while the test runs ss."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: object) -> object:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)  # type: ignore[arg-type]

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "run"
    monkeypatch.setenv("USTACK_RUN_DIR", str(d))
    return d


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    lt = LoopThread()
    try:
        yield lt
    finally:
        lt.stop()


def serve(
    lt: LoopThread, records: list[SocketRecord], path: str | None = None
) -> DiagnosticsServer:
    server = DiagnosticsServer(lambda detail: records, path=path)
    lt.run(server.start())
    return server


def ss(*argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ustack", "ss", *argv],
        capture_output=True, text=True, timeout=30, input=stdin, env=os.environ.copy(),
    )


def test_endpoint_file_is_private_and_removed_at_close(
    run_dir: Path, loop_thread: LoopThread
) -> None:
    server = serve(loop_thread, golden_records())
    path = Path(server.path)
    assert path.parent == run_dir
    assert path.name == f"stack-{os.getpid()}-{path.name.split('-')[2]}"
    assert stat.S_ISSOCK(path.stat().st_mode)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert protocol.pid_of(path.name) == os.getpid()
    loop_thread.run(server.close())
    assert not path.exists()


def test_query_returns_every_record_and_basic_rows(run_dir: Path, loop_thread: LoopThread) -> None:
    records = golden_records()
    server = serve(loop_thread, records)
    try:
        got = query_endpoint(server.path, detail=True)
        assert got == records
        basic = query_endpoint(server.path, detail=False)
        assert basic is not None
        assert [tuple(r) for r in basic] == [tuple(r)[: len(basic[0])] for r in records]
        assert basic[1].state == "ESTAB" and basic[1].local_port == 41234
        assert not hasattr(basic[1], "cwnd")
        table = query_endpoint(server.path, detail=False, fields=7)
        assert table is not None and [tuple(r) for r in table] == [r[:7] for r in records]
        assert table[0].send_q == 128 and not hasattr(table[0], "pid")
    finally:
        loop_thread.run(server.close())


def test_server_side_filter_equals_local_select(run_dir: Path, loop_thread: LoopThread) -> None:
    records = synthetic_records(3000, seed=7)
    server = serve(loop_thread, records)
    try:
        for expr, mask in [
            ("dport = :http or dport = :https", ALL_STATES),
            ("dst 10.78/16 and not sport < 34000", ALL_STATES),
            ("", 1 << 6),
        ]:
            remote = query_stacks(states=mask, filter_text=expr, detail=True)
            local = [r for r in select(records, expr, all=True)]
            local = [r for r in local if mask == ALL_STATES or r.state == "TIME-WAIT"]
            assert remote == local, expr
            assert remote  # the example must select something
    finally:
        loop_thread.run(server.close())


def test_stale_endpoint_of_dead_process_is_removed(run_dir: Path) -> None:
    run_dir.mkdir()
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    stale = run_dir / protocol.endpoint_name(child.pid, 1)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(stale))  # bound, never listening: connect is refused
    sock.close()
    assert stale.exists()
    result = ss("-tan")
    assert result.returncode == 0
    assert not stale.exists()
    assert result.stdout.count("\n") == 1  # header only


def test_unanswered_endpoint_of_live_process_is_kept(run_dir: Path) -> None:
    run_dir.mkdir()
    path = run_dir / protocol.endpoint_name(os.getpid(), 99)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    try:
        assert query_endpoint(str(path)) is None
        assert path.exists()  # our pid is alive: not ours to delete
        assert endpoint_paths() == [str(path)]
    finally:
        sock.close()
        path.unlink()


def test_no_running_stack_prints_header_and_exits_zero(run_dir: Path) -> None:
    result = ss("-tan")
    assert result.returncode == 0
    assert result.stdout == "State Recv-Q Send-Q Local Address:Port Peer Address:PortProcess\n"
    assert result.stderr == ""
    assert ss("-tanH").stdout == ""


@pytest.mark.parametrize(
    ("argv", "word"),
    [
        (["foo"], "foo"),
        (["state", "listen"], "listen"),
        (["sport", "=", ":nosuchservice"], ":nosuchservice"),
        (["(", "sport", "=", ":22"], "("),
        (["dst", "1.2.3.400"], "1.2.3.400"),
    ],
)
def test_bad_filter_is_one_line_and_255(run_dir: Path, argv: list[str], word: str) -> None:
    result = ss("-tan", *argv)
    assert result.returncode == 255
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert word in result.stderr and "Traceback" not in result.stderr


def test_bad_option_is_255(run_dir: Path) -> None:
    result = ss("-Z")
    assert result.returncode == 255
    assert result.stderr.count("\n") == 1 and '"Z"' in result.stderr


def test_help_explains_kernel_only_concepts(run_dir: Path) -> None:
    result = ss("--help")
    assert result.returncode == 0
    for words in ("-K -E -D", "ustack has only TCP", "IPv4 only", "fd is the connection"):
        assert words in result.stdout
    assert ss("-V").stdout.startswith("ustack ss")


def test_cli_merges_stacks_and_applies_everything(
    run_dir: Path, loop_thread: LoopThread, tmp_path: Path
) -> None:
    first = serve(loop_thread, golden_records())
    second_records = [
        SocketRecord("ESTAB", "10.88.0.2", 5555, "10.88.0.1", 80, 0, 0, pid=777, comm="other")
    ]
    second = serve(loop_thread, second_records)
    try:
        out = ss("-tan").stdout.splitlines()
        assert len(out) == 1 + 6 + 1
        assert out[0].startswith("State ")
        assert any("10.88.0.2:5555" in line for line in out)

        # default states: no LISTEN, no TIME-WAIT; Netid shown without -t
        default = ss("-n").stdout.splitlines()
        assert default[0].startswith("Netid State")
        assert {line.split()[1] for line in default[1:]} == {
            "ESTAB", "CLOSE-WAIT", "FIN-WAIT-2", "SYN-SENT"
        }

        # one state: no State column; service names without -n
        est = ss("-t", "state", "established").stdout.splitlines()
        assert est[0].startswith("Recv-Q")
        assert "10.88.0.1:http" in est[2]

        # the reference's example with combined flags and a quoted expression
        text = ss("-tanoi", "state", "established", "( dport = :http or sport = :http )").stdout
        lines = text.splitlines()
        assert len(lines) == 3 and "10.88.0.1:80" in lines[1]

        # -l, -p, -e, -m, -O, -j, -s, -F
        assert [ln.split()[0] for ln in ss("-tln").stdout.splitlines()[1:]] == ["LISTEN"]
        assert 'users:(("other",pid=777,fd=0))' in ss("-tnp").stdout
        tane = ss("-tane", "sport", "=", ":8080").stdout
        assert "ino:4 sk:7f04 -->" in tane and "ino:1 sk:7f01 <->" in tane
        assert "skmem:(r5,rb131072," in ss("-tanm", "state", "close-wait").stdout
        one = ss("-tanoiO", "state", "established").stdout.splitlines()
        assert len(one) == 3 and "rtt:0.412/0.206" in one[1]
        js = json.loads(ss("-tjo", "state", "time-wait").stdout)
        assert len(js) == 1 and js[0]["timer"]["name"] == "timewait"
        assert js[0]["timer"]["expire_ms"] == 59400
        # as the kernel's ss: TIME-WAIT inside closed, CLOSE-WAIT inside estab
        summary = ss("-s").stdout
        assert summary.startswith("Total: 7\nTCP:   7 (estab 3, closed 1, orphaned 0, timewait 1)")
        assert json.loads(ss("-sj").stdout)["tcp"] == {
            "total": 7, "estab": 3, "closed": 1, "orphaned": 0, "timewait": 1}
        assert "State" not in summary
        assert "Total: 7" in ss("-s", "-t").stdout and "State" in ss("-s", "-t").stdout
        ffile = tmp_path / "filter"
        ffile.write_text("# comment\n( dport = :443\n or dport = :22 )\n")
        picked = ss("-tan", "-F", str(ffile)).stdout.splitlines()
        assert [ln.split()[0] for ln in picked[1:]] == ["FIN-WAIT-2", "SYN-SENT"]
        assert ss("-tan", "-F", "-", stdin="dport = :443").stdout.count("\n") == 2
        # ustack has no UDP / IPv6 sockets
        assert ss("-uan").stdout == (
            "State Recv-Q Send-Q Local Address:Port Peer Address:PortProcess\n"
        )
        assert ss("-tuan").stdout.startswith("Netid State ")
        assert ss("-6tan").stdout.count("\n") == 1
    finally:
        loop_thread.run(first.close())
        loop_thread.run(second.close())


def test_argv_parsing_like_getopt() -> None:
    opts, words = parse_argv(["-tanoiem", "state", "established", "-p", "dport", "=", ":80"])
    assert all(opts.get(c) for c in "tanoiemp")
    assert words == ["state", "established", "dport", "=", ":80"]
    opts, words = parse_argv(["-nFf"])
    assert opts["n"] and opts["F"] == "f"
    opts, words = parse_argv(["--numeric", "--filter=g", "--all"])
    assert opts["n"] and opts["a"] and opts["F"] == "g"
    opts, words = parse_argv(["-t", "--", "-weird"])
    assert words == ["-weird"]
    with pytest.raises(UsageError):
        parse_argv(["--nonsense"])
    with pytest.raises(UsageError):
        parse_argv(["-F"])


def test_fields_cover_tcpinfo() -> None:
    from ustack.tcp.info import TcpInfo

    tcpinfo_fields = set(TcpInfo.__dataclass_fields__)
    missing = tcpinfo_fields - set(FIELDS) - {"timer", "local_port", "remote_port", "nodelay"}
    assert not missing, f"TcpInfo figures not carried into SocketRecord: {missing}"


def test_unreadable_endpoints_give_one_warning(
    run_dir: Path, loop_thread: LoopThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ustack.diag import client

    servers = [serve(loop_thread, golden_records()) for _ in range(2)]
    try:
        def denied(path: str, **kw: object) -> None:
            raise PermissionError(13, "Permission denied", path)

        monkeypatch.setattr(client, "query_endpoint", denied)
        warnings: list[str] = []
        assert client.query_stacks(warn=warnings.append) == []
        assert len(warnings) == 1 and "2 stack(s)" in warnings[0] and "0600" in warnings[0]
    finally:
        for server in servers:
            loop_thread.run(server.close())


def test_search_dirs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USTACK_RUN_DIR", "/somewhere")
    assert protocol.search_dirs() == ["/somewhere"]
    monkeypatch.delenv("USTACK_RUN_DIR")
    assert protocol.search_dirs()[0] == "/run/ustack"


def test_lazy_public_names() -> None:
    import ustack.diag as diag
    from ustack.diag.filter import select as real_select

    assert diag.select is real_select
    assert diag.format_table.__module__ == "ustack.diag.format"
    with pytest.raises(AttributeError):
        _ = diag.nonexistent


def test_iterator_snapshot_lets_the_loop_run_between_chunks(
    run_dir: Path, loop_thread: LoopThread
) -> None:
    records = synthetic_records(9000, seed=3)
    ticks = {"n": 0, "during": 0}

    async def ticker() -> None:
        while True:
            ticks["n"] += 1
            await asyncio.sleep(0)

    def source(detail: bool) -> Iterator[SocketRecord]:
        start = ticks["n"]
        yield from records
        ticks["during"] = ticks["n"] - start

    server = DiagnosticsServer(source)
    loop_thread.run(server.start())
    task = asyncio.run_coroutine_threadsafe(ticker(), loop_thread.loop)
    try:
        got = query_stacks(detail=True)
        assert got == records
        assert ticks["during"] >= 4  # 9000 records in chunks of 2000: the loop ran
        est = query_stacks(states=1 << 1, filter_text="dport = :443", detail=False)
        assert [tuple(r) for r in est] == [
            r[:12] for r in records if r.state == "ESTAB" and r.remote_port == 443
        ]
    finally:
        task.cancel()
        loop_thread.run(server.close())
