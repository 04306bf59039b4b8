"""The TCP under test, seen from the probe: the Linux kernel or ustack.

Both peers expose the same small application API, driven by a script or a
test: ``listen(port)``, ``connect(port)`` (to the probe), and for the current
connection ``write``, ``read``, ``shutdown`` (half close), ``close`` and
``outcome`` (what the application saw: ``connected``, ``EOF``,
``ECONNRESET``, ``ECONNREFUSED``, ``ETIMEDOUT``, ...).  Reading happens only
when asked for, so data the script sends stays unread in the TCP receive
buffer (closing then sends RST, RFC 2525 section 2.17).

* :class:`KernelPeer`: sockets created inside the lab's peer namespace
  (setns on the calling thread, then used from the asyncio loop), with
  ``sysctl`` applied inside that namespace.  The probe sits on the stack-side
  veth, where the kernel owns no address.
* :class:`UstackPeer`: a :class:`~ustack.stack.Stack` on the stack-side veth;
  the probe sits on the peer-side veth after the kernel's address has been
  removed from it, so no kernel owns either address.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import errno
import os
import socket
import subprocess
from typing import Any

from ustack.lab import Lab, enter_netns, set_offloads

#: the kernel peer's congestion control unless a script or --kernel-cc says otherwise
DEFAULT_KERNEL_CC = "cubic"
TCP_CONGESTION = 13

#: errno names an application may see
OUTCOMES = ("connected", "EOF", "data", "ECONNRESET", "ECONNREFUSED", "ETIMEDOUT",
            "EHOSTUNREACH", "ENETUNREACH", "EPIPE")


def _errname(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError) and getattr(exc, "errno", None) is None:
        return "ETIMEDOUT"
    if isinstance(exc, OSError) and exc.errno is not None:
        return errno.errorcode.get(exc.errno, str(exc.errno))
    return type(exc).__name__


async def _cancel(task: asyncio.Task[None] | None) -> None:
    """Cancel ``task`` (if any) and wait until it has finished."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task


class Peer(abc.ABC):
    """The application side of the TCP under test (see the module docstring)."""

    kind: str
    #: where the probe lives: (namespace, interface, probe address, peer address)
    probe_netns: str
    probe_iface: str
    probe_address: str
    address: str

    def __init__(self) -> None:
        self.connect_task: asyncio.Task[None] | None = None
        self.events: list[str] = []

    @abc.abstractmethod
    async def listen(self, port: int, backlog: int = 8) -> None: ...

    @abc.abstractmethod
    async def connect(self, port: int) -> None:
        """Start an active open to the probe (returns at once)."""

    @abc.abstractmethod
    async def write(self, data: bytes) -> None: ...

    @abc.abstractmethod
    async def read(self, nbytes: int, timeout: float = 2.0) -> bytes:
        """Up to ``nbytes`` (b"" on EOF); raises the OSError the app would see."""

    @abc.abstractmethod
    async def shutdown(self) -> None:
        """shutdown(SHUT_WR): send FIN, keep receiving."""

    @abc.abstractmethod
    async def close(self) -> None:
        """close() the current connection (RST when unread data is queued)."""

    @abc.abstractmethod
    async def write_urgent(self, data: bytes) -> None:
        """send(data, MSG_OOB): the last byte is urgent (RFC 9293 3.8.5, RFC 6093)."""

    @abc.abstractmethod
    async def enable_keepalive(self) -> None:
        """SO_KEEPALIVE on the sockets created from now on (RFC 1122 4.2.3.6)."""

    @abc.abstractmethod
    async def set_option(self, name: str, value: str) -> None:
        """A kernel sysctl (``net.ipv4.tcp_timestamps``) or its ustack equivalent."""

    async def set_module_param(self, module: str, name: str, value: str) -> None:
        """``echo V > /sys/module/M/parameters/P`` (host-global on Linux)."""
        from ustack.probe.syscalls import Unsupported

        raise Unsupported(f"unsupported on {self.kind}: module parameter {module}.{name}")

    @abc.abstractmethod
    async def has_connection(self, timeout: float) -> bool: ...

    @abc.abstractmethod
    def socket_api(self) -> Any:
        """A :class:`~ustack.probe.syscalls.SocketApi` for packetdrill's system calls."""

    @abc.abstractmethod
    async def settle(self, probe: Any, timeout: float = 1.0) -> None:
        """Return once the peer has processed every frame ``probe`` sent so
        far (an application action after a ``<`` line must follow it)."""

    async def outcome(self, timeout: float = 3.0, *, want: str = "") -> str:
        """What the application sees next: the connect result if a connect is
        pending; else ``connected`` when asked for it and a connection exists;
        else the result of reading: ``data`` (only when ``want`` is "data"),
        ``EOF`` or the errno name.  Readable data is consumed on the way."""
        if self.connect_task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self.connect_task), timeout)
            except TimeoutError:
                if not self.connect_task.done():
                    return "pending"
            except BaseException:  # the task's own error, read below
                pass
            task, self.connect_task = self.connect_task, None
            exc = task.exception()
            return "connected" if exc is None else _errname(exc)
        if not await self.has_connection(timeout):
            return "no-connection"
        if want == "connected":
            return "connected"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                data = await self.read(65536, max(0.0, deadline - loop.time()))
            except TimeoutError as exc:  # our wait ran out, or the socket's ETIMEDOUT
                return "ETIMEDOUT" if exc.errno == errno.ETIMEDOUT else "pending"
            except OSError as exc:
                return _errname(exc)
            if not data:
                return "EOF"
            if want == "data":
                return "data"

    @abc.abstractmethod
    async def aclose(self) -> None: ...


