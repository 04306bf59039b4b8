"""``ustack nstat``: the TCP MIB of every running stack, in iproute2 nstat's
output shape (issue 11 item 3).

Each stack answers a ``{"v": 1, "type": "counters"}`` request on its
diagnostics endpoint (``ustack.diag.protocol``) with ``stack.counters()``;
the MIB counters (``ustack.tcp.mib.NAMES``: ``TcpActiveOpens``,
``TcpRetransSegs``, ``TcpExtTCPTimeouts``, ...) are printed as nstat prints
the kernel's::

    #stack-4242-1 10.77.0.2
    TcpActiveOpens                  1                  0.0
    TcpRetransSegs                  17                 0.0

As nstat does, it shows the increments since the previous run (kept in a
history file, ``$USTACK_NSTAT_HISTORY`` or ``/tmp/ustack-nstat.u<uid>``;
the first run shows everything since the stack started) and hides zeros.
``-a`` shows absolute values, ``-z`` zeros too, ``-j`` JSON, ``-s`` leaves
the history alone, ``-r`` resets it.  The rate column is 0.0 (nstat's rates
come from its daemon; there is none here).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import marshal
import os
import socket
import sys
import time
from collections.abc import Iterable
from typing import Any

MAX_REPLY = 16 << 20


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "nstat",
        help="TCP MIB counters of every running stack (nstat's format)",
        description="Print the TCP MIB (Linux nstat names) of every running ustack stack, "
        "read through its diagnostics endpoint. Like nstat: increments since the last run "
        "unless -a, nonzero counters unless -z.",
    )
    parser.add_argument("-a", "--ignore", action="store_true",
                        help="absolute values, not increments since the last run")
    parser.add_argument("-z", "--zeros", action="store_true", help="show zero counters too")
    parser.add_argument("-j", "--json", action="store_true", help="print JSON")
    parser.add_argument("-s", "--no-update", action="store_true",
                        help="do not update the history")
    parser.add_argument("-r", "--reset", action="store_true", help="reset the history")
    parser.add_argument("-p", "--pretty", action="store_true", help="indent the JSON")
    parser.add_argument("patterns", nargs="*", metavar="PATTERN",
                        help="only counters whose name starts with / matches PATTERN "
                        "(shell wildcards)")
    parser.set_defaults(func=run)


# ------------------------------------------------------------------ client


def query_counters(path: str, timeout: float = 5.0) -> dict[str, int] | None:
    """One stack's counters; None when the endpoint is stale (then removed)."""
    from ustack.diag import protocol

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    chunks: list[bytes] = []
    try:
        try:
            sock.connect(path)
        except OSError as exc:
            if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
                pid = protocol.pid_of(os.path.basename(path))
                if pid is None or not protocol.process_alive(pid):
                    with contextlib.suppress(OSError):
                        os.unlink(path)
                return None
            raise
        uid = protocol.peer_uid(sock)
        if uid not in protocol.client_trusted_uids():
            raise ValueError(f"{path}: served by uid {uid}, neither you nor root: skipped")
        sock.sendall(json.dumps({"v": protocol.VERSION, "type": "counters"}).encode())
        sock.shutdown(socket.SHUT_WR)
        size = 0
        while chunk := sock.recv(1 << 20):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_REPLY:
                raise ValueError(f"{path}: reply too large, skipped")
    finally:
        sock.close()
    try:
        reply = marshal.loads(b"".join(chunks))
    except Exception:  # noqa: BLE001 - marshal raises several types on garbage
        raise ValueError(f"{path}: unreadable reply") from None
    if (type(reply) is not tuple or len(reply) != 3 or reply[0] != protocol.VERSION
            or reply[1] != "counters" or type(reply[2]) is not dict):
        if type(reply) is tuple and len(reply) == 3 and reply[1] == "error":
            raise ValueError(f"{path}: {str(reply[2])[:200]}")
        raise ValueError(f"{path}: not a counters reply (an older stack?)")
    values = reply[2]
    if not all(type(k) is str and type(v) is int for k, v in values.items()):
        raise ValueError(f"{path}: malformed counters")
    return values


def stacks_counters(warn: Any) -> dict[str, dict[str, int]]:
    """``{endpoint name: counters}`` of every running stack."""
    from ustack.diag.client import endpoint_paths

    out: dict[str, dict[str, int]] = {}
    for path in endpoint_paths(warn=warn):
        name = os.path.basename(path).removesuffix(".sock")
        try:
            values = query_counters(path)
        except TimeoutError:
            warn(f"{path}: no answer, skipped")
            continue
        except PermissionError:
            warn(f"{path}: permission denied (run as the stack's user or root)")
            continue
        except (OSError, ValueError) as exc:
            warn(str(exc))
            continue
        if values is not None:
            out[name] = values
    return out


# ------------------------------------------------------------------ output


def mib_only(values: dict[str, int]) -> dict[str, int]:
    """The MIB counters, in ``ustack.tcp.mib.NAMES`` order."""
    from ustack.tcp.mib import NAMES

    return {name: values[name] for name in NAMES if name in values}


def history_path() -> str:
    return os.environ.get("USTACK_NSTAT_HISTORY") or f"/tmp/ustack-nstat.u{os.getuid()}"


def load_history(path: str) -> dict[str, dict[str, int]]:
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_history(path: str, data: dict[str, dict[str, int]]) -> None:
    tmp = f"{path}.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def _wanted(name: str, patterns: Iterable[str]) -> bool:
    import fnmatch

    pats = list(patterns)
    return not pats or any(name.startswith(p) or fnmatch.fnmatchcase(name, p) for p in pats)


def format_nstat(blocks: dict[str, dict[str, int]], labels: dict[str, str]) -> str:
    """nstat's text layout: ``#source`` then ``%-32s%-16llu%6.1f`` lines."""
    lines = []
    for source, values in blocks.items():
        label = labels.get(source, "")
        lines.append(f"#{source}" + (f" {label}" if label else ""))
        for name, value in values.items():
            lines.append(f"{name:<32}{value:<16d}{0.0:6.1f}")
    return "\n".join(lines) + ("\n" if lines else "")


def run(args: argparse.Namespace) -> int:
    def warn(msg: str) -> None:
        print(f"ustack nstat: {msg}", file=sys.stderr)

    stacks = stacks_counters(warn)
    hpath = history_path()
    history = {} if args.reset else load_history(hpath)
    blocks: dict[str, dict[str, int]] = {}
    labels: dict[str, str] = {}
    new_history: dict[str, Any] = {"_time": time.time()}
    for source, values in stacks.items():
        mib = mib_only(values)
        new_history[source] = mib
        base = history.get(source) if not args.ignore else None
        shown: dict[str, int] = {}
        for name, value in mib.items():
            if isinstance(base, dict) and isinstance(base.get(name), int):
                value = value - base[name]
            if (value or args.zeros) and _wanted(name, args.patterns):
                shown[name] = value
        blocks[source] = shown
    if not args.no_update:
        try:
            save_history(hpath, new_history)
        except OSError as exc:
            warn(f"history {hpath} not updated: {exc.strerror or exc}")
    if args.json:
        text = json.dumps(blocks, indent=2 if args.pretty else None)
        sys.stdout.write(text + "\n")
    else:
        sys.stdout.write(format_nstat(blocks, labels))
    return 0
