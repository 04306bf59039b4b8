"""The diagnostics endpoint against another user and against garbage (issue 13
item 4): a run directory another uid created, a symbolic link or a
group-writable directory is refused by the stack and by ``ustack ss``; a
server of a foreign uid is not believed (SO_PEERCRED); an endpoint answering
garbage is one warning line while the other stacks' rows are shown; the server
answers every malformed request with an error reply and logs no traceback."""

from __future__ import annotations

import asyncio
import json
import logging
import marshal
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ustack.diag import protocol
from ustack.diag.client import decode_reply, query_endpoint, query_stacks
from ustack.diag.endpoint import DiagnosticsServer, attach_diagnostics
from ustack.diag.fake import golden_records
from ustack.diag.records import FIELDS, TABLE_FIELD_COUNT, SocketRecord

NOBODY = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another uid")


class LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    lt = LoopThread()
    try:
        yield lt
    finally:
        lt.stop()


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A sticky world-writable directory like /tmp (pytest's tmp_path is
    private to root, so another uid could not reach into it)."""
    d = Path(tempfile.mkdtemp(prefix="hd-diag-", dir="/tmp"))
    d.chmod(0o1777)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def as_uid(uid: int, fn: Callable[[], None]) -> None:
    """Run ``fn`` in a forked child with uid/gid ``uid``; fail if it fails."""
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 1
        try:
            os.setgid(uid)
            os.setuid(uid)
            fn()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def _fake_rows() -> bytes:
    fake = SocketRecord("ESTAB", "6.6.6.6", 666, "6.6.6.7", 667, 0, 0)
    return marshal.dumps((protocol.VERSION, list(FIELDS), [tuple(fake)]))


class RawEndpoint:
    """A hand-made endpoint answering every request with ``reply`` (bytes)."""

    def __init__(self, path: str, reply: bytes, sock: socket.socket | None = None) -> None:
        self.reply = reply
        self.sock = sock or socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if sock is None:
            self.sock.bind(path)
            self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    while conn.recv(65536):
                        pass
                    conn.sendall(self.reply)
                except OSError:
                    pass

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(2)
        self.sock.close()


# ------------------------------------------------------ the run directory


@needs_root
def test_directory_created_by_another_user_is_not_hijacked(
    shared_tmp: Path, loop_thread: LoopThread, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The attack of issue 13: another user creates the victim's run directory
    first and puts their own endpoint in it, showing fake rows."""
    victim_dir = shared_tmp / f"ustack-{os.getuid()}"

    def attacker() -> None:
        victim_dir.mkdir(mode=0o777)
        os.chmod(victim_dir, 0o777)

    as_uid(NOBODY, attacker)
    assert victim_dir.stat().st_uid == NOBODY
    monkeypatch.setenv("USTACK_RUN_DIR", str(victim_dir))

    # the stack refuses the directory: a clear error, no endpoint
    server = DiagnosticsServer(lambda detail: golden_records())
    with pytest.raises(protocol.UnsafeDirectory, match=f"owned by uid {NOBODY}"):
        server.listen()
    assert os.listdir(victim_dir) == []

    # a stack started there keeps running, without an endpoint, one warning
    class FakeStack:
        has_tcp = True

        def add_close_hook(self, hook: object) -> None:
            raise AssertionError("no endpoint, nothing to close")

    async def attach() -> object:
        return attach_diagnostics(FakeStack())

    with caplog.at_level(logging.WARNING):
        assert loop_thread.run(attach()) is None
    assert [r.getMessage() for r in caplog.records if "owned by uid" in r.getMessage()]
    assert not any(r.exc_info for r in caplog.records)

    # the attacker now serves fake rows from the directory: ss does not believe them
    fake_path = str(victim_dir / protocol.endpoint_name(1, 1))
    pid = os.fork()
    if pid == 0:
        try:
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            RawEndpoint(fake_path, _fake_rows()).thread.join(20)
        finally:
            os._exit(0)
    try:
        for _ in range(100):
            if os.path.exists(fake_path):
                break
            threading.Event().wait(0.05)
        warnings: list[str] = []
        assert query_stacks(warn=warnings.append) == []
        assert len(warnings) == 1 and f"owned by uid {NOBODY}" in warnings[0]
        result = subprocess.run([sys.executable, "-m", "ustack", "ss", "-tan"],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0 and "6.6.6.6" not in result.stdout
        assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)


