"""Unmodified asyncio programs on ustack against the Linux kernel (issue 10).

Each program in ``aio_programs/`` runs in the lab's stack namespace twice:
under ``ustack exec -- python PROG`` and under ``ustack.run`` (through
``aio_programs/under_run.py``).  The kernel side (``python3 -m
http.server``, a TLS HTTP server with a CA made here, a websockets server,
the docs' echo server, curl, a hand-written DNS server) runs in the peer
namespace.  ``ip netns exec`` bind-mounts ``/etc/netns/<stack ns>/hosts`` and
``resolv.conf`` over /etc's, which is how the programs see the lab's names.
Every transfer is checked byte-exact (size and sha256).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ustack.lab import Lab

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
PROGRAMS = Path(__file__).resolve().parent / "aio_programs"
PY = sys.executable
MODES = ["exec", "run"]
MB = 1_000_000

#: a DNS server written for this test (RFC 1035 s.4.1): name.test -> the
#: peer, every other name NXDOMAIN; it answers what it parses, nothing more
DNS_SERVER = r'''
import socket, struct, sys
names = {b"name.test": bytes([10, 77, 0, 1]), b"web.test": bytes([10, 77, 0, 1])}
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 53))
print("READY", flush=True)
while True:
    q, addr = s.recvfrom(512)
    ident, flags, qd = struct.unpack("!HHH", q[:6])
    off, labels = 12, []
    while q[off]:
        labels.append(q[off + 1:off + 1 + q[off]]); off += 1 + q[off]
    question = q[12:off + 5]
    qtype = struct.unpack("!H", q[off + 1:off + 3])[0]
    name = b".".join(labels).lower()
    addr_ = names.get(name)
    if addr_ is None:
        s.sendto(struct.pack("!HHHHHH", ident, 0x8183, 1, 0, 0, 0) + question, addr)
    elif qtype != 1:
        s.sendto(struct.pack("!HHHHHH", ident, 0x8180, 1, 0, 0, 0) + question, addr)
    else:
        answer = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 30, 4) + addr_
        s.sendto(struct.pack("!HHHHHH", ident, 0x8180, 1, 1, 0, 0) + question + answer, addr)
'''

#: an HTTP/1.1 file server with TLS (ThreadingHTTPServer + ssl)
TLS_SERVER = r'''
import http.server, ssl, sys, functools
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[2])
handler.func.protocol_version = "HTTP/1.1"
handler.func.log_message = lambda *a: None
srv = http.server.ThreadingHTTPServer((sys.argv[1], 8443), handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[3], sys.argv[4])
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print("READY", flush=True)
srv.serve_forever()
'''


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(where: Path, peer: str) -> tuple[Path, Path, Path]:
    """A self-signed CA and a server certificate for ``peer`` (IP SAN)."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
             "ca.pem", "-days", "2", "-subj", "/CN=ustack test CA", "-addext",
             "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
             cwd=where)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "srv.key", "-out", "srv.csr",
             "-subj", f"/CN={peer}", cwd=where)
    (where / "ext.cnf").write_text(f"subjectAltName=IP:{peer},DNS:web.test\n"
                                   "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    _openssl("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "srv.pem", "-days", "2", "-extfile", "ext.cnf", cwd=where)
    return where / "ca.pem", where / "srv.pem", where / "srv.key"


