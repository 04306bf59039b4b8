"""The suite runner's classification and report, and the shell interpreter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ustack.probe.script import parse_script
from ustack.probe.shell import Shell
from ustack.probe.suite import (
    PeerResult,
    ScriptResult,
    format_report,
    host_global,
    static_unsupported,
)
from ustack.probe.syscalls import Unsupported

BASE = "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n"


@pytest.mark.parametrize("line, reason", [
    ("+0 < S 0:0(0) win 1000 <mss 1460,FO abcd>", "TCP Fast Open"),
    ("+0 sendto(3, ..., 10, MSG_FASTOPEN, ..., ...) = 10", "TCP Fast Open"),
    ("+0 send(3, ..., 10, MSG_ZEROCOPY) = 10", "zero-copy"),
    ("+0 > [ect0] P. 1:11(10) ack 1", "ECN"),
    ("+0 < SEW 0:0(0) win 1000", "ECN"),
    ("--ip_version=ipv6", "IPv6"),
    ("`tc qdisc replace dev tun0 root fq`", "tc qdiscs"),
    ("--gro_mode=1", "option --gro_mode"),
])
def test_static_unsupported(line: str, reason: str) -> None:
    text = BASE + line + "\n"
    try:
        script: Any = parse_script(text, "t.pkt")
    except Exception:
        script = None
    assert reason in static_unsupported(text, script, "kernel")


def test_supported_scripts_pass_the_static_check() -> None:
    text = ("--tolerance_usecs=10000\n`../common/defaults.sh\ntc qdisc add dev tun0 root pfifo`\n"
            + BASE + "// FO in a comment does not count\n+0 close(3) = 0\n")
    assert static_unsupported(text, parse_script(text, "t.pkt"), "kernel") == ""


def test_timestamping_and_module_parameters_are_run_not_excluded() -> None:
    """SO_TIMESTAMPING and /sys/module writes run now (issue 12); a script
    writing a module parameter is marked host-global (serialized)."""
    text = ("`../common/defaults.sh\necho 3 > /sys/module/tcp_cubic/parameters/hystart_detect\n`\n"
            + BASE + "+0 setsockopt(3, SOL_SOCKET, SO_TIMESTAMPING, [1], 4) = 0\n")
    assert static_unsupported(text, parse_script(text, "t.pkt"), "kernel") == ""
    assert host_global(text)
    assert not host_global(BASE + "// echo 3 > /sys/module/x/parameters/y\n")


def test_report_lists_results_first_failing_line_and_summary() -> None:
    results = [
        ScriptResult("a.pkt", {"kernel": PeerResult("pass"), "ustack": PeerResult(
            "fail", "tcp/a.pkt:12: +0 > P. 1:1001(1000) ack 1\nflags differ\n"
            "expected: > P. 1:1001(1000) ack 1\nactual:   > . 1:1001(1000) ack 1\ntimeline:\n")}),
        ScriptResult("b.pkt", {"kernel": PeerResult("unsupported", "unsupported: ECN"),
                               "ustack": PeerResult("unsupported", "unsupported: ECN")}),
        ScriptResult("c.pkt", {"kernel": PeerResult("pass"), "ustack": PeerResult(
            "unsupported", "x\nunsupported on ustack: MSG_EOR")}),
    ]
    report = format_report(results, ["kernel", "ustack"])
    assert "a.pkt  kernel: pass  ustack: fail" in report
    assert "tcp/a.pkt:12: +0 > P. 1:1001(1000) ack 1 | expected:" in report
    assert "actual:   > . 1:1001(1000) ack 1" in report
    assert "  b.pkt: unsupported: ECN" in report
    assert "ustack unsupported: unsupported on ustack: MSG_EOR" in report
    assert "pass on kernel: 2, of those pass on ustack: 0" in report
    assert "scripts: 3, run: 2" in report


class FakePeer:
    kind = "fake"

    def __init__(self, refuse: set[str] | None = None) -> None:
        self.options: list[tuple[str, str]] = []
        self.refuse = refuse or set()

    async def set_option(self, name: str, value: str) -> None:
        if name in self.refuse:
            raise ValueError("no such sysctl")
        self.options.append((name, value))


async def test_defaults_sh_from_next_to_the_script(tmp_path: Path) -> None:
    common = tmp_path / "common"
    common.mkdir()
    (common / "defaults.sh").write_text(
        '#!/bin/bash\nip tcp_metrics flush all > /dev/null 2>&1\n'
        'sysctl -q net.ipv4.tcp_rmem="4096 540000 $((15*1024*1024))"\n'
        "sysctl -q net.ipv4.tcp_early_retrans=4 net.ipv4.tcp_recovery=1\n"
        "sysctl -q net.ipv4.tcp_nope=1\n"
        "tc qdisc add dev tun0 root pfifo\n")
    peer = FakePeer(refuse={"net.ipv4.tcp_nope"})
    shell = Shell(peer, tmp_path / "sub")
    await shell.run("../common/defaults.sh\n../common/set_sysctls.py \\\n"
                    "  /proc/sys/net/ipv4/tcp_min_tso_segs=10")
    assert ("net.ipv4.tcp_rmem", "4096 540000 15728640") in peer.options
    assert ("net.ipv4.tcp_recovery", "1") in peer.options
    assert ("net.ipv4.tcp_min_tso_segs", "10") in peer.options
    assert [s for s, _ in shell.skipped] == ["net.ipv4.tcp_nope=1"]


async def test_defaults_sh_built_in_values_and_unknown_commands() -> None:
    peer = FakePeer()
    shell = Shell(peer, None)
    await shell.run("../../common/defaults.sh")
    assert ("net.ipv4.tcp_congestion_control", "cubic") in peer.options
    assert ("net.ipv4.tcp_timestamps", "1") in peer.options
    with pytest.raises(Unsupported, match="tc qdiscs"):
        await shell.run("tc qdisc replace dev tun0 root fq")
    with pytest.raises(Unsupported, match="shell command"):
        await shell.run("echo 3 > /proc/sys/net/ipv4/tcp_sack")
    # a peer without set_module_param: unsupported, naming what (modparams tests)
    with pytest.raises(Unsupported, match="module parameters"):
        await shell.run("echo 3 > /sys/module/tcp_cubic/parameters/hystart_detect")
    await shell.run("/tmp/sysctl_restore_${PPID}.sh")  # a no-op


async def test_dd_creates_a_private_file(tmp_path: Path) -> None:
    files: dict[str, str] = {}
    shell = Shell(FakePeer(), None, files, tmp_path)
    await shell.run("/bin/rm -f /tmp/testfile\n"
                    "/bin/dd bs=1 count=5 if=/dev/zero of=/tmp/testfile status=none")
    assert Path(files["/tmp/testfile"]).read_bytes() == bytes(5)
    assert Path(files["/tmp/testfile"]).parent == tmp_path
