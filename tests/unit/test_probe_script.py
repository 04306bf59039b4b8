"""The probe's text format: parsing, timing windows and directives."""

from __future__ import annotations

import pytest

from ustack.probe.packet import ScriptSyntaxError
from ustack.probe.script import parse_script

EXAMPLE = """
# comment
sysctl net.ipv4.tcp_timestamps=0
peer listen 8080
0.000 < S 0:0(0) win 65535 <mss 1460,sackOK,nop,wscale 7>
+0    > S. 0:0(0) ack 1 <mss 1460,sackOK,wscale *>   # trailing comment
+0.1~+0.3 > . 1:1(0) ack 1
*     > R 1:1(0)
1.5   < icmp unreachable frag_needed mtu 1200 [. 1:1461(1460) ack 1]
+0    > nothing for 0.5s
+0    < icmp time_exceeded [S 0:0(0)]
+0    peer expect ECONNRESET
probe new 9000
probe to 8081
"""


def test_parse_example() -> None:
    script = parse_script(EXAMPLE, "ex")
    kinds = [e.kind for e in script.events]
    assert kinds == ["sysctl", "peer", "send", "expect", "expect", "expect", "icmp", "nothing",
                     "icmp", "peer", "probe", "probe"]
    send = script.events[2]
    assert not send.time.relative and send.time.start == 0.0
    rng = script.events[4].time
    assert rng.relative and (rng.start, rng.end) == (0.1, 0.3)
    assert script.events[5].time.start is None  # '*'
    icmp = script.events[6]
    assert icmp.icmp == (3, 4, 1200) and icmp.spec is not None and icmp.spec.length == 1460
    assert script.events[7].value == 0.5
    assert script.events[0].args == ["net.ipv4.tcp_timestamps", "0"]
    assert script.events[8].icmp == (11, 0, 0)


@pytest.mark.parametrize("line, message", [
    ("0.1", "a time with no event"),
    ("+0 ! S 0:0(0)", "unknown event"),
    ("peer dance", "peer action"),
    ("peer listen", "takes 1 argument"),
    ("peer listen x", "invalid literal"),
    ("+0 > nothing", "nothing for SECONDS"),
    ("< icmp unreachable bogus [S 0:0(0)]", "unknown unreachable code"),
    ("0.5~0.2 > S 0:0(0)", "ends before it starts"),
    ("sysctl foo", "NAME=VALUE"),
    ("probe to", "probe to PORT"),
])
def test_syntax_errors_name_the_line(line: str, message: str) -> None:
    with pytest.raises(ScriptSyntaxError, match=message) as info:
        parse_script("# first line\n" + line, "bad.pkt")
    assert "bad.pkt:2:" in str(info.value)


def test_every_catalogue_scenario_parses() -> None:
    from ustack.probe.scenarios import SCENARIOS

    for s in SCENARIOS:
        assert parse_script(s.script, s.id).events, s.id
