"""``ustack demo`` end to end: builds its lab, moves data, checks it, cleans up."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ustack.lab import list_netns
from ustack.lab.fixtures import require_netns

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_demo_exits_zero_with_matching_hashes_and_removes_its_lab() -> None:
    require_netns()
    name = f"hxdemo{os.getpid() % 100000}"
    proc = subprocess.run([sys.executable, "-m", "ustack", "demo", "--mb", "8", "--name", name],
                          capture_output=True, text=True, timeout=110)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("sha256 OK") == 2, proc.stdout
    assert "tcp_info  rtt" in proc.stdout and "retransmits" in proc.stdout
    assert not [ns for ns in list_netns() if ns.startswith(name + "-")]
