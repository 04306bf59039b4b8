"""ustack.aio.gcpolicy: the gen0 threshold while ustack loops are open
(raised only from the interpreter's old default, given back by the last
loop, never over an application's own setting, USTACK_GC_GEN0 opt-out)."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from ustack.aio import gcpolicy
from ustack.aio.loop import StackOptions, new_loop

OLD = pytest.mark.skipif(sys.version_info >= (3, 13),
                         reason="CPython >= 3.13 has the 2000 default: the policy does nothing")


@pytest.fixture(autouse=True)
def _clean_threshold(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("USTACK_GC_GEN0", raising=False)
    # (loops other tests left open must not count here: fresh module state)
    monkeypatch.setattr(gcpolicy, "_open", 0)
    monkeypatch.setattr(gcpolicy, "_set", None)
    saved = gc.get_threshold()
    gc.set_threshold(700, saved[1], saved[2])
    yield
    gc.set_threshold(*saved)


@OLD
def test_raised_while_open_given_back_by_the_last() -> None:
    t1, t2 = gc.get_threshold()[1:]
    gcpolicy.loop_opened()
    assert gc.get_threshold() == (gcpolicy.GEN0, t1, t2)
    gcpolicy.loop_opened()
    gcpolicy.loop_closed()
    assert gc.get_threshold()[0] == gcpolicy.GEN0  # one loop still open
    gcpolicy.loop_closed()
    assert gc.get_threshold() == (700, t1, t2)
    gcpolicy.loop_closed()  # (one close too many changes nothing)
    assert gc.get_threshold() == (700, t1, t2)


@OLD
def test_application_threshold_is_left_alone() -> None:
    gc.set_threshold(1234, 10, 10)
    gcpolicy.loop_opened()
    assert gc.get_threshold() == (1234, 10, 10)
    gcpolicy.loop_closed()
    assert gc.get_threshold() == (1234, 10, 10)


@OLD
def test_changed_meanwhile_is_not_reverted() -> None:
    gcpolicy.loop_opened()
    gc.set_threshold(5000, 10, 10)  # the application decides while the loop runs
    gcpolicy.loop_closed()
    assert gc.get_threshold() == (5000, 10, 10)


@pytest.mark.parametrize("env,want", [("0", 700), ("3000", 3000), ("junk", 700)])
def test_environment(monkeypatch: pytest.MonkeyPatch, env: str, want: int) -> None:
    monkeypatch.setenv("USTACK_GC_GEN0", env)
    gcpolicy.loop_opened()
    assert gc.get_threshold()[0] == want
    gcpolicy.loop_closed()
    assert gc.get_threshold()[0] == 700


async def _never(_options: Any) -> Any:
    raise AssertionError("the stack is not started in this test")


@OLD
@pytest.mark.parametrize("use_uvloop", [True, False])
def test_loops_hold_the_policy(use_uvloop: bool) -> None:
    """A ustack loop holds it from construction to close (twice closed: once)."""
    opts = StackOptions(iface="c17-none", address="10.99.0.2/24")
    a = new_loop(opts, _never, use_uvloop=use_uvloop, start=False)
    b = new_loop(opts, _never, use_uvloop=use_uvloop, start=False)
    assert gcpolicy.open_loops() == 2 and gc.get_threshold()[0] == gcpolicy.GEN0
    a.close()
    a.close()
    assert gcpolicy.open_loops() == 1 and gc.get_threshold()[0] == gcpolicy.GEN0
    b.close()
    assert gcpolicy.open_loops() == 0 and gc.get_threshold()[0] == 700
