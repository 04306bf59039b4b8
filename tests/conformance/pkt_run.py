"""Running a packetdrill-language text against one peer of a lab, for the
``test_pkt_*`` modules: one probe session (checksum offload on, as the
suite runs), a 30 ms timing floor for this loaded 2-core machine."""

from __future__ import annotations

from ustack.lab import Lab
from ustack.probe.script import parse_script, run_script
from ustack.probe.session import probe_session


async def run_pkt(lab: Lab, kind: str, text: str) -> None:
    """Run ``text`` (a whole script) on the ``kind`` peer (kernel or
    ustack); raises what :func:`run_script` raises."""
    script = parse_script(text, "t.pkt")
    async with probe_session(lab, kind, offload=True) as (peer, probe):
        await run_script(script, peer, probe, tolerance_floor=0.03)
