"""Linux's send-buffer rule (ustack.tcp.send_buffer: charged / admit /
writable) alone and in the connection: truesize charge, the overshoot a
write's current skb allows, the 2/3 wakeup, and the strict bound kept
under memory pressure."""

from __future__ import annotations

import random

from ustack.tcp import TcpConfig, TcpConnection
from ustack.tcp import events as ev
from ustack.tcp.send_buffer import SKB_OVERHEAD, admit, charged, writable
from ustack.tcp.testing import Script
from ustack.wire.tcp import SYN, TcpOptions, TcpSegment

ISS = 10_000
PEER = 0


def accepted(win: int, mss: int = 1000, cfg: TcpConfig | None = None) -> Script:
    syn = TcpSegment(40000, 80, PEER, 0, SYN, win, 0, TcpOptions(mss=mss, wscale=0))
    s = Script(TcpConnection.accept(syn, ISS, 0.0, cfg), ISS, PEER)
    s.drain()
    s.now = 0.05
    s.inject(s.seg(".", 1, 1, win=win))
    s.events.clear()
    return s


def test_charge_is_payload_plus_overhead_per_skb() -> None:
    assert charged(0, 1000) == 0
    assert charged(1, 1000) == 1 + SKB_OVERHEAD
    assert charged(1000, 1000) == 1000 + SKB_OVERHEAD
    assert charged(1001, 1000) == 1001 + 2 * SKB_OVERHEAD


def test_admit_numbers_of_the_packetdrill_scripts() -> None:
    # timestamping/partial.pkt: mss 988, peer window 2000 -> goal 988, two
    # segments leave at once, SOCK_MIN_SNDBUF 4608: 2964 of 10000
    assert admit(10000, 0, 0, 1976, 988, 4608) == 2964
    # blocking/blocking-write.pkt: goal 25000, cwnd 10000, sndbuf 42000: the
    # first skb's unsent rest is refilled, one more skb starts: 60000
    assert admit(61000, 0, 0, 10000, 25000, 42000) == 60000
    # the same without the partial send: two skbs, no refill
    assert admit(61000, 0, 0, 0, 25000, 42000) == 50000


def test_admit_fills_the_unsent_tail_unchecked_but_not_past_a_record_end() -> None:
    # 30000 queued (over a 20000 bound), 500 of them unsent in a tail skb
    assert admit(5000, 30000, 500, 0, 1000, 20000) == 500
    assert admit(5000, 30000, 500, 0, 1000, 20000, tail_closed=True) == 0
    assert admit(5000, 30000, 0, 0, 1000, 20000) == 0


def test_writable_at_two_thirds() -> None:
    # blocking-write: at ACK 30001 30000 queued (2 skbs) is above 2/3 of
    # 42000; at ACK 36001 24000 (1 skb) is below
    assert not writable(30000, 25000, 42000)
    assert writable(24000, 25000, 42000)
    assert writable(0, 1000, 1)
    for q in range(0, 50000, 97):
        c = charged(q, 5000)
        assert writable(q, 5000, 30000) == (c < 30000 and 3 * c <= 2 * 30000 + (c & 1))


def _admit_loop(n: int, queued: int, unsent: int, out: int, goal: int, limit: int,
                tail_closed: bool) -> int:
    """The rule without admit's everything-fits shortcut (reference)."""
    c = charged(queued, goal)
    pos, sent, tail, taken = queued, queued - unsent, 0, 0
    wire_end = sent + out
    if unsent and not tail_closed:
        tail = unsent % goal or goal
    while taken < n:
        if 0 < tail < goal:
            k = min(goal - tail, n - taken)
        elif c >= limit:
            break
        else:
            k, c, tail = min(goal, n - taken), c + SKB_OVERHEAD, 0
        taken, tail, c, pos = taken + k, tail + k, c + k, pos + k
        if tail == goal and pos - tail <= sent < wire_end:
            sent = min(pos, wire_end)
            tail = pos - sent
    return taken


