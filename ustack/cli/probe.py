"""``ustack probe``: run probe and packetdrill scripts and the conformance catalogue.

    ustack probe run FILE [--peer kernel|ustack] [--tolerance S]
                          [--tolerance_usecs N] [--tolerance_percent P]
                          [--kernel-cc NAME] [-v] [--pcap FILE] [--name LAB]
    ustack probe suite DIR [--peer kernel,ustack] [--jobs N] [--json]
    ustack probe list [--script ID]
    ustack probe table [--run] [--peer kernel,ustack] [--only ID,...] [--write FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from ustack.probe.peers import DEFAULT_KERNEL_CC


class _Fail(Exception):
    """One line for stderr and an exit status."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "probe", help="script raw TCP segments against the kernel or ustack",
        description="Script raw TCP segments against a TCP peer in a lab and check its answers.")
    sub = parser.add_subparsers(dest="probe_verb", metavar="ACTION")

    run = sub.add_parser("run", help="run a probe or packetdrill script (needs root)")
    run.add_argument("file", help="script file ('-' for stdin)")
    run.add_argument("--peer", choices=("kernel", "ustack"), default="kernel",
                     help="the TCP under test (default: kernel)")
    _timing_options(run)
    run.add_argument("-v", "--verbose", action="store_true", help="print the timeline")
    run.add_argument("--pcap", metavar="FILE", help="write the probe's frames to FILE")
    run.add_argument("--name", metavar="LAB", help="lab name prefix (default hp<pid>)")
    run.add_argument("--json", action="store_true",
                     help="print one JSON object with the result (for 'probe suite')")
    run.set_defaults(func=_guard(_run))

    suite = sub.add_parser("suite", help="run every .pkt script under DIR against the peers")
    suite.add_argument("dir", help="directory (searched recursively for *.pkt)")
    suite.add_argument("--peer", default="kernel,ustack", help="peers (default kernel,ustack)")
    suite.add_argument("--jobs", type=int, default=1, metavar="N",
                       help="scripts run at once, each in its own lab and process (default 1)")
    suite.add_argument("--json", action="store_true", help="print the results as JSON")
    suite.add_argument("--name", metavar="PREFIX", default=None,
                       help="lab name prefix: each run gets PREFIX plus its number "
                       "(default hp<pid>)")
    _timing_options(suite)
    suite.set_defaults(func=_guard(_suite))

    lst = sub.add_parser("list", help="list the conformance scenarios")
    lst.add_argument("--script", metavar="ID", help="print the script of one scenario")
    lst.set_defaults(func=_guard(_list))

    table = sub.add_parser("table", help="print the conformance table (scenario, RFC, "
                           "Linux, ustack)")
    table.add_argument("--run", action="store_true",
                       help="run the scenarios first and record the results (needs root)")
    table.add_argument("--peer", default="kernel,ustack",
                       help="peers to run with --run (default kernel,ustack)")
    table.add_argument("--only", default="", help="comma-separated scenario ids")
    table.add_argument("--kernel-cc", default=DEFAULT_KERNEL_CC, metavar="NAME",
                       help=f"kernel congestion control (default {DEFAULT_KERNEL_CC})")
    table.add_argument("--write", metavar="FILE",
                       help="also write the table into this markdown file (between "
                       "the conformance-table markers)")
    table.set_defaults(func=_guard(_table))
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


def _timing_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tolerance", type=float, default=None, metavar="S",
                   help="timing floor in seconds (default: packetdrill's 0.004 against "
                   "the kernel, 0.025 against ustack, which answers from Python in this "
                   "process)")
    p.add_argument("--tolerance_usecs", "--tolerance-usecs", type=int, default=None,
                   metavar="N", help="timing floor in microseconds (packetdrill's option)")
    p.add_argument("--tolerance_percent", "--tolerance-percent", type=float, default=None,
                   metavar="P", help="tolerance as a percentage of the gap since the "
                   "previous event (default 12.5)")
    p.add_argument("--kernel-cc", default=DEFAULT_KERNEL_CC, metavar="NAME",
                   help=f"congestion control of the kernel peer's sockets "
                   f"(default {DEFAULT_KERNEL_CC}; this host's default is bbr)")


