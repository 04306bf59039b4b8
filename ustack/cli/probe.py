"""``ustack probe``: run probe scripts and the conformance catalogue.

    ustack probe run FILE [--peer kernel|ustack] [--tolerance S] [-v] [--pcap FILE]
    ustack probe list
    ustack probe table [--run] [--peer kernel,ustack] [--only ID,...] [--write FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "probe", help="script raw TCP segments against the kernel or ustack",
        description="Script raw TCP segments against a TCP peer in a lab and check its answers.")
    sub = parser.add_subparsers(dest="probe_verb", metavar="ACTION")

    run = sub.add_parser("run", help="run a packetdrill-style script (needs root)")
    run.add_argument("file", help="script file ('-' for stdin)")
    run.add_argument("--peer", choices=("kernel", "ustack"), default="kernel",
                     help="the TCP under test (default: kernel)")
    run.add_argument("--tolerance", type=float, default=None, metavar="S",
                     help="timing floor in seconds (default: packetdrill's 0.004 against "
                     "the kernel, 0.025 against ustack, which answers from Python in this "
                     "process)")
    run.add_argument("-v", "--verbose", action="store_true", help="print the timeline")
    run.add_argument("--pcap", metavar="FILE", help="write the probe's frames to FILE")
    run.set_defaults(func=_run)

    lst = sub.add_parser("list", help="list the conformance scenarios")
    lst.add_argument("--script", metavar="ID", help="print the script of one scenario")
    lst.set_defaults(func=_list)

    table = sub.add_parser("table", help="print the conformance table (scenario, RFC, "
                           "Linux, ustack)")
    table.add_argument("--run", action="store_true",
                       help="run the scenarios first and record the results (needs root)")
    table.add_argument("--peer", default="kernel,ustack",
                       help="peers to run with --run (default kernel,ustack)")
    table.add_argument("--only", default="", help="comma-separated scenario ids")
    table.add_argument("--write", metavar="FILE",
                       help="also write the table into this markdown file (between "
                       "the conformance-table markers)")
    table.set_defaults(func=_table)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


def _read(path: str) -> tuple[str, str]:
    if path == "-":
        return sys.stdin.read(), "<stdin>"
    try:
        return Path(path).read_text(), path
    except OSError as exc:
        raise SystemExit(f"ustack probe run: cannot read {path}: {exc.strerror}") from None


def _require_lab_support() -> None:
    """PermissionError (shown without a traceback) when labs cannot be built."""
    from ustack.lab import have_netns_support

    ok, reason = have_netns_support()
    if not ok:
        raise PermissionError(reason)


def _run(args: argparse.Namespace) -> int:
    from ustack.probe.packet import ScriptSyntaxError
    from ustack.probe.script import TOLERANCE_FLOOR, USTACK_TOLERANCE_FLOOR, parse_script

    text, name = _read(args.file)
    try:
        script = parse_script(text, name)
    except ScriptSyntaxError as exc:
        print(f"ustack probe run: {exc}", file=sys.stderr)
        return 2
    _require_lab_support()
    if args.tolerance is not None:
        tolerance = args.tolerance
    else:
        tolerance = TOLERANCE_FLOOR if args.peer == "kernel" else USTACK_TOLERANCE_FLOOR
    return asyncio.run(_run_async(script, args.peer, tolerance, args.verbose, args.pcap))


async def _run_async(script: Any, kind: str, tolerance: float, verbose: bool,
                     pcap: str | None = None) -> int:
    from ustack.lab import Lab
    from ustack.probe.conformance import lab_name
    from ustack.probe.script import ScriptError, run_script
    from ustack.probe.session import probe_session

    lab = Lab.create(lab_name())
    await asyncio.to_thread(lab.up)
    try:
        async with probe_session(lab, kind, pcap=pcap) as (peer, probe):
            try:
                await run_script(script, peer, probe, tolerance_floor=tolerance)
            except ScriptError as exc:
                print(f"FAIL {exc}", file=sys.stderr)
                return 1
            if verbose:
                print(probe.format_timeline())
            print(f"PASS {script.name} against {kind} ({len(script.events)} events, "
                  f"{probe.now():.3f} s)")
            return 0
    finally:
        await asyncio.to_thread(lab.down)


def _list(args: argparse.Namespace) -> int:
    from ustack.probe.scenarios import SCENARIOS, by_id

    if args.script:
        try:
            print(by_id(args.script).script, end="")
        except KeyError as exc:
            print(f"ustack probe list: {exc.args[0]}", file=sys.stderr)
            return 2
        return 0
    for s in SCENARIOS:
        print(f"{s.id:>8}  {s.title}  [RFC {s.rfc}]")
    return 0


MARK_BEGIN = "<!-- conformance-table:begin -->"
MARK_END = "<!-- conformance-table:end -->"


def _table(args: argparse.Namespace) -> int:
    from ustack.probe import conformance
    from ustack.probe.scenarios import SCENARIOS

    if args.run:
        kinds = [k.strip() for k in args.peer.split(",") if k.strip()]
        ids = {i.strip() for i in args.only.split(",") if i.strip()}
        unknown = ids - {s.id for s in SCENARIOS}
        if unknown:
            print(f"ustack probe table: unknown scenario(s) {', '.join(sorted(unknown))}",
                  file=sys.stderr)
            return 2
        _require_lab_support()
        chosen = [s for s in SCENARIOS if not ids or s.id in ids]
        results = asyncio.run(_run_all(chosen, kinds))
        conformance.save_results(results)
    text = conformance.render_table()
    print(text)
    print()
    print(conformance.summary())
    if args.write:
        path = Path(args.write)
        old = path.read_text() if path.exists() else ""
        block = f"{MARK_BEGIN}\n{text}\n\n{conformance.summary()}\n{MARK_END}"
        if MARK_BEGIN in old and MARK_END in old:
            head, rest = old.split(MARK_BEGIN, 1)
            new = head + block + rest.split(MARK_END, 1)[1]
        else:
            new = old + ("\n" if old else "") + block + "\n"
        path.write_text(new)
    return 0


async def _run_all(chosen: list[Any], kinds: list[str]) -> list[Any]:
    from ustack.probe.conformance import run_scenario

    results = []
    for s in chosen:
        for kind in kinds:
            r = await run_scenario(s, kind)
            print(f"{s.id:>8} {kind:6} {r.status:5} {r.seconds:5.1f}s "
                  f"{s.title}", file=sys.stderr)
            results.append(r)
    return results
