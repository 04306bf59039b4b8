"""The receiver never retracts the right edge of the window it advertised
(RFC 9293 3.8.6, RFC 7323 2.4; Linux ``tcp_select_window`` without
``tcp_shrink_window``), and the edge it accepts text to is the one announced."""

from __future__ import annotations

import random

import pytest

from ustack.tcp.receiver import MASK, Receiver
from ustack.tcp.timers import Timers


def _receiver(size: int, wscale: int) -> Receiver:
    r = Receiver(Timers(), size, 1460, 0.04, 0, 256)
    r.wscale = wscale
    r.adv = 0
    return r


def _announced(r: Receiver, field: int) -> int:
    """The right edge the peer computes from an ACK of RCV.NXT with ``field``."""
    return (r.nxt + (field << r.wscale)) & MASK


@pytest.mark.parametrize("wscale", [0, 3, 7, 14])
@pytest.mark.parametrize("seed", range(5))
def test_announced_right_edge_never_moves_left(wscale: int, seed: int) -> None:
    rng = random.Random(seed)
    r = _receiver(1 << 20, wscale)
    last = _announced(r, r.window())
    for _ in range(400):
        room = (r.adv - r.nxt) & MASK
        n = rng.randrange(1, 1461)
        if room and rng.random() < 0.9:
            r.accept(b"x" * min(n, room), 0.0)  # the application does not read
        elif rng.random() < 0.5:
            r.read(rng.randrange(1, 70000))
        field = r.window()
        edge = _announced(r, field)
        assert ((edge - last) & MASK) < 0x80000000, (
            f"right edge moved left by {(last - edge) & MASK} bytes")
        # the edge we accept text to is the announced one
        assert r.adv == edge
        last = edge


def test_a_scaled_window_rounding_up_once_is_kept_on_the_next_ack() -> None:
    """The case the old code got wrong: 1000 then 100 unread bytes with
    wscale 7 announced the edge at +104 and then at +76 bytes beyond RCV.ADV."""
    r = _receiver(1 << 20, 7)
    r.window()
    r.accept(b"x" * 1000, 0.0)
    e1 = _announced(r, r.window())
    r.accept(b"x" * 100, 0.0)
    e2 = _announced(r, r.window())
    assert ((e2 - e1) & MASK) < 0x80000000 and e2 >= e1


def test_unscaled_window_never_beyond_the_field() -> None:
    r = _receiver(1 << 20, 0)
    assert r.window() == 0xFFFF
    assert (r.adv - r.nxt) & MASK == 0xFFFF  # not the whole 1 MB buffer
    r.accept(b"x" * 30000, 0.0)
    r.read(30000)
    r.window()
    assert (r.adv - r.nxt) & MASK == 0xFFFF


def test_no_window_update_when_the_field_is_already_at_its_maximum() -> None:
    """A "window update" that repeats the same 65535 would be a duplicate
    ACK to a non-SACK sender (RFC 5681 2) and trigger a fast retransmit."""
    r = _receiver(1 << 20, 0)
    r.window()
    r.accept(b"x" * 1460, 0.0)
    r.sent_ack()
    r.window()
    r.read(1460)
    r.maybe_window_update()
    assert not r.ack_now