def _guard(func: Any) -> Any:
    """Bad input becomes one line on stderr and a non-zero status; a closed
    stdout (``| head``) ends quietly."""
    def run(args: argparse.Namespace) -> int:
        try:
            return int(func(args))
        except _Fail as exc:
            print(f"ustack probe {args.probe_verb}: {exc}", file=sys.stderr)
            return exc.status
        except BrokenPipeError:
            _silence_stdout()
            return 141
        except (UnicodeDecodeError, ValueError) as exc:
            print(f"ustack probe {args.probe_verb}: {exc}", file=sys.stderr)
            return 2
        except OSError as exc:
            if isinstance(exc, PermissionError):
                raise
            where = f" {exc.filename}" if exc.filename else ""
            print(f"ustack probe {args.probe_verb}:{where}: {exc.strerror or exc}",
                  file=sys.stderr)
            return 1
    return run


def _silence_stdout() -> None:
    """After EPIPE: point stdout at /dev/null so the interpreter's final
    flush does not raise again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _read(path: str) -> tuple[str, str]:
    if path == "-":
        return sys.stdin.read(), "<stdin>"
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise SystemExit(f"ustack probe run: cannot read {path}: {exc.strerror}") from None
    if b"\0" in data:
        raise _Fail(f"{path} is a binary file, not a script")
    try:
        return data.decode(), path
    except UnicodeDecodeError:
        raise _Fail(f"{path} is not UTF-8 text") from None


def _require_lab_support() -> None:
    """PermissionError (shown without a traceback) when labs cannot be built."""
    from ustack.lab import have_netns_support

    ok, reason = have_netns_support()
    if not ok:
        raise PermissionError(reason)


def _check_output_dir(path: str | None, what: str) -> None:
    if path is None:
        return
    parent = Path(path).parent
    if not parent.is_dir():
        raise _Fail(f"{what}: directory {str(parent)!r} does not exist")


def _tolerances(args: argparse.Namespace, kind: str, script: Any) -> tuple[float, float]:
    from ustack.probe.script import TOLERANCE_FLOOR, TOLERANCE_FRACTION, USTACK_TOLERANCE_FLOOR

    floor = TOLERANCE_FLOOR if kind == "kernel" else USTACK_TOLERANCE_FLOOR
    fraction = TOLERANCE_FRACTION
    if args.tolerance is not None:
        floor = args.tolerance
    if args.tolerance_usecs is not None:
        floor = args.tolerance_usecs / 1e6
    if args.tolerance_percent is not None:
        fraction = args.tolerance_percent / 100
    # a script's own --options lines come last, as in packetdrill (against
    # ustack the floor stays at least its default)
    opts = script.options if script is not None else {}
    if "tolerance_usecs" in opts:
        floor = int(opts["tolerance_usecs"]) / 1e6
        if kind == "ustack":
            floor = max(floor, USTACK_TOLERANCE_FLOOR)
    if "tolerance_percent" in opts:
        fraction = float(opts["tolerance_percent"]) / 100
    return floor, fraction


def _run(args: argparse.Namespace) -> int:
    from ustack.probe.packet import ScriptSyntaxError
    from ustack.probe.script import parse_script
    from ustack.probe.suite import static_unsupported

    text, name = _read(args.file)
    _check_output_dir(args.pcap, "--pcap")
    try:
        script = parse_script(text, name, None if args.file == "-" else Path(args.file))
    except ScriptSyntaxError as exc:
        if args.json:
            print(json.dumps({"status": "error", "detail": str(exc)}))
        print(f"ustack probe run: {exc}", file=sys.stderr)
        return 2
    if not script.events:
        raise _Fail(f"{name}: no events (an empty script tests nothing)")
    reason = static_unsupported(text, script, args.peer)
    if reason:
        if args.json:
            print(json.dumps({"status": "unsupported", "detail": reason}))
        else:
            print(f"UNSUPPORTED {name} against {args.peer}: {reason}")
        return 3
    _require_lab_support()
    floor, fraction = _tolerances(args, args.peer, script)
    return asyncio.run(_run_async(script, args, floor, fraction))


async def _run_async(script: Any, args: argparse.Namespace, floor: float,
                     fraction: float) -> int:
    from ustack.lab import Lab
    from ustack.probe.conformance import lab_name
    from ustack.probe.script import ScriptError, ScriptUnsupported, run_script
    from ustack.probe.session import probe_session

    kind = args.peer
    lab = Lab.create(lab_name(args.name))
    await asyncio.to_thread(lab.up)
    started = asyncio.get_running_loop().time()
    try:
        offload = script.dialect == "packetdrill"
        async with probe_session(lab, kind, pcap=args.pcap, kernel_cc=args.kernel_cc,
                                 offload=offload) as (peer, probe):
            cc = getattr(peer, "congestion", None)
            header = (f"peer {kind}" + (f", kernel congestion control {cc}" if cc else "")
                      + (", super-segments (TSO/GSO)" if offload else ", exact wire")
                      + f", tolerance {floor * 1e6:.0f} us / {fraction * 100:g} %")
            try:
                await run_script(script, peer, probe, tolerance_floor=floor,
                                 tolerance_fraction=fraction)
            except ScriptUnsupported as exc:
                return _report(args, "unsupported", str(exc), header, probe, started)
            except ScriptError as exc:
                return _report(args, "fail", str(exc), header, probe, started)
            if getattr(peer, "kind", "") == "kernel":
                cc = getattr(peer, "congestion", cc)
            return _report(args, "pass", "", header, probe, started,
                           events=len(script.events), name=script.name)
    finally:
        await asyncio.to_thread(lab.down)


def _report(args: argparse.Namespace, status: str, detail: str, header: str, probe: Any,
            started: float, *, events: int = 0, name: str = "") -> int:
    seconds = asyncio.get_running_loop().time() - started
    if args.json:
        print(json.dumps({"status": status, "detail": detail, "seconds": round(seconds, 3),
                          "header": header}))
        return {"pass": 0, "fail": 1, "unsupported": 3}[status]
    if args.verbose:
        print(header)
        print(probe.format_timeline())
    if status == "pass":
        print(f"PASS {name} against {args.peer} ({events} events, {probe.now():.3f} s)")
        return 0
    if status == "unsupported":
        print(f"UNSUPPORTED {detail.splitlines()[-1]}", file=sys.stderr)
        return 3
    print(f"FAIL {detail}", file=sys.stderr)
    return 1


def _suite(args: argparse.Namespace) -> int:
    from ustack.probe.suite import run_suite

    root = Path(args.dir)
    if not root.is_dir():
        raise _Fail(f"{args.dir}: not a directory")
    kinds = [k.strip() for k in args.peer.split(",") if k.strip()]
    for k in kinds:
        if k not in ("kernel", "ustack"):
            raise _Fail(f"unknown peer {k!r}: expected kernel, ustack")
    if args.jobs < 1:
        raise _Fail("--jobs must be at least 1")
    _require_lab_support()
    extra: list[str] = ["--kernel-cc", args.kernel_cc]
    if args.tolerance is not None:
        extra += ["--tolerance", str(args.tolerance)]
    if args.tolerance_usecs is not None:
        extra += ["--tolerance_usecs", str(args.tolerance_usecs)]
    if args.tolerance_percent is not None:
        extra += ["--tolerance_percent", str(args.tolerance_percent)]
    return run_suite(root, kinds, jobs=args.jobs, as_json=args.json, extra=extra,
                     name=args.name)


def _list(args: argparse.Namespace) -> int:
    from ustack.probe.scenarios import SCENARIOS, by_id

    if args.script:
        try:
            text = by_id(args.script).script
        except KeyError as exc:
            raise _Fail(str(exc.args[0])) from None
        sys.stdout.write(text)
        sys.stdout.flush()
        return 0
    for s in SCENARIOS:
        sys.stdout.write(f"{s.id:>8}  {s.title}  [RFC {s.rfc}]\n")
    sys.stdout.flush()
    return 0


MARK_BEGIN = "<!-- conformance-table:begin -->"
MARK_END = "<!-- conformance-table:end -->"


def _table(args: argparse.Namespace) -> int:
    from ustack.probe import conformance
    from ustack.probe.scenarios import SCENARIOS

    ids = {i.strip() for i in args.only.split(",") if i.strip()}
    unknown = ids - {s.id for s in SCENARIOS}
    if unknown:
        raise _Fail(f"unknown scenario(s) {', '.join(sorted(unknown))}")
    _check_output_dir(args.write, "--write")
    if args.run:
        kinds = [k.strip() for k in args.peer.split(",") if k.strip()]
        _require_lab_support()
        chosen = [s for s in SCENARIOS if not ids or s.id in ids]
        results = asyncio.run(_run_all(chosen, kinds, args.kernel_cc))
        conformance.save_results(results, kernel_cc=args.kernel_cc)
    text = conformance.render_table()
    print(conformance.render_table(only=ids) if ids and not args.run else text)
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


async def _run_all(chosen: list[Any], kinds: list[str], kernel_cc: str) -> list[Any]:
    from ustack.probe.conformance import run_scenario

    results = []
    for s in chosen:
        for kind in kinds:
            r = await run_scenario(s, kind, kernel_cc=kernel_cc)
            print(f"{s.id:>8} {kind:6} {r.status:5} {r.seconds:5.1f}s "
                  f"{s.title}", file=sys.stderr)
            results.append(r)
    return results
