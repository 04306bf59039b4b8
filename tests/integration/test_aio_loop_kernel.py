"""The ustack event loop against the Linux kernel, beyond the programs of
test_aio_kernel.py (issue 10): Happy Eyeballs over two addresses of the
peer where the first is blackholed, server-side TLS upgrades, and the
``loop.sock_*`` calls on sockets ``sock_connect`` put on ustack.

The peer namespace gets a second address (``SECOND``) and an nftables rule
that drops, with a counter, every TCP segment to the first address on the
test's ports (ARP still answers: a silent host, not an absent one).  Every
transfer is checked byte-exact.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import ustack
from ustack.lab import Lab
from ustack.stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

PY = sys.executable
SECOND = "10.77.0.3"
ECHO_PORT, HTTP_PORT = 7100, 8100
TABLE = "ai_blackhole"

#: a kernel echo server on every address of the peer: READY, then echoes
ECHO_SERVER = r'''
import socket, sys, threading
srv = socket.create_server(("0.0.0.0", int(sys.argv[1])), backlog=64)
print("READY", flush=True)
def serve(c):
    with c:
        while data := c.recv(65536):
            c.sendall(data)
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
'''


def _nft(lab: Lab, *args: str) -> str:
    out = lab.run_in_peer(["nft", *args], capture_output=True, text=True)
    assert out.returncode == 0, (args, out.stderr)
    return str(out.stdout)


def _dropped(lab: Lab) -> int:
    """Packets the blackhole rule dropped so far."""
    data = json.loads(_nft(lab, "-j", "list", "table", "inet", TABLE))
    for item in data["nftables"]:
        rule = item.get("rule")
        if rule:
            for expr in rule["expr"]:
                if "counter" in expr:
                    return int(expr["counter"]["packets"])
    raise AssertionError(f"no counter in {data}")


class Env:
    def __init__(self, lab: Lab, hosts: Path) -> None:
        self.lab = lab
        self.hosts = hosts
        self.procs: list[subprocess.Popen[str]] = []

    def peer(self, argv: list[str]) -> None:
        proc = self.lab.popen_in_peer(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True)
        self.procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if "READY" not in line:
            proc.kill()
            raise RuntimeError(f"peer {argv} failed: {line!r} {proc.communicate()[1]}")

    def run(self, main: Any, **options: Any) -> Any:
        """``main()`` on a ustack loop whose stack is on the lab's veth."""
        factory = ustack.loop_factory(self.lab.stack_if, self.lab.stack_address,
                                      hosts=str(self.hosts), diagnostics=False, **options)
        with self.lab.enter_stack_ns(), asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(asyncio.wait_for(main(), 60))

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()


