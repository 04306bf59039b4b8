"""ustack.probe.modparams on a fake /sys/module tree: save, restore, the
journal a killed run leaves, and the shell line that reaches it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ustack.probe import modparams
from ustack.probe.modparams import ModuleParams, parse_param_path, recover
from ustack.probe.shell import Shell
from ustack.probe.syscalls import Unsupported


@pytest.fixture
def fake_sys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    params = tmp_path / "sys" / "tcp_cubic" / "parameters"
    params.mkdir(parents=True)
    (params / "hystart_detect").write_text("3\n")
    monkeypatch.setattr(modparams, "_param_path",
                        lambda m, n: tmp_path / "sys" / m / "parameters" / n)
    monkeypatch.setattr(modparams, "LOCK_PATH", tmp_path / "lock")
    monkeypatch.setattr(modparams, "JOURNAL_PATH", tmp_path / "journal.json")
    return params / "hystart_detect"


def test_parse_param_path() -> None:
    assert parse_param_path("/sys/module/tcp_cubic/parameters/hystart_detect") == \
        ("tcp_cubic", "hystart_detect")
    assert parse_param_path("/proc/sys/net/ipv4/tcp_sack") is None
    assert parse_param_path("/sys/module/x/parameters/../../y") is None


def test_set_then_restore(fake_sys: Path) -> None:
    mp = ModuleParams()
    mp.set("tcp_cubic", "hystart_detect", "1")
    mp.set("tcp_cubic", "hystart_detect", "2")  # the first original is kept
    assert fake_sys.read_text().strip() == "2"
    assert modparams.JOURNAL_PATH.exists()
    mp.restore()
    assert fake_sys.read_text().strip() == "3"
    assert not modparams.JOURNAL_PATH.exists()
    mp.restore()  # idempotent
    assert fake_sys.read_text().strip() == "3"


def test_unknown_parameter_is_an_error(fake_sys: Path) -> None:
    with pytest.raises(ValueError, match="no module parameter"):
        ModuleParams().set("tcp_cubic", "nonesuch", "1")


def test_a_second_run_waits_for_the_lock(fake_sys: Path) -> None:
    first = ModuleParams()
    first.set("tcp_cubic", "hystart_detect", "1")
    with pytest.raises(TimeoutError, match="another probe run"):
        ModuleParams().set("tcp_cubic", "hystart_detect", "2", timeout=0.1)
    assert not recover()  # held: recover leaves it alone
    assert fake_sys.read_text().strip() == "1"
    first.restore()
    assert fake_sys.read_text().strip() == "3"


def test_journal_of_a_killed_run_is_restored(fake_sys: Path) -> None:
    """A run killed holding the lock (SIGKILL: no restore) left its journal;
    recover() (the suite, after the script) or the next run restores it."""
    dead = ModuleParams()
    dead.set("tcp_cubic", "hystart_detect", "0")
    assert dead._fd is not None
    import os

    os.close(dead._fd)  # the process died: its lock is gone, the journal stays
    dead._fd = None
    dead.saved.clear()
    assert fake_sys.read_text().strip() == "0"
    assert recover()
    assert fake_sys.read_text().strip() == "3"
    assert not recover()
    # and the next run's first write restores first too
    dead2 = ModuleParams()
    dead2.set("tcp_cubic", "hystart_detect", "0")
    os.close(dead2._fd or -1)
    dead2._fd = None
    dead2.saved.clear()
    nxt = ModuleParams()
    nxt.set("tcp_cubic", "hystart_detect", "2")
    nxt.restore()
    assert fake_sys.read_text().strip() == "3"


class _Peer:
    kind = "fake"

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []

    async def set_module_param(self, module: str, name: str, value: str) -> None:
        self.calls.append((module, name, value))


def test_shell_echo_reaches_the_peer() -> None:
    peer = _Peer()
    asyncio.run(Shell(peer, None).run(
        "echo 3 > /sys/module/tcp_cubic/parameters/hystart_detect\n"))
    assert peer.calls == [("tcp_cubic", "hystart_detect", "3")]


def test_shell_echo_elsewhere_is_unsupported() -> None:
    with pytest.raises(Unsupported):
        asyncio.run(Shell(_Peer(), None).run("echo 3 > /tmp/x\n"))
