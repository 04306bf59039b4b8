"""Issue 2 acceptance, as a user runs it: ``ustack lab up --json``, ``ustack
run`` in the stack namespace, ``ping -c 5`` from the peer, ``ip neigh``,
SIGINT, then the capture checked with tshark (checksums verified)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ustack.lab.fixtures import require_netns

pytestmark = pytest.mark.integration

USTACK = [sys.executable, "-m", "ustack"]
BAD_FRAMES = ('_ws.malformed || ip.checksum.status == "Bad" || icmp.checksum.status == "Bad" '
              '|| _ws.expert.severity >= "Warning"')


@pytest.fixture
def cli_lab() -> Iterator[dict[str, Any]]:
    require_netns()
    name = f"hn{os.getpid() % 0xFFF:x}c{secrets.token_hex(1)}"
    try:
        out = subprocess.run([*USTACK, "lab", "up", "--name", name, "--json"], check=True,
                             capture_output=True, text=True, timeout=60).stdout
        yield json.loads(out)
    finally:
        subprocess.run([*USTACK, "lab", "down", "--name", name], capture_output=True,
                       timeout=60)


def _readline(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    os.set_blocking(proc.stdout.fileno(), False)
    buf = ""
    while time.monotonic() < deadline:
        chunk = proc.stdout.readline()
        if chunk:
            buf += chunk
            if buf.endswith("\n"):
                return buf
        elif proc.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError(f"ustack run printed no ready line: {buf!r}, rc={proc.poll()}")


def test_run_answers_kernel_ping_and_writes_clean_capture(cli_lab: dict[str, Any],
                                                          tmp_path: Path) -> None:
    lab = cli_lab
    assert {"peer_ns", "stack_ns", "peer_if", "stack_if", "peer_address", "stack_address",
            "prefixlen"} <= set(lab)
    stack_ip = lab["stack_address"].split("/")[0]
    cap = tmp_path / "c.pcap"
    proc = subprocess.Popen(
        ["ip", "netns", "exec", lab["stack_ns"], *USTACK, "run", "--iface", lab["stack_if"],
         "--address", lab["stack_address"], "--pcap", str(cap)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        ready = _readline(proc, 20)
        mac = ready.split("(")[1].split(")")[0]
        ping = subprocess.run(["ip", "netns", "exec", lab["peer_ns"], "ping", "-c", "5", "-i",
                               "0.2", "-W", "2", stack_ip],
                              capture_output=True, text=True, timeout=60)
        assert ping.returncode == 0 and "5 received" in ping.stdout, ping.stdout + ping.stderr
        neigh = subprocess.run(["ip", "netns", "exec", lab["peer_ns"], "ip", "neigh", "show",
                                stack_ip], capture_output=True, text=True, timeout=10).stdout
        assert mac in neigh.lower(), (mac, neigh)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:  # the test failed: SIGTERM still closes the stack cleanly
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    assert proc.stderr is not None
    assert "Traceback" not in proc.stderr.read()
    assert cap.stat().st_size > 24
    tshark = shutil.which("tshark")
    if tshark is None:
        pytest.skip("tshark not installed: capture not checked (.ci/run installs it)")
    listing = subprocess.run([tshark, "-r", str(cap), "-o", "ip.check_checksum:TRUE"],
                             capture_output=True, text=True, timeout=60)
    assert listing.returncode == 0, listing.stderr
    text = listing.stdout
    assert "ARP" in text and f"{stack_ip} is at" in text
    assert text.count("Echo (ping) request") == 5 and text.count("Echo (ping) reply") == 5
    bad = subprocess.run([tshark, "-r", str(cap), "-o", "ip.check_checksum:TRUE", "-Y",
                          BAD_FRAMES], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 0, bad.stderr
    assert bad.stdout.strip() == "", bad.stdout
    good = subprocess.run([tshark, "-r", str(cap), "-o", "ip.check_checksum:TRUE", "-Y",
                           'ip.checksum.status == "Good" && icmp.checksum.status == "Good"'],
                          capture_output=True, text=True, timeout=60)
    assert len(good.stdout.strip().splitlines()) == 10, good.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--iface", "lo", "--address", "10.77.0.2"], "invalid address '10.77.0.2'"),
    (["--iface", "lo", "--address", "10.77.0.2/24", "--gateway", "10.1.1.1"], "not inside"),
    (["--iface", "nosuch-hn1", "--address", "10.77.0.2/24"], "nosuch-hn1"),
])
def test_run_errors_are_one_line(args: list[str], message: str) -> None:
    proc = subprocess.run([*USTACK, "run", *args], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith("ustack run: "), lines


def test_run_without_cap_net_raw_says_so() -> None:
    """Drop CAP_NET_RAW with setpriv (util-linux) and expect the PermissionError text."""
    setpriv = shutil.which("setpriv")
    if setpriv is None or os.geteuid() != 0:
        pytest.skip("needs root and setpriv to drop CAP_NET_RAW")
    proc = subprocess.run([setpriv, "--inh-caps=-net_raw", "--bounding-set=-net_raw", *USTACK,
                           "run", "--iface", "lo", "--address", "10.77.0.2/24"],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 1
    assert "CAP_NET_RAW" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.parametrize(("pcap", "message"), [
    ("/nonexistent-hd/x.pcap", "directory /nonexistent-hd does not exist"),
    ("/", "is a directory"),
])
def test_run_pcap_into_missing_directory_is_one_line(pcap: str, message: str) -> None:
    proc = subprocess.run([*USTACK, "run", "--iface", "lo", "--address", "10.77.0.2/24",
                           "--pcap", pcap], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith("ustack run: "), lines