@needs_root
def test_server_of_another_uid_is_not_believed(
    shared_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even in a directory that passes the checks, a server whose uid
    (SO_PEERCRED: the uid when it called listen) is neither ours nor root's
    is skipped with one line."""
    run = shared_tmp / "run"
    protocol.prepare_dir(str(run))
    path = str(run / protocol.endpoint_name(os.getpid(), 7))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    os.chmod(path, 0o666)
    pid = os.fork()
    if pid == 0:
        try:
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            sock.listen(4)
            RawEndpoint(path, _fake_rows(), sock).thread.join(20)
        finally:
            os._exit(0)
    sock.close()
    try:
        monkeypatch.setenv("USTACK_RUN_DIR", str(run))
        warnings: list[str] = []
        # a client trusts only itself and root: nobody's server is refused
        for _ in range(50):
            warnings.clear()
            got = query_stacks(warn=warnings.append, timeout=2)
            if warnings and "served by uid" in warnings[0]:
                break
            threading.Event().wait(0.05)
        assert got == []
        assert len(warnings) == 1 and f"served by uid {NOBODY}" in warnings[0]
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)


def test_symlinked_or_writable_directory_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(protocol.UnsafeDirectory, match="symbolic link"):
        protocol.prepare_dir(str(link))
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o770)
    with pytest.raises(protocol.UnsafeDirectory, match="group- or world-writable"):
        protocol.prepare_dir(str(open_dir))
    not_dir = tmp_path / "file"
    not_dir.write_text("")
    with pytest.raises(protocol.UnsafeDirectory, match="not a directory"):
        protocol.check_dir(str(not_dir))
    # the client skips them with one line each
    for bad in (link, open_dir):
        monkeypatch.setenv("USTACK_RUN_DIR", str(bad))
        warnings: list[str] = []
        assert query_stacks(warn=warnings.append) == []
        assert len(warnings) == 1 and str(bad) in warnings[0]


def test_new_directory_is_private(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        protocol.prepare_dir(str(tmp_path / "a" / "run"))
    finally:
        os.umask(old)
    assert (tmp_path / "a" / "run").stat().st_mode & 0o777 == 0o700
    protocol.prepare_dir(str(tmp_path / "a" / "run"))  # exists, ours: accepted


# ------------------------------------------------------ garbage replies


def _reply(names: Any, rows: Any, version: Any = protocol.VERSION) -> bytes:
    return marshal.dumps((version, names, rows))


def _nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


GOOD = tuple(golden_records()[1])
T = TABLE_FIELD_COUNT
GARBAGE_REPLIES: dict[str, bytes] = {
    "random bytes": b"\x00\xffgarbage" * 10,
    "empty": b"",
    "not a triple": marshal.dumps([1, 2]),
    "a dict": marshal.dumps({"v": 1}),
    "wrong version": _reply(list(FIELDS), [GOOD], version=2),
    "names not a list": _reply("state", [GOOD]),
    "unknown field": _reply(["state", "bogus"], [("ESTAB", 1)]),
    "missing fields": _reply(["state"], [("ESTAB",)]),
    "rows not a list": _reply(list(FIELDS), {"a": 1}),
    "short row": _reply(list(FIELDS), [GOOD[:-1]]),
    "row of ints": _reply(list(FIELDS[:T]), [1, 2]),
    "str port": _reply(list(FIELDS[:T]), [("ESTAB", "1.2.3.4", "80", "1.2.3.5", 1, 0, 0)]),
    "port too big": _reply(list(FIELDS[:T]), [("ESTAB", "1.2.3.4", 70000, "1.2.3.5", 1, 0, 0)]),
    "negative queue": _reply(list(FIELDS[:T]), [("ESTAB", "1.2.3.4", 1, "1.2.3.5", 1, -5, 0)]),
    "unknown state": _reply(list(FIELDS[:T]), [("HACKED", "1.2.3.4", 1, "1.2.3.5", 1, 0, 0)]),
    "bad address": _reply(list(FIELDS[:T]), [("ESTAB", "1.2.3.4\n", 1, "x", 1, 0, 0)]),
    "nan float": _reply(list(FIELDS), [GOOD[:13] + (float("nan"),) + GOOD[14:]]),
    "newline in comm": _reply(list(FIELDS), [GOOD[:8] + ("a\nb",) + GOOD[9:]]),
    "negative detail field": _reply(list(FIELDS), [GOOD[:24] + (-0.5,) + GOOD[25:]]),
    "bool field of 2": _reply(list(FIELDS), [GOOD[:15] + (2,) + GOOD[16:]]),
    "bool field huge": _reply(list(FIELDS[:16]), [GOOD[:15] + (10 ** 5000,)]),
    "queue huge": _reply(list(FIELDS[:T]), [("ESTAB", "1.2.3.4", 1, "1.2.3.5", 1, 2 ** 70, 0)]),
    "wide row, huge counter": _reply(list(FIELDS), [GOOD[:40] + (10 ** 5000,) + GOOD[41:]]),
    "port huge": _reply(list(FIELDS[:T]), [("ESTAB", "1.2.3.4", 10 ** 5000, "1.2.3.5", 1, 0, 0)]),
    "wide row, port too big": _reply(list(FIELDS), [GOOD[:2] + (70000,) + GOOD[3:]]),
    "wide row, str in a float": _reply(list(FIELDS), [GOOD[:24] + ("1",) + GOOD[25:]]),
    "wide row, list value": _reply(list(FIELDS), [GOOD[:30] + ([1],) + GOOD[31:]]),
    "wide row, bad timer name": _reply(list(FIELDS), [GOOD[:12] + ("evil",) + GOOD[13:]]),
    "error not str": _reply("error", ["x" * 5000]),
    "deeply nested version": marshal.dumps((_nested(1500), [], [])),
    "huge int version": marshal.dumps((10 ** 5000, [], [])),
    "error reply": _reply("error", "bad filter"),
}


@pytest.mark.parametrize("shape", sorted(GARBAGE_REPLIES))
def test_garbage_reply_is_one_line_error(shape: str) -> None:
    from ustack.diag.client import EndpointError

    with pytest.raises(EndpointError) as info:
        decode_reply("/x.sock", GARBAGE_REPLIES[shape], FIELDS[:T])
    message = str(info.value)
    assert message.startswith("/x.sock: ") and "\n" not in message and len(message) < 300


def test_malformed_reply_no_longer_crashes_ss(
    tmp_path: Path, loop_thread: LoopThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The crash of issue 13: a well-formed but wrongly shaped reply lost the
    rows of every other stack.  Now: the good stack's rows, one line per bad."""
    run = tmp_path / "run"
    monkeypatch.setenv("USTACK_RUN_DIR", str(run))
    good = DiagnosticsServer(lambda detail: golden_records())
    loop_thread.run(good.start())
    bad = [
        RawEndpoint(str(run / protocol.endpoint_name(os.getpid(), 100 + i)), reply)
        for i, reply in enumerate(
            (GARBAGE_REPLIES["short row"], GARBAGE_REPLIES["str port"], b"\x00garbage"))
    ]
    try:
        warnings: list[str] = []
        got = query_stacks(warn=warnings.append, detail=True)
        assert got == golden_records()
        assert len(warnings) == 3 and all("\n" not in w for w in warnings)
        assert all(w.count(str(run)) == 1 for w in warnings), warnings  # named once
        for argv in (["-tan"], ["-tanoiem"], ["-tanoi", "-j"], ["-s"]):
            result = subprocess.run([sys.executable, "-m", "ustack", "ss", *argv],
                                    capture_output=True, text=True, timeout=30)
            assert result.returncode == 0, result.stderr
            assert "Traceback" not in result.stderr
            assert result.stderr.count("\n") == 3
            if "-j" in argv:
                assert len(json.loads(result.stdout)) == 6
            elif "-s" not in argv:
                assert "10.77.0.2:41234" in result.stdout
    finally:
        for b in bad:
            b.close()
        loop_thread.run(good.close())


# ------------------------------------------------------ garbage requests


def _deep(n: int) -> bytes:
    return b"[" * n + b"]" * n


GARBAGE_REQUESTS: dict[str, bytes] = {
    "json list": b"[1, 2, 3]",
    "json string": b'"state established"',
    "json null": b"null",
    "json number": b"42",
    "20k-deep list": _deep(20000),
    "20k-deep filter": json.dumps({"filter": "( " * 20000 + "sport = :1" + " )" * 20000}
                                  ).encode(),
    "deep in filter field": b'{"filter": ' + _deep(20000) + b"}",
    "huge input": b'{"filter": "' + b"a" * 200_000 + b'"}',
    "not utf-8": b"\xff\xfe\x00",
    "not json": b"state established",
    "states as string": b'{"states": "all"}',
    "states as float": b'{"states": 1e400}',
    "states as bool": b'{"states": true}',
    "states too big": b'{"states": 99999999999999999999999}',
    "filter as number": b'{"filter": 5}',
    "filter as list": b'{"filter": ["sport"]}',
    "bad filter": b'{"filter": "sport ="}',
    "detail as string": b'{"detail": "yes"}',
    "fields negative": b'{"fields": -1}',
    "fields as list": b'{"fields": [7]}',
    "version 2": b'{"v": 2}',
    "huge int digits": b'{"states": ' + b"9" * 50_000 + b"}",
}


@pytest.mark.parametrize("shape", sorted(GARBAGE_REQUESTS))
def test_garbage_request_gets_an_error_reply(shape: str) -> None:
    server = DiagnosticsServer(lambda detail: golden_records(), path="/nonexistent/x.sock")
    version, names, message = marshal.loads(server.respond(GARBAGE_REQUESTS[shape]))
    assert (version, names) == (protocol.VERSION, "error")
    assert isinstance(message, str) and 0 < len(message) <= 500


def test_garbage_requests_over_the_socket_log_no_traceback(
    tmp_path: Path, loop_thread: LoopThread, caplog: pytest.LogCaptureFixture
) -> None:
    server = DiagnosticsServer(lambda detail: golden_records(),
                               path=str(tmp_path / "run" / "stack-1-1.sock"))
    loop_thread.run(server.start())
    caplog.set_level(logging.DEBUG)
    try:
        for shape, request in GARBAGE_REQUESTS.items():
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(10)
            sock.connect(server.path)
            try:
                sock.sendall(request)
                sock.shutdown(socket.SHUT_WR)
            except OSError:  # the server may stop reading a huge request
                pass
            data = b""
            try:
                while chunk := sock.recv(65536):
                    data += chunk
            except ConnectionResetError:
                pass
            sock.close()
            if shape != "huge input" or data:
                assert marshal.loads(data)[1] == "error", shape
        # still serving, and every request was answered
        assert query_endpoint(server.path, detail=False) == [
            tuple(r[:12]) for r in golden_records()]
        assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    finally:
        loop_thread.run(server.close())


def test_snapshot_failure_is_an_error_reply_and_one_warning(
    tmp_path: Path, loop_thread: LoopThread, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(detail: bool) -> list[SocketRecord]:
        raise RuntimeError("table changed size")

    server = DiagnosticsServer(broken, path=str(tmp_path / "run" / "stack-1-2.sock"))
    loop_thread.run(server.start())
    try:
        from ustack.diag.client import EndpointError

        with caplog.at_level(logging.WARNING):
            for _ in range(5):
                with pytest.raises(EndpointError, match="internal error: RuntimeError"):
                    query_endpoint(server.path)
        warned = [r for r in caplog.records if "diagnostics request failed" in r.getMessage()]
        assert 1 <= len(warned) <= 3 and not any(r.exc_info for r in warned)
    finally:
        loop_thread.run(server.close())


CELL = st.one_of(st.integers(-3, 70000), st.integers(2**63, 2**65), st.floats(allow_nan=True),
                 st.booleans(),
                 st.text(max_size=5), st.none(), st.just([1]), st.sampled_from(
                     ["ESTAB", "10.0.0.1", "on", "reno", "a\nb"]))


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(data=st.data())
def test_row_wise_check_agrees_with_column_check(data: st.DataObject) -> None:
    """The fast row-wise test of wide replies accepts exactly what the
    column-by-column test accepts (one cell of a good reply changed)."""
    from ustack.diag.records import RowError, _check_column, _rows_look_valid

    rows = [tuple(r) for r in golden_records()]
    row = data.draw(st.integers(0, len(rows) - 1))
    col = data.draw(st.integers(0, len(FIELDS) - 1))
    rows[row] = rows[row][:col] + (data.draw(CELL),) + rows[row][col + 1:]
    try:
        for i, name in enumerate(FIELDS):
            _check_column(name, [r[i] for r in rows])
        columns_ok = True
    except RowError:
        columns_ok = False
    except TypeError:  # min() over mixed types: the type check rejects it first
        columns_ok = False
    assert _rows_look_valid(FIELDS, rows) == columns_ok


@needs_root
def test_default_per_user_directory_as_a_real_non_root_user() -> None:
    """The default ``/tmp/ustack-<uid>`` of a non-root user (no
    USTACK_RUN_DIR): created 0700 and the user's own when absent; refused when
    another user created it first."""
    victim = 54321  # a uid nobody on this machine uses
    d = f"/tmp/ustack-{victim}"
    shutil.rmtree(d, ignore_errors=True)

    def victim_env() -> None:
        for var in ("USTACK_RUN_DIR", "XDG_RUNTIME_DIR"):
            os.environ.pop(var, None)
        assert protocol.run_dir() == d

    def listen_ok() -> None:
        victim_env()
        server = DiagnosticsServer(lambda detail: [])
        server.listen()
        st_dir = os.lstat(d)
        assert st_dir.st_uid == victim and st_dir.st_mode & 0o777 == 0o700
        assert os.stat(server.path).st_mode & 0o777 == 0o600

    def listen_refused() -> None:
        victim_env()
        with pytest.raises(protocol.UnsafeDirectory, match=f"owned by uid {NOBODY}"):
            DiagnosticsServer(lambda detail: []).listen()
        assert os.listdir(d) == []

    try:
        as_uid(victim, listen_ok)
        shutil.rmtree(d)
        def attacker() -> None:
            os.mkdir(d)
            os.chmod(d, 0o777)

        as_uid(NOBODY, attacker)
        as_uid(victim, listen_refused)
    finally:
        shutil.rmtree(d, ignore_errors=True)
