"""The conformance catalogue (ustack/probe/scenarios.py, from
shared/tcp-edge-cases.md) run against the Linux kernel and against ustack.

Every scenario describes what Linux does and must pass against the kernel.
For ustack, a scenario with a recorded difference (``USTACK_NOTES``: an
RFC-permitted divergence or a known bug) is a strict xfail, so fixing ustack
turns it into an XPASS failure that asks for the note to be removed.

Run: ``pytest tests/conformance`` (root); one scenario: ``-k "s25 and kernel"``.
"""

from __future__ import annotations

import pytest

from ustack.probe import Probe
from ustack.probe.conformance import SUITE_TOLERANCE
from ustack.probe.peers import Peer
from ustack.probe.scenarios import SCENARIOS, Scenario
from ustack.probe.script import parse_script, run_script

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("peer", ["kernel", "ustack"], indirect=True)
@pytest.mark.parametrize("scenario", SCENARIOS, ids=[f"s{s.id}" for s in SCENARIOS])
async def test_scenario(scenario: Scenario, peer: Peer, probe: Probe,
                        request: pytest.FixtureRequest) -> None:
    if peer.kind == "ustack" and scenario.ustack_note:
        request.applymarker(pytest.mark.xfail(strict=True, reason=scenario.ustack_note))
    script = parse_script(scenario.script, f"scenario {scenario.id}")
    await run_script(script, peer, probe, tolerance_floor=SUITE_TOLERANCE)


def test_catalogue_covers_at_least_30_edge_cases() -> None:
    assert len(SCENARIOS) >= 30
    assert len({s.id for s in SCENARIOS}) == len(SCENARIOS)
