"""The edge-case harness: script raw TCP segments against any TCP peer (the
Linux kernel in a namespace, or ustack) and assert its answers.

See ``docs/conformance.md`` for the text format and the conformance table.
"""

from ustack.probe.packet import Opt, PacketSpec, ScriptSyntaxError, parse_options, parse_segment
from ustack.probe.probe import DEFAULT_TIMEOUT, ExpectationFailed, Probe, Received

__all__ = [
    "DEFAULT_TIMEOUT",
    "ExpectationFailed",
    "Opt",
    "PacketSpec",
    "Probe",
    "Received",
    "ScriptSyntaxError",
    "parse_options",
    "parse_segment",
]
