"""The compiled build equals pure Python (docs/compiled.md "Proof"): two
seeded scenario sets run in two subprocesses, one pure (USTACK_NO_ACCEL=1)
and one on the compiled build, must produce identical digests.

* tests/unit/accel_scenarios.py, the TCP core: every segment, event,
  deadline and final TcpInfo of pair transfers over all option combinations,
  each congestion controller, loss, reordering, duplication, RACK-TLP and RFC
  6675 recovery, pacing, GSO, persist, keepalive, SYN loss, TIME-WAIT;
* tests/unit/accel_stack_scenarios.py, whole stacks (driver, net, link,
  under streams) on the simulated clock: every frame of request/response,
  bulk, short connections (TIME-WAIT records, SYN cookies), a refused and an
  unanswered connect, UDP, ICMP and ping over clean, lossy, duplicating,
  reordering and corrupting in-memory links, and ustack.sim dumbbells; the
  counters and ``ss`` records of both stacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("accel_scenarios.py")
STACK_SCRIPT = Path(__file__).with_name("accel_stack_scenarios.py")


def _digests(*, pure: bool, args: tuple[str, ...] = (),
             script: Path = SCRIPT) -> dict[str, object]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONHASHSEED="0")
    env.pop("USTACK_NO_ACCEL", None)
    if pure:
        env["USTACK_NO_ACCEL"] = "1"
    proc = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    if args:
        return {"trace": proc.stdout}
    result: dict[str, object] = json.loads(proc.stdout)
    return result


def _build_status() -> str:
    """'compiled' when a process without USTACK_NO_ACCEL would run compiled,
    else why not."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("USTACK_NO_ACCEL", None)
    code = ("import ustack; s = ustack.accel_status()\n"
            "print(s['mode'] if s['mode'] == 'compiled' else s['reason'])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def _compare(script: Path, at_least: int) -> None:
    # (this process may itself be pure: the subprocesses choose their mode)
    if _build_status() != "compiled":
        pytest.skip(f"no compiled build to compare: {_build_status()} "
                    "(CI builds it and fails if it is missing)")
    pure = _digests(pure=True, script=script)
    compiled = _digests(pure=False, script=script)
    assert pure["accel"] == "pure" and compiled["accel"] == "compiled"
    a, b = pure["scenarios"], compiled["scenarios"]
    assert isinstance(a, dict) and isinstance(b, dict)
    assert len(a) >= at_least and a.keys() == b.keys()
    differ = sorted(name for name in a if a[name] != b[name])
    if differ:
        first = differ[0]
        lp = str(_digests(pure=True, args=("--dump", first), script=script)["trace"]).splitlines()
        lc = str(_digests(pure=False, args=("--dump", first),
                          script=script)["trace"]).splitlines()
        diff = next((f"line {i}: pure {x!r}\n    compiled {y!r}"
                     for i, (x, y) in enumerate(zip(lp, lc, strict=False)) if x != y),
                    f"lengths {len(lp)} vs {len(lc)}")
        pytest.fail(f"{len(differ)} scenarios differ: {differ[:10]}; first difference in "
                    f"{first}: {diff}")


def test_compiled_build_equals_pure_python() -> None:
    _compare(SCRIPT, 60)


def test_compiled_stack_equals_pure_python() -> None:
    """The driver, net and link layers (and ustack.sim's devices) under
    whole stacks: every frame the same in both builds."""
    _compare(STACK_SCRIPT, 10)


def test_scenarios_are_deterministic() -> None:
    """Two runs in the same mode agree: a difference between the modes above
    is the build's, not the harness's (hash seeds, dict order, clocks)."""
    env_pure = os.environ.get("USTACK_NO_ACCEL", "") not in ("", "0")
    first = _digests(pure=env_pure, args=("--dump", "recovery-rack-cubic"))
    second = _digests(pure=env_pure, args=("--dump", "recovery-rack-cubic"))
    assert first == second
    trace = str(first["trace"])
    assert " sent " in trace and " event " in trace and " info " in trace


def test_stack_scenarios_are_deterministic() -> None:
    """The same for the whole-stack scenarios (ISNs, cookies, ports, ping
    ident seeded; simulated clock), and they see what they are meant to:
    frames both ways, the pcap, TIME-WAIT records, SYN cookies, the refused
    and the unanswered connect."""
    env_pure = os.environ.get("USTACK_NO_ACCEL", "") not in ("", "0")
    first = _digests(pure=env_pure, args=("--dump", "lossy"), script=STACK_SCRIPT)
    second = _digests(pure=env_pure, args=("--dump", "lossy"), script=STACK_SCRIPT)
    assert first == second
    lines = str(first["trace"]).splitlines()
    assert not [line for line in lines if line.startswith("exception")]
    for needle in (" A tx ", " B rx0 ", "pcap ", "'state': 'TIME-WAIT'",
                   "counter B TcpExtSyncookiesRecv", "ConnectionRefusedError 111",
                   "10.77.0.99:80 OSError 113", "app ping answered", "app udp back"):
        assert any(needle in line for line in lines), needle
    assert any(line.startswith("counter B TcpExtSyncookiesRecv ") and not line.endswith(" 0")
               for line in lines)
    assert any(line.startswith("counter A dev.fault_tx_lost ") and not line.endswith(" 0")
               for line in lines)
