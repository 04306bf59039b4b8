#!/usr/bin/env python3
"""How fast ``ustack ss`` lists a busy stack, from a separate process.

Two modes:

* ``fake``: a fake stack (``python -m ustack.diag.fake``) serves N synthetic
  records on a diagnostics endpoint; measures the endpoint + transfer +
  format path on its own, at 10,000 and 50,000 records by default.
* ``real``: a real Stack in a lab (needs root) holding N established
  connections to a kernel server in the peer namespace; ``ustack ss`` then
  also pays for the stack's snapshot (``TcpConnection.info`` per connection).

Each query is a fresh ``python -m ustack ss ...`` process (interpreter start
included), timed wall-clock from spawn to exit, repeated; the median and the
minimum are reported.  Target: < 0.5 s for ``-tan`` and a filtered query.

    python3 bench/ss_bench.py --mode fake --counts 10000 50000 [--json]
    sudo python3 bench/ss_bench.py --mode real --connections 10000 [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

QUERIES: dict[str, list[str]] = {
    "-tan": ["-tan"],
    "filtered": ["-tan", "state", "established", "( dport = :http or sport = :http )"],
    "-tanoiem": ["-tanoiem"],
    "-s": ["-s"],
}
TARGETED = ("-tan", "filtered")


def _ss_argv(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "ustack", "ss", *args]


def time_query_sync(args: list[str], env: dict[str, str]) -> tuple[float, int]:
    t0 = time.perf_counter()
    proc = subprocess.run(_ss_argv(args), env=env, capture_output=True, check=True)
    return time.perf_counter() - t0, proc.stdout.count(b"\n")


async def time_query_async(args: list[str], env: dict[str, str]) -> tuple[float, int]:
    t0 = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *_ss_argv(args), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await proc.communicate()
    if proc.returncode:
        raise RuntimeError(err.decode())
    return time.perf_counter() - t0, out.count(b"\n")


def summarize(samples: list[float], lines: int) -> dict[str, Any]:
    return {
        "median_s": round(statistics.median(samples), 4),
        "min_s": round(min(samples), 4),
        "max_s": round(max(samples), 4),
        "runs": len(samples),
        "output_lines": lines,
    }


def python_startup(env: dict[str, str], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], env=env, check=True)
        samples.append(time.perf_counter() - t0)
    return round(statistics.median(samples), 4)


def run_fake(counts: list[int], repeat: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="hs-ssbench-") as run_dir:
        env = dict(os.environ, USTACK_RUN_DIR=run_dir)
        results["python_startup_s"] = python_startup(env, repeat)
        for count in counts:
            server = subprocess.Popen(
                [sys.executable, "-m", "ustack.diag.fake", "--count", str(count)],
                env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            )
            try:
                assert server.stdout is not None
                server.stdout.readline()  # the endpoint path: listening
                per_query = {}
                for name, args in QUERIES.items():
                    time_query_sync(args, env)  # warm the page cache
                    samples, lines = [], 0
                    for _ in range(repeat):
                        elapsed, lines = time_query_sync(args, env)
                        samples.append(elapsed)
                    per_query[name] = summarize(samples, lines)
                results[f"fake_{count}"] = per_query
            finally:
                server.kill()
                server.wait()
    return results


PEER_SERVER = r"""
import resource, selectors, socket, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", 80)); srv.listen(4096); srv.setblocking(False)
sel = selectors.DefaultSelector(); sel.register(srv, selectors.EVENT_READ)
held = []
print("READY", flush=True)
while True:
    for key, _ in sel.select():
        while True:
            try:
                c, _ = srv.accept()
            except BlockingIOError:
                break
            held.append(c)
"""


async def run_real(connections: int, repeat: int, batch: int) -> dict[str, Any]:
    from ustack.lab import Lab
    from ustack.stack import Stack

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    results: dict[str, Any] = {}
    name = f"hsb{os.getpid() % 0xFFFF:x}"
    with tempfile.TemporaryDirectory(prefix="hs-ssbench-") as run_dir:
        os.environ["USTACK_RUN_DIR"] = run_dir
        env = dict(os.environ)
        lab = Lab.create(name)
        try:
            lab.up()
            peer = lab.popen_in_peer([sys.executable, "-c", PEER_SERVER],
                                     stdout=subprocess.PIPE, text=True)
            try:
                assert peer.stdout is not None
                assert peer.stdout.readline().startswith("READY")
                with lab.enter_stack_ns():
                    stack = await Stack.start(iface=lab.stack_if, address=lab.stack_address)
                try:
                    writers: list[Any] = []
                    t0 = time.perf_counter()
                    for start in range(0, connections, batch):
                        n = min(batch, connections - start)
                        opened = await asyncio.gather(*[
                            stack.open_connection(lab.peer_address, 80, timeout=30)
                            for _ in range(n)
                        ])
                        writers.extend(w for _, w in opened)
                    results["open_s"] = round(time.perf_counter() - t0, 2)
                    t0 = time.perf_counter()
                    records = stack.sockets()
                    results["in_process_snapshot_s"] = round(time.perf_counter() - t0, 4)
                    results["established"] = sum(r.state == "ESTAB" for r in records)
                    per_query = {}
                    for qname, args in QUERIES.items():
                        await time_query_async(args, env)
                        samples, lines = [], 0
                        for _ in range(repeat):
                            elapsed, lines = await time_query_async(args, env)
                            samples.append(elapsed)
                        per_query[qname] = summarize(samples, lines)
                    results[f"real_{connections}"] = per_query
                    for w in writers:
                        w.transport.abort()
                finally:
                    await stack.close()
            finally:
                peer.kill()
                peer.wait()
        finally:
            lab.down()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("fake", "real", "both"), default="fake")
    parser.add_argument("--counts", type=int, nargs="+", default=[10_000, 50_000])
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=250, help="connections opened at once")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    if args.mode in ("fake", "both"):
        results.update(run_fake(args.counts, args.repeat))
    if args.mode in ("real", "both"):
        results.update(asyncio.run(run_real(args.connections, args.repeat, args.batch)))
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for key, value in results.items():
        if not isinstance(value, dict):
            print(f"{key}: {value}")
            continue
        print(key)
        for qname, fig in value.items():
            flag = ""
            if qname in TARGETED:
                flag = "  (target < 0.5 s: " + ("met" if fig["median_s"] < 0.5 else "MISSED") + ")"
            print(f"  {qname:10s} median {fig['median_s']:.3f} s  min {fig['min_s']:.3f} s  "
                  f"lines {fig['output_lines']}{flag}")


if __name__ == "__main__":
    main()