# ---------------------------------------------------------------- kernel
class KernelPeer(Peer):
    """Linux in the lab's peer namespace (address 10.77.0.1)."""

    kind = "kernel"

    def __init__(self, lab: Lab, congestion: str = DEFAULT_KERNEL_CC, *,
                 segment_offload: bool = False) -> None:
        super().__init__()
        self.lab = lab
        #: congestion control pinned on every socket (TCP_CONGESTION; the host
        #: default here is bbr, DESIGN.md trap 7); a script's
        #: ``net.ipv4.tcp_congestion_control`` sysctl changes it
        self.congestion = congestion
        self._api: Any = None
        self._snmp: Any = None
        self._modparams: Any = None
        self._baseline: tuple[int, int] | None = None
        self.address = lab.peer_address
        self.probe_netns = lab.stack_ns
        self.probe_iface = lab.stack_if
        self.probe_address = lab.stack_ip
        self.loop = asyncio.get_running_loop()
        self.listener: socket.socket | None = None
        self.conn: socket.socket | None = None
        self._accept_task: asyncio.Task[None] | None = None
        self._conn_ready = asyncio.Event()
        self._sockets: list[socket.socket] = []
        self.keepalive = False
        # real MSS-sized segments on the wire, not 64 KB TSO super-frames;
        # packetdrill scripts expect TSO super-segments (its TUN device has
        # TSO): segment_offload keeps them (the probe receives them whole)
        self.segment_offload = segment_offload
        set_offloads(lab.peer_ns, lab.peer_if, tso=segment_offload, gso=segment_offload)

    def _socket(self) -> socket.socket:
        with enter_netns(self.lab.peer_ns):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        if self.congestion:
            sock.setsockopt(socket.IPPROTO_TCP, TCP_CONGESTION, self.congestion.encode())
        if self.keepalive:  # accepted sockets inherit it from the listener
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        self._sockets.append(sock)
        return sock

    async def enable_keepalive(self) -> None:
        self.keepalive = True

    async def write_urgent(self, data: bytes) -> None:
        conn = await self._need_conn()
        conn.send(data, socket.MSG_OOB)

    async def set_option(self, name: str, value: str) -> None:
        if name == "net.ipv4.tcp_congestion_control":
            self.congestion = value.strip()
            if self._api is not None:
                self._api.congestion = self.congestion
        # /proc/sys/net shows the namespace of the thread that opens it: write
        # it from inside the peer namespace (no sysctl process per value)
        path = "/proc/sys/" + name.replace(".", "/")
        try:
            with enter_netns(self.lab.peer_ns), open(path, "w") as f:  # noqa: PTH123
                f.write(" ".join(value.split()) + "\n")
        except OSError as exc:
            reason = "no such sysctl in a network namespace" if isinstance(
                exc, FileNotFoundError) else (exc.strerror or str(exc))
            raise ValueError(f"sysctl {name}={value} in {self.lab.peer_ns}: {reason}") from None

    async def set_module_param(self, module: str, name: str, value: str) -> None:
        """``echo V > /sys/module/M/parameters/P``: host-global (every
        namespace's sockets see it), so written under an exclusive lock and
        put back when the peer closes (ustack.probe.modparams)."""
        if self._modparams is None:
            from ustack.probe.modparams import ModuleParams

            self._modparams = ModuleParams()
        # in this (the main) thread: its SIGTERM handler must be installable;
        # the wait for the lock happens before the script's first event
        self._modparams.set(module, name, value)

    async def set_route(self, dest: str, options: list[str]) -> None:
        """``ip route change REMOTE ... advmss N mtu lock M``: a host route to
        the probe through the peer veth with those attributes."""
        target = self.probe_address if dest in ("192.0.2.1", self.probe_address) else None
        if target is None:
            from ustack.probe.syscalls import Unsupported

            raise Unsupported(f"unsupported: a route to {dest} (only to the remote, 192.0.2.1)")
        proc = await asyncio.to_thread(
            self.lab.run_in_peer, ["ip", "route", "replace", f"{target}/32", "dev",
                                   self.lab.peer_if, *options], capture_output=True, text=True)
        if proc.returncode != 0:
            raise ValueError(f"ip route replace {target} {' '.join(options)}: "
                             f"{proc.stderr.strip()}")

    async def set_segment_offload(self, *, tso: bool | None, gso: bool | None) -> None:
        """``ethtool -K tun0 tso off gso off`` of a packetdrill script."""
        await asyncio.to_thread(set_offloads, self.lab.peer_ns, self.lab.peer_if,
                                tso=tso, gso=gso)

    def socket_api(self) -> Any:
        if self._api is None:
            from ustack.probe.api_kernel import KernelSocketApi

            self._api = KernelSocketApi(self.lab.peer_ns, self.address, self.probe_address,
                                        self.congestion)
        return self._api

    async def flush_tcp_metrics(self) -> None:
        await asyncio.to_thread(self.lab.run_in_peer, ["ip", "tcp_metrics", "flush", "all"],
                                capture_output=True)

    def _counts(self) -> tuple[int, int]:
        """Tcp InSegs and Icmp InMsgs of the peer namespace (/proc/net/snmp,
        opened inside it: the file shows the opener's namespace)."""
        if self._snmp is None:
            with enter_netns(self.lab.peer_ns):
                self._snmp = open("/proc/thread-self/net/snmp", "rb", buffering=0)  # noqa: SIM115
        text = os.pread(self._snmp.fileno(), 65536, 0).decode()
        tables: dict[str, dict[str, int]] = {}
        lines = text.splitlines()
        for head, values in zip(lines[::2], lines[1::2], strict=False):
            name, _, keys = head.partition(":")
            tables[name] = dict(zip(keys.split(), map(int, values.split(":")[1].split()),
                                    strict=False))
        return tables["Tcp"]["InSegs"], tables["Icmp"]["InMsgs"]

    def learn_probe_mac(self, mac: bytes) -> None:
        """A permanent neighbour entry for the probe, so that no ARP round
        trip (answered from Python) delays the kernel's first segment."""
        self.lab.run_in_peer(["ip", "neigh", "replace", self.probe_address, "lladdr",
                              mac.hex(":"), "dev", self.lab.peer_if, "nud", "permanent"],
                             capture_output=True)

    def mark_baseline(self, probe: Any) -> None:
        """Counters as they stand when the probe has sent nothing (yet)."""
        segs, msgs = self._counts()
        self._baseline = (segs, msgs)
        self._baseline_sent = probe.frames_sent

    async def settle(self, probe: Any, timeout: float = 1.0) -> None:
        """Until the namespace's TCP and ICMP input counters have grown by the
        number of frames the probe sent (the kernel usually processes a frame
        within the probe's send(); under load softirq work may be deferred)."""
        if self._baseline is None:
            return
        want = probe.frames_sent - self._baseline_sent
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            segs, msgs = self._counts()
            if (segs - self._baseline[0]) + (msgs - self._baseline[1]) >= want:
                break
            if loop.time() > deadline:
                break
            await asyncio.sleep(0.0005)
        await asyncio.sleep(0)  # readiness callbacks of the loop

    async def listen(self, port: int, backlog: int = 8) -> None:
        sock = self._socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.address, port))
        sock.listen(backlog)
        self.listener = sock
        self._accept_task = self.loop.create_task(self._accept_loop(sock))

    async def _accept_loop(self, sock: socket.socket) -> None:
        while True:
            conn, _ = await self.loop.sock_accept(sock)
            conn.setblocking(False)
            self._sockets.append(conn)
            self.conn = conn
            self.events.append("accepted")
            self._conn_ready.set()

    async def connect(self, port: int) -> None:
        sock = self._socket()
        self.conn = sock

        async def run() -> None:
            await self.loop.sock_connect(sock, (self.probe_address, port))
            self._conn_ready.set()

        self.connect_task = self.loop.create_task(run())
        await asyncio.sleep(0)

    async def has_connection(self, timeout: float) -> bool:
        if self.conn is not None and self._conn_ready.is_set():
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._conn_ready.wait(), timeout)
        return self.conn is not None and self._conn_ready.is_set()

    async def _need_conn(self, timeout: float = 3.0) -> socket.socket:
        if not await self.has_connection(timeout) or self.conn is None:
            raise RuntimeError("the kernel peer has no connection (none accepted/connected)")
        return self.conn

    async def write(self, data: bytes) -> None:
        conn = await self._need_conn()
        await self.loop.sock_sendall(conn, data)

    async def read(self, nbytes: int, timeout: float = 2.0) -> bytes:
        conn = await self._need_conn()
        return await asyncio.wait_for(self.loop.sock_recv(conn, nbytes), timeout)

    async def shutdown(self) -> None:
        conn = await self._need_conn()
        conn.shutdown(socket.SHUT_WR)

    async def close(self) -> None:
        if self.connect_task is not None and not self.connect_task.done() \
                and self.conn is not None:
            conn = self.conn  # close() during the active open
            self.connect_task.cancel()
            self.connect_task = None
        else:
            conn = await self._need_conn()
        self.conn = None
        self._conn_ready.clear()
        conn.close()

    async def aclose(self) -> None:
        await _cancel(self._accept_task)
        await _cancel(self.connect_task)
        for sock in self._sockets:
            sock.close()
        if self._api is not None:
            self._api.close_all()
        if self._snmp is not None:
            self._snmp.close()
        if self._modparams is not None:
            self._modparams.restore()


