"""Lab names, interface names and addresses (no namespaces needed)."""

from __future__ import annotations

import pytest

from ustack.lab import Lab
from ustack.lab import fixtures as lab_fixtures
from ustack.lab.lab import IFNAMSIZ


def test_default_lab() -> None:
    lab = Lab.create("t1")
    assert (lab.peer_ns, lab.stack_ns, lab.peer_if, lab.stack_if) == (
        "t1-peer", "t1-stack", "t1-p", "t1-s")
    assert (lab.peer_address, lab.stack_address, lab.prefixlen) == (
        "10.77.0.1", "10.77.0.2/24", 24)
    assert lab.stack_ip == "10.77.0.2"
    assert Lab.from_dict(lab.to_dict()) == lab


@pytest.mark.parametrize("name", ["a" * 13, "a" * 14, "b" * 40, "experiment.long_name-7"])
def test_interface_names_fit_and_stay_distinct(name: str) -> None:
    lab = Lab.create(name)
    assert len(lab.peer_if) <= IFNAMSIZ and len(lab.stack_if) <= IFNAMSIZ
    assert lab.peer_if != lab.stack_if
    assert Lab.create(name).peer_if == lab.peer_if  # stable


def test_long_names_sharing_a_prefix_get_different_interfaces() -> None:
    a, b = Lab.create("experiment-alpha-1"), Lab.create("experiment-alpha-2")
    assert a.peer_if != b.peer_if and a.stack_if != b.stack_if


@pytest.mark.parametrize("name", ["", "-x", "a b", "a/b", "x" * 41, "ümlaut"])
def test_bad_names(name: str) -> None:
    with pytest.raises(ValueError, match="invalid lab name"):
        Lab.create(name)


def test_addresses() -> None:
    lab = Lab.create("t", peer_address="192.168.1.1", stack_address="192.168.1.7/28")
    assert (lab.peer_address, lab.stack_address, lab.prefixlen) == (
        "192.168.1.1", "192.168.1.7/28", 28)
    lab = Lab.create("t", peer_address="172.16.0.1/16", stack_address="172.16.5.5")
    assert lab.stack_address == "172.16.5.5/16"


@pytest.mark.parametrize(
    ("peer", "stack", "match"),
    [("10.77.0.1/24", "10.78.0.2/24", "same subnet"), ("10.77.0.1/24", "10.77.0.1/24", "both"),
     ("10.77.0.300/24", "10.77.0.2/24", "invalid lab address"),
     ("10.77.0.1/31", "10.77.0.0/31", "too long"), ("fe80::1/64", "fe80::2/64", "invalid")],
)
def test_bad_addresses(peer: str, stack: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Lab.create("t", peer_address=peer, stack_address=stack)


def test_unique_names_are_unique_and_short() -> None:
    names = {lab_fixtures.unique_lab_name() for _ in range(100)}
    assert len(names) == 100
    assert all(len(Lab.create(n).peer_if) <= IFNAMSIZ for n in names)


def test_fixture_skips_without_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    monkeypatch.delenv("USTACK_REQUIRE_NETNS", raising=False)
    with pytest.raises(pytest.skip.Exception, match="root"):
        lab_fixtures.require_netns()
    monkeypatch.setenv("USTACK_REQUIRE_NETNS", "1")
    with pytest.raises(pytest.fail.Exception, match="USTACK_REQUIRE_NETNS"):
        lab_fixtures.require_netns()


def test_up_without_root_is_a_permission_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    with pytest.raises(PermissionError, match="needs root"):
        Lab.create("t").up()
