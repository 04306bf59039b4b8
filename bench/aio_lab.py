"""Running ``bench/aio_peer.py`` roles inside a lab (shared by rr, cps, idle).

A role runs in the peer namespace (always on kernel sockets) or in the stack
namespace: on ustack (``ustack-*`` loops: the stack-side veth keeps no kernel
address) or on kernel sockets (``kernel-*`` loops: the stack-side veth gets
the stack's address in the kernel while the role runs, so the kernel client
or server crosses the same veth ustack would; DESIGN.md trap 1 says no ustack
may run on it meanwhile, and none does).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from throughput import kernel_address  # noqa: E402

from ustack.lab import Lab  # noqa: E402

AIO_PEER = HERE / "aio_peer.py"


def env(**extra: str) -> dict[str, str]:
    """The environment for a role: this tree's ustack first on PYTHONPATH
    (plus ``extra`` variables)."""
    out = dict(os.environ)
    out.update(extra)
    root = str(HERE.parent)
    old = out.get("PYTHONPATH")
    out["PYTHONPATH"] = root + (os.pathsep + old if old else "")
    return out


def role_argv(lab: Lab, role: str, loop: str, args: list[str]) -> list[str]:
    argv = [sys.executable, str(AIO_PEER), role, "--loop", loop, *args]
    if loop.startswith("ustack"):
        argv += ["--iface", lab.stack_if, "--address", lab.stack_address]
    return argv


def _needs_kernel_address(loop: str, in_stack: bool) -> bool:
    return in_stack and not loop.startswith("ustack")


def start_server(lab: Lab, ports: list[int], *, in_stack: bool = False,
                 loop: str = "kernel-uvloop", extra: tuple[str, ...] = ()
                 ) -> subprocess.Popen[str]:
    """``aio_peer.py serve`` in the peer namespace (or the stack one); waits
    for its READY line.  A kernel server in the stack namespace needs
    :func:`kernel_address` around its life: use :func:`serving`."""
    argv = role_argv(lab, "serve", loop, ["--ports", ",".join(map(str, ports)), *extra])
    popen = lab.popen_in_stack if in_stack else lab.popen_in_peer
    proc = popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                 stderr=subprocess.PIPE, text=True, env=env())
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("READY"):
        proc.kill()
        _out, err = proc.communicate()
        raise RuntimeError(f"server on {loop} did not start: {line!r} {err.strip()[-1500:]}")
    return proc


def stop_server(proc: subprocess.Popen[str]) -> dict[str, Any]:
    """Close the server's stdin (it stops), return its JSON counters."""
    try:
        out, _err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _err = proc.communicate()
    lines = [ln for ln in (out or "").splitlines() if ln.startswith("{")]
    result: dict[str, Any] = json.loads(lines[-1]) if lines else {}
    return result


@contextlib.contextmanager
def serving(lab: Lab, ports: list[int], *, in_stack: bool = False,
            loop: str = "kernel-uvloop", extra: tuple[str, ...] = ()
            ) -> Iterator[subprocess.Popen[str]]:
    """A server for the block (with the kernel address it needs, if any)."""
    with contextlib.ExitStack() as stack:
        if _needs_kernel_address(loop, in_stack):
            stack.enter_context(kernel_address(lab))
        proc = start_server(lab, ports, in_stack=in_stack, loop=loop, extra=extra)
        try:
            yield proc
        finally:
            stop_server(proc)


def run_client(lab: Lab, loop: str, role: str, args: list[str], *, in_stack: bool = True,
               timeout: float = 300, have_address: bool = False) -> dict[str, Any]:
    """``aio_peer.py ROLE ARGS`` on ``loop`` in the stack namespace (the peer
    one with ``in_stack=False``); its last JSON line.  A kernel loop in the
    stack namespace gets the stack's address on the veth for the run, unless
    ``have_address`` says the caller holds it already."""
    argv = role_argv(lab, role, loop, args)
    run = lab.run_in_stack if in_stack else lab.run_in_peer
    with contextlib.ExitStack() as stack:
        if _needs_kernel_address(loop, in_stack) and not have_address:
            stack.enter_context(kernel_address(lab))
        proc = run(argv, capture_output=True, text=True, timeout=timeout, env=env())
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{role} client on {loop} failed (exit {proc.returncode}): "
                           f"{proc.stderr.strip()[-1500:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result
