"""The diagnostics endpoint protocol, shared by server and client (no asyncio).

Every running stack listens on a Unix stream socket
``<run dir>/stack-<pid>-<n>.sock`` (mode 0600).  The run directory is
``$USTACK_RUN_DIR`` if set, else ``/run/ustack`` when writable (root), else
``$XDG_RUNTIME_DIR/ustack`` or ``/tmp/ustack-<uid>``.

One request per connection: the client sends a JSON object and shuts down its
sending side::

    {"v": 1, "states": <bit mask of STATE_BITS>, "filter": "<ss expression>" | null,
     "detail": true | false, "fields": <n> (optional: only the first n fields)}

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

VERSION = 1
SOCKET_PREFIX = "stack-"
SOCKET_SUFFIX = ".sock"


def run_dir() -> str:
    """Directory holding the endpoints of every running stack."""
    explicit = os.environ.get("USTACK_RUN_DIR")
    if explicit:
        return explicit
    if os.geteuid() == 0 or os.access("/run/ustack", os.W_OK):
        return "/run/ustack"
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
    dirs = ["/run/ustack", run_dir()]
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
