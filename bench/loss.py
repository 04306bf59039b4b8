#!/usr/bin/env python3
"""Bulk sending over a lossy link: the kernel's TCP vs ustack, per algorithm.

One lab (:class:`ustack.lab.Lab`), one link, one receiver: the kernel sink of
``bench/throughput_peer.py`` in the peer namespace.  An nftables rule on the
peer's input drops a random fraction of the *data* segments to the sink port
(``numgen random mod 1000 < N``; pure ACKs, SYNs and FINs pass) and TSO/GSO
are off on the sending veth, so a drop takes one MSS-sized frame (ustack's GSO
super-segments are cut by the kernel before the veth).  For every loss rate
and algorithm the kernel sender (``TCP_CONGESTION`` set on its socket; this
host's default is bbr) and the ustack sender (``TcpConfig.congestion``) send
the same SHA-256-checked stream, side by side in the same run.

    sudo python3 bench/loss.py [--mb 20] [--loss 0,0.1,1,2,5] [--cc reno,cubic,bbr]
                               [--runs N] [--json] [--timeout 90] [--name LAB]
                               [--nice N]

With ``--runs N`` every (loss, algorithm) pair is measured N times (kernel
then ustack, the rounds one after the other in the same lab) and the table
shows min/median/max of the ratio, both MB/s and ustack's CPU seconds; the
JSON keeps every run (``repeat``) plus the load average before and after and
whether the core ran compiled (mypyc) or as pure Python.

Each transfer also records what the sender did and where its time went, the
same counters on both sides: ``counters`` holds the sender's TCP MIB deltas
under Linux nstat names (the kernel's read with ``nstat`` in the stack
namespace, ustack's from ``Stack.counters()``: retransmissions, loss probes,
RTOs, SACK recoveries, undos); the ustack side adds ``sched``, the bench
thread's time on the CPU and waiting in the run queue
(``/proc/thread-self/schedstat``) and its context switches.  On this shared
machine a lossy ustack transfer is mostly run-queue wait: the kernel sender's
ACK processing and transmissions run in softirq, above every process, while
ustack's need the process to be scheduled after every ~cwnd burst (the sink's
wake-up preempts it inside its own ``sendmsg``).  ``--nice N`` runs the whole
bench (both senders, the sink, ustack) at niceness N, the same for the kernel
and ustack, to measure that effect; it is off (0) by default.

Needs root (namespaces, AF_PACKET, nft).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from throughput import (  # noqa: E402
    PEER,
    _peer_result,
    _start_peer,
    _stop_peer,
    kernel_address,
    ustack_to_kernel,
)
from throughput_peer import pattern_sha256  # noqa: E402

from ustack.lab import Lab, set_offloads  # noqa: E402

PORT = 5102  # throughput.ustack_to_kernel's sink port; the kernel sender uses it too
TABLE = "hkloss"
KERNEL_SEED = 1  # throughput_peer.py send's default pattern seed


# ---------------------------------------------------------------- loss rule
def _nft(lab: Lab, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return lab.run_in_peer(["nft", *args], capture_output=True, text=True, check=check)


_LOSS: dict[str, float] = {}


def set_loss(lab: Lab, percent: float) -> None:
    """Drop ``percent`` % of the data segments (IP length > 100) to PORT on
    the peer's input; count all of them and the dropped ones."""
    _LOSS[lab.name] = percent
    _nft(lab, "delete", "table", "inet", TABLE, check=False)
    _nft(lab, "add", "table", "inet", TABLE)
    _nft(lab, "add", "chain", "inet", TABLE, "input",
         "{ type filter hook input priority -10 ; policy accept ; }")
    data = ["tcp", "dport", str(PORT), "ip", "length", "gt", "100"]
    _nft(lab, "add", "rule", "inet", TABLE, "input", *data, "counter")
    permille = round(percent * 10)
    if permille > 0:
        _nft(lab, "add", "rule", "inet", TABLE, "input", *data,
             "numgen", "random", "mod", "1000", "lt", str(permille), "counter", "drop")


def loss_counters(lab: Lab) -> tuple[int, int]:
    """(data segments seen, dropped) since the last :func:`set_loss`/reset."""
    out = _nft(lab, "-j", "list", "table", "inet", TABLE).stdout
    counts = []
    for item in json.loads(out).get("nftables", []):
        rule = item.get("rule")
        if rule:
            for expr in rule.get("expr", []):
                if "counter" in expr:
                    counts.append(int(expr["counter"]["packets"]))
    seen = counts[0] if counts else 0
    dropped = counts[1] if len(counts) > 1 else 0
    return seen, dropped