# ---------------------------------------------------------------- ustack
class _AppProtocol(asyncio.Protocol):
    """An application that reads only when asked (reading paused otherwise)."""

    def __init__(self, peer: UstackPeer) -> None:
        self.peer = peer
        self.transport: Any = None
        self.buffer = bytearray()
        self.eof = False
        self.error: BaseException | None = None
        self.changed = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        transport.pause_reading()  # type: ignore[attr-defined]
        self.peer._on_connection(self)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self.transport.pause_reading()
        self.changed.set()

    def eof_received(self) -> bool:
        self.eof = True
        self.changed.set()
        return True  # keep our half open (half close)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.error = exc
        self.eof = True
        self.changed.set()


#: sysctl names and the TcpConfig field each maps to (converted to the
#: field's type; "0" is False for the switches)
USTACK_SYSCTLS = {
    "net.ipv4.tcp_timestamps": "timestamps",
    "net.ipv4.tcp_sack": "sack",
    "net.ipv4.tcp_window_scaling": "window_scaling",
    "net.ipv4.tcp_syn_retries": "syn_retries",
    "net.ipv4.tcp_syn_linear_timeouts": "syn_linear_timeouts",
    "net.ipv4.tcp_synack_retries": "synack_retries",
    "net.ipv4.tcp_keepalive_time": "keepalive_idle",
    "net.ipv4.tcp_keepalive_intvl": "keepalive_interval",
    "net.ipv4.tcp_keepalive_probes": "keepalive_count",
    "net.ipv4.tcp_fin_timeout": "fin_wait2",
    "net.ipv4.tcp_retries2": "retries2",
    "net.ipv4.tcp_reordering": "dupack_threshold",
    "net.ipv4.tcp_slow_start_after_idle": "slow_start_after_idle",
    "net.ipv4.tcp_orphan_retries": "orphan_retries",
}

