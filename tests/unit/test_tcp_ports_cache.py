"""PortAllocator keeps each destination's two RFC 6056 keyed hashes (F and
G, functions of the destination and the secret only): the ports it picks are
the ones recomputing both hashes every time picks (issue 14, connection rate)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ustack.tcp import ports as ports_mod
from ustack.tcp.ports import PortAllocator

_DEST = st.tuples(st.sampled_from([b"\x0a\0\0\x01", b"\x0a\0\0\x02"]),
                  st.sampled_from([b"\x0a\0\0\x09", b"\xc0\xa8\x01\x01", b"\x08\x08\x08\x08"]),
                  st.integers(1, 6))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_DEST, st.integers(0, 3)), max_size=60), st.binary(min_size=16,
                                                                              max_size=16))
def test_cached_hashes_pick_the_ports_fresh_hashes_pick(
        steps: list[tuple[tuple[bytes, bytes, int], int]], secret: bytes) -> None:
    cached = PortAllocator(40000, 40015, secret=secret, table_size=8)
    fresh = PortAllocator(40000, 40015, secret=secret, table_size=8)
    used: set[int] = set()
    for (laddr, raddr, rport), busy in steps:
        taken = set(range(40000, 40000 + busy)) | used
        fresh._hashes.clear()  # recompute F and G for every connection
        try:
            want = fresh.choose(laddr, raddr, rport, taken)
        except OSError:
            want = -1
        try:
            got = cached.choose(laddr, raddr, rport, taken)
        except OSError:
            got = -1
        assert got == want
        if got > 0 and len(used) < 10:
            used.add(got)
    assert cached._table == fresh._table


def test_the_hash_cache_is_bounded() -> None:
    a = PortAllocator(secret=b"k" * 16)
    b = PortAllocator(secret=b"k" * 16)
    n = ports_mod._HASH_CACHE_MAX + 10
    for i in range(n):
        raddr = i.to_bytes(4, "big")
        b._hashes.clear()
        assert a.choose(b"\x0a\0\0\x01", raddr, 80, ()) == b.choose(b"\x0a\0\0\x01", raddr, 80, ())
        assert len(a._hashes) <= ports_mod._HASH_CACHE_MAX
