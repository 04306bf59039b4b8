"""Which stack is which, for ``ustack ss -p`` and ``--stack``/``--iface``.

Next to its diagnostics endpoint (``<run dir>/stack-<pid>-<n>.sock``) a
stack writes ``<endpoint>.json``: pid, network namespace (inode and, when
``ip netns`` names it, the name), interface and address.  ``ustack ss``
reads these to print one header comment per stack and to select stacks.
The file is removed when the stack closes; one left by a killed process is
ignored with its endpoint (the pid is dead).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass

SUFFIX = ".json"
NETNS_DIR = "/run/netns"


@dataclass(slots=True, frozen=True)
class StackIdentity:
    pid: int
    netns_inode: int
    netns: str  # the `ip netns` name, "" when it has none (e.g. the root namespace)
    iface: str
    address: str  # A.B.C.D/PLEN

    def describe(self) -> str:
        ns = self.netns or (f"inode {self.netns_inode}" if self.netns_inode else "?")
        return (f"# stack pid={self.pid} netns={ns} iface={self.iface} "
                f"address={self.address}")


def netns_name(inode: int) -> str:
    """The ``ip netns`` name of the namespace with this inode, or ""."""
    try:
        names = sorted(os.listdir(NETNS_DIR))
    except OSError:
        return ""
    for name in names:
        with contextlib.suppress(OSError):
            if os.stat(os.path.join(NETNS_DIR, name)).st_ino == inode:
                return name
    return ""


def current(iface: str, address: str) -> StackIdentity:
    try:
        inode = os.stat("/proc/self/ns/net").st_ino
    except OSError:
        inode = 0
    return StackIdentity(os.getpid(), inode, netns_name(inode) if inode else "", iface, address)


def write(endpoint_path: str, identity: StackIdentity) -> str:
    """Write the identity next to the endpoint; the path written."""
    path = endpoint_path + SUFFIX
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(asdict(identity), f)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


def read(endpoint_path: str) -> StackIdentity | None:
    """The identity written for an endpoint, or None (none, unreadable)."""
    try:
        with open(endpoint_path + SUFFIX) as f:
            data = json.load(f)
        return StackIdentity(int(data["pid"]), int(data["netns_inode"]), str(data["netns"]),
                             str(data["iface"]), str(data["address"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remove(endpoint_path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(endpoint_path + SUFFIX)


__all__ = ["StackIdentity", "current", "write", "read", "remove", "netns_name"]