@pytest.fixture(scope="module")
def env(module_lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    lab = module_lab
    if shutil.which("nft") is None:
        pytest.skip("nft not installed (.ci/install installs nftables)")
    lab.run_in_peer(["ip", "addr", "add", f"{SECOND}/24", "dev", lab.peer_if], check=True)
    _nft(lab, "add", "table", "inet", TABLE)
    _nft(lab, "add chain inet " + TABLE + " in { type filter hook input priority 0 ; }")
    _nft(lab, "add", "rule", "inet", TABLE, "in", "ip", "daddr", lab.peer_address, "tcp",
         "dport", f"{{ {ECHO_PORT}, {HTTP_PORT} }}", "counter", "drop")
    hosts = tmp_path_factory.mktemp("names") / "hosts"
    hosts.write_text(f"127.0.0.1 localhost\n{lab.peer_address} two.test\n{SECOND} two.test\n")
    e = Env(lab, hosts)
    try:
        e.peer([PY, "-u", "-c", ECHO_SERVER, str(ECHO_PORT)])
        www = tmp_path_factory.mktemp("www")
        os.chmod(www, 0o755)
        (www / "blob").write_bytes(hashlib.shake_256(b"blob").digest(2_000_000))
        e.peer([PY, "-u", "-c", "import http.server, functools, sys\n"
                "h = functools.partial(http.server.SimpleHTTPRequestHandler,"
                " directory=sys.argv[2])\n"
                "h.func.log_message = lambda *a: None\n"
                "s = http.server.ThreadingHTTPServer(('0.0.0.0', int(sys.argv[1])), h)\n"
                "print('READY', flush=True); s.serve_forever()", str(HTTP_PORT), str(www)])
        yield e
    finally:
        e.close()


# ----------------------------------------------------------- happy eyeballs


def test_happy_eyeballs_second_address_wins_over_a_blackholed_first(env: Env) -> None:
    """``asyncio.open_connection(name, happy_eyeballs_delay=...)``: the first
    address (its SYNs dropped) is tried first, the second starts after the
    delay and wins; the first attempt is gone from the stack's table, and
    1 MB echoes byte-exact over the winner."""
    lab = env.lab
    before = _dropped(lab)

    async def main() -> dict[str, Any]:
        reader, writer = await asyncio.open_connection("two.test", ECHO_PORT,
                                                       happy_eyeballs_delay=0.25)
        peer = writer.get_extra_info("peername")
        payload = os.urandom(1_000_000)
        writer.write(payload)
        echoed = await reader.readexactly(len(payload))
        stack = writer.get_extra_info("stack")
        remotes = sorted({socket.inet_ntoa(ep.remote_addr) for ep in stack.tcp.endpoints()})
        writer.close()
        await writer.wait_closed()
        return {"peer": peer, "same": echoed == payload, "remotes": remotes}

    got = env.run(main)
    assert got["peer"] == (SECOND, ECHO_PORT)
    assert got["same"]
    assert got["remotes"] == [SECOND]  # the blackholed attempt was dropped
    assert _dropped(lab) > before  # ... after its SYN went out first


def test_aiohttp_happy_eyeballs_through_sock_connect(env: Env) -> None:
    """aiohttp (aiohappyeyeballs: its own race of ``loop.sock_connect`` on
    kernel sockets, 0.25 s apart) reaches the second address; the first
    sock_connect is cancelled and its ustack connection dropped."""
    aiohttp = pytest.importorskip("aiohttp")
    lab = env.lab
    before = _dropped(lab)
    want = hashlib.sha256(hashlib.shake_256(b"blob").digest(2_000_000)).hexdigest()

    async def main() -> dict[str, Any]:
        async with aiohttp.ClientSession() as session, \
                session.get(f"http://two.test:{HTTP_PORT}/blob") as resp:
            assert resp.connection is not None and resp.connection.transport is not None
            peer = resp.connection.transport.get_extra_info("peername")
            stack = resp.connection.transport.get_extra_info("stack")
            body = await resp.read()
        await asyncio.sleep(0.05)
        remotes = sorted({socket.inet_ntoa(ep.remote_addr) for ep in stack.tcp.endpoints()
                          if ep.conn.state.name not in ("TIME_WAIT", "CLOSED")})
        return {"peer": peer, "sha": hashlib.sha256(body).hexdigest(), "remotes": remotes}

    got = env.run(main)
    assert got["peer"] == (SECOND, HTTP_PORT)
    assert got["sha"] == want
    assert lab.peer_address not in got["remotes"], got["remotes"]
    assert _dropped(lab) > before


# ------------------------------------------------------ server-side STARTTLS

#: a kernel client: plain hello, STARTTLS, then TLS (CA verified) with 1 MB up
#: and the server's sha256 of it back
STARTTLS_CLIENT = r'''
import hashlib, socket, ssl, sys
host, port, ca, size = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
data = hashlib.shake_256(b"starttls").digest(size)
s = socket.create_connection((host, port), timeout=20)
s.sendall(b"STARTTLS\n")
assert s.recv(3) == b"GO\n"
ctx = ssl.create_default_context(cafile=ca)
t = ctx.wrap_socket(s, server_hostname=host)
t.sendall(data)
got = b""
while len(got) < 64:
    chunk = t.recv(64 - len(got))
    if not chunk:
        break
    got += chunk
print(got.decode(), hashlib.sha256(data).hexdigest(), t.version(), flush=True)
'''


def _certificate(where: Path, ip: str) -> tuple[Path, Path]:
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", f"/CN={ip}", "-addext", f"subjectAltName=IP:{ip}",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


@pytest.mark.parametrize("via", ["writer", "ustack_loop"])
def test_server_side_starttls_from_a_kernel_client(env: Env, tmp_path: Path, via: str) -> None:
    """A ``start_server`` handler on ustack upgrades to TLS with
    ``writer.start_tls(ctx)`` after a plain STARTTLS exchange, on a plain
    uvloop loop (``stack.start_server``) and on the ustack loop
    (``asyncio.start_server``); the kernel client verifies the certificate
    and 1 MB goes up byte-exact (the server's sha256 matches)."""
    if shutil.which("openssl") is None:
        pytest.skip("needs openssl")
    import uvloop

    lab = env.lab
    cert, key = _certificate(tmp_path, lab.stack_ip)
    os.chmod(tmp_path, 0o755)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    size, port = 1_000_000, 7443

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        assert await r.readline() == b"STARTTLS\n"
        w.write(b"GO\n")
        await w.drain()
        await w.start_tls(server_ctx)
        data = await r.readexactly(size)
        w.write(hashlib.sha256(data).hexdigest().encode())
        await w.drain()
        w.close()

    async def serve(start: Any) -> str:
        server = await start(handle, port=port)
        loop = asyncio.get_running_loop()
        out = await loop.run_in_executor(None, lambda: lab.run_in_peer(
            [PY, "-c", STARTTLS_CLIENT, lab.stack_ip, str(port), str(cert), str(size)],
            capture_output=True, text=True, timeout=60))
        server.close()
        assert out.returncode == 0, out.stderr
        return str(out.stdout)

    if via == "writer":
        async def plain() -> str:
            with lab.enter_stack_ns():
                stack = await Stack.start(iface=lab.stack_if, address=lab.stack_address,
                                          diagnostics=False)
            try:
                assert "uvloop" in type(asyncio.get_running_loop()).__module__
                return await serve(stack.start_server)
            finally:
                await stack.close()

        loop = uvloop.new_event_loop()
        try:
            line = loop.run_until_complete(asyncio.wait_for(plain(), 90))
        finally:
            loop.close()
    else:
        async def on_loop() -> str:
            return await serve(lambda cb, port: asyncio.start_server(cb, None, port))

        line = env.run(on_loop)
    server_sha, client_sha, version = line.split()
    assert server_sha == client_sha
    assert version.startswith("TLSv1.")


# --------------------------------------------------- sock_* on claimed sockets


def test_sock_calls_after_sock_connect_talk_to_the_kernel(env: Env) -> None:
    """A kernel socket ``sock_connect`` put on ustack, then used the way
    aiohappyeyeballs-style code does without create_connection:
    ``sock_sendall`` 1 MB to the kernel echo server while ``sock_recv`` /
    ``sock_recv_into`` read it back byte-exact; closing the socket ends the
    ustack connection with a FIN (the kernel side closes too)."""

    async def main() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        await loop.sock_connect(sock, (SECOND, ECHO_PORT))
        payload = os.urandom(1_000_000)
        sender = asyncio.ensure_future(loop.sock_sendall(sock, payload))
        got = bytearray()
        buf = bytearray(65536)
        while len(got) < len(payload):
            if len(got) % 2:
                got += await loop.sock_recv(sock, 40_000)
            else:
                n = await loop.sock_recv_into(sock, buf)
                assert n > 0
                got += buf[:n]
        await sender
        stack: Any = await loop.ustack_stack()  # type: ignore[attr-defined]
        (ep,) = [e for e in stack.tcp.endpoints()
                 if socket.inet_ntoa(e.remote_addr) == SECOND and e.remote_port == ECHO_PORT
                 and e.conn.state.name == "ESTABLISHED"]
        sock.close()
        del sock
        for _ in range(100):  # the kernel echo server answers our FIN with its own
            if ep.conn.state.name == "TIME_WAIT":
                break
            await asyncio.sleep(0.02)
        return {"same": bytes(got) == payload, "state": ep.conn.state.name}

    got = env.run(main)
    assert got["same"]
    assert got["state"] == "TIME_WAIT", got  # FIN both ways, no reset


# ------------------------------------------------------------- DNS: cache, TC

#: a DNS server (UDP and TCP) for this test, RFC 1035 s.4 by hand: name.test
#: -> SECOND (TTL 30); many.test -> 60 addresses, over UDP only a truncated
#: (TC) empty answer; count.<udp|tcp>.<name> -> 10.0.0.N with N the queries
#: seen for <name> over that transport (TTL 0, so never cached)
DNS_SERVER = r'''
import socket, struct, sys, threading
host = sys.argv[1]
counts = {}
lock = threading.Lock()
records = {b"name.test": [socket.inet_aton(sys.argv[2])],
           b"many.test": [bytes([10, 77, 2, i]) for i in range(1, 61)]}
def reply(q, tcp):
    ident = struct.unpack("!H", q[:2])[0]
    off, labels = 12, []
    while q[off]:
        labels.append(q[off + 1:off + 1 + q[off]]); off += 1 + q[off]
    question = q[12:off + 5]
    name = b".".join(labels).lower()
    flags, ttl = 0x8180, 30
    with lock:
        counts[(name, tcp)] = counts.get((name, tcp), 0) + 1
        if name.startswith(b"count."):
            _, kind, rest = name.split(b".", 2)
            addrs, ttl = [bytes([10, 0, 0, counts.get((rest, kind == b"tcp"), 0)])], 0
        else:
            addrs = records.get(name)
    if addrs is None:
        return struct.pack("!HHHHHH", ident, 0x8183, 1, 0, 0, 0) + question
    if name == b"many.test" and not tcp:
        return struct.pack("!HHHHHH", ident, flags | 0x0200, 1, 0, 0, 0) + question
    out = struct.pack("!HHHHHH", ident, flags, 1, len(addrs), 0, 0) + question
    for a in addrs:
        out += b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, ttl, 4) + a
    return out
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind((host, 53))
t = socket.create_server((host, 53))
def serve_tcp():
    while True:
        c, _ = t.accept()
        with c:
            f = c.makefile("rb")
            n = struct.unpack("!H", f.read(2))[0]
            r = reply(f.read(n), True)
            c.sendall(struct.pack("!H", len(r)) + r)
threading.Thread(target=serve_tcp, daemon=True).start()
print("READY", flush=True)
while True:
    q, addr = u.recvfrom(512)
    u.sendto(reply(q, False), addr)
'''


def test_dns_cache_and_tcp_fallback_against_a_kernel_server(env: Env) -> None:
    """Over ustack's UDP to a DNS server in the peer namespace: a name asked
    three times is sent once (kept for its TTL); a name whose UDP answer is
    truncated is asked again over ustack TCP and all 60 addresses arrive."""
    env.peer([PY, "-u", "-c", DNS_SERVER, SECOND, SECOND])

    async def main() -> dict[str, Any]:
        loop = asyncio.get_running_loop()

        async def first(name: str) -> str:
            infos = await loop.getaddrinfo(name, 80, type=socket.SOCK_STREAM)
            return str(infos[0][4][0])

        for _ in range(3):
            assert await first("name.test") == SECOND
        many = await loop.getaddrinfo("many.test", 80, type=socket.SOCK_STREAM)
        return {
            "name_udp": await first("count.udp.name.test"),
            "many": [i[4][0] for i in many],
            "many_udp": await first("count.udp.many.test"),
            "many_tcp": await first("count.tcp.many.test"),
        }

    got = env.run(main, dns=[SECOND])
    assert got["name_udp"] == "10.0.0.1"  # one query for three lookups
    assert got["many"] == [f"10.77.2.{i}" for i in range(1, 61)]
    assert (got["many_udp"], got["many_tcp"]) == ("10.0.0.1", "10.0.0.1")
