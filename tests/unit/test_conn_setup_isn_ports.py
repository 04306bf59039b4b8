"""The connect path's ISN and ephemeral-port shortcuts against their plain
definitions: RFC 6528's keyed hash computed in one shot, RFC 6056
Algorithm 3 through ``PortAllocator.choose`` with a predicate."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from ustack.tcp.isn import IsnGenerator
from ustack.tcp.ports import PortAllocator

addr = st.binary(min_size=4, max_size=4)
port = st.integers(min_value=0, max_value=65535)


def _reference_isn(secret: bytes, laddr: bytes, lport: int, raddr: bytes, rport: int,
                   now: float) -> int:
    """RFC 6528 section 3 with BLAKE2s keyed by ``secret``, hashed in one call."""
    h = hashlib.blake2s(laddr + lport.to_bytes(2, "big") + raddr + rport.to_bytes(2, "big"),
                        key=secret, digest_size=4).digest()
    return (int(now * 250_000) + int.from_bytes(h, "big")) & 0xFFFFFFFF


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=16, max_size=32), st.lists(
    st.tuples(addr, port, addr, port, st.floats(min_value=0, max_value=1e7)),
    min_size=1, max_size=8))
def test_isn_equals_one_shot_keyed_hash(secret: bytes,
                                        tuples: list[tuple[bytes, int, bytes, int, float]]
                                        ) -> None:
    gen = IsnGenerator(secret)
    for laddr, lport, raddr, rport, now in tuples:  # (the copied state is never consumed)
        assert gen.isn(laddr, lport, raddr, rport, now) == _reference_isn(
            secret, laddr, lport, raddr, rport, now)


def test_isn_secret_matters() -> None:
    a = IsnGenerator(b"a" * 16).isn(b"\x0a\0\0\x01", 1, b"\x0a\0\0\x02", 2, 0.0)
    b = IsnGenerator(b"b" * 16).isn(b"\x0a\0\0\x01", 1, b"\x0a\0\0\x02", 2, 0.0)
    assert a != b


@settings(max_examples=150, deadline=None)
@given(st.binary(min_size=1, max_size=8), st.integers(min_value=1, max_value=40),
       st.lists(st.tuples(st.sampled_from([b"\x0a\0\0\x02", b"\x0a\0\0\x03"]),
                          st.sampled_from([80, 443]),
                          st.booleans(), st.booleans()), min_size=1, max_size=60),
       st.sets(st.integers(min_value=1000, max_value=1040), max_size=10))
def test_choose_free_equals_choose(secret: bytes, width: int,
                                   steps: list[tuple[bytes, int, bool, bool]],
                                   listeners: set[int]) -> None:
    """Two allocators with one secret, one driven through ``choose`` and a
    predicate, one through ``choose_free`` and the table's containers: the
    same port at every step (or both exhausted), over a small range so that
    ports collide, wrap and run out."""
    laddr = b"\x0a\0\0\x01"
    a = PortAllocator(1000, 1000 + width - 1, secret=secret, table_size=4)
    b = PortAllocator(1000, 1000 + width - 1, secret=secret, table_size=4)
    conns: dict[tuple[int, bytes, int], None] = {}
    for raddr, rport, keep, listen in steps:
        def taken(p: int, raddr: bytes = raddr, rport: int = rport) -> bool:
            return (p, raddr, rport) in conns or p in listeners
        try:
            pa: int | None = a.choose(laddr, raddr, rport, taken)
        except OSError:
            pa = None
        try:
            pb: int | None = b.choose_free(laddr, raddr, rport, conns, listeners)
        except OSError:
            pb = None
        assert pa == pb
        if pa is None:
            continue
        assert (pa, raddr, rport) not in conns and pa not in listeners
        if keep:
            conns[(pa, raddr, rport)] = None
        if listen:
            listeners.add(pa)


def test_choose_free_exhausted() -> None:
    import pytest

    alloc = PortAllocator(2000, 2001, secret=b"x")
    conns = {(2000, b"\x0a\0\0\x02", 80): None}
    with pytest.raises(OSError):
        alloc.choose_free(b"\x0a\0\0\x01", b"\x0a\0\0\x02", 80, conns, {2001})
    # the other destination still has both
    assert alloc.choose_free(b"\x0a\0\0\x01", b"\x0a\0\0\x03", 80, conns, set()) in (2000, 2001)


def test_state_identity_checks_equal_the_sets() -> None:
    """connection._sending / _receiving (identity chains, no Enum hash)
    against the frozensets they stand for, on every state."""
    from ustack.tcp import connection
    from ustack.tcp.state import TcpState

    for state in TcpState:
        assert connection._sending(state) == (state in connection._SENDING_STATES), state
        assert connection._receiving(state) == (state in connection._RECEIVING_STATES), state


def test_negotiated_init_keeps_the_dataclass_contract() -> None:
    """options.Negotiated's written-out __init__: the dataclass defaults,
    positional and keyword arguments, field order, eq and repr."""
    import dataclasses

    from ustack.tcp.options import DEFAULT_MSS, Negotiated

    n = Negotiated()
    assert dataclasses.astuple(n) == (DEFAULT_MSS, False, 0, 0, False, False)
    m = Negotiated(1460, True, 7, 9, True, True)
    assert [f.name for f in dataclasses.fields(m)] == [
        "send_mss", "wscale_ok", "snd_wscale", "rcv_wscale", "sack_ok", "ts_ok"]
    assert dataclasses.astuple(m) == (1460, True, 7, 9, True, True)
    assert m == Negotiated(send_mss=1460, wscale_ok=True, snd_wscale=7, rcv_wscale=9,
                           sack_ok=True, ts_ok=True)
    assert m != n
    assert repr(n).startswith("Negotiated(send_mss=")