class Env:
    """The module's lab, files and kernel servers."""

    def __init__(self, lab: Lab, www: Path, files: dict[str, str], ca: Path) -> None:
        self.lab = lab
        self.www = www
        self.files = files  # name -> sha256
        self.ca = ca
        self.procs: list[subprocess.Popen[str]] = []
        self.ready_line = ""

    def peer(self, argv: list[str], ready: bool = True) -> subprocess.Popen[str]:
        proc = self.lab.popen_in_peer(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True)
        self.procs.append(proc)
        if ready:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if "READY" not in line and "Serving" not in line:
                proc.kill()
                raise RuntimeError(f"peer {argv} failed: {line!r} {proc.communicate()[1]}")
        return proc

    def argv(self, mode: str, program: str, *args: str, entry: str = "main") -> list[str]:
        path = str(PROGRAMS / program)
        if mode == "exec":
            return [PY, "-m", "ustack", "exec", "--iface", self.lab.stack_if, "--address",
                    self.lab.stack_address, "--", "python", path, *args]
        return [PY, str(PROGRAMS / "under_run.py"), path, entry, *args]

    def env(self) -> dict[str, str]:
        return dict(os.environ, PYTHONPATH=str(ROOT), USTACK_IFACE=self.lab.stack_if,
                    USTACK_ADDRESS=self.lab.stack_address)

    def run(self, mode: str, program: str, *args: str, entry: str = "main",
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        proc = self.lab.run_in_stack(self.argv(mode, program, *args, entry=entry),
                                     env=self.env(), capture_output=True, text=True,
                                     timeout=timeout, cwd=self.www)
        assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return proc

    def start(self, mode: str, program: str, *args: str,
              entry: str = "main") -> subprocess.Popen[str]:
        """A program on ustack that prints a READY/Serving line first."""
        proc = self.lab.popen_in_stack(self.argv(mode, program, *args, entry=entry),
                                       env=self.env(), stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True, cwd=self.www)
        self.procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if "READY" not in line and "Serving" not in line:
            proc.kill()
            raise RuntimeError(f"{program} failed: {line!r} {proc.communicate()[1]}")
        self.ready_line = line.strip()
        return proc

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def env(module_lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    lab = module_lab
    if shutil.which("openssl") is None or shutil.which("curl") is None:
        pytest.skip("needs openssl and curl")
    www = tmp_path_factory.mktemp("www")
    os.chmod(www, 0o755)
    files = {}
    for name, size in (("big", 10 * MB), ("small", 200_000)):
        data = hashlib.shake_256(name.encode()).digest(size)
        (www / name).write_bytes(data)
        files[name] = hashlib.sha256(data).hexdigest()
    ca, cert, key = make_ca(www, lab.peer_address)
    netns_etc = Path("/etc/netns") / lab.stack_ns
    netns_etc.mkdir(parents=True, exist_ok=True)
    (netns_etc / "hosts").write_text(f"127.0.0.1 localhost\n{lab.peer_address} peer.test\n")
    (netns_etc / "resolv.conf").write_text(
        f"nameserver {lab.peer_address}\noptions timeout:1 attempts:2\n")
    e = Env(lab, www, files, ca)
    try:
        e.peer([PY, "-u", "-c", "import http.server, sys, functools\n"
                "h = functools.partial(http.server.SimpleHTTPRequestHandler,"
                " directory=sys.argv[2])\n"
                "h.func.log_message = lambda *a: None\n"
                "s = http.server.ThreadingHTTPServer((sys.argv[1], 8000), h)\n"
                "print('READY', flush=True); s.serve_forever()", lab.peer_address, str(www)])
        e.peer([PY, "-u", "-c", TLS_SERVER, lab.peer_address, str(www), str(cert), str(key)])
        e.peer([PY, "-u", "-c", DNS_SERVER, lab.peer_address])
        yield e
    finally:
        e.close()
        shutil.rmtree(netns_etc, ignore_errors=True)


# ------------------------------------------------------------------ aiohttp


@pytest.mark.parametrize("mode", MODES)
def test_aiohttp_downloads_10mb_by_ip_and_by_hosts_name(env: Env, mode: str) -> None:
    peer = env.lab.peer_address
    proc = env.run(mode, "aiohttp_download.py", f"http://{peer}:8000/big",
                   "http://peer.test:8000/big", "http://web.test:8000/small")
    results = _json_lines(proc.stdout)
    assert [(r["status"], r["size"], r["sha256"]) for r in results] == [
        (200, 10 * MB, env.files["big"]), (200, 10 * MB, env.files["big"]),
        (200, 200_000, env.files["small"])]  # web.test: only the DNS server knows it


@pytest.mark.parametrize("mode", MODES)
def test_aiohttp_server_serves_curl_keepalive_and_5mb_upload(env: Env, mode: str) -> None:
    port = {"exec": 8081, "run": 8082}[mode]
    server = env.start(mode, "aiohttp_server.py", str(port))
    assert env.ready_line == f"READY [('{env.lab.stack_ip}', {port})]"  # server.sockets
    body = hashlib.shake_256(b"upload").digest(5 * MB)
    (env.www / "upload.bin").write_bytes(body)
    url = f"http://{env.lab.stack_ip}:{port}"
    curl = env.lab.run_in_peer(
        ["curl", "-sS", "-v", f"{url}/", f"{url}/", "--next", "--data-binary",
         f"@{env.www / 'upload.bin'}", f"{url}/upload", "--next", f"{url}/quit"],
        capture_output=True, text=True, timeout=60)
    assert curl.returncode == 0, curl.stderr
    lines = curl.stdout.splitlines()
    assert lines[:2] == [f"hello {env.lab.peer_address}"] * 2
    assert lines[2] == f"{5 * MB} {hashlib.sha256(body).hexdigest()}"
    assert lines[3] == "bye"
    assert "Re-using existing connection" in curl.stderr  # keep-alive
    assert server.wait(timeout=30) == 0


# -------------------------------------------------------------------- httpx


@pytest.mark.parametrize("mode", MODES)
def test_httpx_20_concurrent_gets_http_and_verified_https(env: Env, mode: str) -> None:
    peer = env.lab.peer_address
    for url, ca in ((f"http://{peer}:8000/small", "-"),
                    (f"https://{peer}:8443/small", str(env.ca))):
        (result,) = _json_lines(env.run(mode, "httpx_get.py", url, ca, "20").stdout)
        assert result == {"statuses": [200], "sha256": [env.files["small"]], "count": 20}


def test_httpx_https_rejects_unknown_ca(env: Env) -> None:
    """Verification is on: without our CA in the trust store the TLS
    handshake over ustack fails (the client does not silently accept)."""
    proc = env.lab.run_in_stack(
        env.argv("exec", "httpx_get.py", f"https://{env.lab.peer_address}:8443/small", "-", "1"),
        env=env.env(), capture_output=True, text=True, timeout=60, cwd=env.www)
    assert proc.returncode != 0
    assert "CERTIFICATE_VERIFY_FAILED" in proc.stderr


# --------------------------------------------------------------- websockets


@pytest.mark.parametrize("mode", MODES)
def test_websockets_client_and_server_1mb_both_ways(env: Env, mode: str) -> None:
    port = {"exec": 8765, "run": 8766}[mode]
    # server on ustack, client in the kernel
    server = env.start(mode, "ws_peer.py", "server", "0.0.0.0", str(port))
    assert env.ready_line == f"READY [('{env.lab.stack_ip}', {port})]"
    client = env.lab.run_in_peer(
        [PY, str(PROGRAMS / "ws_peer.py"), "client", f"ws://{env.lab.stack_ip}:{port}",
         str(MB)], capture_output=True, text=True, timeout=60)
    assert client.stdout.split() == ["OK", str(MB)], client.stderr
    assert server.wait(timeout=30) == 0
    # server in the kernel, client on ustack
    env.peer([PY, str(PROGRAMS / "ws_peer.py"), "server", env.lab.peer_address, str(port)])
    proc = env.run(mode, "ws_peer.py", "client", f"ws://{env.lab.peer_address}:{port}", str(MB))
    assert proc.stdout.split() == ["OK", str(MB)]


# ----------------------------------------------------- the Python docs' streams


@pytest.mark.parametrize("mode", MODES)
def test_docs_streams_echo_examples_as_written(env: Env, mode: str) -> None:
    # the docs' echo server on ustack, the docs' client in the kernel namespace
    server = env.start(mode, "docs_echo_server.py")
    assert env.ready_line == f"Serving on ('{env.lab.stack_ip}', 8888)"
    client = env.lab.run_in_peer(
        [PY, "-c", (PROGRAMS / "docs_echo_client.py").read_text().replace(
            "'10.77.0.1'", repr(env.lab.stack_ip))],
        capture_output=True, text=True, timeout=60)
    assert client.stdout.splitlines() == [
        "Send: 'Hello World!'", "Received: 'Hello World!'", "Close the connection"], client.stderr
    server.send_signal(2)  # serve_forever until Ctrl-C, as the docs say
    out, _ = server.communicate(timeout=30)
    assert f"Received 'Hello World!' from ('{env.lab.peer_address}'," in out
    # the docs' client on ustack against the same server code in the kernel
    kernel = env.peer([PY, "-u", "-c", (PROGRAMS / "docs_echo_server.py").read_text().replace(
        "'0.0.0.0'", repr(env.lab.peer_address))])
    proc = env.run(mode, "docs_echo_client.py", "Hello World!", entry="tcp_echo_client")
    assert proc.stdout.splitlines() == [
        "Send: 'Hello World!'", "Received: 'Hello World!'", "Close the connection"]
    kernel.kill()


# ---------------------------------------------------------------------- DNS


@pytest.mark.parametrize("mode", MODES)
def test_getaddrinfo_resolves_through_dns_over_ustack_udp(env: Env, mode: str) -> None:
    proc = env.run(mode, "resolve.py", "name.test", "nope.test", "peer.test", "localhost")
    got = {r["name"]: r for r in _json_lines(proc.stdout)}
    assert got["name.test"]["addresses"] == [env.lab.peer_address]  # the peer's DNS server
    assert got["nope.test"]["gaierror"] == -2  # EAI_NONAME (NXDOMAIN)
    assert got["peer.test"]["addresses"] == [env.lab.peer_address]  # the netns hosts file
    assert got["localhost"]["addresses"] == ["127.0.0.1"]


# ------------------------------------------------------------ one stack only


def test_second_stack_on_same_interface_and_address_fails(env: Env) -> None:
    lab = env.lab
    first = lab.popen_in_stack(
        [PY, "-m", "ustack", "run", "--iface", lab.stack_if, "--address", lab.stack_address],
        env=env.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:  # wait until the first one holds the address
            ping = lab.run_in_peer(["ping", "-c1", "-W1", lab.stack_ip], capture_output=True)
            if ping.returncode == 0:
                break
            assert time.monotonic() < deadline and first.poll() is None, first.stderr
        second = lab.run_in_stack(
            env.argv("exec", "resolve.py", "peer.test"), env=env.env(), capture_output=True,
            text=True, timeout=60)
        assert second.returncode == 1
        holder = _stack_pid(first.pid)
        assert f"already runs on {lab.stack_if} with address {lab.stack_ip} (pid {holder})" \
            in second.stderr, second.stderr
        assert second.stderr.count("\n") == 1, second.stderr  # one line, nothing else
        # another address on the same interface is a different stack: allowed
        other = lab.run_in_stack(
            [PY, "-m", "ustack", "exec", "--iface", lab.stack_if, "--address",
             "10.77.0.3/24", "--", "python", str(PROGRAMS / "resolve.py"), "peer.test"],
            env=env.env(), capture_output=True, text=True, timeout=60)
        assert other.returncode == 0, other.stderr
    finally:
        first.send_signal(2)
        first.communicate(timeout=30)


def _stack_pid(ip_netns_pid: int) -> int:
    """``ip netns exec`` execs the command, so its pid is the stack's."""
    return ip_netns_pid


def test_exit_status_is_the_programs_and_pcap_records(env: Env, tmp_path: Path) -> None:
    pcap = tmp_path / "exec.pcap"
    proc = env.lab.run_in_stack(
        [PY, "-m", "ustack", "exec", "--iface", env.lab.stack_if, "--address",
         env.lab.stack_address, "--pcap", str(pcap), "--", "python", "-c",
         "import asyncio, sys\nasync def main():\n"
         f"    r, w = await asyncio.open_connection({env.lab.peer_address!r}, 8000)\n"
         "    w.close()\n    await w.wait_closed()\n"
         "    sys.exit(7)\nasyncio.run(main())"],
        env=env.env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 7, proc.stderr
    data = pcap.read_bytes()
    assert data[:4] in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1",
                        b"\xa1\xb2\x3c\x4d")  # a pcap file ...
    assert len(data) > 24 + 3 * (16 + 54)  # ... with at least the handshake in it


class _AnyPort:
    """Equal to any ``ADDR:PORT`` of the stack (the ephemeral UDP port)."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and other.rsplit(":", 1)[-1].isdigit()

    def __repr__(self) -> str:
        return "<stack:any port>"


ANY_PORT: Any = _AnyPort()


def test_ss_names_the_stack_of_each_row(env: Env) -> None:
    """``ustack ss -tanp``: one "# stack" line per stack (pid, namespace,
    interface, address) and the pid in each row; --stack/--iface select."""
    lab = env.lab
    hold = ("import asyncio\n"
            "async def main():\n"
            f"    r, w = await asyncio.open_connection({lab.peer_address!r}, 8000)\n"
            "    loop = asyncio.get_running_loop()\n"
            "    await loop.create_datagram_endpoint(asyncio.DatagramProtocol,\n"
            "                                        local_addr=('0.0.0.0', 5353))\n"
            "    await loop.create_datagram_endpoint(asyncio.DatagramProtocol,\n"
            f"                                        remote_addr=({lab.peer_address!r}, 53))\n"
            "    print('READY', flush=True)\n"
            "    await asyncio.sleep(30)\n"
            "asyncio.run(main())\n")
    proc = lab.popen_in_stack(
        [PY, "-m", "ustack", "exec", "--iface", lab.stack_if, "--address", lab.stack_address,
         "--", "python", "-c", hold], env=env.env(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and "READY" in proc.stdout.readline()
        pid = proc.pid  # ip netns exec execs the command: the stack's pid

        def ss(*args: str) -> str:
            out = subprocess.run([PY, "-m", "ustack", "ss", *args], capture_output=True,
                                 text=True, env=env.env(), timeout=30, check=True)
            return out.stdout

        text = ss("-tanp", "--stack", str(pid))
        header = f"# stack pid={pid} netns={lab.stack_ns} iface={lab.stack_if} " \
                 f"address={lab.stack_address}"
        assert text.splitlines()[0] == header, text
        rows = [ln for ln in text.splitlines()[2:] if ln.strip()]
        assert rows and all(f"pid={pid}," in ln for ln in rows), text
        assert any(f"{lab.peer_address}:8000" in ln for ln in rows), text
        assert header in ss("-tanp", "--iface", lab.stack_if)
        assert ss("-tan", "--iface", "no-such-if").splitlines()[1:] == []
        # UDP in ss's shapes: -u connected only, without a State column ...
        udp = ss("-un", "--stack", str(pid)).splitlines()
        assert udp[0].split()[:2] == ["Recv-Q", "Send-Q"]
        assert [tuple(ln.split()[2:4]) for ln in udp[1:]] == [(ANY_PORT, f"{lab.peer_address}:53")]
        # ... -ua adds the UNCONN ones; -a shows both tables with a Netid column
        urows = [ln.split() for ln in ss("-uan", "--stack", str(pid)).splitlines()[1:]]
        assert sorted((r[0], r[3], r[4]) for r in urows) == [
            ("ESTAB", ANY_PORT, f"{lab.peer_address}:53"),
            ("UNCONN", f"{lab.stack_ip}:5353", "0.0.0.0:*")]
        netids = {ln.split()[0] for ln in ss("-an", "--stack", str(pid)).splitlines()[1:]}
        assert netids == {"tcp", "udp"}
    finally:
        proc.kill()
        proc.communicate()


def test_exec_takes_the_stack_from_the_environment(env: Env) -> None:
    """USTACK_IFACE / USTACK_ADDRESS instead of --iface / --address."""
    proc = env.lab.run_in_stack(
        [PY, "-m", "ustack", "exec", "--", "python", str(PROGRAMS / "resolve.py"), "name.test"],
        env=env.env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert _json_lines(proc.stdout) == [{"name": "name.test",
                                         "addresses": [env.lab.peer_address]}]
    bare = dict(env.env())
    del bare["USTACK_IFACE"]
    proc = env.lab.run_in_stack([PY, "-m", "ustack", "exec", "--", "python", "-c", "pass"],
                                env=bare, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith("ustack exec: ") and "USTACK_IFACE" in proc.stderr
