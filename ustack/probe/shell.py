"""packetdrill's backtick shell lines, interpreted (never handed to a shell).

packetdrill runs them with ``/bin/sh`` on the machine under test.  Here the
peer under test is a namespace (kernel) or a Python object (ustack), so the
commands a script may run are understood one by one:

* ``sysctl [-q] [-e] [-w] NAME=VALUE ...`` and
  ``.../set_sysctls.py /proc/sys/net/ipv4/NAME=VALUE ...``: the peer's
  ``set_option`` (kernel: ``sysctl -w`` inside the peer namespace; ustack: the
  ``TcpConfig`` field, see :data:`ustack.probe.peers.USTACK_SYSCTLS`);
* ``.../defaults.sh`` (gtests/net/tcp/common): read from next to the script
  when it exists (else the values below) and applied line by line; its
  ``ip tcp_metrics flush`` runs in the peer namespace (ustack has no metrics
  cache) and ``tc qdisc add dev tun0 root pfifo`` is a no-op: the lab's veth
  has no qdisc that paces either.  Values a peer cannot take are skipped and
  listed (``Shell.skipped``), as a shell would go on after a failing line;
* ``echo V > /sys/module/M/parameters/P``: the peer's ``set_module_param``
  (kernel: host-global, saved and restored around the run, see
  :mod:`ustack.probe.modparams`; ustack: the matching knob, if any);
* ``/tmp/sysctl_restore_${PPID}.sh``: a no-op (every script gets a fresh lab);
* anything else, ``tc`` qdiscs included: :class:`Unsupported`.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

from ustack.probe.modparams import parse_param_path
from ustack.probe.syscalls import Unsupported

#: gtests/net/tcp/common/defaults.sh as of 2026 (used when the file is not
#: next to the script): sysctl name -> value
DEFAULTS_SH = {
    "net.ipv4.tcp_rmem": "4096 540000 15728640",
    "net.ipv4.tcp_wmem": "4096 262144 4194304",
    "net.ipv4.tcp_timestamps": "1",
    "net.ipv4.tcp_syn_retries": "5",
    "net.ipv4.tcp_synack_retries": "5",
    "net.ipv4.tcp_frto": "2",
    "net.ipv4.tcp_sack": "1",
    "net.ipv4.tcp_dsack": "1",
    "net.ipv4.tcp_fack": "0",
    "net.ipv4.tcp_reordering": "3",
    "net.ipv4.tcp_congestion_control": "cubic",
    "net.ipv4.tcp_slow_start_after_idle": "0",
    "net.ipv4.tcp_early_retrans": "4",
    "net.ipv4.tcp_recovery": "1",
    "net.ipv4.tcp_tso_win_divisor": "3",
    "net.ipv4.tcp_ecn": "0",
    "net.ipv4.tcp_ecn_option": "2",
    "net.ipv4.tcp_pacing_ss_ratio": "200",
    "net.ipv4.tcp_pacing_ca_ratio": "120",
    "net.ipv4.tcp_notsent_lowat": "4294967295",
    "net.ipv4.tcp_fastopen": "0x70403",
    "net.ipv4.tcp_fastopen_key": "a1a1a1a1-b2b2b2b2-c3c3c3c3-d4d4d4d4",
    "net.ipv4.tcp_syncookies": "1",
}


def _arith(text: str) -> str:
    """``$((15*1024*1024))`` -> ``15728640`` (digits and * + - only)."""
    def repl(m: re.Match[str]) -> str:
        expr = m.group(1)
        if not re.fullmatch(r"[\d\s*+\-()]+", expr):
            raise Unsupported(f"unsupported shell arithmetic $(({expr}))")
        return str(eval(expr, {"__builtins__": {}}))  # digits and operators only
    return re.sub(r"\$\(\((.*?)\)\)", repl, text)


def _assignments(words: list[str]) -> list[tuple[str, str]]:
    out = []
    for w in words:
        if w.startswith("-"):
            continue
        if "=" not in w:
            raise Unsupported(f"unsupported sysctl argument {w!r}")
        name, value = w.split("=", 1)
        if name.startswith("/proc/sys/"):
            name = name[len("/proc/sys/"):].replace("/", ".")
        out.append((name, value))
    return out


class Shell:
    """Runs the commands against ``peer`` (a :class:`~ustack.probe.peers.Peer`)."""

    def __init__(self, peer: Any, script_dir: Path | None,
                 files: dict[str, str] | None = None, scratch: Path | None = None) -> None:
        self.peer = peer
        self.script_dir = script_dir
        #: files the script creates (``dd ... of=PATH``): script path -> real
        #: path in ``scratch`` (never the host's /tmp)
        self.files = files if files is not None else {}
        self.scratch = scratch
        #: (command, why) of defaults.sh lines a peer could not take
        self.skipped: list[tuple[str, str]] = []

    async def run(self, text: str) -> None:
        text = text.replace("\\\n", " ")
        for raw in re.split(r"[\n;]|&&", text):
            line = raw.strip()
            line = re.sub(r"\s*(?:[12]?>\s*/dev/null|2>&1)\s*", " ", line).strip()
            if line:
                await self._one(line, lenient=False)

    async def _one(self, line: str, *, lenient: bool) -> None:
        try:
            words = shlex.split(_arith(line))
        except ValueError as exc:
            raise Unsupported(f"unsupported shell line {line!r}: {exc}") from None
        cmd = words[0]
        base = cmd.rsplit("/", 1)[-1]
        if base == "defaults.sh":
            await self._defaults(cmd)
        elif base == "sysctl" or base == "set_sysctls.py":
            ignore_missing = "-e" in words
            for name, value in _assignments(words[1:]):
                try:
                    await self.peer.set_option(name, value)
                except Unsupported as exc:
                    if not lenient:
                        raise
                    self.skipped.append((f"{name}={value}", str(exc)))
                except ValueError as exc:
                    if lenient or ignore_missing:
                        self.skipped.append((f"{name}={value}", str(exc)))
                    else:
                        raise Unsupported(f"unsupported sysctl {name}: {exc}") from None
        elif re.match(r"^/tmp/sysctl_restore_", cmd):
            return
        elif base == "rm" and all(w.startswith("-") or w in self.files or w.startswith("/tmp/")
                                  for w in words[1:]):
            for w in words[1:]:
                real = self.files.pop(w, None)
                if real is not None:
                    Path(real).unlink(missing_ok=True)
        elif base == "dd":
            self._dd(words[1:], line)
        elif base == "echo" and len(words) == 4 and words[2] == ">" and \
                parse_param_path(words[3]) is not None:
            module, param = parse_param_path(words[3]) or ("", "")
            setter = getattr(self.peer, "set_module_param", None)
            if setter is None:
                raise Unsupported(f"unsupported on {self.peer.kind}: module parameters "
                                  f"({line!r})")
            await setter(module, param, words[1])
        elif base == "ip" and words[1:2] == ["route"] and len(words) > 3 and \
                words[2] in ("change", "add", "replace"):
            route = getattr(self.peer, "set_route", None)
            if route is None:
                raise Unsupported(f"unsupported on {self.peer.kind}: routes ({line!r})")
            await route(words[3], _route_options(words[4:]))
        elif base == "ip" and words[1:3] == ["tcp_metrics", "flush"]:
            flush = getattr(self.peer, "flush_tcp_metrics", None)
            if flush is not None:
                await flush()
        elif base == "ethtool" and len(words) >= 3 and words[1] == "-K":
            offloads = getattr(self.peer, "set_segment_offload", None)
            settings = dict(zip(words[3::2], words[4::2], strict=False))
            if offloads is None or not set(settings) <= {"tso", "gso", "gro"}:
                raise Unsupported(f"unsupported shell command {line!r}")
            await offloads(tso=settings.get("tso") != "off" if "tso" in settings else None,
                           gso=settings.get("gso") != "off" if "gso" in settings else None)
        elif base == "tc":
            if words[1:3] == ["qdisc", "add"] and words[-1] == "pfifo":
                return  # defaults.sh: no pacing qdisc; the lab's veth has none either
            raise Unsupported("unsupported: tc qdiscs")
        else:
            raise Unsupported(f"unsupported shell command {line!r}")

    def _dd(self, args: list[str], line: str) -> None:
        opts = dict(a.split("=", 1) for a in args if "=" in a)
        if opts.get("if") != "/dev/zero" or "of" not in opts or self.scratch is None:
            raise Unsupported(f"unsupported shell command {line!r}")
        size = int(opts.get("bs", "512")) * int(opts.get("count", "0"))
        real = self.scratch / f"file{len(self.files)}"
        real.write_bytes(bytes(size))
        self.files[opts["of"]] = str(real)

    async def _defaults(self, cmd: str) -> None:
        path = None
        if self.script_dir is not None:
            candidate = (self.script_dir / cmd).resolve()
            if candidate.is_file():
                path = candidate
        if path is None:
            for name, value in DEFAULTS_SH.items():
                await self._one(f"sysctl -q {name}={shlex.quote(value)}", lenient=True)
            return
        text = path.read_text()
        for raw in text.splitlines():
            line = raw.split("#", 1)[0].strip()
            line = re.sub(r"\s*(?:[12]?>\s*/dev/null|2>&1)\s*", " ", line).strip()
            if line:
                await self._one(line, lenient=True)


def _route_options(words: list[str]) -> list[str]:
    """``via X dev tun0 advmss 600 mtu lock 640`` without ``via``/``dev``
    (the lab's route is on-link through the peer's veth)."""
    out = []
    skip = 0
    for i, w in enumerate(words):
        if skip:
            skip -= 1
            continue
        if w in ("via", "dev"):
            skip = 1
            continue
        out.append(w)
        del i
    return out
