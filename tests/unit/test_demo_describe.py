"""The demo's tcp_info line shows RTTs to the microsecond, as ``ss -i``."""

from __future__ import annotations

from types import SimpleNamespace

from ustack.cli.demo import _describe


def test_a_few_microseconds_of_min_rtt_are_not_shown_as_zero() -> None:
    info = SimpleNamespace(srtt=0.000307, rttvar=0.000270, min_rtt=0.000004, rto=0.2003,
                           mss=1448, cwnd=10, total_retrans=0, segs_out=1, segs_in=1,
                           ca_name="cubic")
    line = _describe(info)
    assert "rtt 0.307 ms (var 0.270 ms, min 0.004 ms)" in line
    assert "rto 200.300 ms" in line and "cc cubic" in line
