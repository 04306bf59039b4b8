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
import re
from dataclasses import dataclass, field

from ustack.probe.packet import PacketSpec, ScriptSyntaxError, parse_segment
from ustack.probe.peers import Peer
from ustack.probe.probe import DEFAULT_TIMEOUT, ExpectationFailed, Probe

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
    kind: str  # send, expect, nothing, icmp, peer, sysctl, probe
    spec: PacketSpec | None = None
    args: list[str] = field(default_factory=list)
    value: float = 0.0
    icmp: tuple[int, int, int] = (3, 3, 0)  # type, code, mtu


@dataclass(slots=True)
class Script:
    name: str
    events: list[Event]


_TIME = re.compile(r"^(\*|\+?\d+(?:\.\d*)?(?:~\+?\d+(?:\.\d*)?)?)$")


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


def parse_script(text: str, name: str = "<script>") -> Script:
    """Parse a whole script; :class:`ScriptSyntaxError` names the bad line."""
    events = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            events.append(_parse_line(lineno, line))
        except (ScriptSyntaxError, ValueError) as exc:
            raise ScriptSyntaxError(f"{name}:{lineno}: {exc}\n    {raw.strip()}") from None
    return Script(name, events)


def _parse_line(lineno: int, line: str) -> Event:
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
        return Event(lineno, line, time, "send", spec=parse_segment(body, expectation=False))
    if head == ">":
        if rest and rest[0] == "nothing":
            tail = [w for w in rest[1:] if w != "for"]
            if len(tail) != 1:
                raise ScriptSyntaxError("expected '> nothing for SECONDS'")
            return Event(lineno, line, time, "nothing", value=float(tail[0].rstrip("s")))
        return Event(lineno, line, time, "expect", spec=parse_segment(body, expectation=True))
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
            int(rest[1])
        return Event(lineno, line, time, "probe", args=rest)
    raise ScriptSyntaxError(f"unknown event {head!r}: expected <, >, peer, sysctl or probe")


_PEER_ARITY = {"listen": 1, "connect": 1, "write": 1, "read": 1, "shutdown": 0, "close": 0,
               "expect": 1, "write-urgent": 1, "keepalive": 0}


def _check_peer_args(args: list[str]) -> None:
    if not args or args[0] not in _PEER_ARITY:
        raise ScriptSyntaxError(f"peer action must be one of {', '.join(_PEER_ARITY)}")
    if len(args) - 1 != _PEER_ARITY[args[0]]:
        raise ScriptSyntaxError(f"'peer {args[0]}' takes {_PEER_ARITY[args[0]]} argument(s)")
    if args[0] in ("listen", "connect", "write", "read", "write-urgent"):
        int(args[1])


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


async def run_script(script: Script, peer: Peer, probe: Probe, *,
                     tolerance_floor: float = TOLERANCE_FLOOR,
                     tolerance_fraction: float = TOLERANCE_FRACTION) -> None:
    """Run ``script``; raises :class:`ScriptError` on the first failure."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    prev = start
    probe.start_time = start
    probe.last_event = start
    for ev in script.events:
        try:
            prev = await _run_event(ev, peer, probe, start, prev, tolerance_floor,
                                    tolerance_fraction)
        except ExpectationFailed as exc:
            raise ScriptError(f"{script.name}:{ev.lineno}: {ev.text}\n{exc}") from None
        except (OSError, RuntimeError, ValueError, TimeoutError, NotImplementedError) as exc:
            raise ScriptError(
                f"{script.name}:{ev.lineno}: {ev.text}\n{type(exc).__name__}: {exc}\n"
                f"timeline:\n{probe.format_timeline()}") from None


def _target(t: TimeSpec, value: float | None, start: float, prev: float) -> float | None:
    if value is None:
        return None
    return (prev if t.relative else start) + value


async def _sleep_until(loop: asyncio.AbstractEventLoop, when: float | None) -> None:
    if when is not None:
        delay = when - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)


async def _run_event(ev: Event, peer: Peer, probe: Probe, start: float, prev: float,
                     floor: float, fraction: float) -> float:
    loop = asyncio.get_running_loop()
    t = ev.time
    lo = _target(t, t.start, start, prev)
    hi = _target(t, t.end, start, prev) if t.end is not None else lo
    if ev.kind == "expect":
        assert ev.spec is not None
        probe.last_event = prev
        if lo is None or hi is None:
            within = (0.0, DEFAULT_TIMEOUT)
        else:
            tol_lo = max(floor, fraction * (lo - prev))
            tol_hi = max(floor, fraction * (hi - prev))
            within = (max(0.0, lo - tol_lo - prev), hi + tol_hi - prev)
        got = await probe.expect_spec(ev.spec, within=within)
        return got.when
    if ev.kind == "nothing":
        await _sleep_until(loop, lo)
        probe.last_event = loop.time()
        await probe.expect_nothing(ev.value)
        return loop.time()
    await _sleep_until(loop, lo)
    if ev.kind in ("send", "icmp"):
        pending = probe.pending()
        if pending:
            probe.drain()
            raise ExpectationFailed(
                f"unexpected segment from the peer before this line:\n"
                f"actual:   > {pending[0].line}\n"
                f"timeline:\n{probe.format_timeline()}")
        assert ev.spec is not None
        if ev.kind == "send":
            probe.send_spec(ev.spec)
        else:
            probe.send_icmp(ev.icmp[0], ev.icmp[1], ev.spec, mtu=ev.icmp[2])
        return loop.time()
    if ev.kind == "sysctl":
        await peer.set_option(ev.args[0], ev.args[1])
    elif ev.kind == "probe":
        port = int(ev.args[1]) if len(ev.args) > 1 else None
        if ev.args[0] == "to":
            probe.new_connection(remote_port=port)
        else:
            probe.new_connection(local_port=port)
    elif ev.kind == "peer":
        await _peer_action(ev.args, peer, probe)
    probe.note(" ".join(ev.text.split()))
    return loop.time()


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