#: sysctls packetdrill's defaults.sh sets that name mechanisms ustack does not
#: have (FACK, tcp_tso_win_divisor, Fast Open, ECN, syncookies 2, notsent_lowat
#: as a sysctl): accepted without effect; docs/conformance.md lists them.
#: (Sysctls with a ``TcpConfig`` knob of the same name, such as tcp_recovery,
#: tcp_frto, tcp_early_retrans, tcp_dsack, tcp_pacing_*_ratio and
#: tcp_min_tso_segs, are applied to that knob before this table is consulted.)
USTACK_NO_EFFECT: dict[str, frozenset[str] | None] = {
    # any value: mechanisms ustack does not have
    "net.ipv4.tcp_fack": None,
    "net.ipv4.tcp_tso_win_divisor": None,
    "net.ipv4.tcp_fastopen_key": None,
    # only the value that matches what ustack does
    "net.ipv4.tcp_ecn": frozenset({"0"}),
    "net.ipv4.tcp_ecn_option": frozenset({"0", "1", "2"}),
    "net.ipv4.tcp_notsent_lowat": frozenset({"4294967295", "-1"}),
    "net.ipv4.tcp_fastopen": frozenset({"0", "0x70403", "1"}),
    "net.ipv4.tcp_syncookies": frozenset({"0", "1"}),
}


