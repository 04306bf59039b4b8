"""The Stack: one device, one IPv4 address, the net layer and (when the TCP
layer is installed) the TCP connection table, bound to the running asyncio
loop.

    async with await Stack.start(iface="veth-us", address="10.77.0.2/24") as stack:
        ...

Upper layers attach through :attr:`Stack.ip` (an
:class:`~ustack.net.ipv4.IpLayer`): ``stack.ip.register(protocol, handler)``,
``stack.ip.register_error(protocol, handler)``, ``stack.ip.send(dst,
protocol, payload)``.  See docs/architecture.md, "Stack".
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import os
import struct
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ustack import stack_identity, streams
from ustack.addressing import parse_interface as parse_interface  # re-exported
from ustack.driver.port import TcpPort, port_of
from ustack.driver.rx_batch import BatchReceiver
from ustack.driver.tcp_table import TcpTable, _fine_clock
from ustack.heap import keep_heap_top
from ustack.instance_lock import acquire
from ustack.link.af_packet import TP_STATUS_USER
from ustack.link.base import Device, ReceivedFrame
from ustack.names import Resolver
from ustack.net.arp import ArpCache
from ustack.net.icmp import IpError
from ustack.net.ipv4 import IpLayer
from ustack.net.udp import UdpLayer
from ustack.reach import via_stack
from ustack.wire.ethernet import format_mac, parse_mac
from ustack.wire.icmp import IcmpEcho
from ustack.wire.ipv4 import PROTO_ICMP, PROTO_TCP, PROTO_UDP, format_address, parse_address

if TYPE_CHECKING:
    from ustack.link.af_packet import AfPacketDevice
    from ustack.streams import ClientConnectedCallback, Server
    from ustack.tcp.config import TcpConfig

log = logging.getLogger("ustack.stack")

#: a receive-ring slot's tp_status word (its TP_STATUS_USER bit: a frame for us)
_SLOT_STATUS = struct.Struct("<I")


class Stack:
    """A userspace TCP/IP stack on one interface.  Create with :meth:`start`."""

    #: SYNs read per wakeup of the SYN channel (``start(syn_channel=True)``)
    #: without the batch path, and SYNs of the batch path's wakeup that take
    #: the plain path (another shape, an on-link source): more answers more
    #: of a flood's SYNs, less leaves more of the loop to established
    #: connections
    SYN_BUDGET = 64
    #: the batch path's (numpy present) share of the stack thread's CPU
    #: while other work waits (ustack.driver.syn_batch.CpuShare): a wakeup
    #: first reads the main device; if frames came in there since the
    #: previous wakeup it may spend SYN_CPU_SHARE / (1 - SYN_CPU_SHARE) of
    #: the CPU that went to other work since then (less any overspending,
    #: none at all below half a quantum), else SYN_CPU_QUANTUM seconds (all
    #: of the CPU when there is nothing else to do).  0.2: reading and
    #: sorting every SYN of a 120k/s flood already takes ~12 % of the
    #: stack's CPU (bench/synflood.py, C steps; 0.3 cost the bulk transfer
    #: too much, 0.15 left too little to answer a client's SYN quickly)
    SYN_CPU_SHARE = 0.1
    SYN_CPU_QUANTUM = 0.0005
    #: SYNs read per wakeup by the batch path: those over its CPU allowance
    #: are dropped by us rather than by the kernel, so a client's
    #: retransmitted SYN, or one from a source with a connection lately,
    #: can be told from the flood and answered first
    SYN_READ = 16384
    #: CPU seconds a frame on the plain path costs, to fit SYN_BUDGET into
    #: a wakeup's allowance
    SYN_PLAIN_COST = 100e-6
    #: slots of the SYN channel's receive ring (256 bytes each, 4 MB;
    #: bigger frames arrive TP_STATUS_COPY): 136 ms of a 120k/s flood, so a
    #: stack that waits tens of ms for a CPU (or repays its SYN CPU share)
    #: still finds a client's SYN there rather than the kernel dropping it
    #: with the ring full (4096 slots lost 7-30 % of a flood at load 9)
    SYN_RING_FRAMES = 16384
    #: slots of its TX ring (SYN-ACKs a wakeup can send)
    SYN_TX_RING_FRAMES = 4096
    #: after a wakeup of the SYN channel while established traffic waits, its
    #: socket is not watched for this long (the ring holds the SYNs): a
    #: flood keeps the socket readable, and the loop would otherwise turn
    #: without sleeping, reading the main device a few frames at a time
    SYN_PAUSE = 0.002

    def __init__(self, device: Device, interface: ipaddress.IPv4Interface,
                 gateway: bytes | None, loop: asyncio.AbstractEventLoop, *,
                 arp_cache: ArpCache[Any] | None = None) -> None:
        self.device = device
        self.loop = loop
        self.interface = interface
        #: our IPv4 address as a string, e.g. ``"10.77.0.2"``
        self.address: str = str(interface.ip)
        self.prefixlen: int = interface.network.prefixlen
        self.gateway: str | None = format_address(gateway) if gateway else None
        #: our MAC as a string, e.g. ``"02:00:00:00:00:01"`` (bytes: ``stack.ip.mac``)
        self.mac: str = format_mac(device.mac)
        self.started_at = time.time()
        self.ip = IpLayer(
            address=interface.ip.packed, prefixlen=self.prefixlen, mac=device.mac,
            gateway=gateway, transmit=device.send, transmit_many=device.send_many,
            clock=loop.time, defer=loop.call_soon, on_deadline=self._rearm,
            arp_cache=arp_cache, mtu=device.mtu,
        )
        if getattr(device, "supports_gso", False):
            self.ip.transmit_gso = device.send_gso  # type: ignore[attr-defined]
            self.ip.transmit_gso_parts = getattr(device, "send_gso_parts", None)
            self.ip.transmit_round = getattr(device, "send_round", None)
        self._tcp: TcpTable | None = None
        #: the device's receive callback once TCP is attached (compiled
        #: ustack.driver.rx_batch: what _receive does, without its frame)
        self._rx_batch: BatchReceiver | None = None
        self._rx_observer: Callable[[Any], None] | None = None
        #: the receive-only SYN channel (Stack.start(syn_channel=True)), else None
        self.syn_device: Device | None = None
        #: its batch path (ustack.driver.syn_batch.SynBatch), when in use
        self.syn_batch: Any = None
        #: the main device's rx_frames at the previous SYN-channel wakeup
        self._syn_seen_rx = 0
        #: what the loop calls when the SYN channel is readable; the pause
        #: (SYN_PAUSE) that is on, if any
        self._syn_wakeup: Callable[[], None] = self._on_syn_readable
        self._syn_pause: asyncio.TimerHandle | None = None
        #: the wakeup for frames held back for the plain path, if one is due
        self._syn_drain: asyncio.TimerHandle | None = None
        #: UDP sockets (``ustack.net.udp.UdpLayer``), IP protocol 17
        self.udp = UdpLayer(self.ip)
        #: host names for this stack's streams and loop (hosts file, then DNS
        #: over ``udp``); the event loop replaces it with its ``dns=`` options
        self.resolver = Resolver(self.udp, self.reaches, open_tcp=self.open_connection)
        self._lock: Any = None
        self._timer: asyncio.TimerHandle | None = None
        self._close_hooks: list[Callable[[], object]] = []
        self._ping_waiters: dict[tuple[int, int], asyncio.Future[float]] = {}
        self._ping_ident = os.getpid() & 0xFFFF
        #: ping's clock: the connections' (uvloop's loop.time() has 1 ms
        #: resolution; a simulated loop's time is the simulated one)
        self._fine_time = _fine_clock(loop)
        self._ping_seq = 0
        self._closed = False
        #: busy polling (:meth:`set_busy_poll`): seconds to spin, the spin due
        self.busy_poll = 0.0
        self._spin: asyncio.Handle | None = None
        self._plain_sends: tuple[Any, Any] = (None, None)

    # ----------------------------------------------------------------- start

    @classmethod
    async def start(
        cls,
        iface: str | None = None,
        address: str = "10.77.0.2/24",
        gateway: str | None = None,
        mac: str | bytes | None = None,
        pcap: str | os.PathLike[str] | None = None,
        device: Device | None = None,
        *,
        arp_retry_interval: float = 1.0,
        arp_requests: int = 3,
        tcp: bool = True,
        diagnostics: bool = True,
        offload: bool = True,
        pcap_side: str = "wire",
        trace_dir: str | os.PathLike[str] | None = None,
        syn_channel: bool | None = None,
        tcp_config: TcpConfig | None = None,
        busy_poll: float | None = None,
    ) -> Stack:
        """Open ``iface`` (AF_PACKET; needs CAP_NET_RAW) or use ``device`` (e.g.
        one end of a MemoryPair), take ``address`` (``A.B.C.D/PREFIXLEN``),
        announce it with a gratuitous ARP and start answering ARP and ping.

        With ``diagnostics`` (and TCP) the stack serves its connection table to
        ``ustack ss`` on a Unix socket (``USTACK_DIAG=0`` disables it).

        ``offload`` (with ``iface``) opens the device with PACKET_VNET_HDR: TCP
        sends 64 KiB super-segments the kernel cuts (GSO) and receives the veth
        peer's coalesced frames; ``offload=False`` keeps the exact wire.

        ``pcap_side`` (with ``pcap`` and a FaultDevice as ``device``):
        ``"wire"`` records what crossed the link, below the fault injector;
        ``"stack"`` what the stack sent and received (``ustack.link.pcap.wrap_pcap``).

        ``trace_dir``: a JSON Lines trace of every TCP connection in that
        directory (docs/trace.md); default ``$USTACK_TRACE`` (off when unset).
        ``syn_channel`` (on by default with ``iface`` and TCP, off with
        ``pcap``) receives pure TCP SYNs on a second packet socket.  While
        no SYN is shed and no listener answers with cookies every SYN is
        taken at once (a burst of legitimate connects to a listener with
        room in its SYN queue, as with one socket); under a flood's
        pressure they are answered in batches within a share of the CPU
        (SYN_CPU_SHARE), so the flood fills only that socket's ring and
        established traffic and handshake ACKs keep theirs (issue 13; the
        kernel's BPF splits them).  It costs ~5 MB of rings (+2 MiB once
        shedding starts) and numpy's import; its cookie SYN-ACKs go out on
        the SYN socket, past the IP layer's send but counted like it
        (docs/hardening.md).  ``syn_channel=False`` keeps one socket for
        everything: a 100k/s flood then leaves ~45-87 % of legitimate
        connects succeeding and stalls established transfers.  With
        ``pcap`` the stack keeps one socket so the capture has every frame
        (``syn_channel=True`` with ``pcap`` is a ValueError).
        ``tcp_config`` (a :class:`ustack.tcp.TcpConfig`) is every new
        connection's starting configuration (each gets its own copy).
        ``busy_poll`` (seconds; default ``$USTACK_BUSY_POLL_US`` microseconds,
        else off): see :meth:`set_busy_poll`.

        With ``iface`` the stack claims (namespace, interface, address):
        a second stack on the same interface and address, in any process,
        fails with :class:`ustack.instance_lock.StackInUseError` (an
        OSError, EADDRINUSE) naming the running stack's pid.

        Raises ValueError for a bad address, gateway or MAC, PermissionError
        without CAP_NET_RAW, OSError(ENODEV) naming an unknown interface.
        """
        loop = asyncio.get_running_loop()
        syn_device: AfPacketDevice | None = None
        interface = parse_interface(address)
        gw = parse_address(gateway) if gateway else None
        if gw is not None and ipaddress.IPv4Address(gw) not in interface.network:
            raise ValueError(f"gateway {gateway} is not inside {interface.network}")
        if gw is not None and gw == interface.ip.packed:
            raise ValueError(f"gateway {gateway} is our own address")
        mac_bytes = parse_mac(mac) if isinstance(mac, str) else mac
        if mac_bytes is not None and (len(mac_bytes) != 6 or mac_bytes[0] & 1):
            raise ValueError(f"invalid MAC address {mac!r}: need a 6-byte unicast address")
        if syn_channel and pcap is not None:
            raise ValueError("syn_channel=True with pcap: the SYN channel's frames "
                             "would bypass the capture")
        lock = None
        if device is None:
            if not iface:
                raise ValueError("Stack.start needs iface= (an interface name) or device=")
            from ustack.link.af_packet import AfPacketDevice

            keep_heap_top()  # (bulk receive: the pages of freed frames are used again)
            lock = acquire(iface, str(interface.ip))
            if syn_channel is None:  # the default: on, but for an exact capture
                syn_channel = pcap is None
            split = "exclude" if syn_channel and tcp else "all"
            try:
                device = AfPacketDevice.open(iface, mac=mac_bytes, vnet_hdr=offload,
                                             tcp_syn=split)
            except BaseException:
                lock.release()
                raise
            if split != "all":
                try:
                    syn_device = AfPacketDevice.open(
                        iface, mac=device.mac, tcp_syn="only",
                        ring_frames=cls.SYN_RING_FRAMES, ring_slot=256,
                        tx_ring_frames=cls.SYN_TX_RING_FRAMES)
                except BaseException:
                    device.close()
                    lock.release()
                    raise
        elif mac_bytes is not None and mac_bytes != device.mac:
            device.mac = mac_bytes
        if pcap is not None:
            from ustack.link.pcap import wrap_pcap

            try:
                device = wrap_pcap(device, pcap, side=pcap_side)
            except BaseException:
                device.close()
                if lock is not None:
                    lock.release()
                raise
        try:
            stack = cls(device, interface, gw, loop,
                        arp_cache=ArpCache(retry_interval=arp_retry_interval,
                                           requests=arp_requests))
            stack._lock = lock
            if tcp:
                stack._attach_tcp(tcp_config)
                if stack.has_tcp:
                    from ustack.trace.attach import attach_tracing

                    attach_tracing(stack, trace_dir)
            stack.ip.register(PROTO_UDP, stack.udp.ip_input, verify_checksum=False)
            stack.ip.register_error(PROTO_UDP, stack.udp.ip_error)
            stack.ip.on_echo_reply(stack._echo_reply)
            device.attach(loop, stack._device_receiver())
            if stack._tcp is not None:
                stack._tcp.poll_input = getattr(device, "poll", None)
                # (re-reading the ring after a batch that sent: TcpTable._reread)
                ring_state = getattr(device, "ring_state", None)
                if ring_state is not None and ring_state() is not None:
                    stack._tcp.ring_state = ring_state
            if syn_device is not None:
                stack._attach_syn_channel(syn_device)
            if busy_poll is None:
                busy_poll = float(os.environ.get("USTACK_BUSY_POLL_US") or 0) * 1e-6
            if busy_poll > 0:
                stack.set_busy_poll(busy_poll)
            stack.ip.announce()
        except BaseException:
            device.close()
            if syn_device is not None:
                syn_device.close()
            if lock is not None:
                lock.release()
            raise
        # the ``ustack ss`` endpoint, removed by a close hook (ustack.diag)
        if diagnostics and stack.has_tcp:
            from ustack.diag.endpoint import attach_diagnostics

            server = attach_diagnostics(stack)
            if server is not None:
                stack._publish_identity(server.path, iface or device.name, address)
        return stack

    def _attach_syn_channel(self, syn_device: AfPacketDevice) -> None:
        """Read the SYN channel: in batches (ustack.driver.syn_batch) when
        numpy is there and the device has its ring, else a few SYNs per
        wakeup through the plain receive path.  The batch path (and its
        numpy import, ~0.1-0.2 s and a few MB) is built when the first
        listener is made: until then every SYN is for a closed port and
        gets its RST the plain way, and a client-only stack never pays it."""
        self.syn_device = syn_device
        # a few SYNs per wakeup: the main device is read every loop turn
        syn_device.rx_budget = self.SYN_BUDGET
        syn_device.attach(self.loop, self._receive)
        if self._tcp is not None and syn_device.rx_mode == "ring" and _have_numpy():
            self._tcp.on_first_listen = lambda: self._start_syn_batch(syn_device)

    def _start_syn_batch(self, syn_device: AfPacketDevice) -> None:
        """Switch the SYN channel to its batch path (the first listener)."""
        if self.syn_device is not syn_device or self._tcp is None or self._closed:
            return
        try:
            from ustack.driver.syn_batch import SynBatch
        except ImportError:  # numpy unusable after all: stay on the plain path
            return
        batch = SynBatch(self.ip, self._tcp, syn_device.send_fixed)
        batch.cpu.share = self.SYN_CPU_SHARE
        batch.cpu.quantum = self.SYN_CPU_QUANTUM
        batch.cpu.max_rows = self.SYN_READ
        self.syn_batch = batch
        syn_device.attach_polled(self.loop, self._on_syn_readable)

    def _on_syn_readable(self) -> None:
        """A wakeup of the SYN channel: first whatever waits on the main
        device (handshake-completing ACKs, data of established connections),
        so a flood cannot starve them, then the SYNs: under a flood's
        pressure (``SynBatch.pressured``) those its CPU allowance covers
        (SYN_CPU_SHARE), the others shed; else all the listeners' SYN
        queues have room for.  Frames for the plain path the wakeup does
        not take wait in ``SynBatch.held`` for the next (_drain_syn_channel)."""
        syn_device = self.syn_device
        batch = self.syn_batch
        if syn_device is None or batch is None or self._closed:
            return
        poll = getattr(self.device, "poll", None)
        if poll is not None:
            poll()
        from ustack.driver.syn_batch import FRAME_LEN

        cpu = batch.cpu
        # other work waits when established traffic arrived since the last
        # wakeup; SYN work is held to its share only under a flood's pressure
        received = self.device.counters().get("rx_frames", 0)
        pressured = batch.pressured(self.tcp.now())
        busy = received != self._syn_seen_rx and pressured
        self._syn_seen_rx = received
        if busy and self.SYN_PAUSE > 0:
            self._pause_syn_channel(syn_device)
        budget = cpu.start(busy)
        room = 0
        if not pressured:  # each SYN gets a request sock: all of them now
            room = min(self.SYN_READ, batch.room())
            budget = max(budget, room)
        if not budget:  # over its CPU share: only the lanes that cannot wait
            self._syn_lanes(syn_device, batch)
            if batch.held:
                self._drain_syn_channel(busy)
            return
        taken = batch.answered + batch.handed_back
        now = self.tcp.now()
        # shed in the ring (C steps), else read every row and shed them here
        got = batch.take_ring(syn_device, self.SYN_READ, budget, now)
        if got is None:
            rows, trusted, others = syn_device.read_fixed(  # type: ignore[attr-defined]
                FRAME_LEN, self.SYN_READ)
            rest = batch.process(rows, trusted, now, budget) if len(rows) else []
        else:
            rows, trusted, odd = got
            rest = batch.process(rows, trusted, now) if len(rows) else []
            others = []
            if odd:  # a frame of another size: the general reader for a few
                rows, trusted, others = syn_device.read_fixed(  # type: ignore[attr-defined]
                    FRAME_LEN, self.SYN_BUDGET)
                if len(rows):
                    rest.extend(batch.process(rows, trusted, now, max(0, budget - len(got[0]))))
        if others:
            rest.extend(others)
        if rest or batch.held:  # the plain path costs ~100 us a frame: what is left
            plain = max(self.SYN_BUDGET, room) if not pressured else min(
                self.SYN_BUDGET, max(4, int(cpu.left() / self.SYN_PLAIN_COST)))
            self._ip_receive(batch.limit(rest, plain, newest_first=pressured))
        cpu.stop(batch.answered + batch.handed_back - taken)
        if batch.held:
            self._drain_syn_channel(busy)

    def _syn_lanes(self, syn_device: Device, batch: Any) -> None:
        """A wakeup over its CPU share: the SYNs of a client's
        retransmission or of a proven source (few, and what a legitimate
        client sends) are answered now; every other SYN read is shed, in
        the ring (C steps; without them the SYNs wait in the ring).  A flood
        then cannot make a known client wait for the share, and the share
        only decides how many of the unknown sources are answered."""
        now = self.tcp.now()
        got = batch.take_ring(syn_device, self.SYN_READ, self.SYN_BUDGET, now, lanes_only=True)
        if got is None:
            return
        rows = got[0]
        rest = batch.process(rows, got[1], now) if len(rows) else []
        if rest:
            self._ip_receive(batch.limit(rest, 4, newest_first=True))
        batch.cpu.aside()

    def _drain_syn_channel(self, busy: bool) -> None:
        """Frames read from the SYN ring wait for the plain path
        (``SynBatch.held``): wake the channel again even if no new SYN
        makes its socket readable, at the next loop turn (after the main
        device's frames), or after SYN_PAUSE while other work waits."""
        if self._syn_drain is None:
            self._syn_drain = self.loop.call_later(self.SYN_PAUSE if busy else 0.0,
                                                   self._drained_syn_channel)

    def _drained_syn_channel(self) -> None:
        self._syn_drain = None
        self._syn_wakeup()

    def _pause_syn_channel(self, syn_device: Device) -> None:
        """Stop watching the SYN socket for SYN_PAUSE seconds."""
        if self._syn_pause is None:
            fd = syn_device.fileno()  # type: ignore[attr-defined]
            self.loop.remove_reader(fd)
            self._syn_pause = self.loop.call_later(self.SYN_PAUSE, self._resume_syn_channel, fd)

    def _resume_syn_channel(self, fd: int) -> None:
        self._syn_pause = None
        if not self._closed and self.syn_device is not None:
            self.loop.add_reader(fd, self._syn_wakeup)

    def _publish_identity(self, endpoint_path: str, iface: str, address: str) -> None:
        """Say next to the ``ss`` endpoint which stack this is (pid, netns,
        interface, address: ``ustack ss -p``, ``--stack``, ``--iface``)."""
        try:
            stack_identity.write(endpoint_path, stack_identity.current(iface, address))
        except OSError as exc:
            log.warning("ustack: cannot write the stack identity: %s", exc)
            return
        self.add_close_hook(lambda: stack_identity.remove(endpoint_path))

    def _attach_tcp(self, config: TcpConfig | None = None) -> None:
        self._tcp = TcpTable(self.tcp_port(), config=config)
        self._rx_batch = BatchReceiver(self.ip, self._tcp)
        self._rx_batch.observer = self._rx_observer
        self.ip.register(PROTO_TCP, self._tcp.ip_input)
        self.ip.register_error(PROTO_TCP, self._tcp_error)

    def tcp_port(self) -> TcpPort:
        """The typed port the TCP driver gets (DESIGN.md "Transport driver"):
        our address, the MTU, the IP layer's send paths, the loop."""
        return port_of(self, self.loop)

    @property
    def tcp(self) -> TcpTable:
        """The TCP connection table (``ustack.driver.tcp_table.TcpTable``);
        RuntimeError when the stack runs without TCP."""
        if self._tcp is None:
            raise RuntimeError("this stack runs without TCP (Stack.start(tcp=False))")
        return self._tcp

    @property
    def has_tcp(self) -> bool:
        return self._tcp is not None

    def reaches(self, host: str) -> bool:
        """True when ``host`` (an IPv4 literal) is one this stack routes to:
        its subnet, or anything with a gateway (:func:`ustack.reach.via_stack`)."""
        return via_stack(self.interface, self.gateway, host)

    def _tcp_error(self, err: IpError) -> None:
        table: Any = self._tcp
        if table is None:
            return
        handler = getattr(table, "ip_error", None)
        if handler is not None:
            handler(err)
            return
        # fallback: the connection the quoted segment belongs to (RFC 5927
        # checks are the TCP core's, given the quoted sequence number)
        now = self.loop.time()
        for ep in table.endpoints():
            if (ep.local_port, ep.remote_addr, ep.remote_port) == (
                    err.local_port, err.remote_addr, err.remote_port):
                ep.conn.icmp_error(err.errno, err.seq, now)
                ep.touch()

    # --------------------------------------------------------------- running

    @property
    def rx_observer(self) -> Callable[[Any], None] | None:
        """Called with every batch of frames after the IP layer took it
        (the probe harness counts its frames with it: the IP layer may be
        compiled, so its methods cannot be wrapped), else None."""
        return self._rx_observer

    @rx_observer.setter
    def rx_observer(self, observer: Callable[[Any], None] | None) -> None:
        self._rx_observer = observer
        if self._rx_batch is not None:
            self._rx_batch.observer = observer

    def _device_receiver(self) -> Callable[[Any], None]:
        """What the device calls with each batch: with TCP the compiled
        BatchReceiver (the same steps as :meth:`_receive`), else _receive."""
        rx = self._rx_batch
        return self._receive if rx is None else rx.receive

    def _receive(self, frames: Any) -> None:
        """The device's callback: one receive batch.  TCP drains the
        connections it touched at the end of the batch, in this callback
        (the protocol's ``data_received`` and our answer without another
        loop iteration; ACKs of the batch coalesced first).  With TCP this
        is :meth:`BatchReceiver.receive` (ustack.driver.rx_batch)."""
        rx = self._rx_batch  # set with the TCP table (_attach_tcp)
        if rx is not None:
            rx.receive(frames)
        else:
            self._ip_receive(frames)

    def _ip_receive(self, frames: Any) -> None:
        self.ip.receive(frames)
        observer = self._rx_observer
        if observer is not None:
            observer(frames)

    def receive(self, frames: list[ReceivedFrame]) -> None:
        """Feed frames into the receive path as if the device delivered them."""
        self._receive(frames)

    # ---------------------------------------------------------- busy polling

    def set_busy_poll(self, seconds: float) -> None:
        """Opt-in busy polling (off by default; Linux's SO_BUSY_POLL /
        net.core.busy_poll is the model): after a loop iteration that sent
        frames, spin up to ``seconds`` on the receive ring's next slot
        before the loop sleeps in epoll, and read a frame that arrives
        meanwhile at once.  It trades CPU for latency: an answer that
        comes within the spin skips the sleep and wakeup (a few
        microseconds a request/response on a veth), one that comes later
        costs the whole spin.  Only worth it with a core to spare: on a
        shared CPU the spin keeps the peer (or whoever answers) from the CPU
        it would be given when we sleep (docs/link.md has the figures: 12 %
        off the p50 pinned to spare cores, 3-5x worse on shared ones).
        Needs an AF_PACKET device with its receive ring (``ring_state``);
        0 turns it off.  ValueError for a negative value or a device
        without a ring."""
        if seconds < 0:
            raise ValueError(f"busy_poll must be >= 0 seconds, not {seconds!r}")
        ip = self.ip
        if seconds and getattr(self.device, "ring_state", lambda: None)() is None:
            raise ValueError("busy polling needs an AF_PACKET device with its receive ring")
        if not seconds:
            if self.busy_poll:
                ip._device_one, ip._device_many = self._plain_sends
                if not ip._corks:
                    ip._transmit, ip._transmit_many = self._plain_sends
            self.busy_poll = 0.0
            return
        if not self.busy_poll:
            one, many = ip._device_one, ip._device_many
            self._plain_sends = (one, many)

            def send_one(frame: Any) -> None:
                one(frame)
                self._spin_soon()

            def send_many(frames: Any) -> None:
                many(frames)
                self._spin_soon()

            ip._device_one, ip._device_many = send_one, send_many
            if not ip._corks:
                ip._transmit, ip._transmit_many = send_one, send_many
        self.busy_poll = float(seconds)

    def _spin_soon(self) -> None:
        if self._spin is None and not self._closed:
            self._spin = self.loop.call_soon(self._busy_poll)

    def _busy_poll(self) -> None:
        """The spin (:meth:`set_busy_poll`): the next ring slot's status
        word until it says a frame is there (then the device reads the
        ring as a readable wakeup would) or the time is up."""
        self._spin = None
        device: Any = self.device
        state = device.ring_state()
        if state is None:
            return
        ring, slot_size, _slots, head = state[0], state[1], state[2], state[3]
        status = _SLOT_STATUS.unpack_from
        off = head * slot_size
        clock = time.perf_counter
        end = clock() + self.busy_poll
        yield_cpu = os.sched_yield
        while True:
            if status(ring, off)[0] & TP_STATUS_USER:
                device.poll()
                return
            if clock() >= end:
                return
            # the peer may be waiting for this CPU (a veth peer's process
            # woken by our send runs where we do): let it answer
            yield_cpu()

    def _rearm(self, _deadline: float | None = None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.ip.next_deadline()
        if deadline is not None and not self._closed:
            self._timer = self.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.ip.handle_timer(self.loop.time())
        self._rearm()

    def counters(self) -> dict[str, int]:
        """Frames in/out, drops (total and ``drop.<reason>``), ARP, ICMP, the
        device's counters (``dev.``) and TCP's (if attached): the table's
        ``tcp_*`` keys and its TcpMib under Linux nstat names."""
        out = self.ip.counters()
        for key, value in self.device.counters().items():
            out["dev." + key] = value
        if self.syn_device is not None:
            for key, value in self.syn_device.counters().items():
                out["syn_dev." + key] = value
        out.update(self.udp.counters)
        if self._tcp is not None:
            out.update(self._tcp.counters)
            mib = getattr(self._tcp, "mib", None)
            if mib is not None:
                out.update(mib)  # TcpMib: Linux nstat names (TcpExtSyncookiesSent, ...)
            memory = getattr(self._tcp, "memory", None)
            if memory is not None:
                out.update(memory.counters())  # tcp_mem_pages, tcp_mem_state, ...
            out["tcp_orphans"] = getattr(self._tcp, "orphans", 0)
        return out

    def sockets(self) -> list[Any]:
        """One ``ustack.diag.SocketRecord`` per listener and connection (ss's view)."""
        from ustack.diag.snapshot import snapshot

        return snapshot(self)

    def add_close_hook(self, hook: Callable[[], object]) -> None:
        """Call ``hook()`` when the stack closes (before the device closes)."""
        self._close_hooks.append(hook)

    # --------------------------------------------------------------- streams

    async def open_connection(
        self, host: str, port: int, **kwargs: Any
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """``ustack.streams.open_connection(host, port, stack=self, ...)``."""
        return await streams.open_connection(host, port, stack=self, **kwargs)

    async def start_server(self, client_connected_cb: ClientConnectedCallback,
                           host: str | None = None, port: int = 0, **kwargs: Any) -> Server:
        """``ustack.streams.start_server(cb, host, port, stack=self, ...)``."""
        return await streams.start_server(client_connected_cb, host, port, stack=self, **kwargs)

    async def create_connection(
        self, protocol_factory: Callable[[], asyncio.BaseProtocol], host: str, port: int,
        **kwargs: Any,
    ) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
        """``ustack.streams.create_connection(factory, host, port, stack=self, ...)``."""
        return await streams.create_connection(protocol_factory, host, port, stack=self,
                                               **kwargs)

    async def create_server(self, protocol_factory: Callable[[], asyncio.BaseProtocol],
                            host: str | None = None, port: int = 0, **kwargs: Any) -> Server:
        """``ustack.streams.create_server(factory, host, port, stack=self, ...)``."""
        return await streams.create_server(protocol_factory, host, port, stack=self, **kwargs)

    # ------------------------------------------------------------------- ARP

    async def resolve(self, host: str, *, timeout: float | None = None) -> str:
        """The MAC (``"02:..."``) of ``host``'s next hop, resolving it with ARP
        if needed.  OSError(EHOSTUNREACH) when ARP gives up (about 3 s),
        OSError(ENETUNREACH) without a route, TimeoutError after ``timeout``."""
        dst = parse_address(host)
        fut: asyncio.Future[bytes | None] = self.loop.create_future()

        def done(mac: bytes | None) -> None:
            if not fut.done():
                fut.set_result(mac)

        self.ip.resolve(dst, done)
        async with asyncio.timeout(timeout):
            mac = await fut
        if mac is None:
            if self.ip.routes.next_hop(dst) is None:
                raise OSError(errno.ENETUNREACH, f"no route to {host}")
            raise OSError(errno.EHOSTUNREACH, f"no ARP reply from {host}'s next hop")
        return format_mac(mac)

    # ------------------------------------------------------------------ ping

    async def ping(self, host: str, *, timeout: float = 2.0, data: bytes = b"ustack-ping") -> float:
        """Send one ICMP echo request; return the round-trip time in seconds.
        TimeoutError when no reply arrives in ``timeout`` (ARP included)."""
        dst = parse_address(host)
        self._ping_seq = (self._ping_seq + 1) & 0xFFFF
        key = (self._ping_ident, self._ping_seq)
        fut: asyncio.Future[float] = self.loop.create_future()
        self._ping_waiters[key] = fut
        sent = self._fine_time()
        self.ip.send(dst, PROTO_ICMP, IcmpEcho(*key, data).encode())
        try:
            async with asyncio.timeout(timeout):
                return await fut - sent
        except TimeoutError:
            raise TimeoutError(f"no echo reply from {host} within {timeout} s") from None
        finally:
            self._ping_waiters.pop(key, None)

    def _echo_reply(self, src: bytes, echo: IcmpEcho) -> None:
        fut = self._ping_waiters.get((echo.ident, echo.seq))
        if fut is not None and not fut.done():
            fut.set_result(self._fine_time())

    # ----------------------------------------------------------------- close

    async def close(self) -> None:
        """Reset TCP connections, stop timers, close the device (the pcap
        file is complete afterwards).  Idempotent."""
        if self._closed:
            return
        if self._spin is not None:
            self._spin.cancel()
            self._spin = None
        for hook in self._close_hooks:
            try:
                result = hook()
                if asyncio.iscoroutine(result):
                    await result
            except Exception:
                log.exception("ustack: close hook failed")
        if self._tcp is not None:
            try:
                self._tcp.close()
            except Exception:
                log.exception("ustack: closing the TCP table failed")
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.udp.close()
        await asyncio.sleep(0)  # let queued frames (RSTs) reach the device
        if self._syn_pause is not None:
            self._syn_pause.cancel()
            self._syn_pause = None
        if self._syn_drain is not None:
            self._syn_drain.cancel()
            self._syn_drain = None
        if self.syn_device is not None:
            self.syn_device.close()
        self.device.close()
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    @property
    def closed(self) -> bool:
        return self._closed

    async def __aenter__(self) -> Stack:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<Stack {self.address}/{self.prefixlen} on {self.device.name} ({self.mac})>"


# the default stack of ustack.open_connection(...) without stack= (USTACK_IFACE)
streams.set_stack_starter(Stack.start)


def _have_numpy() -> bool:
    """Whether numpy can be imported (without importing it: the SYN
    channel's batch path needs it, see Stack._attach_syn_channel)."""
    import importlib.util

    return importlib.util.find_spec("numpy") is not None
