"""The namespace lab: built, usable, idempotent, and gone without a trace."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from ustack.lab import Lab, list_netns
from ustack.lab.fixtures import require_netns, unique_lab_name

pytestmark = pytest.mark.integration


def _links_in_root() -> str:
    return subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout


def _addrs(lab: Lab, ns: str, ifname: str) -> list[dict[str, object]]:
    out = subprocess.run(["ip", "-n", ns, "-j", "addr", "show", "dev", ifname],
                         capture_output=True, text=True, check=True).stdout
    return list(json.loads(out)[0]["addr_info"])


def test_lab_topology(lab: Lab) -> None:
    assert lab.peer_ns in list_netns() and lab.stack_ns in list_netns()
    peer = _addrs(lab, lab.peer_ns, lab.peer_if)
    assert [(a["family"], a["local"], a["prefixlen"]) for a in peer] == [
        ("inet", "10.77.0.1", 24)
    ]
    # no kernel IPv4 and no IPv6 (not even link-local) on the stack side
    assert _addrs(lab, lab.stack_ns, lab.stack_if) == []
    for ns in (lab.stack_ns, lab.peer_ns):
        out = subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-n",
                              "net.ipv6.conf.all.disable_ipv6"],
                             capture_output=True, text=True, check=True).stdout
        assert out.strip() == "1"
    for ns, ifname in ((lab.peer_ns, lab.peer_if), (lab.stack_ns, lab.stack_if),
                       (lab.peer_ns, "lo"), (lab.stack_ns, "lo")):
        out = subprocess.run(["ip", "-n", ns, "-j", "link", "show", "dev", ifname],
                             capture_output=True, text=True, check=True).stdout
        assert "UP" in json.loads(out)[0]["flags"], (ns, ifname)
    assert lab.stack_address == "10.77.0.2/24" and lab.prefixlen == 24


def test_enter_stack_ns_is_per_thread_and_restored(lab: Lab) -> None:
    before = socket.if_nameindex()
    with lab.enter_stack_ns():
        inside = [name for _, name in socket.if_nameindex()]
        assert sorted(inside) == sorted(["lo", lab.stack_if])
    assert socket.if_nameindex() == before


def test_run_in_peer(lab: Lab) -> None:
    out = lab.run_in_peer(["ip", "-o", "addr"], capture_output=True, text=True, check=True)
    assert "10.77.0.1/24" in out.stdout
    proc = lab.popen_in_peer(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.communicate("hi", timeout=10)[0] == "hi"


def test_custom_addresses(lab_factory) -> None:  # type: ignore[no-untyped-def]
    lab = lab_factory(peer_address="192.168.50.1/16", stack_address="192.168.9.9")
    assert (lab.peer_address, lab.stack_address, lab.prefixlen) == (
        "192.168.50.1", "192.168.9.9/16", 16)
    assert [a["local"] for a in _addrs(lab, lab.peer_ns, lab.peer_if)] == ["192.168.50.1"]


def test_up_down_idempotent_and_leaves_nothing() -> None:
    require_netns()
    name = unique_lab_name()
    lab = Lab.create(name)
    try:
        lab.up()
        lab.up()  # again: no error, same result
        assert lab.exists()
        assert Lab.load(name) == lab
        assert len(_addrs(lab, lab.peer_ns, lab.peer_if)) == 1
    finally:
        lab.down()
    lab.down()
    assert lab.peer_ns not in list_netns() and lab.stack_ns not in list_netns()
    root = _links_in_root()
    assert lab.peer_if not in root and lab.stack_if not in root
    assert Lab.load(name) is None


async def test_async_context_manager() -> None:
    require_netns()
    lab = Lab.create(unique_lab_name())
    try:
        async with lab as entered:
            assert entered is lab and lab.exists()
        assert not lab.exists()
    finally:
        lab.down()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ustack", "lab", *args],
                          capture_output=True, text=True, timeout=60)


def test_cli_up_json_status_down() -> None:
    require_netns()
    name = unique_lab_name()
    try:
        proc = _cli("up", "--name", name, "--json")
        assert proc.returncode == 0, proc.stderr
        info = json.loads(proc.stdout)
        for key in ("peer_ns", "stack_ns", "peer_if", "stack_if", "peer_address",
                    "stack_address", "prefixlen"):
            assert key in info
        assert info["stack_address"] == "10.77.0.2/24" and info["peer_address"] == "10.77.0.1"
        assert info["peer_ns"] in list_netns()
        again = _cli("up", "--name", name, "--json")
        assert again.returncode == 0 and json.loads(again.stdout) == info
        st = _cli("status", "--json")
        assert any(lab["name"] == name and lab["up"] for lab in json.loads(st.stdout))
        assert name in _cli("status").stdout
    finally:
        down = _cli("down", "--name", name)
    assert down.returncode == 0, down.stderr
    assert _cli("down", "--name", name).returncode == 0
    assert info["peer_ns"] not in list_netns() and info["stack_ns"] not in list_netns()
    assert name not in _cli("status").stdout


def test_cli_bad_address_is_a_clear_error() -> None:
    proc = _cli("up", "--name", "hlbad", "--stack-address", "10.77.0.300/24")
    assert proc.returncode == 1
    assert "invalid lab address" in proc.stderr and "Traceback" not in proc.stderr
    assert "hlbad-peer" not in list_netns()


def test_not_root_is_a_clear_error() -> None:
    require_netns()
    code = (
        "import os\n"
        "from ustack.cli import main, build_parser\n"
        "import ustack.cli.lab, ustack.lab.lab\n"
        "build_parser()\n"
        "os.setuid(65534)\n"
        "raise SystemExit(main(['lab', 'up', '--name', 'hlnoroot']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 1
    assert "needs root" in proc.stderr and "Traceback" not in proc.stderr


def test_failing_test_still_tears_its_lab_down(tmp_path) -> None:  # type: ignore[no-untyped-def]
    require_netns()
    names = tmp_path / "names.txt"
    (tmp_path / "test_fails.py").write_text(
        "def test_boom(lab, lab_factory):\n"
        "    other = lab_factory(stack_address='10.88.0.2/24', peer_address='10.88.0.1/24')\n"
        f"    open({str(names)!r}, 'w').write(lab.peer_ns + ' ' + lab.stack_ns + ' '\n"
        "        + other.peer_ns + ' ' + other.stack_ns)\n"
        "    assert False, 'this test fails on purpose'\n"
    )
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(tmp_path / "test_fails.py")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "this test fails on purpose" in proc.stdout
    created = names.read_text().split()
    assert len(created) == 4
    left = set(created) & set(list_netns())
    assert not left


def test_reap_stale_removes_labs_of_dead_processes() -> None:
    require_netns()
    from ustack.lab import reap_stale, status

    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = Lab.create(unique_lab_name())
    mine = Lab.create(unique_lab_name())
    try:
        stale.up(owner_pid=dead.pid)
        mine.up(owner_pid=os.getpid())
        info = {lab["name"]: lab for lab in status()}
        assert info[stale.name]["stale"] is True and info[mine.name]["stale"] is False
        removed = reap_stale()
        assert stale.name in removed and mine.name not in removed
        assert not stale.exists() and mine.exists()
    finally:
        stale.down()
        mine.down()
