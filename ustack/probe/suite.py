"""``ustack probe suite DIR``: every packetdrill script under DIR against the peers.

Each script runs in its own process (``ustack probe run FILE --json``) and
its own lab, ``--jobs`` of them at once.  Before running, a script is checked
for what neither the probe nor the peers can do (:func:`static_unsupported`):
TCP Fast Open, zero-copy, PSP, MD5/AO signatures, ECN, IPv6, tc qdiscs,
file descriptors other than sockets (pipe, open, splice,
sendfile) and packetdrill options the lab cannot honour.  Such scripts are
reported as ``unsupported: REASON``, one line each; so are scripts whose run
meets an unsupported call (a socket option ustack lacks, say).

Per script the report shows the kernel result, the ustack result and, for a
failure, the first failing line with the expected and the actual segment.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: (pattern, reason) checked against the script text (comments removed)
_STATIC: list[tuple[str, str]] = [
    (r"\bFO(EXP)?\b|MSG_FASTOPEN|TCP_FASTOPEN", "TCP Fast Open"),
    (r"ZEROCOPY", "zero-copy (MSG_ZEROCOPY, SO_ZEROCOPY)"),
    (r"\bpsp\b|PSP", "PSP"),
    (r"\bmd5\b|TCP_MD5SIG|TCP_AO", "MD5/AO signatures"),
    (r"\[(ect0|ect1|ce|noecn|ect01)\]|\btcp_ecn=[1-9]|\b[SFPR.]*[EW]+[SFPR.]*\s+\d+:\d+\(", "ECN"),
    (r"--ip_version=ipv6|AF_INET6|\bipv6\b|--local_ip=[0-9a-f]*:", "IPv6"),
    (r"\btc\s+qdisc\s+(replace|change|del)|\btc\s+qdisc\s+add(?!\s+dev\s+tun0\s+root\s+"
     r"pfifo\b(?!\s+limit))", "tc qdiscs"),
    (r"\bgetsockopt\([^)]*TCP_INFO", "getsockopt(TCP_INFO) with a struct (use %{ }%)"),
]

#: packetdrill options the runner honours (others make a script unsupported)
SUPPORTED_OPTIONS = {"tolerance_usecs", "tolerance_percent", "tcp_ts_tick_usecs",
                     "strict_segments", "mss"}


def _without_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def static_unsupported(text: str, script: Any, peer: str) -> str:
    """Why ``script`` cannot run here ("" when it can)."""
    body = _without_comments(text)
    for pattern, reason in _STATIC:
        if re.search(pattern, body, flags=re.M):
            return f"unsupported: {reason}"
    for key in getattr(script, "options", {}):
        if key not in SUPPORTED_OPTIONS:
            return f"unsupported: packetdrill option --{key}"
    return ""


@dataclass(slots=True)
class PeerResult:
    status: str  # pass, fail, unsupported, error
    detail: str = ""
    seconds: float = 0.0

    @property
    def line(self) -> str:
        """The failing script line and the expected/actual segments, compact."""
        if self.status == "pass":
            return ""
        lines = [ln.strip() for ln in self.detail.splitlines() if ln.strip()]
        if self.status == "unsupported":
            return next((ln for ln in lines if ln.startswith("unsupported")),
                        lines[-1] if lines else "")
        keep = lines[:1] + [ln for ln in lines[1:6] if ln.startswith(
            ("expected", "actual", "timing", "assertion", "bad ", "unexpected")) or
            re.match(r"^\w+Error:|^\w+\(\) ", ln)]
        return " | ".join(keep[:4])


@dataclass(slots=True)
class ScriptResult:
    path: str
    results: dict[str, PeerResult] = field(default_factory=dict)


#: a script that writes a host-global module parameter (/sys/module/...):
#: its kernel runs are serialized (ustack.probe.modparams)
_HOST_GLOBAL = re.compile(r">\s*/sys/module/")


def host_global(text: str) -> bool:
    """The script writes host-global kernel state (a module parameter)."""
    return bool(_HOST_GLOBAL.search(_without_comments(text)))


async def _run_one(path: Path, peer: str, extra: list[str], timeout: float) -> PeerResult:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ustack", "probe", "run", str(path), "--peer", peer, "--json",
        *extra, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        # SIGTERM first: the run restores what it changed (module parameters)
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        return PeerResult("error", f"no result within {timeout:.0f} s")
    for raw in reversed(out.decode(errors="replace").splitlines()):
        if raw.startswith("{"):
            try:
                data = json.loads(raw)
            except ValueError:
                continue
            return PeerResult(str(data.get("status")), str(data.get("detail", "")),
                              float(data.get("seconds", 0.0)))
    tail = err.decode(errors="replace").strip().splitlines()[-3:]
    return PeerResult("error", f"exit {proc.returncode}: " + " | ".join(tail))


def run_suite(root: Path, kinds: list[str], *, jobs: int = 1, as_json: bool = False,
              extra: list[str] | None = None, timeout: float = 180.0,
              name: str | None = None) -> int:
    """Run, print the report, return 0 (the report is the result)."""
    from ustack.probe.script import parse_script

    scripts = sorted(root.rglob("*.pkt"))
    results = [ScriptResult(str(p.relative_to(root))) for p in scripts]
    todo: list[tuple[int, Path, str]] = []
    serial: set[int] = set()
    for i, path in enumerate(scripts):
        text = path.read_text(errors="replace")
        if host_global(text):
            serial.add(i)
        try:
            script = parse_script(text, str(path), path)
            reason = static_unsupported(text, script, "")
        except Exception as exc:  # a syntax we do not speak: say so, per script
            first = str(exc).splitlines()[0]
            reason = f"unsupported: syntax ({first})"
        for kind in kinds:
            if reason:
                results[i].results[kind] = PeerResult("unsupported", reason)
            else:
                todo.append((i, path, kind))

    async def main() -> None:
        sem = asyncio.Semaphore(jobs)
        host = asyncio.Lock()  # one host-global script on the kernel at a time

        async def one(n: int, i: int, path: Path, kind: str) -> None:
            args = list(extra or [])
            if name:
                args += ["--name", f"{name}{n:x}"]
            async with sem:
                if i in serial and kind == "kernel":
                    async with host:
                        r = await _run_one(path, kind, args, timeout)
                        from ustack.probe.modparams import recover

                        recover()  # if the run died holding the parameters
                else:
                    r = await _run_one(path, kind, args, timeout)
                results[i].results[kind] = r
                if not as_json:
                    print(f"  {kind:6} {r.status:11} {r.seconds:6.1f}s {results[i].path}",
                          file=sys.stderr, flush=True)

        await asyncio.gather(*(one(n, i, p, k) for n, (i, p, k) in enumerate(todo)))

    asyncio.run(main())
    if as_json:
        print(json.dumps({"scripts": [{"path": r.path, **{k: asdict(v) | {"line": v.line}
                                                         for k, v in r.results.items()}}
                                      for r in results],
                          "summary": summarize(results, kinds)}, indent=1))
    else:
        print(format_report(results, kinds))
    return 0


def summarize(results: list[ScriptResult], kinds: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"scripts": len(results)}
    ran = [r for r in results if any(v.status not in ("unsupported",)
                                     for v in r.results.values())]
    out["run"] = len(ran)
    for kind in kinds:
        statuses = [r.results[kind].status for r in results if kind in r.results]
        out[kind] = {s: statuses.count(s) for s in sorted(set(statuses))}
    if "kernel" in kinds and "ustack" in kinds:
        kernel_pass = [r for r in results if r.results.get("kernel", PeerResult("")).status
                       == "pass"]
        out["ustack_pass_among_kernel_pass"] = sum(
            1 for r in kernel_pass if r.results["ustack"].status == "pass")
        out["kernel_pass"] = len(kernel_pass)
    return out


def format_report(results: list[ScriptResult], kinds: list[str]) -> str:
    lines = []
    unsupported = []
    for r in results:
        if all(v.status == "unsupported" for v in r.results.values()) and \
                len({v.detail for v in r.results.values()}) == 1:
            unsupported.append(f"{r.path}: {next(iter(r.results.values())).line}")
            continue
        cells = "  ".join(f"{k}: {r.results[k].status}" for k in kinds if k in r.results)
        lines.append(f"{r.path}  {cells}")
        for k in kinds:
            res = r.results.get(k)
            if res is not None and res.status != "pass":
                lines.append(f"    {k} {res.status}: {res.line}")
    s = summarize(results, kinds)
    tail = [f"scripts: {s['scripts']}, run: {s['run']}"]
    for k in kinds:
        tail.append(f"{k}: " + ", ".join(f"{n} {v}" for v, n in s[k].items()))
    if "ustack_pass_among_kernel_pass" in s:
        tail.append(f"pass on kernel: {s['kernel_pass']}, of those pass on ustack: "
                    f"{s['ustack_pass_among_kernel_pass']}")
    return "\n".join(lines + ["", "unsupported:"] + [f"  {u}" for u in unsupported]
                     + ["", *tail])