def reset_counters(lab: Lab) -> None:
    """Zero the rule counters by re-creating the table (``nft reset counters``
    resets named counter objects only, not a rule's anonymous ``counter``,
    and nft 1.0.6 has no ``reset rules``: the drop figures used to add up
    over the kernel and ustack runs of one loss rate)."""
    set_loss(lab, _LOSS.get(lab.name, 0.0))


# ---------------------------------------------------------------- counters
#: the sender's TCP MIB counters recorded per transfer (Linux nstat names; the
#: kernel's from ``nstat`` in the stack namespace, ustack's TcpMib)
MIB_KEYS = ("TcpRetransSegs", "TcpExtTCPFastRetrans", "TcpExtTCPLossProbes",
            "TcpExtTCPLossProbeRecovery", "TcpExtTCPTimeouts", "TcpExtTCPSackRecovery",
            "TcpExtTCPLostRetransmit", "TcpExtTCPFullUndo", "TcpExtTCPPartialUndo",
            "TcpExtTCPDSACKUndo", "TcpExtTCPLossUndo", "TcpExtTCPSpuriousRTOs",
            "TcpExtTCPDSACKRecv", "TcpExtTCPSACKReorder")


def kernel_mib(lab: Lab) -> dict[str, int] | None:
    """The stack namespace's TCP counters (absolute, history untouched), or
    None without ``nstat``."""
    if shutil.which("nstat") is None:
        return None
    proc = lab.run_in_stack(["nstat", "-a", "-s", "-z", "-j"], capture_output=True,
                            text=True, check=False)
    try:
        doc = json.loads(proc.stdout)
    except ValueError:
        return None
    values = doc.get("kernel", doc)
    return {k: int(values.get(k, 0)) for k in MIB_KEYS}


def ustack_mib(stack: Any) -> dict[str, int]:
    values = stack.counters()
    return {k: int(values.get(k, 0)) for k in MIB_KEYS}


def mib_delta(before: dict[str, int] | None, after: dict[str, int] | None) -> dict[str, int] | None:
    if before is None or after is None:
        return None
    return {k: after[k] - before.get(k, 0) for k in after}


