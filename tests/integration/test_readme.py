"""Every example in README.md runs as written, against the kernel in a lab.

The README's shell blocks are bash scripts for a lab named ``t1``; its Python
blocks are programs run inside the stack's namespace.  This test reads the
blocks out of README.md (so the README cannot drift from what works), puts
the names of a lab of its own in place of ``t1`` and a private directory in
place of ``/tmp/``, runs each block, and checks what it prints.  The
``ustack`` and ``python3`` the blocks call are this checkout's.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ustack.lab import Lab, list_netns
from ustack.lab.fixtures import require_netns

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)


def readme_blocks() -> list[tuple[str, str, str]]:
    """``(section heading, language, body)`` of every fenced block."""
    text = README.read_text()
    blocks = []
    for match in _FENCE.finditer(text):
        headings = re.findall(r"^## (.+)$", text[: match.start()], re.M)
        blocks.append((headings[-1] if headings else "", match.group(1), match.group(2)))
    return blocks


def _blocks(section: str, lang: str) -> list[str]:
    found = [body for head, lng, body in readme_blocks() if head == section and lng == lang]
    assert found, f"README.md has no {lang} block under '## {section}'"
    return found


@pytest.fixture
def shim(tmp_path: Path) -> dict[str, str]:
    """An environment whose ``ustack`` and ``python3`` are this checkout's."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name, argv in (("ustack", f'"{sys.executable}" -m ustack'),
                       ("python3", f'"{sys.executable}"')):
        path = bindir / name
        path.write_text(f'#!/bin/sh\nexec {argv} "$@"\n')
        path.chmod(0o755)
    env = dict(os.environ)
    env["PATH"] = f"{bindir}:{env.get('PATH', '/usr/bin:/bin')}"
    env["PYTHONPATH"] = str(ROOT)
    return env


def _localise(body: str, lab: Lab | None, name: str, tmp: Path) -> str:
    if lab is not None:
        for token, real in (("t1-stack", lab.stack_ns), ("t1-peer", lab.peer_ns),
                            ("t1-s", lab.stack_if), ("t1-p", lab.peer_if)):
            body = re.sub(rf"\b{re.escape(token)}\b", real, body)
    body = re.sub(r"--name t1\b", f"--name {name}", body)
    return body.replace("/tmp/", f"{tmp}/")


def _run_sh(body: str, env: dict[str, str], timeout: float = 180) -> str:
    proc = subprocess.Popen(["bash", "-e", "-c", body], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise AssertionError(f"README block timed out:\n{body}\n--- output:\n{out}") from None
    finally:
        # background jobs a block forgot (it should not) die with its session
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, f"README block failed ({proc.returncode}):\n{body}\n---\n{out}"
    return out


@pytest.fixture
def readme_lab(lab_factory: Callable[..., Lab]) -> Iterator[Lab]:
    require_netns()
    yield lab_factory(f"rd{os.getpid() % 10000}")


def test_lab_block_builds_and_removes_a_lab(shim: dict[str, str], tmp_path: Path) -> None:
    require_netns()
    name = f"rl{os.getpid() % 10000}"
    (body,) = _blocks("Build a lab by hand", "sh")
    try:
        out = _run_sh(_localise(body, None, name, tmp_path), shim)
    finally:
        subprocess.run([sys.executable, "-m", "ustack", "lab", "down", "--name", name],
                       env=shim, capture_output=True)
    assert f'"stack_ns": "{name}-stack"' in out, out
    assert not [ns for ns in list_netns() if ns.startswith(name + "-")]


def test_shell_blocks_run_as_written(readme_lab: Lab, shim: dict[str, str],
                                     tmp_path: Path) -> None:
    expect = {
        "Run a stack in it": ["5 received", "lladdr"],
        "Unmodified asyncio programs on ustack": ["b'HTTP/1.0 200 OK'"],
        "netcat, ss and nstat on ustack": ["HTTP/1.0 200 OK", "rtt:0.", "estab 1", "sockets",
                                           "TcpPassiveOpens"],
        "Experiments: traces, plots, a simulated network": ["cubic", "bbr"],
        "Script TCP edge cases against any peer": ["PASS"],
    }
    for section, needles in expect.items():
        for body in _blocks(section, "sh"):
            out = _run_sh(_localise(body, readme_lab, "unused", tmp_path), shim)
            for needle in needles:
                assert needle in out, f"'{needle}' not printed by:\n{body}\n---\n{out}"
    assert (tmp_path / "c.pcap").stat().st_size > 0
    assert (tmp_path / "sim.png").stat().st_size > 0
    assert "PASS" in out and out.count("PASS") >= 2, out  # both peers of the probe block


def test_python_blocks_run_as_written(readme_lab: Lab, shim: dict[str, str],
                                      tmp_path: Path) -> None:
    server = subprocess.Popen(
        ["ip", "netns", "exec", readme_lab.peer_ns, sys.executable, "-m", "http.server",
         "8080", "--bind", "10.77.0.1"], cwd=tmp_path,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        bodies = [body for head, lang, body in readme_blocks() if lang == "python"]
        assert len(bodies) >= 2
        for index, body in enumerate(bodies):
            program = tmp_path / f"readme_{index}.py"
            program.write_text(textwrap.dedent(_localise(body, readme_lab, "unused", tmp_path)))
            out = _run_sh(f"sleep 1; ip netns exec {readme_lab.stack_ns} python3 {program}",
                          shim, timeout=60)
            assert re.search(r"^\d+\.\d+", out, re.M), out  # the ping time in seconds
    finally:
        server.terminate()
        server.wait()
