"""``ustack nc`` against kernel peers in a lab (connect, listen, errors, pcap)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ustack.lab import Lab

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

REPLY_SERVER = r"""
import socket, struct, sys
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("0.0.0.0", int(sys.argv[1]))); ls.listen(1); print("READY", flush=True)
c, _ = ls.accept(); c.settimeout(20)
if sys.argv[2] == "reset":
    c.recv(100)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close(); raise SystemExit
data = b""
while True:
    d = c.recv(65536)
    if not d: break
    data += d
c.sendall(b"reply to " + data)
c.close()
"""

KERNEL_CLIENT = r"""
import socket, sys, time
for _ in range(100):
    try:
        s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5); break
    except OSError:
        time.sleep(0.1)
s.sendall(b"from kernel"); s.shutdown(socket.SHUT_WR)
data = b""
while True:
    d = s.recv(65536)
    if not d: break
    data += d
sys.stdout.write(data.decode()); s.close()
"""


def stop(proc: subprocess.Popen[Any]) -> None:
    """End a process left running by a failing test: SIGINT first, so a
    ``ustack nc`` closes its stack (and removes its ``ustack ss`` socket),
    then SIGKILL."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def nc(lab: Lab, *args: str, stdin: bytes = b"", timeout: float = 30
       ) -> subprocess.CompletedProcess[bytes]:
    return lab.run_in_stack(
        [sys.executable, "-m", "ustack", "nc", "--iface", lab.stack_if,
         "--address", lab.stack_address, *args],
        input=stdin, capture_output=True, timeout=timeout)


