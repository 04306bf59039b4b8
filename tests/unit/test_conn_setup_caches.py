"""Shortcuts of the connection setup path against the plain computations they
replace: the remembered IPv4-literal test (ustack.reach), the ustack loop's
remembered routes, and TcpConfig's written-out ``__eq__`` (the connection
table compares its config snapshot on every connect)."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import errno
import ipaddress
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ustack import reach
from ustack.aio.loop import StackOptions, new_loop
from ustack.tcp.config import TcpConfig


def _plain_literal(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True


_octet = st.one_of(st.integers(0, 255).map(str), st.sampled_from(["256", "01", "", "-1", "x"]))
_hosts = st.one_of(
    st.tuples(_octet, _octet, _octet, _octet).map(".".join),
    st.tuples(_octet, _octet, _octet).map(".".join),
    st.text(max_size=20),
    st.sampled_from(["localhost", "127.0.0.1", "0.0.0.0", "255.255.255.255", "224.0.0.1",
                     "10.77.0.1", "10.77.0.2", "10.77.1.5", "8.8.8.8", "::1", " 10.77.0.2"]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_hosts, min_size=1, max_size=30))
def test_remembered_literal_test_equals_ipaddress(hosts: list[str]) -> None:
    for host in hosts + hosts:  # the second round answers from the cache
        assert reach.is_ipv4_literal(host) is _plain_literal(host), host


def test_literal_cache_is_bounded_and_skips_str_subclasses() -> None:
    reach._LITERAL.clear()
    for i in range(reach._LITERAL_MAX + 10):
        assert reach.is_ipv4_literal(f"10.{i // 256 % 256}.{i % 256}.1")
    assert 0 < len(reach._LITERAL) <= reach._LITERAL_MAX

    class Odd(str):
        pass

    assert reach.is_ipv4_literal(Odd("10.1.2.3"))
    assert Odd("10.1.2.3") not in [k for k in reach._LITERAL if type(k) is not str]
    assert all(type(k) is str for k in reach._LITERAL)


async def _never(options: StackOptions) -> Any:  # pragma: no cover - never started
    raise AssertionError("the stack is not started in these tests")


@settings(max_examples=200, deadline=None)
@given(st.lists(_hosts, min_size=1, max_size=30), st.lists(st.booleans(), min_size=1,
                                                             max_size=4))
def test_loop_route_cache_equals_via_stack(hosts: list[str], gateways: list[bool]) -> None:
    options = StackOptions(iface="mem0", address="10.77.0.1/24", diagnostics=False)
    loop = new_loop(options, _never, use_uvloop=False, start=False)
    try:
        iface = ipaddress.IPv4Interface("10.77.0.1/24")
        for with_gateway in gateways:  # the gateway changing under the cache
            options.gateway = "10.77.0.254" if with_gateway else None
            for host in hosts + hosts:
                assert loop.ustack_routes(host) is reach.via_stack(
                    iface, options.gateway, host), (host, options.gateway)
    finally:
        loop.close()


def test_loop_route_cache_is_bounded() -> None:
    options = StackOptions(iface="mem0", address="10.77.0.1/24", diagnostics=False)
    loop: Any = new_loop(options, _never, use_uvloop=False, start=False)
    try:
        for i in range(3000):
            assert loop.ustack_routes(f"10.77.0.{i % 250 + 2}") is True
            assert loop.ustack_routes(f"10.{i % 250 + 78}.{i // 250}.9") is False
        assert len(loop._ustack_route_cache) <= 1024
    finally:
        loop.close()
    asyncio.set_event_loop(None)


# ------------------------------------------------------------- TcpConfig.__eq__

_FIELDS = [f.name for f in dataclasses.fields(TcpConfig)]


def _reference_eq(a: TcpConfig, b: TcpConfig) -> bool:
    """What the generated dataclass ``__eq__`` compares: the tuple of fields."""
    return tuple(getattr(a, n) for n in _FIELDS) == tuple(getattr(b, n) for n in _FIELDS)


def _other_value(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value + 0.5
    if isinstance(value, str):
        return value + "x"
    if value is None:
        return (1, 2, 3)
    if isinstance(value, tuple):
        return None
    raise AssertionError(f"no other value for {value!r}")


def test_every_field_takes_part_in_eq() -> None:
    base = TcpConfig()
    for name in _FIELDS:
        changed = copy.copy(base)
        setattr(changed, name, _other_value(getattr(base, name)))
        assert changed != base, name
        assert (changed == base) is False, name
        assert base != changed, name
        assert (base == changed) is False, name
        assert not _reference_eq(base, changed)
        setattr(changed, name, getattr(base, name))
        assert changed == base, name


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_FIELDS), max_size=6), st.lists(st.sampled_from(_FIELDS),
                                                                 max_size=6))
def test_eq_equals_the_dataclass_rule(left: list[str], right: list[str]) -> None:
    a, b = TcpConfig(), TcpConfig()
    for name in left:
        setattr(a, name, _other_value(getattr(a, name)))
    for name in right:
        setattr(b, name, _other_value(getattr(b, name)))
    assert (a == b) is _reference_eq(a, b)
    assert (a != b) is not _reference_eq(a, b)
    assert a == copy.copy(a) and a == a.with_()


def test_eq_with_other_types() -> None:
    cfg = TcpConfig()
    assert cfg != object() and cfg != 1 and cfg != None  # noqa: E711
    assert (cfg == 1) is False
    assert cfg.__eq__(object()) is NotImplemented


# ------------------------------------------- asyncio streams on the ustack loop


def _run_pair(main: Any) -> None:
    """The ustack loop (stack A on a MemoryPair) and a second stack B on the
    other end, both on that loop; ``main(b)`` runs on it."""
    from ustack.link.memory import MemoryPair
    from ustack.runtime import start_stack
    from ustack.stack import Stack

    a_dev, b_dev = MemoryPair()
    options = StackOptions(iface="mem0", address="10.77.0.1/24", diagnostics=False,
                           extra={"device": a_dev})
    loop = new_loop(options, start_stack, use_uvloop=False)
    try:
        async def wrapper() -> None:
            b = await Stack.start(address="10.77.0.2/24", device=b_dev, diagnostics=False)
            try:
                await asyncio.wait_for(main(b), 60)
            finally:
                await b.close()

        loop.run_until_complete(wrapper())
    finally:
        loop.close()


def test_loop_streams_get_list_drain_waiters_and_drain_still_works() -> None:
    """asyncio.open_connection / start_server on the ustack loop: the
    protocol's drain waiters are a list (not a ~760-byte deque), and a writer
    paused by flow control still wakes from drain() (append, iterate,
    remove on the list)."""
    async def main(b: Any) -> None:
        got = 0
        done = asyncio.get_running_loop().create_future()

        async def sink(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            nonlocal got
            while data := await r.read(1 << 16):
                got += len(data)
            w.close()
            done.set_result(None)

        await b.start_server(sink, port=7000)
        reader, writer = await asyncio.open_connection("10.77.0.2", 7000)
        protocol: Any = writer._protocol  # type: ignore[attr-defined]
        assert type(protocol._drain_waiters) is list
        writer.transport.set_write_buffer_limits(high=1 << 14)
        # beyond the TCP send buffer: the transport pauses
        blob = b"x" * (TcpConfig().send_buffer + (1 << 20))
        for _ in range(2):
            writer.write(blob)
            drains = [asyncio.ensure_future(writer.drain()) for _ in range(3)]
            assert protocol._paused
            await asyncio.gather(*drains)
            assert not protocol._drain_waiters
        writer.close()
        await writer.wait_closed()
        await done
        assert got == 2 * len(blob)

        accepted: list[Any] = []

        async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            accepted.append(w._protocol)  # type: ignore[attr-defined]
            w.close()

        server = await asyncio.start_server(handler, None, 7100)
        r2, w2 = await b.open_connection("10.77.0.1", 7100)
        assert await r2.read() == b""
        w2.close()
        server.close()
        assert accepted and type(accepted[0]._drain_waiters) is list

    _run_pair(main)


def test_loop_one_address_path_equals_the_general_path() -> None:
    """create_connection to one literal without TLS skips connect_any and
    attach's coroutines: the same results and errors as the general path
    (happy eyeballs with one address goes through connect_any)."""
    async def main(b: Any) -> None:
        loop: Any = asyncio.get_running_loop()  # (all_errors: 3.12's signature)

        async def echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            while data := await r.read(1024):
                w.write(data)
            w.close()

        await b.start_server(echo, port=7000)
        for general in (False, True):
            extra: dict[str, Any] = {"happy_eyeballs_delay": 0.05} if general else {}
            with pytest.raises(ConnectionRefusedError) as refused:
                await loop.create_connection(asyncio.Protocol, "10.77.0.2", 7999, **extra)
            assert refused.value.errno == errno.ECONNREFUSED
            with pytest.raises(ExceptionGroup) as group:
                await loop.create_connection(asyncio.Protocol, "10.77.0.2", 7999,
                                             all_errors=True, **extra)
            assert [type(e) for e in group.value.exceptions] == [ConnectionRefusedError]
            got: list[bytes] = []
            lost: asyncio.Future[Exception | None] = loop.create_future()

            class P(asyncio.Protocol):
                def __init__(self, got: list[bytes] = got,
                             lost: asyncio.Future[Exception | None] = lost) -> None:
                    self.got, self.lost = got, lost

                def connection_made(self, transport: Any) -> None:
                    transport.write(b"hi")
                    transport.write_eof()

                def data_received(self, data: bytes) -> None:
                    self.got.append(data)

                def connection_lost(self, exc: Exception | None) -> None:
                    self.lost.set_result(exc)

            transport, protocol = await loop.create_connection(P, "10.77.0.2", 7000, **extra)
            assert isinstance(protocol, P) and transport.get_protocol() is protocol
            assert transport.get_extra_info("peername") == ("10.77.0.2", 7000)
            assert await lost is None and b"".join(got) == b"hi"

    _run_pair(main)
