"""The probe's text format: packetdrill packet lines plus a few directives.

One event per line, ``#`` starts a comment::

    # the peer application listens; the probe connects to it
    peer listen 8080
    0.000 < S 0:0(0) win 65535 <mss 1460,sackOK,nop,wscale 7>
    +0    > S. 0:0(0) ack 1 <mss 1460,sackOK,wscale *>
    +0    < . 1:1(0) ack 1 win 65535
    +0.1  < R 1000:1000(0) win 0
    +0    > . 1:1(0) ack 1
    +1.0~+1.2 > nothing for 0.5

Times (packetdrill's): ``0.100`` seconds since the script started, ``+0.1``
after the previous event *as it actually happened*, ``*`` any time (within
3 s), ``A~B`` a range.  A ``>`` line must arrive within the tolerance, the
larger of 4 ms and 12.5 % of the gap since the previous event.

Packet lines (``<`` sent by the probe, ``>`` expected from the peer), numbers
relative to the sender's ISN (``ack`` and SACK blocks to the other side's)::

    FLAGS START:END(LEN) [ack N] [win N] [urg N] [<options>] [extras]

``FLAGS`` as packetdrill writes them (``S S. . P. F. FP. R R.``); options
``mss N, wscale N, sackOK, TS val N ecr N, sack L:R ..., nop, eol, raw HEX``.
In ``>`` lines any number may be ``*`` and an omitted ``win``/``<...>`` is
not checked (``<>`` demands none).  ``TS ecr *`` in a ``<`` line echoes the
peer's last TSval.  Extras for ``<`` lines: ``badsum``, ``ttl N``, ``df``,
``nodf``, ``id N``, ``tos N``, ``payload HEX``.  ICMP errors quote a segment
the peer sent (numbers as in a ``>`` line)::

    +0 < icmp unreachable port [S 0:0(0)]
    +0 < icmp unreachable frag_needed mtu 1200 [. 1:1461(1460) ack 1]
    +0 < icmp time_exceeded [S 0:0(0)]
    +0 > nothing for 1.5

Directives (a time is optional; default ``+0``)::

    sysctl net.ipv4.tcp_timestamps=0   # inside the kernel peer's namespace
    peer listen PORT        # the app listens; the probe will talk to PORT
    peer connect PORT       # the app connects to the probe's PORT
    peer write N            # the app writes N bytes
    peer write-urgent N     # send(N bytes, MSG_OOB): the last byte is urgent
    peer keepalive          # SO_KEEPALIVE on the sockets created from now on
    peer read N             # the app reads up to N bytes (waits up to 2 s)
    peer shutdown           # shutdown(SHUT_WR)
    peer close              # close()
    peer expect OUTCOME     # connected, EOF, data, ECONNRESET, ECONNREFUSED, ...
    probe new [PORT]        # a new connection: new ISN (and local port)
    probe to PORT           # a new connection to the peer's PORT (nobody listening?)
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import re
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ustack.probe.packet import Opt, PacketSpec, ScriptSyntaxError, parse_segment
from ustack.probe.peers import Peer
from ustack.probe.pktlang import (
    Statement,
    SyscallSpec,
    looks_like_syscall,
    parse_syscall,
    split_statements,
    split_time,
)
from ustack.probe.probe import DEFAULT_TIMEOUT, ExpectationFailed, Probe
from ustack.probe.syscalls import (
    NONBLOCKING_GRACE,
    SocketApi,
    SyscallFailed,
    SysError,
    Unsupported,
    check_result,
)
from ustack.probe.tcpinfo import code_namespace

#: packetdrill's default tolerance
TOLERANCE_FLOOR = 0.004
TOLERANCE_FRACTION = 0.125
#: default floor against ustack: it answers from Python, in the probe's own
#: process and event loop, and its first answers take several milliseconds
USTACK_TOLERANCE_FLOOR = 0.025

ICMP_UNREACH_CODES = {"net": 0, "host": 1, "proto": 2, "port": 3, "frag_needed": 4,
                      "net_unreachable": 0, "host_unreachable": 1,
                      "protocol_unreachable": 2, "port_unreachable": 3}


class ScriptError(AssertionError):
    """A script failed (an expectation or a peer action); names the line."""


@dataclass(slots=True)
class TimeSpec:
    relative: bool = True
    start: float | None = 0.0  # None: any time
    end: float | None = None  # set for ranges


@dataclass(slots=True)
class Event:
    lineno: int
    text: str
    time: TimeSpec
    kind: str  # send, expect, nothing, icmp, peer, sysctl, probe, syscall, command, code
    spec: PacketSpec | None = None
    args: list[str] = field(default_factory=list)
    value: float = 0.0
    icmp: tuple[int, int, int] = (3, 3, 0)  # type, code, mtu
    syscall: SyscallSpec | None = None
    #: shell text of a backtick line, Python of a %{ }% block
    body: str = ""
    #: packetdrill timestamps: the script's TS val of a ``>`` line (mapped to
    #: the actual one for later ``<`` ecr values); ``<`` ecr values are mapped
    ts_val: int | None = None
    pkt: bool = False


@dataclass(slots=True)
class Script:
    name: str
    events: list[Event]
    #: packetdrill ``--name=value`` lines
    options: dict[str, str] = field(default_factory=dict)
    dialect: str = "probe"  # or "packetdrill"
    path: Path | None = None


_TIME = re.compile(r"^(\*|\+?(?:\d+(?:\.\d*)?|\.\d+)(?:~\+?(?:\d+(?:\.\d*)?|\.\d+))?)$")


def _parse_time(word: str) -> TimeSpec:
    if word == "*":
        return TimeSpec(start=None)
    relative = word.startswith("+")
    first, _, second = word.partition("~")
    start = float(first.lstrip("+"))
    end = float(second.lstrip("+")) if second else None
    if end is not None and end < start:
        raise ScriptSyntaxError(f"time range {word!r} ends before it starts")
    return TimeSpec(relative=relative, start=start, end=end)


_PKT_HINT = re.compile(r"(^|\n)\s*[-+0-9.~*]*\s*(\.\.\.\S*\s+)?[a-z_]+\(|//|/\*|`|%\{|"
                       r"(^|\n)--")


def parse_script(text: str, name: str = "<script>", path: Path | None = None) -> Script:
    """Parse a whole script, the probe's own format or packetdrill's (see
    :mod:`.pktlang`); :class:`ScriptSyntaxError` names the bad line."""
    pkt = bool(_PKT_HINT.search(text))
    try:
        statements = split_statements(text)
    except ScriptSyntaxError as exc:
        raise ScriptSyntaxError(f"{name}: {exc}") from None
    lines = text.splitlines()
    events = []
    options: dict[str, str] = {}
    for st in statements:
        raw = lines[st.lineno - 1] if 0 < st.lineno <= len(lines) else st.text
        try:
            if st.kind == "option":
                key, _, value = st.text[2:].partition("=")
                options[key.strip()] = value.strip()
                continue
            events.append(_parse_statement(st, pkt))
        except (ScriptSyntaxError, ValueError) as exc:
            raise ScriptSyntaxError(f"{name}:{st.lineno}: {exc}\n    {raw.strip()}") from None
        except RecursionError:
            raise ScriptSyntaxError(f"{name}:{st.lineno}: brackets nested too deeply") from None
    return Script(name, events, options, "packetdrill" if pkt else "probe", path)


def _parse_statement(st: Statement, pkt: bool) -> Event:
    if st.kind in ("command", "code"):
        time = TimeSpec()
        if st.time:
            if not _TIME.match(st.time):
                raise ScriptSyntaxError(f"bad time {st.time!r}")
            time = _parse_time(st.time)
        return Event(st.lineno, st.text.strip() if st.kind == "command" else "%{ ... }%",
                     time, st.kind, body=st.text, pkt=pkt)
    text = re.sub(r"^(\S+?)\s*\.\.\.\s*(\+?[\d.]+)\s", r"\1...\2 ", st.text)
    start, end, rest = split_time(text)
    if start is not None and end is not None:
        time = _parse_time(start)
        if not rest or not looks_like_syscall(rest):
            raise ScriptSyntaxError("START...END is for blocking system calls")
        spec = parse_syscall(rest)
        spec.end = (time.relative, float(end.lstrip("+")))
        return Event(st.lineno, st.text, time, "syscall", syscall=spec, pkt=True)
    if rest and looks_like_syscall(rest) and not rest.startswith(("<", ">")):
        time = _parse_time(start) if start is not None else TimeSpec()
        return Event(st.lineno, st.text, time, "syscall", syscall=parse_syscall(rest), pkt=True)
    ev = _parse_line(st.lineno, st.text, pkt)
    ev.pkt = pkt
    return ev


def _parse_line(lineno: int, line: str, pkt: bool = False) -> Event:
    words = line.split()
    time = TimeSpec()
    if _TIME.match(words[0]):
        time = _parse_time(words[0])
        words = words[1:]
        if not words:
            raise ScriptSyntaxError("a time with no event")
    head, rest = words[0], words[1:]
    body = " ".join(rest)
    if head == "<":
        if rest and rest[0] == "icmp":
            return _parse_icmp(lineno, line, time, rest[1:])
        if pkt:
            body = body.replace("<...>", "")
        spec = parse_segment(body, expectation=False, require_ack=not pkt)
        return Event(lineno, line, time, "send", spec=spec)
    if head == ">":
        if rest and rest[0] == "nothing":
            tail = [w for w in rest[1:] if w != "for"]
            if len(tail) != 1:
                raise ScriptSyntaxError("expected '> nothing for SECONDS'")
            return Event(lineno, line, time, "nothing", value=float(tail[0].rstrip("s")))
        if pkt:
            body = body.replace("<...>", "")
        spec = parse_segment(body, expectation=True)
        ts_val = None
        if pkt and spec.options is not None:
            # packetdrill checks neither TS val (without --tcp_ts_tick_usecs) nor
            # ecr of outbound segments; it maps the script's val to the actual one
            opts = []
            for o in spec.options:
                if o.kind == "TS":
                    ts_val = o.a
                    o = Opt("TS")
                opts.append(o)
            spec.options = opts
        return Event(lineno, line, time, "expect", spec=spec, ts_val=ts_val)
    if head == "sysctl":
        if len(rest) != 1 or "=" not in rest[0]:
            raise ScriptSyntaxError("expected 'sysctl NAME=VALUE'")
        return Event(lineno, line, time, "sysctl", args=rest[0].split("=", 1))
    if head == "peer":
        _check_peer_args(rest)
        return Event(lineno, line, time, "peer", args=rest)
    if head == "probe":
        if not rest or rest[0] not in ("new", "to") or len(rest) > 2 or \
                (rest[0] == "to" and len(rest) != 2):
            raise ScriptSyntaxError("expected 'probe new [PORT]' or 'probe to PORT'")
        if len(rest) == 2:
            _port(rest[1])
        return Event(lineno, line, time, "probe", args=rest)
    raise ScriptSyntaxError(f"unknown event {head!r}: expected <, >, a system call, "
                            "peer, sysctl or probe")


def _port(word: str) -> int:
    port = int(word)
    if not 0 < port < 65536:
        raise ScriptSyntaxError(f"port {port} is not in 1..65535")
    return port


_PEER_ARITY = {"listen": 1, "connect": 1, "write": 1, "read": 1, "shutdown": 0, "close": 0,
               "expect": 1, "write-urgent": 1, "keepalive": 0}


def _check_peer_args(args: list[str]) -> None:
    if not args or args[0] not in _PEER_ARITY:
        raise ScriptSyntaxError(f"peer action must be one of {', '.join(_PEER_ARITY)}")
    if len(args) - 1 != _PEER_ARITY[args[0]]:
        raise ScriptSyntaxError(f"'peer {args[0]}' takes {_PEER_ARITY[args[0]]} argument(s)")
    if args[0] in ("listen", "connect"):
        _port(args[1])
    elif args[0] in ("write", "read", "write-urgent") and int(args[1]) < 0:
        raise ScriptSyntaxError(f"'peer {args[0]}' needs a byte count >= 0")


def _parse_icmp(lineno: int, line: str, time: TimeSpec, words: list[str]) -> Event:
    text = " ".join(words)
    te = re.match(r"^time_exceeded\s*\[(.*)\]$", text)
    if te:
        spec = parse_segment(te.group(1), expectation=True)
        return Event(lineno, line, time, "icmp", spec=spec, icmp=(11, 0, 0))
    m = re.match(r"^unreachable\s+(\w+)(?:\s+mtu\s+(\d+))?\s*\[(.*)\]$", text)
    if not m:
        raise ScriptSyntaxError("expected '< icmp unreachable CODE [mtu N] [SEGMENT]' or "
                                "'< icmp time_exceeded [SEGMENT]'")
    code_name, mtu, quote = m.groups()
    if code_name not in ICMP_UNREACH_CODES:
        raise ScriptSyntaxError(f"unknown unreachable code {code_name!r}: "
                                f"{', '.join(ICMP_UNREACH_CODES)}")
    spec = parse_segment(quote, expectation=True)
    return Event(lineno, line, time, "icmp", spec=spec,
                 icmp=(3, ICMP_UNREACH_CODES[code_name], int(mtu or 0)))


# ------------------------------------------------------------------ running
@dataclass(slots=True)
class RunResult:
    ok: bool
    error: str = ""
    timeline: str = ""


class ScriptUnsupported(ScriptError):
    """The script needs something this peer or the probe cannot do; the
    message starts with ``unsupported``."""


@dataclass(slots=True)
class _Blocking:
    """A system call started with ``START...END`` and still running."""

    ev: Event
    task: asyncio.Task[tuple[int, Any]]
    expected: float  # loop time it should return at
    tolerance: float
    returned: float | None = None


class _Runner:
    """State of one script run (see :func:`run_script`)."""

    def __init__(self, script: Script, peer: Peer, probe: Probe, floor: float,
                 fraction: float) -> None:
        self.script = script
        self.peer = peer
        self.probe = probe
        self.floor = floor
        self.fraction = fraction
        self.loop = asyncio.get_running_loop()
        self.start = self.loop.time()
        self.pkt = script.dialect == "packetdrill"
        self.blocking: list[_Blocking] = []
        #: how late the last '<' went out, and the most since the last call
        self.lag = 0.0
        self.max_lag = 0.0
        #: the latest any '<' went out in this run
        self.worst_lag = 0.0
        #: the script time of the current event, and how far the run's
        #: schedule has slid behind it (a relative time counts from when the
        #: previous event really happened); wall clock minus loop clock
        self.script_t = 0.0
        self.drift = 0.0
        self.wall_offset = time.time() - self.loop.time()
        #: names the script's %{ }% blocks defined
        self.code_vars: dict[str, Any] = {}
        self.settled = 0
        self._api: SocketApi | None = None
        self._shell: Any = None
        self.files: dict[str, str] = {}
        self._scratch: Path | None = None
        mss = script.options.get("mss")
        if mss and hasattr(probe.endpoint, "gso_size"):
            probe.endpoint.gso_size = int(mss)  # packetdrill --mss: inbound GSO size
        #: packetdrill without --strict_segments: TSO pieces add up to one line
        self.aggregate = self.pkt and "strict_segments" not in script.options
        tick = script.options.get("tcp_ts_tick_usecs")
        self.ts_tick = int(tick) / 1e6 if tick else 0.0

    def scratch(self) -> Path:
        """A private directory for files the script creates (removed after)."""
        if self._scratch is None:
            import tempfile

            self._scratch = Path(tempfile.mkdtemp(prefix="hp-probe-"))
        return self._scratch

    @property
    def api(self) -> SocketApi:
        if self._api is None:
            self._api = self.peer.socket_api()
            self._api.files = self.files
            probe = self.probe

            def on_listen(port: int) -> None:
                probe.new_connection(remote_port=port)

            def on_connect(port: int) -> None:
                probe.new_connection(local_port=port)
                probe.remote_port = None

            self._api.on_listen = on_listen
            self._api.on_connect = on_connect
            # scm_timestamping values are wall-clock times counted from the
            # script's start (packetdrill script_time_to_live_time_usecs);
            # the tolerance is the timing floor plus how late the probe's
            # sends have been (an ACK stamp is taken when the peer got it)
            self._api.script_epoch = self.wall_offset + self.start + self.drift
            self._api.stamp_tolerance = lambda: self.floor + self.worst_lag
        return self._api

    async def settle(self) -> None:
        """Wait until the peer has processed every frame the probe sent (the
        ``+0`` race: an action after a ``<`` line must see that segment)."""
        sent = self.probe.frames_sent
        if sent != self.settled:
            await self.peer.settle(self.probe)
            self.settled = sent

    def tolerance(self, gap: float) -> float:
        return max(self.floor, self.fraction * max(0.0, gap))

    async def check_blocking(self, *, final: bool = False) -> None:
        for b in list(self.blocking):
            if not b.task.done():
                if not final:
                    continue
                try:
                    await asyncio.wait_for(asyncio.shield(b.task),
                                           max(0.0, b.expected + b.tolerance + 1.0
                                               - self.loop.time()))
                except TimeoutError:
                    raise ExpectationFailed(
                        f"{b.ev.syscall}: blocking call still running, expected it to "
                        f"return at {b.expected - self.start:.3f} s") from None
                except BaseException:
                    pass
            self.blocking.remove(b)
            await self._finish(b)

    async def _finish(self, b: _Blocking) -> None:
        assert b.ev.syscall is not None
        exc = b.task.exception()
        outcome: Any
        if isinstance(exc, SysError):
            outcome = exc
        elif exc is not None:
            raise exc
        else:
            outcome = b.task.result()
        when = b.returned if b.returned is not None else self.loop.time()
        late_ok = b.tolerance + self.max_lag  # the sends that woke it may have been late
        if when - b.expected > late_ok or b.expected - when > b.tolerance:
            raise ExpectationFailed(
                f"timing error: {b.ev.syscall.name}() expected to return at "
                f"{b.expected - self.start:.3f} s, returned at {when - self.start:.3f} s "
                f"(tolerance {b.tolerance:.3f} s)\n"
                f"timeline:\n{self.probe.format_timeline()}")
        try:
            await check_result(b.ev.syscall, outcome)
        except SyscallFailed as fail:
            raise ExpectationFailed(str(fail)) from None

    async def run(self) -> None:
        prev = self.start
        self.probe.start_time = self.start
        self.probe.last_event = self.start
        for ev in self.script.events:
            try:
                await self.check_blocking()
                prev = await self.event(ev, prev)
            except ExpectationFailed as exc:
                raise ScriptError(f"{self.script.name}:{ev.lineno}: {ev.text}\n{exc}") from None
            except Unsupported as exc:
                raise ScriptUnsupported(
                    f"{self.script.name}:{ev.lineno}: {ev.text}\n{_unsupported(exc)}"
                ) from None
            except NotImplementedError as exc:
                raise ScriptError(
                    f"{self.script.name}:{ev.lineno}: {ev.text}\n{type(exc).__name__}: {exc}\n"
                    f"timeline:\n{self.probe.format_timeline()}") from None
            except Exception as exc:  # a peer or probe error: report it, with the line
                raise ScriptError(
                    f"{self.script.name}:{ev.lineno}: {ev.text}\n{type(exc).__name__}: {exc}\n"
                    f"timeline:\n{self.probe.format_timeline()}") from None
        try:
            await self.check_blocking(final=True)
        except ExpectationFailed as exc:
            raise ScriptError(f"{self.script.name}: at the end\n{exc}\n"
                              f"timeline:\n{self.probe.format_timeline()}") from None

    async def event(self, ev: Event, prev: float) -> float:
        loop = self.loop
        probe = self.probe
        t = ev.time
        lo = _target(t, t.start, self.start, prev)
        hi = _target(t, t.end, self.start, prev) if t.end is not None else lo
        if t.start is not None and lo is not None:
            self.script_t = self.script_t + t.start if t.relative else t.start
            self.drift = lo - self.start - self.script_t
            if self._api is not None:
                self._api.script_epoch = self.wall_offset + self.start + self.drift
        if ev.kind == "expect":
            assert ev.spec is not None
            probe.last_event = prev
            if lo is None or hi is None:  # '*': any time, also before the last event
                within = (float("-inf"), DEFAULT_TIMEOUT)
            else:
                tol_lo = self.tolerance(lo - prev)
                tol_hi = self.tolerance(hi - prev)
                # packetdrill's window is symmetric (a segment the previous
                # call sent may precede the call's start); ours starts at the
                # previous event unless the script is packetdrill's
                low = lo - tol_lo - prev
                within = (low if self.pkt else max(0.0, low), hi + tol_hi - prev + self.lag)
            got = await probe.expect_spec(ev.spec, within=within, aggregate=self.aggregate)
            if ev.ts_val is not None and got.segment.options.timestamp is not None:
                actual = got.segment.options.timestamp[0]
                if self.ts_tick and probe.ts_first is not None:
                    mapped = (probe.ts_first[0] + actual - probe.ts_first[1]) & 0xFFFFFFFF
                    drift = abs(((mapped - ev.ts_val + (1 << 31)) & 0xFFFFFFFF) - (1 << 31))
                    allowed = self.tolerance(got.when - self.start)
                    if drift * self.ts_tick > allowed:
                        raise ExpectationFailed(
                            f"bad outbound TCP timestamp value: expected TS val {ev.ts_val}, "
                            f"got {mapped} (script ticks), tolerance {allowed:.3f} s\n"
                            f"timeline:\n{probe.format_timeline()}")
                probe.map_ts(ev.ts_val, actual)
            if self.pkt and lo is not None and t.end is None:
                # anchor what follows on the script's time for this segment:
                # our arrival stamp is when the loop read the frame, and under
                # load that lag would add up over a run of +0.01 lines
                # (packetdrill stamps frames in the kernel)
                probe.last_event = lo
                return lo
            return got.when
        if ev.kind == "nothing":
            await _sleep_until(loop, lo)
            probe.last_event = loop.time()
            await probe.expect_nothing(ev.value)
            return loop.time()
        await _sleep_until(loop, lo)
        if ev.kind in ("send", "icmp"):
            pending = probe.pending()
            if pending and not self.pkt:
                probe.drain()
                raise ExpectationFailed(
                    f"unexpected segment from the peer before this line:\n"
                    f"actual:   > {pending[0].line}\n"
                    f"timeline:\n{probe.format_timeline()}")
            assert ev.spec is not None
            if ev.kind == "send":
                spec = probe.map_ecr(ev.spec) if self.pkt else ev.spec
                probe.send_spec(spec)
            else:
                probe.send_icmp(ev.icmp[0], ev.icmp[1], ev.spec, mtu=ev.icmp[2])
            now = loop.time()
            if self.pkt and lo is not None and now - lo < 0.05:
                # a slightly late send does not move the script's schedule
                # (the loop's wakeups overshoot; packetdrill spins); what the
                # peer does in answer may be late by as much (self.lag)
                self.lag = now - lo
                self.max_lag = max(self.max_lag, self.lag)
                self.worst_lag = max(self.worst_lag, self.lag)
                probe.last_event = lo
                return lo
            self.lag = 0.0
            return now
        await self.settle()
        if ev.kind == "sysctl":
            await self.peer.set_option(ev.args[0], ev.args[1])
        elif ev.kind == "probe":
            port = int(ev.args[1]) if len(ev.args) > 1 else None
            if ev.args[0] == "to":
                probe.new_connection(remote_port=port)
            else:
                probe.new_connection(local_port=port)
        elif ev.kind == "peer":
            await _peer_action(ev.args, self.peer, probe)
        elif ev.kind == "syscall":
            return await self.syscall(ev, prev)
        elif ev.kind == "command":
            await self.command(ev)
        elif ev.kind == "code":
            await self.code(ev)
        probe.note(" ".join(ev.text.split()))
        return loop.time()

    async def syscall(self, ev: Event, prev: float) -> float:
        spec = ev.syscall
        assert spec is not None
        # one system call at a time, as packetdrill's syscall thread
        for b in list(self.blocking):
            await asyncio.wait({b.task})
        await self.check_blocking()
        started = self.loop.time()
        self.max_lag = 0.0
        self.probe.note(" ".join(ev.text.split()))
        task = self.loop.create_task(self.api.call(spec))
        if spec.end is not None:
            relative, end = spec.end
            # END counts from the same base as the start; a start delayed by
            # the settle step (or a late loop) moves END with it, as it moves
            # every later relative event
            base = max(prev, started - (ev.time.start or 0.0)) if relative else self.start
            expected = base + end
            b = _Blocking(ev, task, expected, self.tolerance(expected - started))

            def done(_t: object, b: _Blocking = b) -> None:
                b.returned = self.loop.time()

            task.add_done_callback(done)
            self.blocking.append(b)
            await asyncio.sleep(0)
            return started
        grace = NONBLOCKING_GRACE + self.floor
        try:
            outcome: Any = await asyncio.wait_for(task, grace)
        except TimeoutError:
            raise ExpectationFailed(
                f"{spec.name}() was expected to return at once, still blocked after "
                f"{grace:.3f} s (write START...END for a blocking call)\n"
                f"timeline:\n{self.probe.format_timeline()}") from None
        except SysError as err:
            outcome = err
        try:
            await check_result(spec, outcome)
        except SyscallFailed as fail:
            raise ExpectationFailed(f"{fail}\ntimeline:\n{self.probe.format_timeline()}"
                                    ) from None
        # packetdrill: the next relative time counts from the call's start (what
        # the call sent may have arrived before it returned)
        return started

    async def command(self, ev: Event) -> None:
        if self._shell is None:
            from ustack.probe.shell import Shell

            path = self.script.path
            self._shell = Shell(self.peer, path.parent if path is not None else None,
                                self.files, self.scratch())
        await self._shell.run(ev.body)

    async def code(self, ev: Event) -> None:
        api = self.api
        fd = api.current
        if fd is None or fd not in api.fds:
            socks = [n for n, e in api.fds.items() if e.kind == "socket"]
            if not socks:
                raise ExpectationFailed("%{ }% needs a socket, none is open")
            fd = max(socks)
        tcpi = api.tcp_info(api.fds[fd].obj)
        base = code_namespace(tcpi)
        # names a block defines stay defined in later blocks (packetdrill
        # runs every block in one Python interpreter, in order); each
        # block sees the TCP_INFO of its own moment
        env = {**self.code_vars, **base}
        out: list[str] = []
        env["print"] = lambda *a, **_k: out.append(" ".join(str(x) for x in a))
        body = textwrap.dedent(ev.body).strip().rstrip("\\").rstrip()
        try:
            exec(compile(body, f"{self.script.name}:{ev.lineno}", "exec"), env)  # noqa: S102
        except AssertionError as exc:
            raise ExpectationFailed(f"assertion failed in %{{ }}%: {body}\n"
                                    f"  ({exc})\ntimeline:\n{self.probe.format_timeline()}"
                                    ) from None
        except NameError as exc:
            raise Unsupported(f"unsupported on {self.peer.kind}: {exc} (not in its TCP_INFO)"
                              ) from None
        self.code_vars.update({k: v for k, v in env.items()
                               if k not in base and k not in ("print", "__builtins__")})
        for line in out:
            self.probe.note(f"%{{ print }}% {line}")


def _unsupported(exc: BaseException) -> str:
    text = str(exc)
    return text if text.startswith("unsupported") else f"unsupported: {text}"


async def run_script(script: Script, peer: Peer, probe: Probe, *,
                     tolerance_floor: float = TOLERANCE_FLOOR,
                     tolerance_fraction: float = TOLERANCE_FRACTION) -> None:
    """Run ``script``; raises :class:`ScriptError` on the first failure
    (:class:`ScriptUnsupported` when it needs something unsupported)."""
    runner = _Runner(script, peer, probe, tolerance_floor, tolerance_fraction)
    try:
        with _no_collector_pauses():
            await runner.run()
    finally:
        for b in runner.blocking:
            b.task.cancel()
        for b in runner.blocking:  # let them unregister before their fds close
            with contextlib.suppress(BaseException):
                await b.task
        if runner._api is not None:
            runner._api.close_all()
        if runner._scratch is not None:
            import shutil

            shutil.rmtree(runner._scratch, ignore_errors=True)


@contextlib.contextmanager
def _no_collector_pauses() -> Iterator[None]:
    """Keep the cyclic collector off while a script runs.  A full
    collection in a process with a large heap (a long pytest session, a
    suite run) stops the loop for 0.1 s or more; landing
    between a ``>`` segment and the ``<`` answer the script gives at ``+0``
    it makes the peer measure that pause as RTT (and a kernel peer then
    derives its RTO, and its tcp_retries2 time budget, from it).  Scripts
    last seconds; reference counting still frees everything acyclic, and
    the collection that was due runs after the script.  (No collection at
    the start either: the caller's clock may already be running.)"""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _target(t: TimeSpec, value: float | None, start: float, prev: float) -> float | None:
    if value is None:
        return None
    return (prev if t.relative else start) + value


#: the last stretch of a wait is spent yielding instead of sleeping: the
#: selector's millisecond timeouts overshoot (several ms on a loaded machine)
_SPIN = 0.003


async def _sleep_until(loop: asyncio.AbstractEventLoop, when: float | None) -> None:
    if when is None:
        return
    delay = when - loop.time()
    if delay > _SPIN:
        await asyncio.sleep(delay - _SPIN)
    while loop.time() < when:
        await asyncio.sleep(0)


async def _peer_action(args: list[str], peer: Peer, probe: Probe) -> None:
    action = args[0]
    if action == "listen":
        port = int(args[1])
        await peer.listen(port)
        probe.new_connection(remote_port=port)
    elif action == "connect":
        port = int(args[1])
        probe.new_connection(local_port=port)
        probe.remote_port = None
        await peer.connect(port)
    elif action == "write":
        await peer.write(bytes(int(args[1])))
    elif action == "write-urgent":
        await peer.write_urgent(bytes(int(args[1])))
    elif action == "keepalive":
        await peer.enable_keepalive()
    elif action == "read":
        await peer.read(int(args[1]))
    elif action == "shutdown":
        await peer.shutdown()
    elif action == "close":
        await peer.close()
    elif action == "expect":
        want = args[1]
        got = await peer.outcome(want=want)
        if got != want:
            raise ExpectationFailed(
                f"the {peer.kind} application saw {got!r}, expected {want!r}\n"
                f"timeline:\n{probe.format_timeline()}")