class UstackPeer(Peer):
    """A ustack :class:`~ustack.stack.Stack` on the stack-side veth (10.77.0.2)."""

    kind = "ustack"

    def __init__(self, lab: Lab, stack: Any) -> None:
        super().__init__()
        self.lab = lab
        self.stack = stack
        self.address = lab.stack_ip
        self.probe_netns = lab.peer_ns
        self.probe_iface = lab.peer_if
        self.probe_address = lab.peer_address
        self.loop = asyncio.get_running_loop()
        self.servers: list[Any] = []
        self.app: _AppProtocol | None = None
        self._conn_ready = asyncio.Event()
        self._api: Any = None
        #: frames delivered to the stack's receive path, by source MAC
        self.rx_by_mac: dict[bytes, int] = {}
        self._count_frames()

    def _count_frames(self) -> None:
        """Count every IPv4 frame the device hands to the stack's IP layer, by
        source MAC, so that :meth:`settle` knows when the probe's have been
        processed (the receive path runs synchronously in that call)."""
        counts = self.rx_by_mac

        def observe(frames: Any) -> None:
            for item in frames:
                frame = item[0] if isinstance(item, tuple) else getattr(item, "frame", item)
                if frame[12:14] == b"\x08\x00":  # IPv4 only: the probe's ARP is not counted
                    mac = bytes(frame[6:12])
                    counts[mac] = counts.get(mac, 0) + 1

        self.stack.rx_observer = observe

    async def settle(self, probe: Any, timeout: float = 1.0) -> None:
        """Until the stack's receive path has taken every frame the probe sent
        (both share this event loop: yield until the device's reader ran),
        then drain the TCP table's pending output and events now."""
        mac = bytes(probe.endpoint.mac)
        want = probe.frames_sent
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.rx_by_mac.get(mac, 0) < want and loop.time() < deadline:
            await asyncio.sleep(0)
            if self.rx_by_mac.get(mac, 0) < want:
                await asyncio.sleep(0.0005)
        table = self.stack.tcp
        table.flush_now()
        await asyncio.sleep(0)

    async def set_segment_offload(self, *, tso: bool | None, gso: bool | None) -> None:
        """``ethtool -K tun0 tso off gso off``: exact MSS-sized segments from
        new connections (TcpConfig.max_segment 0)."""
        if tso is False or gso is False:
            table = self.stack.tcp
            table.config = table.config.with_(max_segment=0)

    def socket_api(self) -> Any:
        if self._api is None:
            from ustack.probe.api_ustack import UstackSocketApi

            self._api = UstackSocketApi(self.stack, self.probe_address)
        return self._api

    @classmethod
    async def start(cls, lab: Lab, *, offload: bool = False, **stack_kwargs: Any
                    ) -> UstackPeer:
        """Remove the kernel address from the peer veth (the probe takes it
        over), then start a Stack on the stack-side veth: exact wire by
        default, GSO super-segments (like Linux TSO) with ``offload``."""
        from ustack.stack import Stack

        await asyncio.to_thread(subprocess.run, ["ip", "-n", lab.peer_ns, "addr", "flush",
                                                 "dev", lab.peer_if], check=True)
        with enter_netns(lab.stack_ns):
            from ustack.link.af_packet import AfPacketDevice

            if offload:  # socket reads: a ring slot could not hold a GSO frame
                device = AfPacketDevice.open(lab.stack_if, vnet_hdr=True, rx_ring=False)
            else:
                device = AfPacketDevice.open(lab.stack_if)
        import inspect

        if "offload" in inspect.signature(Stack.start).parameters:
            stack_kwargs.setdefault("offload", offload)
        stack = await Stack.start(iface=lab.stack_if, address=lab.stack_address, device=device,
                                  **stack_kwargs)
        return cls(lab, stack)

    def _on_connection(self, app: _AppProtocol) -> None:
        self.app = app
        self.events.append("connected")
        self._conn_ready.set()

    def _tcp_config(self) -> Any:
        return getattr(self.stack, "tcp_config", None)

    async def set_option(self, name: str, value: str) -> None:
        """Map a Linux sysctl onto the TcpConfig new connections are made with
        (:data:`USTACK_SYSCTLS`, plus tcp_rmem/tcp_wmem and
        tcp_congestion_control); sysctls in :data:`USTACK_NO_EFFECT` have no
        mechanism in ustack and are accepted; others raise Unsupported."""
        from ustack.probe.syscalls import Unsupported

        table = self.stack.tcp
        config = table.config
        if name == "net.ipv4.tcp_rmem":  # "min default max"
            parts = [int(v) for v in value.split()]
            # Linux: the initial window from the default, the window scale from
            # the largest buffer (tcp_select_initial_window)
            space, wscale = parts[-1], 0
            while space > 65535 and wscale < 14:
                space >>= 1
                wscale += 1
            table.config = config.with_(recv_buffer=parts[1] if len(parts) > 1 else parts[0],
                                        window_scale=wscale)
            return
        if name == "net.ipv4.tcp_wmem":
            parts = [int(v) for v in value.split()]
            table.config = config.with_(send_buffer=parts[1] if len(parts) > 1 else parts[0])
            return
        if name == "net.ipv4.tcp_notsent_lowat" and hasattr(config, "notsent_lowat"):
            lowat = int(value, 0)
            # Linux's "unlimited" (UINT_MAX) is ustack's 0 (off)
            table.config = config.with_(notsent_lowat=0 if lowat >= 1 << 31 else lowat)
            return
        if name == "net.ipv4.tcp_congestion_control":
            from ustack.tcp import congestion

            names = getattr(congestion, "_REGISTRY", {})
            if value.strip() not in names:
                raise Unsupported(f"unsupported on ustack: congestion control {value!r} "
                                  f"(has {', '.join(sorted(names)) or 'none'})")
            table.config = config.with_(congestion=value.strip())
            return
        short = name.rsplit(".", 1)[-1]
        if name not in USTACK_SYSCTLS and hasattr(config, short):
            field_ = short  # TcpConfig knobs named after the sysctl (tcp_recovery, ...)
            current_ = getattr(config, field_)
            value_: object = (value.strip() not in ("0", "false")) if isinstance(
                current_, bool) else int(value, 0) if isinstance(current_, int) else (
                float(value) if isinstance(current_, float) else value.strip())
            table.config = config.with_(**{field_: value_})
            return
        if name in USTACK_NO_EFFECT:
            allowed = USTACK_NO_EFFECT[name]
            if allowed is None or value.strip() in allowed:
                return
            raise Unsupported(f"unsupported on ustack: sysctl {name}={value}")
        field = USTACK_SYSCTLS.get(name)
        if field is None:
            raise Unsupported(f"unsupported on ustack: sysctl {name} (no TcpConfig "
                              "equivalent)")
        current = getattr(config, field)
        converted: object
        if isinstance(current, bool):
            converted = value.strip() not in ("0", "false")
        elif isinstance(current, int):
            converted = int(value, 0)
        else:
            converted = float(value)
        table.config = config.with_(**{field: converted})

    async def enable_keepalive(self) -> None:
        table = self.stack.tcp
        table.config = table.config.with_(keepalive=True)

    async def set_module_param(self, module: str, name: str, value: str) -> None:
        """``echo V > /sys/module/M/parameters/P`` mapped onto ustack.  Only
        tcp_cubic's HyStart switches have a counterpart: ustack's CUBIC runs
        HyStart++ (RFC 9406, delay-based) in the initial slow start, so
        ``hystart=1`` and a ``hystart_detect`` that includes HYSTART_DELAY
        (2 or 3, Linux's default) are what it does already; other values
        (no delay detection, ACK-train only) and other parameters have no
        TcpConfig knob and are unsupported."""
        from ustack.probe.syscalls import Unsupported
        from ustack.tcp.congestion.cubic import Cubic

        try:
            number = int(value, 0)
        except ValueError:
            number = -1
        if module == "tcp_cubic" and Cubic.hystart and (
                (name == "hystart" and number == 1)
                or (name == "hystart_detect" and number in (2, 3))):
            return
        raise Unsupported(f"unsupported on ustack: module parameter {module}.{name}={value} "
                          "(ustack's CUBIC runs HyStart++ with delay detection; no TcpConfig "
                          "knob for this)")

    async def write_urgent(self, data: bytes) -> None:
        """The transport's ``write_urgent`` (send(data, MSG_OOB))."""
        app = await self._need_app()
        if app.error is not None:
            raise app.error
        app.transport.write_urgent(data)

    async def listen(self, port: int, backlog: int = 8) -> None:
        from ustack.streams import create_server

        server = await create_server(lambda: _AppProtocol(self), port=port, stack=self.stack,
                                     backlog=backlog)
        self.servers.append(server)

    async def connect(self, port: int) -> None:
        from ustack.streams import create_connection

        async def run() -> None:
            await create_connection(lambda: _AppProtocol(self), self.probe_address, port,
                                    stack=self.stack)

        self.connect_task = self.loop.create_task(run())
        await asyncio.sleep(0)

    async def has_connection(self, timeout: float) -> bool:
        if self.app is not None:
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._conn_ready.wait(), timeout)
        return self.app is not None

    async def _need_app(self, timeout: float = 3.0) -> _AppProtocol:
        if not await self.has_connection(timeout) or self.app is None:
            raise RuntimeError("the ustack peer has no connection (none accepted/connected)")
        return self.app

    async def write(self, data: bytes) -> None:
        app = await self._need_app()
        if app.error is not None:
            raise app.error
        app.transport.write(data)

    async def read(self, nbytes: int, timeout: float = 2.0) -> bytes:
        app = await self._need_app()

        async def wait() -> bytes:
            while not app.buffer:
                if app.error is not None:
                    raise app.error
                if app.eof:
                    return b""
                app.changed.clear()
                app.transport.resume_reading()
                await app.changed.wait()
            out = bytes(app.buffer[:nbytes])
            del app.buffer[:nbytes]
            return out

        return await asyncio.wait_for(wait(), timeout)

    async def shutdown(self) -> None:
        app = await self._need_app()
        app.transport.write_eof()

    async def close(self) -> None:
        if self.connect_task is not None and not self.connect_task.done():
            self.connect_task.cancel()  # close() during the active open
            self.connect_task = None
            return
        app = await self._need_app()
        self.app = None
        self._conn_ready.clear()
        app.transport.close()

    async def aclose(self) -> None:
        await _cancel(self.connect_task)
        if self._api is not None:
            self._api.close_all()
        for server in self.servers:
            server.close()
        with contextlib.suppress(Exception):
            await self.stack.close()
