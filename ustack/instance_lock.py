"""One stack per interface and address, across processes.

Two stacks answering ARP for the same address on the same interface reset
each other's connections (each sees the other's segments as unknown and
sends RST).  :func:`acquire` claims the (network namespace, interface index,
IPv4 address) triple by binding a listening abstract Unix socket named after
it; the kernel releases the name when the process dies, so a crashed stack
never leaves a stale lock.  A second claim connects to the name and reads
the holder's pid from ``SO_PEERCRED``.

The abstract socket namespace belongs to the network namespace the socket
is created in; the interface lives there too (Stack.start runs where it can
open the interface), and the namespace's inode is part of the name anyway.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import struct

_CRED = struct.Struct("3i")


class StackInUseError(OSError):
    """Another stack already runs on this interface with this address."""

    def __init__(self, iface: str, address: str, pid: int | None) -> None:
        who = f"pid {pid}" if pid else "another process"
        super().__init__(errno.EADDRINUSE,
                         f"a ustack stack already runs on {iface} with address {address} "
                         f"({who}); stop it first or use another address")
        self.pid = pid
        self.iface = iface
        self.address = address


def netns_inode() -> int:
    """The inode of this process's network namespace (what ``ip netns identify``
    compares)."""
    try:
        return os.stat("/proc/self/ns/net").st_ino
    except OSError:
        return 0


def lock_name(iface: str, address: str) -> bytes:
    """The abstract socket name for (netns, ifindex, address)."""
    try:
        index = socket.if_nametoindex(iface)
    except OSError:
        index = 0
    return f"\0ustack-stack/{netns_inode()}/{index}/{address}".encode()


class InstanceLock:
    """A held claim; :meth:`release` (or process exit) frees it."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock: socket.socket | None = sock

    def release(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    @property
    def held(self) -> bool:
        return self._sock is not None


def acquire(iface: str, address: str) -> InstanceLock:
    """Claim ``address`` on ``iface`` for this process, or raise
    :class:`StackInUseError` naming the pid of the stack that holds it."""
    name = lock_name(iface, address)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.bind(name)
        sock.listen(64)
    except OSError as exc:
        sock.close()
        if exc.errno != errno.EADDRINUSE:
            raise
        raise StackInUseError(iface, address, holder_pid(name)) from None
    return InstanceLock(sock)


def holder_pid(name: bytes) -> int | None:
    """The pid of the process listening on the abstract socket ``name``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        with contextlib.suppress(OSError):
            probe.connect(name)
            pid, _uid, _gid = _CRED.unpack(
                probe.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size))
            return pid or None
    return None


__all__ = ["StackInUseError", "InstanceLock", "acquire", "holder_pid", "lock_name"]
