#!/usr/bin/env python3
"""Idle established connections: RSS per connection, time to open them, and
``ustack ss -tan`` over them from another process.

One lab (:class:`ustack.lab.Lab`).  The server is ``bench/aio_peer.py
serve`` on kernel sockets (uvloop) in the peer namespace, listening on
several ports (one client address has ~28k ephemeral ports per destination)
with RLIMIT_NOFILE raised.  The client is ``aio_peer.py idle`` (the same
asyncio code: ``asyncio.open_connection``, 256 in flight, keep the
reader/writer pairs) in the stack namespace:

* ``ustack``: on ustack (``ustack.loop_factory`` over uvloop).  Its RSS
  growth per connection is the figure of the issue-14 target; then
  ``python -m ustack ss -tan`` runs in another process (``--ss-runs`` times)
  and its wall time and row count are reported;
* ``kernel`` (``--kernel``, default on): the same code on kernel sockets
  (the process's RSS growth only: the kernel's own socket memory is not in
  it), and iproute2's ``ss -tan`` over them, for reference.

``--api protocol`` holds bare ``asyncio.Protocol`` transports instead
(``loop.create_connection``): the smallest application, closer to the
stack's own footprint.  ``ss`` runs with a private ``USTACK_RUN_DIR`` shared
with the client only, so it sees this stack and no other on the machine.

    sudo python3 bench/idle.py [--conns 10000,100000] [--quick] [--json]

Needs root (namespaces, AF_PACKET).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from aio_lab import env, role_argv, serving  # noqa: E402
from stats import loadavg, ratio, spread  # noqa: E402
from throughput import kernel_address  # noqa: E402

from ustack.lab import Lab  # noqa: E402

BASE_PORT = 7201
#: connections per kernel server process: the hard RLIMIT_NOFILE here is 20000
#: and this host gives root no CAP_SYS_RESOURCE to raise it
PER_SERVER = 15000


def fd_ceiling() -> int:
    """How many descriptors one process may hold (the hard RLIMIT_NOFILE,
    or more with CAP_SYS_RESOURCE: then fs.nr_open)."""
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    try:
        with open("/proc/self/status") as f:
            eff = next(int(ln.split()[1], 16) for ln in f if ln.startswith("CapEff:"))
    except (OSError, StopIteration, ValueError):
        eff = 0
    if eff & (1 << 24):  # CAP_SYS_RESOURCE
        with contextlib.suppress(OSError, ValueError), open("/proc/sys/fs/nr_open") as f:
            return max(hard, int(f.read()))
    return int(hard)


def server_ports(n: int) -> list[int]:
    """One listening port per kernel server process, PER_SERVER connections
    each at most (fewer than the ~28k ephemeral ports a client address has
    per destination)."""
    return list(range(BASE_PORT, BASE_PORT + max(1, -(-n // PER_SERVER))))


def time_ss(lab: Lab, argv: list[str], runs: int, timeout: float,
            run_env: dict[str, str]) -> dict[str, Any]:
    """Run ``argv`` (an ss command) in the stack namespace ``runs`` times;
    wall seconds of each, the row count and exit status of the last."""
    times = []
    rows = 0
    established = 0
    rc = 0
    err = ""
    for _ in range(runs):
        t0 = time.perf_counter()
        proc = lab.run_in_stack(argv, capture_output=True, text=True, timeout=timeout,
                                env=run_env)
        times.append(time.perf_counter() - t0)
        rc = proc.returncode
        err = proc.stderr.strip()[-500:]
        lines = proc.stdout.splitlines()
        rows = sum(1 for ln in lines if ln and not ln.startswith(("State", "#", "Netid")))
        established = sum(1 for ln in lines if ln.startswith("ESTAB"))
    return {"seconds": times, "spread": spread(times), "rows": rows,
            "established": established, "returncode": rc, "stderr": err}


def hold(lab: Lab, loop: str, n: int, inflight: int, ss_argv: list[str], ss_runs: int,
         timeout: float, run_env: dict[str, str], api: str,
         ports: list[int]) -> dict[str, Any]:
    """Open ``n`` connections on ``loop``, time ss over them, close them.
    ``run_env`` (for the client and ss) names a private USTACK_RUN_DIR: ss
    sees this stack only, not the other stacks running on the machine."""
    argv = role_argv(lab, "idle", loop, ["--host", lab.peer_address,
                                         "--ports", ",".join(map(str, ports)),
                                         "--conns", str(n), "--inflight", str(inflight),
                                         "--api", api,
                                         "--nofile", str(n + 1000)])
    proc = lab.popen_in_stack(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=run_env)
    assert proc.stdout is not None and proc.stdin is not None
    try:
        info: dict[str, Any] | None = None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith("OPEN "):
                info = json.loads(line[5:])
                break
        if info is None:
            proc.kill()
            _out, err = proc.communicate()
            raise RuntimeError(f"idle client on {loop} did not open {n} connections: "
                               f"{err.strip()[-1500:]}")
        info["ss"] = time_ss(lab, ss_argv, ss_runs, timeout, run_env)
        return info
    finally:
        with contextlib.suppress(OSError):
            proc.stdin.close()
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def measure(lab: Lab, counts: list[int], kernel: bool, inflight: int, ss_runs: int,
            timeout: float, api: str) -> dict[str, Any]:
    ustack_ss = [sys.executable, "-m", "ustack", "ss", "-tan"]
    out: dict[str, Any] = {}
    biggest = max(counts)
    run_dir = tempfile.mkdtemp(prefix="b14-idle-run-")  # mode 0700, ours
    run_env = env(USTACK_RUN_DIR=run_dir)
    ports = server_ports(biggest)
    ceiling = fd_ceiling()
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, run_dir, True)
        for port in ports:  # one process per port (RLIMIT_NOFILE)
            cleanup.enter_context(serving(lab, [port], extra=(
                "--nofile", str(min(ceiling, 2 * PER_SERVER + 1000)))))
        for n in counts:
            entry: dict[str, Any] = {}
            entry["ustack"] = hold(lab, "ustack-uvloop", n, inflight, ustack_ss, ss_runs,
                                   timeout, run_env, api, ports)
            if kernel and n + 100 > ceiling:
                entry["kernel"] = {"skipped": f"{n} kernel sockets do not fit in one process "
                                   f"(RLIMIT_NOFILE ceiling {ceiling})"}
            elif kernel:
                with kernel_address(lab):
                    entry["kernel"] = hold(lab, "kernel-uvloop", n, inflight, ["ss", "-tan"],
                                           ss_runs, timeout, run_env, api, ports)
                entry["open_ratio"] = ratio(entry["ustack"]["open_seconds"],
                                            entry["kernel"]["open_seconds"])
            out[str(n)] = entry
    return out


def summary_line(doc: dict[str, Any]) -> str:
    parts = []
    for n, e in doc["results"].items():
        us = e["ustack"]
        per = us["rss_per_conn"]
        part = (f"{n} conns: ustack {per / 1024:.2f} KiB/conn, open {us['open_seconds']:.1f}s,"
                f" ss -tan {us['ss']['spread']['median']:.2f}s ({us['ss']['established']} rows)")
        if "kernel" in e and "skipped" not in e["kernel"]:
            k = e["kernel"]
            part += (f"; kernel-socket app {k['rss_per_conn'] / 1024:.2f} KiB/conn,"
                     f" open {k['open_seconds']:.1f}s, ss {k['ss']['spread']['median']:.2f}s")
        parts.append(part)
    return "idle: " + " | ".join(parts) + f" (load {doc['loadavg']})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--conns", default="10000,100000", help="comma list of connection counts")
    p.add_argument("--kernel", action=argparse.BooleanOptionalAction, default=True,
                   help="also the same code on kernel sockets")
    p.add_argument("--inflight", type=int, default=256, help="connects in flight while opening")
    p.add_argument("--api", choices=("streams", "protocol"), default="streams",
                   help="what the client holds per connection: asyncio.open_connection's "
                   "reader/writer, or a bare asyncio.Protocol transport")
    p.add_argument("--ss-runs", type=int, default=3)
    p.add_argument("--timeout", type=float, default=1200, help="seconds per step")
    p.add_argument("--quick", action="store_true", help="1000 connections, one ss run")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--name", default=None, help="lab name (default b14idle<pid>)")
    args = p.parse_args(argv)
    if args.quick and args.conns == p.get_default("conns"):
        args.conns = "1000"
    if args.quick:
        args.ss_runs = 1
    counts = [int(x) for x in args.conns.split(",")]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    lab = Lab.create(args.name or f"b14idle{os.getpid() % 100000}")
    load0 = loadavg()
    lab.up(owner_pid=os.getpid())
    try:
        results = measure(lab, counts, args.kernel, args.inflight, args.ss_runs, args.timeout,
                          args.api)
    finally:
        lab.down()
    # every connection the client holds shows in ss (none lost, none missing)
    ok = all(r["ss"]["established"] == r["conns"] - r["lost"] and r["lost"] == 0
             for e in results.values() for r in e.values()
             if isinstance(r, dict) and "ss" in r)
    doc = {"bench": "idle", "api": args.api, "counts": counts, "results": results,
           "ok": ok, "loadavg": load0, "loadavg_end": loadavg()}
    if args.json:
        print(json.dumps(doc, indent=1))
    else:
        for n, e in results.items():
            for impl in ("ustack", "kernel"):
                if impl not in e:
                    continue
                r = e[impl]
                if "skipped" in r:
                    print(f"{n:>7s} {impl:6s} skipped: {r['skipped']}")
                    continue
                print(f"{n:>7s} {impl:6s} conns {r['conns']:7d} (lost {r['lost']})  rss/conn "
                      f"{r['rss_per_conn'] / 1024:6.2f} KiB  open {r['open_seconds']:6.2f} s  "
                      f"ss -tan {r['ss']['spread']['median']:6.3f} s "
                      f"({r['ss']['established']} ESTAB rows, exit {r['ss']['returncode']})")
        print(summary_line(doc))
    if not ok:
        print("idle: some connections were lost or missing from ss", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