def start_server(lab: Lab, port: int, mode: str = "reply") -> subprocess.Popen[str]:
    proc = lab.popen_in_peer([sys.executable, "-c", REPLY_SERVER, str(port), mode],
                             stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if line != "READY":  # do not leave it running (it would keep the namespace alive)
        proc.kill()
        proc.wait()
        raise AssertionError(f"reply server did not start: {line!r}")
    return proc


def test_connect_pipes_both_ways_and_exits_zero(lab: Lab, tmp_path: Path) -> None:
    server = start_server(lab, 6001)
    try:
        pcap = tmp_path / "nc.pcap"
        proc = nc(lab, "--pcap", str(pcap), lab.peer_address, "6001", stdin=b"question")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == b"reply to question"
        assert pcap.stat().st_size > 24 + 5 * 16  # header + a handshake's worth of frames
    finally:
        server.kill()


def test_connect_refused_one_line_exit_1(lab: Lab) -> None:
    proc = nc(lab, lab.peer_address, "6002")
    assert proc.returncode == 1
    lines = proc.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "refused" in lines[0], proc.stderr


def test_connect_reset_one_line_exit_1(lab: Lab) -> None:
    server = start_server(lab, 6003, "reset")
    try:
        proc = nc(lab, lab.peer_address, "6003", stdin=b"x" * 10)
        assert proc.returncode == 1
        lines = proc.stderr.decode().strip().splitlines()
        assert len(lines) == 1 and "reset" in lines[0], proc.stderr
    finally:
        server.kill()


def test_connect_timeout_one_line_exit_1(lab: Lab) -> None:
    host = lab.peer_address.rsplit(".", 1)[0] + ".77"  # nobody answers ARP
    t0 = time.monotonic()
    proc = nc(lab, "-w", "2", host, "80")
    assert proc.returncode == 1
    lines = proc.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and ("unreachable" in lines[0] or "timed out" in lines[0])
    assert time.monotonic() - t0 < 20


def test_listen_accepts_one_connection(lab: Lab) -> None:
    listener = lab.popen_in_stack(
        [sys.executable, "-m", "ustack", "nc", "--iface", lab.stack_if,
         "--address", lab.stack_address, "-l", "6004"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    client: subprocess.Popen[str] | None = None
    try:
        client = lab.popen_in_peer(
            [sys.executable, "-c", KERNEL_CLIENT, lab.stack_address.split("/")[0], "6004"],
            stdout=subprocess.PIPE, text=True)
        assert listener.stdin is not None
        listener.stdin.write(b"from ustack")
        listener.stdin.close()
        out, _ = client.communicate(timeout=30)
        assert out == "from ustack"
        assert listener.stdout is not None and listener.stderr is not None
        listener.wait(timeout=30)
        stdout, stderr = listener.stdout.read(), listener.stderr.read()
        assert listener.returncode == 0, stderr
        assert stdout == b"from kernel"
    finally:
        for p in (listener, client):
            if p is not None:
                stop(p)


def test_bad_arguments_exit_2(lab: Lab) -> None:
    proc = nc(lab, "not-an-ip", "80")
    assert proc.returncode == 2 and b"IPv4" in proc.stderr
    proc = nc(lab, "-k", lab.peer_address, "80")
    assert proc.returncode == 2


def test_listen_keep_accepting(lab: Lab) -> None:
    listener = lab.popen_in_stack(
        [sys.executable, "-m", "ustack", "nc", "--iface", lab.stack_if,
         "--address", lab.stack_address, "-l", "6005", "-k"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for word in ("one", "two", "three"):
            code = KERNEL_CLIENT.replace('b"from kernel"', f'b"{word}"')
            out = lab.run_in_peer(
                [sys.executable, "-c", code, lab.stack_address.split("/")[0], "6005"],
                capture_output=True, text=True, timeout=30)
            assert out.returncode == 0 and out.stdout == "", out.stderr
        assert listener.poll() is None  # still listening
        listener.send_signal(2)
        listener.wait(timeout=10)
        assert listener.stdout is not None
        assert listener.stdout.read() == b"onetwothree"
    finally:
        stop(listener)


def test_bad_timeout_pcap_and_capability_are_one_line(lab: Lab) -> None:
    """Issue 13: ``-w -1`` was accepted, ``--pcap`` into a missing directory
    was a traceback, and the CAP_NET_RAW error showed ``[Errno 1]``."""
    for args, message in (
        (["-w", "-1", lab.peer_address, "80"], "positive number of seconds"),
        (["-w", "nan", lab.peer_address, "80"], "positive number of seconds"),
        (["-w", "inf", lab.peer_address, "80"], "positive number of seconds"),
        (["--pcap", "/nonexistent-hd/x.pcap", lab.peer_address, "80"], "does not exist"),
    ):
        proc = nc(lab, *args)
        lines = proc.stderr.decode().strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], proc.stderr
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is needed to drop CAP_NET_RAW")
    proc = lab.run_in_stack(
        [setpriv, "--inh-caps=-net_raw", "--bounding-set=-net_raw", sys.executable, "-m",
         "ustack", "nc", "--iface", lab.stack_if, "--address", lab.stack_address,
         lab.peer_address, "80"], capture_output=True, timeout=60, input=b"")
    lines = proc.stderr.decode().strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert "CAP_NET_RAW" in lines[0] and "Errno" not in lines[0], lines


def test_stdout_reader_leaving_is_quiet(lab: Lab) -> None:
    """``ustack nc ... | head -c 10``: once head exits, nc ends without a
    word on stderr (status 141, as a tool killed by SIGPIPE)."""
    server = lab.popen_in_peer([sys.executable, "-c", BULK_SERVER, "6007"],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "READY"
        cmd = (f"{sys.executable} -m ustack nc --iface {lab.stack_if} --address "
               f"{lab.stack_address} {lab.peer_address} 6007 </dev/null | head -c 10 >/dev/null; "
               "echo ${PIPESTATUS[0]} >&2")
        proc = lab.run_in_stack(["bash", "-c", cmd], capture_output=True, timeout=60)
        assert proc.stderr.decode().strip() == "141", proc.stderr
    finally:
        server.kill()
        server.wait()


BULK_SERVER = r"""
import socket, sys
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("0.0.0.0", int(sys.argv[1]))); ls.listen(1); print("READY", flush=True)
c, _ = ls.accept()
try:
    while True:
        c.sendall(b"y" * 65536)
except OSError:
    pass
"""


def test_pcap_fill_checksums_gives_a_clean_capture(lab: Lab, tmp_path: Path) -> None:
    """Issue 12: with --pcap-fill-checksums tshark's checksum validation
    reports no bad TCP checksum (the kernel peer's offloaded partial sums
    and ustack's GSO super-segments are written computed); without it the
    capture shows them as the wire had them."""
    tshark = shutil.which("tshark")
    if tshark is None:
        pytest.skip("tshark not installed (.ci/install installs it)")
    bad: dict[str, int] = {}
    for mode in ("plain", "fill"):
        server = start_server(lab, 6008 if mode == "plain" else 6009)
        try:
            pcap = tmp_path / f"{mode}.pcap"
            extra = ["--pcap-fill-checksums"] if mode == "fill" else []
            proc = nc(lab, "--pcap", str(pcap), *extra, lab.peer_address,
                      "6008" if mode == "plain" else "6009", stdin=b"q" * 500_000)
            assert proc.returncode == 0, proc.stderr
            assert proc.stdout == b"reply to " + b"q" * 500_000
        finally:
            server.kill()
            server.wait()
        out = subprocess.run(
            [tshark, "-r", str(pcap), "-o", "tcp.check_checksum:TRUE", "-o",
             "ip.check_checksum:TRUE", "-Y",
             'tcp.checksum.status == "Bad" || ip.checksum.status == "Bad" || _ws.malformed'],
            capture_output=True, text=True, timeout=60)
        total = subprocess.run([tshark, "-r", str(pcap), "-Y", "tcp"], capture_output=True,
                               text=True, timeout=60)
        assert len(total.stdout.splitlines()) > 20
        bad[mode] = len(out.stdout.splitlines())
    assert bad["fill"] == 0, bad
    assert bad["plain"] > 0, bad  # the lab offloads: the option has something to fix