def _schedstat() -> tuple[float, float]:
    """(seconds on the CPU, seconds runnable but waiting) of this thread."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            on, wait, _ = f.read().split()
    except (OSError, ValueError):
        return 0.0, 0.0
    return int(on) / 1e9, int(wait) / 1e9


def _switches() -> tuple[int, int]:
    import resource

    ru = resource.getrusage(resource.RUSAGE_THREAD)
    return ru.ru_nvcsw, ru.ru_nivcsw


# ---------------------------------------------------------------- senders
def kernel_send(lab: Lab, nbytes: int, cc: str, timeout: float) -> dict[str, Any]:
    """The kernel sends (from the stack namespace, with a kernel address)."""
    before = kernel_mib(lab)
    sink = _start_peer(lab, "sink", PORT)
    try:
        sender = lab.popen_in_stack(
            [sys.executable, str(PEER), "send", "--port", str(PORT), "--connect",
             lab.peer_address, "--bytes", str(nbytes), "--congestion", cc],
            stdout=subprocess.PIPE, text=True)
        try:
            res = _peer_result(sender, timeout=timeout)
        except subprocess.TimeoutExpired:
            sender.kill()
            sender.communicate()
            return {"mbps": None, "ok": False, "timeout": True}
    finally:
        _stop_peer(sink)
    if "seconds" not in res:
        return {"mbps": None, "ok": False, "error": "kernel sender failed"}
    got, _, sha = str(res.get("reply", "")).partition(" ")
    ok = (got == str(nbytes) and sha == pattern_sha256(nbytes, KERNEL_SEED)
          and res.get("congestion") == cc)
    return {"mbps": nbytes / float(res["seconds"]) / 1e6, "ok": ok,
            "seconds": res["seconds"], "congestion": res.get("congestion"),
            "retrans": res.get("total_retrans"),
            "counters": mib_delta(before, kernel_mib(lab))}


def _use_congestion(stack: Any, cc: str) -> None:
    """The next connection of ``stack`` uses ``cc`` (the connection table's
    TcpConfig, what ``TcpConfig(congestion=...)`` sets for a stack)."""
    stack.tcp.config.congestion = cc


async def ustack_send(stack: Any, lab: Lab, nbytes: int, cc: str,
                      timeout: float) -> dict[str, Any]:
    _use_congestion(stack, cc)
    before = ustack_mib(stack)
    (on0, wait0), (vol0, invol0) = _schedstat(), _switches()
    try:
        res = await asyncio.wait_for(ustack_to_kernel(stack, lab, nbytes, True), timeout)
    except TimeoutError:
        return {"mbps": None, "ok": False, "timeout": True}
    (on1, wait1), (vol1, invol1) = _schedstat(), _switches()
    # the algorithm the connection reported (tcp_info ca_name) must be ours
    res["ok"] = bool(res.get("ok")) and res.get("congestion") == cc
    res["counters"] = mib_delta(before, ustack_mib(stack))
    # the whole transfer (sink start and stop included, unlike "seconds")
    res["sched"] = {"on_cpu_s": round(on1 - on0, 4), "runqueue_wait_s": round(wait1 - wait0, 4),
                    "voluntary_switches": vol1 - vol0, "involuntary_switches": invol1 - invol0}
    return res


async def ustack_round(lab: Lab, nbytes: int, ccs: list[str], timeout: float,
                       percent: float) -> dict[str, dict[str, Any]]:
    from ustack.stack import Stack

    with lab.enter_stack_ns():
        stack = await Stack.start(iface=lab.stack_if, address=lab.stack_address,
                                  offload=True, diagnostics=False)
    out: dict[str, dict[str, Any]] = {}
    try:
        for cc in ccs:
            reset_counters(lab)
            out[cc] = await ustack_send(stack, lab, nbytes, cc, timeout)
            out[cc]["segments"], out[cc]["dropped"] = loss_counters(lab)
            _progress(f"  ustack {cc:5s} {percent:4g}%: {_fmt(out[cc])}")
    finally:
        await stack.close()
    return out


# ---------------------------------------------------------------- driver
def _fmt(r: dict[str, Any]) -> str:
    if r.get("mbps") is None:
        return "timeout"
    return f"{r['mbps']:.1f} MB/s ok={r['ok']}"


_QUIET = False


def _progress(msg: str) -> None:
    if not _QUIET:
        print(msg, file=sys.stderr, flush=True)


def build_mode() -> str:
    """"compiled" when the TCP core runs as mypyc extension modules, else
    "pure" (what the ustack figures of a run stand for)."""
    from ustack.tcp import recovery

    return "pure" if str(recovery.__file__).endswith(".py") else "compiled"


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run(nbytes: int, losses: list[float], ccs: list[str], timeout: float,
        uvloop_on: bool, name: str | None = None, repeats: int = 1) -> dict[str, Any]:
    lab = Lab.create(name or f"hkl{os.getpid() % 100000}")
    results: dict[str, Any] = {"bytes": nbytes, "losses": losses, "algorithms": ccs,
                               "repeats": repeats, "build": build_mode(),
                               "load_before": _load(), "runs": []}
    lab.up()
    try:
        # drops must hit single MSS-sized frames: no TSO/GSO on the sending veth
        set_offloads(lab.stack_ns, lab.stack_if, tso=False, gso=False)
        for percent, repeat in [(p, i) for p in losses for i in range(repeats)]:
            set_loss(lab, percent)
            kernel: dict[str, dict[str, Any]] = {}
            with kernel_address(lab):
                for cc in ccs:
                    reset_counters(lab)
                    kernel[cc] = kernel_send(lab, nbytes, cc, timeout)
                    kernel[cc]["segments"], kernel[cc]["dropped"] = loss_counters(lab)
                    _progress(f"  kernel {cc:5s} {percent:4g}%: {_fmt(kernel[cc])}")
            coro = ustack_round(lab, nbytes, ccs, timeout, percent)
            if uvloop_on:
                import uvloop

                ours = uvloop.run(coro)
            else:
                ours = asyncio.run(coro)
            for cc in ccs:
                k, u = kernel[cc], ours[cc]
                ratio = (u["mbps"] / k["mbps"]) if u.get("mbps") and k.get("mbps") else None
                results["runs"].append({"loss_percent": percent, "congestion": cc,
                                        "repeat": repeat, "kernel": k, "ustack": u,
                                        "ratio": ratio})
    finally:
        with contextlib.suppress(Exception):
            _nft(lab, "delete", "table", "inet", TABLE, check=False)
        lab.down()
        results["load_after"] = _load()
    return results


def _spread(values: list[float | None], fmt: str) -> str:
    """min/median/max of the measured values ("-" if none)."""
    xs = [v for v in values if v is not None]
    if not xs:
        return "-"
    return "/".join(fmt.format(v) for v in (min(xs), statistics.median(xs), max(xs)))


def summary(results: dict[str, Any]) -> str:
    """One line per (loss, algorithm): min/median/max over the repeats."""
    groups: dict[tuple[float, str], list[dict[str, Any]]] = {}
    for r in results["runs"]:
        groups.setdefault((r["loss_percent"], r["congestion"]), []).append(r)
    lines = [f"{results.get('build', '?')} build, load {results.get('load_before')} -> "
             f"{results.get('load_after')}, nice {results.get('nice', 0)}; "
             "min/median/max over the runs",
             "| loss | cc | runs | kernel MB/s | ustack MB/s | ratio | ustack CPU s | "
             "ustack run-queue s | retrans k/u | TLP k/u | RTO k/u |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for (percent, cc), rs in groups.items():
        ok = all(r[s].get("ok") for r in rs for s in ("kernel", "ustack"))
        kr = statistics.median([r["kernel"].get("retrans") or 0 for r in rs])
        ur = statistics.median([r["ustack"].get("retrans") or 0 for r in rs])
        lines.append(
            f"| {percent:g}% | {cc} | {len(rs)} | "
            f"{_spread([r['kernel'].get('mbps') for r in rs], '{:.1f}')} | "
            f"{_spread([r['ustack'].get('mbps') for r in rs], '{:.1f}')} | "
            f"{_spread([r['ratio'] for r in rs], '{:.3f}')} | "
            f"{_spread([r['ustack'].get('cpu_seconds') for r in rs], '{:.3f}')} | "
            f"{_spread([_sched(r['ustack'], 'runqueue_wait_s') for r in rs], '{:.3f}')} | "
            f"{kr:g}/{ur:g} | {_both(rs, 'TcpExtTCPLossProbes')} | "
            f"{_both(rs, 'TcpExtTCPTimeouts')} |" + ("" if ok else " (BAD)"))
    return "\n".join(lines)


def _sched(side: dict[str, Any], key: str) -> float | None:
    sched = side.get("sched")
    return float(sched[key]) if sched and key in sched else None


def _both(rs: list[dict[str, Any]], key: str) -> str:
    """Median of a MIB counter over the runs, kernel/ustack ("-" if unknown)."""
    def med(side: str) -> str:
        xs = [r[side]["counters"][key] for r in rs if r[side].get("counters")]
        return f"{statistics.median(xs):g}" if xs else "-"

    return f"{med('kernel')}/{med('ustack')}"


def table(results: dict[str, Any]) -> str:
    lines = ["| loss | cc | kernel MB/s | ustack MB/s | ratio | drops k/u | retrans k/u |",
             "|---|---|---|---|---|---|---|"]
    for r in results["runs"]:
        k, u = r["kernel"], r["ustack"]

        def mb(x: dict[str, Any]) -> str:
            if x.get("mbps") is None:
                return "timeout"
            return f"{x['mbps']:.1f}" + ("" if x.get("ok") else " (BAD)")

        def drops(x: dict[str, Any]) -> str:
            seen, dropped = x.get("segments", 0), x.get("dropped", 0)
            return f"{100 * dropped / seen:.2f}%" if seen else "-"

        ratio = f"{r['ratio']:.3f}" if r["ratio"] is not None else "-"
        lines.append(f"| {r['loss_percent']:g}% | {r['congestion']} | {mb(k)} | {mb(u)} | "
                     f"{ratio} | {drops(k)}/{drops(u)} | {k.get('retrans', '-')}/"
                     f"{u.get('retrans', '-')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    global _QUIET
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=20, help="megabytes per transfer")
    parser.add_argument("--loss", default="0,0.1,1,2,5",
                        help="comma list of random data-segment loss rates in percent")
    parser.add_argument("--cc", default="reno,cubic,bbr",
                        help="comma list of algorithms, set on both sides")
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds per transfer")
    parser.add_argument("--runs", type=int, default=1,
                        help="measure every (loss, algorithm) pair this many times")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--uvloop", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--name", default=None, help="lab name (default hkl<pid>)")
    parser.add_argument("--nice", type=int, default=0,
                        help="run the bench, both senders and the sink at this niceness "
                             "(the same for the kernel and ustack; default 0: unchanged)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench/loss.py: needs root (namespaces, AF_PACKET, nft)", file=sys.stderr)
        return 2
    if shutil.which("nft") is None:
        print("bench/loss.py: needs nft (apt-get install nftables)", file=sys.stderr)
        return 2
    _QUIET = args.json
    if args.nice:
        # children (the kernel sender, the sinks) inherit it: both sides alike
        os.setpriority(os.PRIO_PROCESS, 0, args.nice)
    nbytes = int(args.mb * 1_000_000)
    losses = [float(x) for x in args.loss.split(",") if x]
    ccs = [x for x in args.cc.split(",") if x]
    # a SIGTERM (e.g. `timeout`) must still run the finally that removes the lab
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results = run(nbytes, losses, ccs, args.timeout, args.uvloop, args.name,
                  max(args.runs, 1))
    results["nice"] = os.getpriority(os.PRIO_PROCESS, 0)
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        print(table(results) if args.runs <= 1 else summary(results))
    bad = [r for r in results["runs"]
           for side in ("kernel", "ustack") if r[side].get("ok") is False
           and not r[side].get("timeout")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
