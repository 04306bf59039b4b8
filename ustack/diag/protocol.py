"""The diagnostics endpoint protocol, shared by server and client (no asyncio).

Every running stack listens on a Unix stream socket
``<run dir>/stack-<pid>-<n>.sock`` (mode 0600).  The run directory is
``$USTACK_RUN_DIR`` if set, else ``/run/ustack`` when writable (root), else
``$XDG_RUNTIME_DIR/ustack`` or ``/tmp/ustack-<uid>``.

Trust: a stack creates its run directory with mode 0700 (``/run/ustack``:
0755, so that other users learn that root's stacks exist) and refuses one
that is a symbolic link, is not its own, or is group/world-writable
(:func:`check_dir`): another user could otherwise swap the socket.  The client
applies the same test (accepting root's directories too) and checks the
server's uid with ``SO_PEERCRED`` before it reads a reply.

One request per connection: the client sends a JSON object and shuts down its
sending side::

    {"v": 1, "states": <bit mask of STATE_BITS>, "filter": "<ss expression>" | null,
     "detail": true | false, "fields": <n> (optional: only the first n fields)}

with optional ``"netid": "tcp" | "udp" | "all"`` (default tcp; ``"all"`` is
answered ``(1, [field names], [tcp rows], [udp rows])``: one request for
both tables), or ``{"v": 1, "type": "counters"}`` for the stack's counters (``ustack nstat``),
answered ``(1, "counters", {name: int})``.  ``"columns": true`` (with
``"netid"`` tcp or udp) asks for the rows transposed: ``(1, "columns",
[field names], [one list of values per field])``, which neither end has to
build a tuple per socket for (``ustack ss -tan`` over 100,000 connections); a
stack that predates it ignores the key and answers rows.

The server answers with one ``marshal`` blob and closes::

    (1, [field names], [row tuples])        or        (1, "error", "message")

Rows carry the fields of :class:`~ustack.diag.records.SocketRecord` named in
the header (only the basic prefix when ``detail`` is false, only the first
``fields`` when given: the default table needs 7).  ``marshal`` is
used because it decodes 50,000 rows an order of magnitude faster than JSON;
both ends run the same Python (the stack and ``ustack ss`` share an install).
"""

from __future__ import annotations

import os
import socket
import stat
import struct

VERSION = 1
ROOT_RUN_DIR = "/run/ustack"


class UnsafeDirectory(PermissionError):
    """A run directory another user could tamper with."""
SOCKET_PREFIX = "stack-"
SOCKET_SUFFIX = ".sock"


def run_dir() -> str:
    """Directory holding the endpoints of every running stack."""
    explicit = os.environ.get("USTACK_RUN_DIR")
    if explicit:
        return explicit
    if os.geteuid() == 0 or os.access(ROOT_RUN_DIR, os.W_OK):
        return ROOT_RUN_DIR
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return os.path.join(runtime, "ustack")
    return f"/tmp/ustack-{os.getuid()}"


def search_dirs() -> list[str]:
    """Where clients look: ``$USTACK_RUN_DIR`` alone if set, else the root
    directory and this user's own (a stack run without root lives there)."""
    explicit = os.environ.get("USTACK_RUN_DIR")
    if explicit:
        return [explicit]
    dirs = [ROOT_RUN_DIR, run_dir()]
    return list(dict.fromkeys(dirs))


def endpoint_name(pid: int, serial: int) -> str:
    return f"{SOCKET_PREFIX}{pid}-{serial}{SOCKET_SUFFIX}"


def pid_of(name: str) -> int | None:
    """The pid encoded in an endpoint file name, or None if it is not one."""
    if not (name.startswith(SOCKET_PREFIX) and name.endswith(SOCKET_SUFFIX)):
        return None
    middle = name[len(SOCKET_PREFIX) : -len(SOCKET_SUFFIX)]
    pid_text = middle.split("-", 1)[0]
    return int(pid_text) if pid_text.isdigit() else None


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_dir(directory: str, *, trusted: frozenset[int] | None = None) -> None:
    """Raise :class:`UnsafeDirectory` unless ``directory`` is a real directory
    (not a symbolic link) owned by a ``trusted`` uid (default: this process's
    effective uid) and writable by its owner alone.  FileNotFoundError when
    it does not exist."""
    trusted = frozenset({os.geteuid()}) if trusted is None else trusted
    st = os.lstat(directory)
    if stat.S_ISLNK(st.st_mode):
        raise UnsafeDirectory(f"{directory} is a symbolic link: refusing it (remove it)")
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeDirectory(f"{directory} is not a directory: refusing it (remove it)")
    if st.st_uid not in trusted:
        raise UnsafeDirectory(
            f"{directory} is owned by uid {st.st_uid}, not by uid {os.geteuid()}: "
            "refusing it (another user created it; remove it)"
        )
    if st.st_mode & 0o022:
        raise UnsafeDirectory(
            f"{directory} is group- or world-writable (mode {stat.S_IMODE(st.st_mode):04o}): "
            "refusing it (chmod 0700 it or remove it)"
        )


def client_trusted_uids() -> frozenset[int]:
    """Whose directories and servers a client believes: its own and root's."""
    return frozenset({os.geteuid(), 0})


def prepare_dir(directory: str) -> None:
    """Create the run directory (mode 0700; 0755 for ``/run/ustack``) unless
    it exists, then :func:`check_dir` it: raises UnsafeDirectory for one
    another user could tamper with."""
    parent = os.path.dirname(os.path.abspath(directory))
    os.makedirs(parent, exist_ok=True)
    mode = 0o755 if os.path.abspath(directory) == ROOT_RUN_DIR else 0o700
    try:
        os.mkdir(directory, mode)
    except FileExistsError:
        pass
    else:
        os.chmod(directory, mode)  # the umask must not widen or narrow it
    check_dir(directory)


_UCRED = struct.Struct("3i")


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end of a Unix socket (SO_PEERCRED)."""
    data = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    return int(_UCRED.unpack(data)[1])
