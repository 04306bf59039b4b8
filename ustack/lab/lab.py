"""A lab: two network namespaces joined by a veth pair (DESIGN.md traps 1 and 4).

The *peer* namespace holds the Linux kernel that ustack talks to; its veth
carries a kernel IPv4 address (default 10.77.0.1/24).  The *stack* namespace
holds the veth ustack drives through AF_PACKET; that veth has **no** kernel IPv4
address (so the kernel never answers ARP or sends RSTs for ustack's address)
and IPv6 is disabled in both namespaces (no router solicitations or MLD noise
in captures).

The ``ip`` commands are the same as in ``netns/lab.sh``; ``Lab.commands_up()``
lists them.  A small JSON record per lab under ``/run/ustack/labs/`` lets
``ustack lab status`` and ``ustack lab down`` work from another process.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import dataclasses
import fcntl
import hashlib
import ipaddress
import json
import os
import re
import shutil
import socket
import struct
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ustack.diag.protocol import process_alive
from ustack.wire.ethernet import parse_mac

STATE_DIR = Path(os.environ.get("USTACK_LAB_STATE_DIR", "/run/ustack/labs"))
NETNS_DIR = Path("/run/netns")
IFNAMSIZ = 15  # usable characters in a Linux interface name

DEFAULT_PEER_ADDRESS = "10.77.0.1/24"
DEFAULT_STACK_ADDRESS = "10.77.0.2/24"

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")


class LabError(RuntimeError):
    """The lab could not be built or torn down (the message says which step)."""


def _ifname(base: str, suffix: str) -> str:
    """``base + suffix`` shortened (with a stable hash) to fit IFNAMSIZ."""
    name = base + suffix
    if len(name) <= IFNAMSIZ:
        return name
    digest = hashlib.sha1(base.encode()).hexdigest()[:5]
    keep = IFNAMSIZ - len(suffix) - len(digest)
    return base[:keep] + digest + suffix


def _check_addresses(peer: str, stack: str) -> tuple[str, str, int]:
    """Validate ``A[/P]`` strings; return (peer ip, stack ip, prefixlen).

    A missing prefix is taken from the other address, else /24.
    """
    prefix = next((a.split("/")[1] for a in (peer, stack) if "/" in a), "24")
    try:
        p = ipaddress.IPv4Interface(peer if "/" in peer else f"{peer}/{prefix}")
        s = ipaddress.IPv4Interface(stack if "/" in stack else f"{stack}/{prefix}")
    except ValueError as exc:
        raise ValueError(f"invalid lab address: {exc}") from None
    if p.network != s.network:
        raise ValueError(f"peer {p} and stack {s} are not on the same subnet")
    if p.ip == s.ip:
        raise ValueError(f"peer and stack address are both {p.ip}")
    if p.network.prefixlen > 30:
        raise ValueError(f"prefix /{p.network.prefixlen} is too long for two hosts")
    return str(p.ip), str(s.ip), p.network.prefixlen


@dataclasses.dataclass
class Lab:
    """Two namespaces and a veth pair, named after ``name``.

    ``peer_address`` is the kernel's address (no prefix), ``stack_address`` is
    the address ustack should use *with* its prefix ("10.77.0.2/24"),
    ``prefixlen`` the shared prefix length.
    """

    name: str
    peer_ns: str
    stack_ns: str
    peer_if: str
    stack_if: str
    peer_address: str
    stack_address: str
    prefixlen: int
    #: False: the peer veth does no checksum offload and no TSO/GSO, so the
    #: kernel puts exact wire segments (<= MSS, full checksums) on the link
    offloads: bool = True

    # ------------------------------------------------------------ construction
    @classmethod
    def create(
        cls,
        name: str,
        *,
        peer_address: str = DEFAULT_PEER_ADDRESS,
        stack_address: str = DEFAULT_STACK_ADDRESS,
        offloads: bool = True,
    ) -> Lab:
        """Describe a lab (nothing is created until :meth:`up`).

        ``offloads=False`` is the exact-wire mode (DESIGN.md trap 3): the peer
        kernel computes every checksum and segments TCP itself, so ustack sees
        what a real wire would carry (and verifies every checksum).
        """
        if not _NAME_RE.match(name):
            raise ValueError(
                f"invalid lab name {name!r}: use 1-40 letters, digits, '.', '_' or '-'"
            )
        peer_ip, stack_ip, prefixlen = _check_addresses(peer_address, stack_address)
        return cls(
            name=name,
            peer_ns=f"{name}-peer",
            stack_ns=f"{name}-stack",
            peer_if=_ifname(name, "-p"),
            stack_if=_ifname(name, "-s"),
            peer_address=peer_ip,
            stack_address=f"{stack_ip}/{prefixlen}",
            prefixlen=prefixlen,
            offloads=offloads,
        )

    @property
    def stack_ip(self) -> str:
        """The stack's address without prefix ("10.77.0.2")."""
        return self.stack_address.split("/")[0]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Lab:
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in fields})

    @classmethod
    def load(cls, name: str) -> Lab | None:
        """The lab recorded under ``name`` by a previous ``up()``, if any."""
        path = STATE_DIR / f"{name}.json"
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    # ------------------------------------------------------------- commands
    def commands_up(self) -> list[list[str]]:
        """The commands :meth:`up` amounts to (also what netns/lab.sh does)."""
        sysctl = [
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ]
        return [
            ["ip", "netns", "add", self.peer_ns],
            ["ip", "netns", "add", self.stack_ns],
            ["ip", "netns", "exec", self.peer_ns, *sysctl],
            ["ip", "netns", "exec", self.stack_ns, *sysctl],
            ["ip", "link", "add", self.peer_if, "netns", self.peer_ns, "type", "veth",
             "peer", "name", self.stack_if, "netns", self.stack_ns],
            ["ip", "-n", self.peer_ns, "addr", "add",
             f"{self.peer_address}/{self.prefixlen}", "dev", self.peer_if],
            *([] if self.offloads else [
                ["ip", "netns", "exec", self.peer_ns, "ethtool", "-K", self.peer_if,
                 "tx", "off", "tso", "off", "gso", "off"]]),
            ["ip", "-n", self.peer_ns, "link", "set", "lo", "up"],
            ["ip", "-n", self.stack_ns, "link", "set", "lo", "up"],
            ["ip", "-n", self.peer_ns, "link", "set", self.peer_if, "up"],
            ["ip", "-n", self.stack_ns, "link", "set", self.stack_if, "up"],
        ]

    # ------------------------------------------------------------ lifecycle
    def up(self, *, owner_pid: int | None = None) -> Lab:
        """Create (or complete) the lab.  Idempotent; returns ``self``.

        ``owner_pid`` marks a lab that belongs to that process (the pytest
        fixtures pass theirs): :func:`reap_stale` removes it once that
        process is gone, e.g. after a test run was killed.
        """
        _require_root("creating a lab")
        have = set(list_netns())
        for ns in (self.peer_ns, self.stack_ns):
            if ns not in have:
                _ip(["netns", "add", ns])
            _disable_ipv6(ns)
        if not _link_exists(self.peer_ns, self.peer_if):
            if _link_exists(self.stack_ns, self.stack_if):  # half of a broken pair
                _ip(["-n", self.stack_ns, "link", "del", self.stack_if])
            _ip(["link", "add", self.peer_if, "netns", self.peer_ns, "type", "veth",
                 "peer", "name", self.stack_if, "netns", self.stack_ns])
        # the stack side must never carry a kernel address (DESIGN.md trap 1)
        _ip(["-n", self.stack_ns, "addr", "flush", "dev", self.stack_if])
        _ip(["-n", self.peer_ns, "addr", "flush", "dev", self.peer_if])
        _ip(["-n", self.peer_ns, "addr", "add", f"{self.peer_address}/{self.prefixlen}",
             "dev", self.peer_if])
        # both ways, so that up() turns an existing lab into the wanted mode;
        # turning offloads on is best effort (they are on for a new veth)
        try:
            set_offloads(self.peer_ns, self.peer_if, tx_checksum=self.offloads,
                         tso=self.offloads, gso=self.offloads)
        except LabError:
            if not self.offloads:
                raise
        for ns, ifname in ((self.peer_ns, "lo"), (self.stack_ns, "lo"),
                           (self.peer_ns, self.peer_if), (self.stack_ns, self.stack_if)):
            _ip(["-n", ns, "link", "set", ifname, "up"])
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        tmp = STATE_DIR / f".{self.name}.json.tmp"
        record = self.to_dict()
        if owner_pid is not None:
            record["owner_pid"] = owner_pid
        tmp.write_text(json.dumps(record, indent=1) + "\n")
        tmp.replace(STATE_DIR / f"{self.name}.json")
        return self

    def down(self) -> None:
        """Delete both namespaces (which deletes the veth pair).  Idempotent."""
        _require_root("removing a lab")
        have = set(list_netns())
        errors = []
        for ns in (self.peer_ns, self.stack_ns):
            if ns in have:
                proc = _run(["ip", "netns", "del", ns])
                if proc.returncode != 0:
                    errors.append(f"ip netns del {ns}: {proc.stderr.strip()}")
        with contextlib.suppress(FileNotFoundError):
            (STATE_DIR / f"{self.name}.json").unlink()
        if errors:
            raise LabError("; ".join(errors))

    def exists(self) -> bool:
        have = set(list_netns())
        return self.peer_ns in have and self.stack_ns in have

    async def __aenter__(self) -> Lab:
        import asyncio

        await asyncio.get_running_loop().run_in_executor(None, self.up)
        return self

    async def __aexit__(self, *exc: object) -> None:
        import asyncio

        await asyncio.get_running_loop().run_in_executor(None, self.down)

    def __enter__(self) -> Lab:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down()

    # ------------------------------------------------------------- helpers
    def run_in_peer(
        self, argv: Sequence[str], **kwargs: Any
    ) -> subprocess.CompletedProcess[Any]:
        """``subprocess.run(argv)`` inside the peer namespace."""
        return subprocess.run(["ip", "netns", "exec", self.peer_ns, *argv], **kwargs)

    def popen_in_peer(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """``subprocess.Popen(argv)`` inside the peer namespace."""
        return subprocess.Popen(["ip", "netns", "exec", self.peer_ns, *argv], **kwargs)

    def run_in_stack(
        self, argv: Sequence[str], **kwargs: Any
    ) -> subprocess.CompletedProcess[Any]:
        """``subprocess.run(argv)`` inside the stack namespace."""
        return subprocess.run(["ip", "netns", "exec", self.stack_ns, *argv], **kwargs)

    def popen_in_stack(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """``subprocess.Popen(argv)`` inside the stack namespace."""
        return subprocess.Popen(["ip", "netns", "exec", self.stack_ns, *argv], **kwargs)

    def enter_stack_ns(self) -> contextlib.AbstractContextManager[None]:
        """Move the calling *thread* into the stack namespace for the block."""
        return enter_netns(self.stack_ns)

    def enter_peer_ns(self) -> contextlib.AbstractContextManager[None]:
        """Move the calling *thread* into the peer namespace for the block."""
        return enter_netns(self.peer_ns)

    def mac(self, side: str = "stack") -> bytes:
        """The kernel-assigned MAC of the ``"stack"`` or ``"peer"`` veth."""
        ns, ifname = (
            (self.stack_ns, self.stack_if) if side == "stack" else (self.peer_ns, self.peer_if)
        )
        out = _ip(["-n", ns, "-j", "link", "show", "dev", ifname])
        return parse_mac(json.loads(out)[0]["address"])


@contextlib.contextmanager
def enter_netns(ns: str) -> Iterator[None]:
    """setns() the calling thread into ``/run/netns/ns``; restore it afterwards.

    Sockets created inside the block stay in that namespace after it ends.
    Only the network namespace changes (the mount namespace does not, so
    ``/sys/class/net`` still shows the original namespace).  Do not ``await``
    inside the block: other tasks on the loop's thread would run in the
    namespace too.
    """
    try:
        target = os.open(NETNS_DIR / ns, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise LabError(f"network namespace {ns!r} does not exist") from None
    try:
        original = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(target)
            try:
                yield
            finally:
                _setns(original)
        finally:
            os.close(original)
    finally:
        os.close(target)


SIOCETHTOOL = 0x8946
# legacy ethtool commands (linux/ethtool.h), still mapped onto netdev features
ETHTOOL_STXCSUM = 0x17
ETHTOOL_STSO = 0x1F
ETHTOOL_SGSO = 0x24


def set_offloads(ns: str, ifname: str, *, tx_checksum: bool | None = None,
                 tso: bool | None = None, gso: bool | None = None) -> None:
    """``ethtool -K IF tx on|off tso on|off gso on|off`` inside ``ns``, done
    with the SIOCETHTOOL ioctl so the ethtool program is not needed."""
    with enter_netns(ns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with sock:
        for cmd, value in ((ETHTOOL_STXCSUM, tx_checksum), (ETHTOOL_STSO, tso),
                           (ETHTOOL_SGSO, gso)):
            if value is None:
                continue
            data = ctypes.create_string_buffer(struct.pack("II", cmd, int(value)), 8)
            ifr = struct.pack("16sP16x", ifname.encode(), ctypes.addressof(data))
            try:
                fcntl.ioctl(sock.fileno(), SIOCETHTOOL, ifr)
            except OSError as exc:
                raise LabError(f"setting offloads of {ifname} in {ns}: {exc}") from None


CLONE_NEWNET = 0x40000000
_libc: ctypes.CDLL | None = None


def _setns(fd: int) -> None:
    """setns(fd, CLONE_NEWNET) for the calling thread (os.setns is 3.12+)."""
    setns = getattr(os, "setns", None)
    if setns is not None:
        setns(fd, CLONE_NEWNET)
        return
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


# ------------------------------------------------------------------ module API
def list_netns() -> list[str]:
    """Names of the namespaces ``ip netns`` knows about."""
    try:
        return sorted(p.name for p in NETNS_DIR.iterdir())
    except FileNotFoundError:
        return []


def status() -> list[dict[str, Any]]:
    """Every recorded lab with whether its namespaces still exist."""
    out = []
    have = set(list_netns())
    for path in sorted(STATE_DIR.glob("*.json")):
        lab = Lab.load(path.stem)
        if lab is None:
            continue
        info = lab.to_dict()
        info["up"] = lab.peer_ns in have and lab.stack_ns in have
        owner = _owner_pid(path)
        if owner is not None:
            info["owner_pid"] = owner
            info["stale"] = not process_alive(owner)
        out.append(info)
    return out


def reap_stale() -> list[str]:
    """Remove labs whose owner process (``up(owner_pid=...)``) has exited.

    Returns the names removed.  Labs made by ``ustack lab up`` have no owner
    and are never touched.
    """
    removed = []
    for path in sorted(STATE_DIR.glob("*.json")):
        owner = _owner_pid(path)
        if owner is None or process_alive(owner):
            continue
        lab = Lab.load(path.stem)
        if lab is None:
            continue
        with contextlib.suppress(LabError, OSError):
            lab.down()
            removed.append(lab.name)
    return removed


def _owner_pid(path: Path) -> int | None:
    try:
        value = json.loads(path.read_text()).get("owner_pid")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) else None


def have_netns_support() -> tuple[bool, str]:
    """(True, "") when this process can build labs, else (False, reason)."""
    if os.geteuid() != 0:
        return False, "network namespace labs need root (CAP_SYS_ADMIN, CAP_NET_ADMIN)"
    if shutil.which("ip") is None:
        return False, "the 'ip' command (iproute2) is not installed"
    return True, ""


def _require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise PermissionError(
            f"{what} needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN); run it with sudo"
        )
    if shutil.which("ip") is None:
        raise LabError("the 'ip' command (iproute2) is not installed")


def _run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=False)


def _ip(args: Sequence[str]) -> str:
    proc = _run(["ip", *args])
    if proc.returncode != 0:
        raise LabError(f"ip {' '.join(args)}: {proc.stderr.strip() or 'failed'}")
    return proc.stdout


def _link_exists(ns: str, ifname: str) -> bool:
    return _run(["ip", "-n", ns, "link", "show", "dev", ifname]).returncode == 0


def _disable_ipv6(ns: str) -> None:
    """DESIGN.md trap 4: no IPv6 chatter from new veths (skipped without IPv6)."""
    if not Path("/proc/sys/net/ipv6").exists():
        return
    proc = _run(["ip", "netns", "exec", ns, "sysctl", "-qw",
                 "net.ipv6.conf.all.disable_ipv6=1",
                 "net.ipv6.conf.default.disable_ipv6=1"])
    if proc.returncode != 0:
        raise LabError(f"disabling IPv6 in {ns}: {proc.stderr.strip()}")