def test_admit_shortcut_matches_the_loop() -> None:
    rng = random.Random(7)
    for _ in range(20000):
        goal = rng.choice([536, 988, 1000, 1448, 25000, 65000])
        limit = rng.choice([4608, 20000, 42000, 1 << 20])
        queued = rng.randrange(0, 2 * limit)
        unsent = rng.randrange(0, queued + 1)
        out = rng.randrange(0, 4) * rng.choice([0, goal // 4, 1000, goal])
        n = rng.randrange(0, 3 * limit)
        closed = rng.random() < 0.2
        assert admit(n, queued, unsent, out, goal, limit, closed) == \
            _admit_loop(n, queued, unsent, out, goal, limit, closed)


def test_connection_write_overshoots_and_wakes_at_two_thirds() -> None:
    s = accepted(40000)
    s.conn.set_send_buffer(30000)
    assert s.conn.send(b"w" * 41000, s.now) == 30000  # goal 20000, 10000 leave
    assert s.conn.send_space() == 0
    s.drain()
    s.now += 0.1
    s.inject(s.seg(".", 1, 10001, win=40000))
    assert s.conn.send_space() == 0  # 20000 + overhead > 2/3 of 30000
    assert not any(isinstance(e, ev.SendSpaceAvailable) for e in s.events)
    # a non-blocking write still starts an skb while the charge is below the bound
    s.now += 0.1
    s.inject(s.seg(".", 1, 20001, win=40000))
    assert s.conn.send_space() > 0
    assert any(isinstance(e, ev.SendSpaceAvailable) for e in s.events)
    assert s.conn.send(b"w" * 11000, s.now) == 11000


def test_memory_pressure_clamp_keeps_the_strict_bound() -> None:
    s = accepted(40000)
    s.conn.snd.buf.limit = 3000  # tcp_table's clamp under memory pressure
    assert s.conn.send(b"w" * 9000, s.now) == 3000
    assert s.conn.send_space() == 0


def _admit_general(conn: TcpConnection, n: int) -> int:
    """TcpConnection._sndbuf_admit without its early exit: admit() with the
    window/cwnd arithmetic always done (the reference for the shortcut)."""
    from ustack.tcp.connection import _SENDING_STATES
    from ustack.wire.seq import MASK

    snd = conn.snd
    una = conn.snd_una
    queued = len(snd.buf)
    sent = (snd.ptr - una) & MASK
    out = 0
    rec = conn.rec
    if rec is not None and conn.state in _SENDING_STATES:
        flight = (conn.snd_nxt - una) & MASK
        cwnd_room = flight + conn.cc.cwnd - rec.in_flight()
        wnd = conn.snd_wnd if conn.snd_wnd < cwnd_room else cwnd_room
        if wnd > sent:
            out = (wnd - sent) // conn.send_mss * conn.send_mss
    eor = snd.eor
    closed = bool(eor) and eor[-1] == (una + queued) & MASK
    return admit(n, queued, queued - sent, out, conn._size_goal(), snd.buf.limit, closed)


def test_admit_early_exit_matches_the_general_path() -> None:
    rng = random.Random(14)
    hits = 0
    for trial in range(40):
        s = accepted(rng.choice([4000, 40000, 200000]))
        s.conn.set_send_buffer(rng.choice([4608, 10000, 30000, 100000]))
        acked = 1
        for _step in range(30):
            n = rng.choice([1, 100, 1000, 5000, 20000, 70000])
            want = _admit_general(s.conn, n)
            got = s.conn._sndbuf_admit(n)
            assert got == want, (trial, n, len(s.conn.snd.buf))
            hits += got == n
            s.conn.send(b"w" * n, s.now)
            if rng.random() < 0.2:
                s.conn.mark_record_end()
            s.drain()
            if rng.random() < 0.5:
                s.now += 0.01
                acked = (s.conn.snd_nxt - ISS) & 0xFFFFFFFF
                s.inject(s.seg(".", 1, acked, win=s.conn.snd_wnd or 40000))
    assert 0 < hits < 40 * 30  # both the early exit and the general path ran
