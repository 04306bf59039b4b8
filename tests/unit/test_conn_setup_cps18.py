"""Connection setup and teardown, issue 14 (cps18):

* a connection whose timers all stopped (the handshake's RTO once the
  SYN-ACK came) and an orphan compacted to a TIME-WAIT record leave no live
  heap entry behind: the table's timer does not wake up for them;
* the connection table's keys share one int object per port number
  (``_PORT_BOXES``), equal to the endpoint's key;
* ``congestion.create`` builds the built-in algorithms directly, and a
  user class registered under a built-in name replaces it;
* (cps19) the 2MSL entries of TIME-WAIT records wait in the table's FIFO
  (``TcpTable._tw_fifo``), not in the timer heap, and the records still end
  on time.

Two stacks on the in-memory link, asyncio streams on both."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from ustack.driver import tcp_table
from ustack.link.memory import MemoryPair
from ustack.stack import Stack
from ustack.tcp import congestion
from ustack.tcp.config import TcpConfig
from ustack.tcp.congestion import Bbr, CongestionController, Cubic, RateSample, Reno
from ustack.tcp.connection import TcpConnection
from ustack.tcp.state import TcpState
from ustack.tcp.timewait import TimeWait
from ustack.wire.tcp import ACK, SYN, TcpOptions, TcpSegment

A, B = "10.9.2.1", "10.9.2.2"
N = 10


def _run(close: bool, time_wait: float | None = None) -> dict[str, Any]:
    """With ``time_wait``, the client's records use it and the run waits
    until they have ended."""
    out: dict[str, Any] = {}

    async def main() -> None:
        a_dev, b_dev = MemoryPair()
        cfg = TcpConfig(time_wait=time_wait) if time_wait is not None else None
        a = await Stack.start(address=f"{A}/24", device=a_dev, diagnostics=False,
                              tcp_config=cfg)
        b = await Stack.start(address=f"{B}/24", device=b_dev, diagnostics=False)
        try:
            async def serve(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
                with contextlib.suppress(ConnectionError):  # (reset when the stacks close)
                    await r.read()
                w.close()

            await b.start_server(serve, port=7300)
            await b.start_server(serve, port=7301)
            writers = [(await a.open_connection(B, 7300 + i % 2))[1] for i in range(N)]
            for _ in range(20):
                await asyncio.sleep(0)
            table = a.tcp
            eps = list(table._conns.values())
            out["established_hd"] = [ep.heap_deadline for ep in eps]
            out["keys"] = list(table._conns)
            out["ep_keys"] = [ep.key for ep in eps]
            if close:
                closed_at = table.now()
                for w in writers:
                    w.close()
                for w in writers:
                    await w.wait_closed()
                for _ in range(50):
                    await asyncio.sleep(0.001)
                eps = list(table._conns.values())
                out["records"] = [type(ep.conn) for ep in eps]
                out["tw_hd"] = [(ep.heap_deadline, ep.conn.next_deadline()) for ep in eps]
                # live heap entries: one per endpoint at most, each its 2MSL
                # (the records' entries are in the TIME-WAIT FIFO)
                live = [e for e in [*table._heap, *table._tw_fifo]
                        if not e[2].removed and e[2].heap_deadline == e[0]]
                out["live"] = len(live)
                out["n"] = len(eps)
                out["fifo_live"] = sum(1 for e in table._tw_fifo
                                       if not e[2].removed and e[2].heap_deadline == e[0])
                out["heap_live"] = sum(1 for e in table._heap
                                       if not e[2].removed and e[2].heap_deadline == e[0])
                deadlines = [e[0] for e in table._tw_fifo]
                out["sorted"] = deadlines == sorted(deadlines)
            if close and time_wait is not None:
                async with asyncio.timeout(5):
                    while table._conns:
                        await asyncio.sleep(0.02)
                out["gone_after"] = table.now() - closed_at
                out["fifo_left"] = len(table._tw_fifo)
                out["timer"] = table._timer
        finally:
            await a.close()
            await b.close()

    asyncio.run(main())
    return out


def test_established_connections_leave_no_live_heap_entry() -> None:
    got = _run(close=False)
    assert len(got["established_hd"]) == N
    # the SYN's RTO stopped with the SYN-ACK: no deadline, no live entry
    assert got["established_hd"] == [None] * N


def test_time_wait_record_has_one_live_entry_its_2msl() -> None:
    got = _run(close=True)
    assert got["n"] == N and all(t is TimeWait for t in got["records"]), got["records"]
    # the entry that stays live is the record's own deadline (the FIN's RTO
    # entry went stale when the record replaced the connection)
    assert all(hd is not None and hd == dl for hd, dl in got["tw_hd"]), got["tw_hd"]
    assert got["live"] == N


def test_time_wait_records_wait_in_the_fifo_and_end_after_2msl() -> None:
    got = _run(close=True, time_wait=0.3)
    assert got["records"] == [TimeWait] * N
    assert got["fifo_live"] == N and got["heap_live"] == 0
    assert got["sorted"]
    # ended by the table's timer, not before their time_wait
    assert got["gone_after"] >= 0.3
    assert got["fifo_left"] == 0 and got["timer"] is None


def test_table_keys_share_one_int_per_port() -> None:
    got = _run(close=False)
    keys, ep_keys = got["keys"], got["ep_keys"]
    assert sorted(keys) == sorted(ep_keys)  # equal to the endpoints' keys
    boxes = tcp_table._PORT_BOXES
    for lport, _raddr, rport in keys:
        assert boxes[lport] is lport and boxes[rport] is rport
    by_port: dict[int, set[int]] = {}
    for _lport, _raddr, rport in keys:
        by_port.setdefault(rport, set()).add(id(rport))
    assert sorted(by_port) == [7300, 7301]
    assert all(len(ids) == 1 for ids in by_port.values()), by_port


@pytest.mark.parametrize(("name", "cls"), [("reno", Reno), ("cubic", Cubic), ("bbr", Bbr)])
def test_create_builds_the_builtin_classes(name: str, cls: type) -> None:
    cc = congestion.create(name, 1448, 10)
    assert type(cc) is cls and cc.name == name
    assert cc.mss == 1448 and cc.cwnd == 10 * 1448


def test_a_user_class_under_a_builtin_name_replaces_it() -> None:
    class MyReno(CongestionController):
        name = "reno"

        def on_ack(self, rs: RateSample, now: float) -> None:
            self.cwnd += 1

    try:
        congestion.register(MyReno)
        cc = congestion.create("reno", 1000, 4)
        assert type(cc) is MyReno and cc.cwnd == 4000
        assert congestion._REGISTRY["reno"] is MyReno
    finally:
        congestion.register(Reno)
    assert type(congestion.create("reno", 1000, 4)) is Reno


def test_unknown_name_lists_the_available_ones() -> None:
    with pytest.raises(ValueError, match="vegas-nope.; available: .*cubic"):
        congestion.create("vegas-nope", 1000, 4)


# ------------------------------------------- accept with the SYN-ACK already sent

def _state(obj: object, depth: int = 0) -> dict[str, Any]:
    """The plain fields of ``obj`` and of the rooms it holds, by name."""
    out: dict[str, Any] = {}
    names = [n for c in type(obj).__mro__ for n in getattr(c, "__slots__", ())]
    for name in names:
        try:
            v = getattr(obj, name)
        except AttributeError:
            continue
        if v is None or isinstance(v, (int, float, str, bytes, tuple)):
            out[name] = v
        elif isinstance(v, list):
            out[name] = len(v)
        elif depth < 2 and name in ("snd", "rcv", "timers", "rtt", "cc", "buf", "chrono"):
            out[name] = _state(v, depth + 1)
    return out


@pytest.mark.parametrize("opts", [
    TcpOptions(mss=1460, wscale=7, sack_permitted=True, timestamp=(777, 0)),
    TcpOptions(), TcpOptions(mss=1200), TcpOptions(sack_permitted=True, wscale=2),
])
@pytest.mark.parametrize("with_data", [False, True])
def test_accept_synack_sent_equals_building_and_draining_it(opts: TcpOptions,
                                                            with_data: bool) -> None:
    syn = TcpSegment(40000, 80, 5000, 0, SYN, 64240, 0, opts)
    ack_opts = TcpOptions(timestamp=(778, 0)) if opts.timestamp else TcpOptions()
    iss = 123456789

    def build(sent: bool) -> tuple[TcpConnection, list[TcpSegment]]:
        conn = TcpConnection.accept(syn, iss, 50.0, TcpConfig(), synack_sent=sent)
        drained = conn.segments_to_send(50.0)
        ack = TcpSegment(40000, 80, 5001, iss + 1, ACK, 502, 0, ack_opts,
                         b"hello" if with_data else b"")
        if ack_opts.timestamp:
            ack.options = TcpOptions(timestamp=(778, conn._ts_val(50.0)))
        conn.receive(ack, 50.01)
        return conn, drained

    old, old_out = build(False)
    new, new_out = build(True)
    assert len(old_out) == 1 and old_out[0].flags == SYN | ACK and new_out == []
    assert _state(new) == _state(old)
    assert new.info(50.02) == old.info(50.02)
    assert new.segs_out == 1 and new.last_send == 50.0
    assert new.segments_to_send(50.02) == old.segments_to_send(50.02)
    assert new.state is old.state is TcpState.ESTABLISHED
