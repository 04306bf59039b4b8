"""``ustack exec`` without a network: how it reads the command line and
hands the exit status through.  Programs that never make an event loop never
start a stack, so a made-up interface is fine here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ustack.aio.launcher import LaunchError, Program, parse_command

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("argv", "expected"), [
    (["--", "python", "app.py", "-x", "1"], Program("script", "app.py", ["-x", "1"])),
    (["python3", "-u", "-X", "dev", "app.py"], Program("script", "app.py", [])),
    (["python", "-m", "pkg.mod", "a"], Program("module", "pkg.mod", ["a"])),
    (["python", "-mpkg", "a"], Program("module", "pkg", ["a"])),
    (["python", "-c", "print(1)", "x"], Program("code", "print(1)", ["x"])),
    (["./tool.py", "--flag"], Program("script", "./tool.py", ["--flag"])),
    ([sys.executable, "app.py"], Program("script", "app.py", [])),
])
def test_parse_command(argv: list[str], expected: Program) -> None:
    assert parse_command(argv) == expected


@pytest.mark.parametrize("argv", [[], ["--"], ["curl", "http://x"], ["python"],
                                  ["python", "--weird", "app.py"]])
def test_parse_command_refuses(argv: list[str]) -> None:
    with pytest.raises(LaunchError):
        parse_command(argv)


def _exec(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ustack", "exec", "--iface", "no-such-if0", "--address",
         "10.250.0.2/24", "--", *command],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)))


def test_exit_status_and_argv_pass_through(tmp_path: Path) -> None:
    script = tmp_path / "prog.py"
    script.write_text("import sys\nprint(__name__, sys.argv[1:], sys.path[0] == "
                      f"{str(tmp_path)!r})\nsys.exit(int(sys.argv[1]))\n")
    proc = _exec("python", str(script), "5", "b")
    assert proc.returncode == 5, proc.stderr
    assert proc.stdout.strip() == "__main__ ['5', 'b'] True"
    assert _exec("python", "-c", "raise SystemExit('bye')").returncode == 1
    assert _exec("python", "-c", "pass").returncode == 0
    boom = _exec("python", "-c", "raise KeyError('x')")
    assert boom.returncode == 1 and "KeyError" in boom.stderr  # the program's traceback
    mod = _exec("python", "-m", "json.tool", str(tmp_path / "nope.json"))
    assert mod.returncode != 0 and "nope.json" in mod.stderr  # ran json.tool as __main__


def test_a_loop_starts_the_stack_and_its_failure_is_one_line() -> None:
    proc = _exec("python", "-c", "import asyncio\nasyncio.run(asyncio.sleep(0))")
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ustack exec: "), proc.stderr
    assert "no-such-if0" in lines[0] or "CAP_NET_RAW" in lines[0]
    assert "[Errno" not in lines[0]
