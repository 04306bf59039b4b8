"""pytest fixtures for labs: ``lab`` (one per test), ``lab_factory`` and
``module_lab`` (shared by a test module).  Every lab gets a unique name and is
torn down in ``finally``, also when the test fails.

Without root or ``ip`` the fixtures skip with the reason; with
``USTACK_REQUIRE_NETNS=1`` in the environment they fail instead (CI must not
pass by skipping).
"""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ustack.lab.lab import Lab, have_netns_support, reap_stale

_counter = itertools.count(1)
_run_id = secrets.token_hex(2)
_reaped = False


def unique_lab_name() -> str:
    """A lab name no other process uses (pid + random + counter, <= 15 chars)."""
    return f"ut{os.getpid() % 0xFFFF:x}{_run_id}{next(_counter)}"


def require_netns() -> None:
    """Skip (or fail under USTACK_REQUIRE_NETNS=1) when labs cannot be built."""
    global _reaped
    ok, reason = have_netns_support()
    if ok:
        if not _reaped:  # labs left by a killed test run: remove them once
            _reaped = True
            reap_stale()
        return
    if os.environ.get("USTACK_REQUIRE_NETNS") == "1":
        pytest.fail(f"USTACK_REQUIRE_NETNS=1 but: {reason}")
    pytest.skip(reason)


class _LabTracker:
    def __init__(self) -> None:
        self.labs: list[Lab] = []

    def make(self, name: str | None = None, **kwargs: Any) -> Lab:
        lab = Lab.create(name or unique_lab_name(), **kwargs)
        self.labs.append(lab)  # recorded before up(): a half-built lab is removed too
        return lab.up(owner_pid=os.getpid())

    def teardown(self) -> None:
        errors = []
        for lab in reversed(self.labs):
            try:
                lab.down()
            except Exception as exc:  # keep tearing down the others
                errors.append(f"{lab.name}: {exc}")
        self.labs.clear()
        if errors:
            raise RuntimeError("lab teardown failed: " + "; ".join(errors))


@pytest.fixture
def lab_factory() -> Iterator[Callable[..., Lab]]:
    """``lab_factory(peer_address=..., stack_address=...) -> Lab`` (brought up)."""
    require_netns()
    tracker = _LabTracker()
    try:
        yield tracker.make
    finally:
        tracker.teardown()


@pytest.fixture
def lab(lab_factory: Callable[..., Lab]) -> Lab:
    """A fresh lab (10.77.0.1 kernel peer, 10.77.0.2/24 for ustack)."""
    return lab_factory()


@pytest.fixture(scope="module")
def module_lab() -> Iterator[Lab]:
    """One lab shared by every test of a module."""
    require_netns()
    tracker = _LabTracker()
    try:
        yield tracker.make()
    finally:
        tracker.teardown()
