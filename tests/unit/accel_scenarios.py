"""Seeded, deterministic in-memory TCP scenarios whose every observable is
digested: run once in pure Python and once on the compiled build, the
digests must be equal (tests/unit/test_accel_differential.py; the project
rule "a fast path is allowed only with a differential test that proves it
equals the plain path", docs/compiled.md).

``python tests/unit/accel_scenarios.py`` prints ``{"accel": mode,
"scenarios": {name: sha256}}``; ``--dump NAME`` prints the trace of one
scenario (to diff two modes by hand).

Observed per scenario: every segment each side sends (time and wire bytes),
every event, both connections' next deadline and state after every step of
the simulated clock, the bytes each application read, any exception, and
both final :class:`~ustack.tcp.info.TcpInfo` snapshots.  The scenarios cover
the option combinations (SACK, timestamps, window scaling), each congestion
controller, loss/reordering/duplication, RACK-TLP and RFC 6675 recovery,
F-RTO, pacing, GSO-sized segments, Nagle/nodelay, a zero window (persist
timer), keepalive, SYN loss, and TIME-WAIT.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import ustack
from ustack.tcp.config import TcpConfig
from ustack.tcp.testing import DST_IP, SRC_IP, BulkApp, MemoryPair, WireProfile


@dataclass(frozen=True)
class Scenario:
    name: str
    client: TcpConfig = field(default_factory=TcpConfig)
    server: TcpConfig = field(default_factory=TcpConfig)
    to_server: WireProfile = field(default_factory=WireProfile)
    to_client: WireProfile | None = None
    up: int = 60_000                     # bytes the client sends
    down: int = 20_000                   # bytes the server sends
    seed: int = 1
    #: the server application stops reading for this long (a zero window)
    server_stall: float = 0.0
    #: after the transfer, keep running this long (TIME-WAIT, keepalive)
    idle: float = 0.0
    #: the applications shut down writing when done (False: stay open, idle)
    close: bool = True
    read_interval: float = 0.001
    #: simulated seconds after which the scenario stops (recorded)
    max_time: float = 120.0
    #: from this simulated time on, every segment toward the server is lost
    blackhole_after: float = 0.0


def scenarios() -> Iterator[Scenario]:
    base = TcpConfig()
    # every option combination, each controller, on a lossy reordering wire
    lossy = WireProfile(delay=0.002, loss=0.03, reorder=0.05, reorder_delay=0.004)
    seed = 0
    for cc in ("reno", "cubic", "bbr"):
        for sack in (True, False):
            for ts in (True, False):
                for ws in (True, False):
                    seed += 1
                    cfg = replace(base, congestion=cc, sack=sack, timestamps=ts,
                                  window_scaling=ws)
                    yield Scenario(f"opts-{cc}-sack{int(sack)}-ts{int(ts)}-ws{int(ws)}",
                                   cfg, cfg, lossy, seed=seed)
    # one side without an option the other offers
    yield Scenario("mixed-sack", replace(base, sack=False), base, lossy, seed=101)
    yield Scenario("mixed-ts-ws", base, replace(base, timestamps=False, window_scaling=False),
                   lossy, seed=102)
    # recovery flavours on heavier loss: RACK-TLP, RFC 6675 only, static RACK, no TLP, F-RTO
    heavy = WireProfile(delay=0.005, loss=0.08, reorder=0.1, reorder_delay=0.01)
    recovery: list[tuple[str, dict[str, Any]]] = [
        ("rack", {}), ("rfc6675", {"tcp_recovery": 0}), ("rack-static", {"tcp_recovery": 3}),
        ("rack-nodupthresh", {"tcp_recovery": 5}), ("no-tlp", {"tcp_early_retrans": 0}),
        ("no-frto", {"tcp_frto": 0}), ("no-dsack", {"tcp_dsack": False}),
        ("rfc-rto", {"rto_linux": False})]
    for label, changes in recovery:
        for cc in ("reno", "cubic", "bbr"):
            cfg = replace(base, congestion=cc, **changes)
            yield Scenario(f"recovery-{label}-{cc}", cfg, cfg, heavy, up=120_000, down=5_000,
                           seed=200 + len(label) + len(cc))
    # duplication and reordering without loss (D-SACK, undo), wire encode round trip
    yield Scenario("dup-reorder", base, base,
                   WireProfile(delay=0.001, duplicate=0.1, reorder=0.3, reorder_delay=0.003,
                               encode=True), seed=301)
    yield Scenario("asymmetric", base, base, WireProfile(delay=0.01, loss=0.02),
                   WireProfile(delay=0.001, loss=0.1, duplicate=0.05), up=80_000, seed=302)
    # pacing, GSO-sized segments, small MSS, Nagle vs nodelay, quickack, cork
    sending: list[tuple[str, dict[str, Any]]] = [
        ("pacing-bbr", {"pacing": True, "congestion": "bbr"}), ("pacing-cubic", {"pacing": True}),
        ("gso", {"max_segment": 65160}), ("mss536", {"mss": 536}), ("maxseg", {"maxseg": 1000}),
        ("nodelay", {"nodelay": True}), ("quickack", {"quickack": True}),
        ("cork", {"cork": True}), ("notsent-lowat", {"notsent_lowat": 4096}),
        ("small-buffers", {"send_buffer": 8192, "recv_buffer": 6000}),
        ("iw4", {"initial_cwnd": 4}), ("no-ssai", {"slow_start_after_idle": False})]
    for label, changes in sending:
        cfg = replace(base, **changes)
        yield Scenario(f"send-{label}", cfg, cfg, WireProfile(delay=0.003, loss=0.01),
                       seed=400 + len(label))
    # timers: a zero window (persist), keepalive while idle, SYN loss, a dead peer
    yield Scenario("persist", base, replace(base, recv_buffer=4096), WireProfile(delay=0.002),
                   up=40_000, server_stall=2.0, seed=501)
    ka = replace(base, keepalive=True, keepalive_idle=5.0, keepalive_interval=1.0,
                 keepalive_count=3)
    yield Scenario("keepalive", ka, ka, WireProfile(delay=0.002), up=2_000, down=2_000,
                   idle=20.0, close=False, read_interval=0.5, seed=502)
    yield Scenario("keepalive-dead-peer", ka, ka, WireProfile(delay=0.002), up=2_000,
                   down=2_000, idle=30.0, close=False, read_interval=0.5, seed=506,
                   to_client=WireProfile(delay=0.002), blackhole_after=1.0)
    yield Scenario("time-wait", base, base, WireProfile(delay=0.002, loss=0.05), up=10_000,
                   down=10_000, idle=70.0, seed=507)
    yield Scenario("syn-loss", base, base, WireProfile(delay=0.002, loss=0.5), up=3_000,
                   down=0, seed=503)
    yield Scenario("rto-storm", base, base, WireProfile(delay=0.002, loss=0.3), up=30_000,
                   down=1_000, seed=504)
    yield Scenario("user-timeout", replace(base, user_timeout=3.0), base,
                   WireProfile(delay=0.002, loss=0.6), up=30_000, down=0, seed=505)


def run(sc: Scenario) -> Iterator[str]:
    """The trace of one scenario, line by line."""
    pair = MemoryPair(sc.client, sc.server, seed=sc.seed, profile=replace(sc.to_server),
                      reverse_profile=sc.to_client and replace(sc.to_client), keep_log=True)
    rng = random.Random(sc.seed * 7919)
    up = bytes(rng.getrandbits(8) for _ in range(sc.up))
    down = bytes(rng.getrandbits(8) for _ in range(sc.down))
    client_app = BulkApp(lambda: pair.client.conn, up, random.Random(sc.seed + 1),
                         close_when_done=sc.close, read_interval=sc.read_interval)
    server_app = BulkApp(lambda: pair.server.conn, down, random.Random(sc.seed + 2),
                         close_when_done=sc.close, read_interval=sc.read_interval)
    done_at: list[float] = []
    steps: list[str] = []

    def done() -> bool:
        if sc.close:
            return client_app.eof and server_app.eof
        return len(client_app.received) == sc.down and len(server_app.received) == sc.up

    def app(now: float) -> float | None:
        if sc.blackhole_after and now >= sc.blackhole_after:
            pair.to_server.loss = 1.0
        wakes = [client_app(now)]
        if now >= sc.server_stall:
            wakes.append(server_app(now))
        else:
            wakes.append(sc.server_stall)
        live = [w for w in wakes if w is not None]
        return min(live) if live else None

    def until() -> bool:
        a, b = pair.client.conn, pair.server.conn
        steps.append(f"{pair.now!r} {_state(a)} {_deadline(a)} {_state(b)} {_deadline(b)}")
        if not done_at and (done() or _state(a) == "CLOSED" or _state(b) == "CLOSED"):
            done_at.append(pair.now)
        dead = _state(a) == "CLOSED" and _state(b) in ("-", "CLOSED")
        return (dead or (bool(done_at) and pair.now >= done_at[0] + sc.idle)
                or pair.now >= sc.max_time)

    error = "none"
    try:
        pair.run(until, max_time=sc.max_time + 1.0, app=app, max_steps=200_000)
    except Exception as exc:  # the same failure in both modes is what matters
        error = f"{type(exc).__name__}: {exc}"
    yield f"error {error}"
    yield f"now {pair.now!r} dropped {pair.dropped}"
    yield f"client read {hashlib.sha256(client_app.received).hexdigest()} "\
          f"{len(client_app.received)} eof {client_app.eof}"
    yield f"server read {hashlib.sha256(server_app.received).hexdigest()} "\
          f"{len(server_app.received)} eof {server_app.eof}"
    for side, ep in (("client", pair.client), ("server", pair.server)):
        for t, seg in ep.log:
            yield f"{side} sent {t!r} {seg.encode(SRC_IP, DST_IP).hex()}"
        for e in ep.events:
            yield f"{side} event {e!r}"
        if ep.conn is not None:
            yield f"{side} info {ep.conn.info(pair.now)!r}"
    yield from steps


def _state(conn: object) -> str:
    state = getattr(conn, "state", None)
    return "-" if state is None else str(state.name)


def _deadline(conn: object) -> str:
    nd = getattr(conn, "next_deadline", None)
    return "-" if nd is None else repr(nd())


def digest(sc: Scenario) -> str:
    h = hashlib.sha256()
    for line in run(sc):
        h.update(line.encode())
        h.update(b"\n")
    return h.hexdigest()


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "--dump":
        for sc in scenarios():
            if sc.name == argv[1]:
                for line in run(sc):
                    print(line)
                return 0
        print(f"no scenario {argv[1]!r}", file=sys.stderr)
        return 2
    out = {sc.name: digest(sc) for sc in scenarios()}
    print(json.dumps({"accel": ustack.accel_status()["mode"], "scenarios": out}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
