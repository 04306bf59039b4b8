"""asyncio streams on ustack against the Linux kernel in a lab.

Every test builds its own lab (``lab`` fixture), runs ustack on the stack-side
veth from this process and a kernel TCP peer (Python sockets, curl,
``python3 -m http.server``) in the peer namespace, and ends by checking that
``ss -tan`` in the peer namespace shows no connection in a state other than
TIME-WAIT.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ustack.lab import Lab

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
PEER = ROOT / "bench" / "throughput_peer.py"
sys.path.insert(0, str(ROOT / "bench"))

from throughput_peer import pattern_chunks, pattern_sha256  # noqa: E402

MB = 1_000_000


@pytest.fixture
async def stack(lab: Lab) -> AsyncIterator[Any]:
    from ustack.stack import Stack

    with lab.enter_stack_ns():
        s = await Stack.start(iface=lab.stack_if, address=lab.stack_address)
    try:
        yield s
    finally:
        await s.close()


class Peer:
    """A kernel process in the peer namespace that prints READY then results."""

    def __init__(self, lab: Lab, argv: list[str], ready: bool = True) -> None:
        self.proc = lab.popen_in_peer(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True)
        if ready:
            assert self.proc.stdout is not None
            line = self.proc.stdout.readline()
            if not line.startswith("READY"):
                self.proc.kill()
                raise RuntimeError(f"peer failed: {line!r} {self.proc.stderr.read()}")  # type: ignore[union-attr]

    async def results(self, timeout: float = 60) -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        out, err = await loop.run_in_executor(None, lambda: self.proc.communicate(timeout=timeout))
        return [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def peer_script(lab: Lab, mode: str, port: int, *extra: str) -> Peer:
    return Peer(lab, [sys.executable, str(PEER), mode, "--port", str(port), *extra])


def inline_peer(lab: Lab, code: str, *args: str) -> Peer:
    return Peer(lab, [sys.executable, "-c", code, *args])


def kernel_tcp_states(lab: Lab) -> list[str]:
    out = lab.run_in_peer(["ss", "-tanH"], capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


async def assert_peer_clean(lab: Lab, wait: float = 5.0) -> None:
    """No kernel connection in the peer namespace outside TIME-WAIT (LISTEN
    sockets are not connections)."""
    deadline = time.monotonic() + wait
    while True:
        states = [s for s in kernel_tcp_states(lab) if s not in ("TIME-WAIT", "LISTEN")]
        if not states:
            return
        if time.monotonic() > deadline:
            out = lab.run_in_peer(["ss", "-tanoi"], capture_output=True, text=True).stdout
            pytest.fail(f"kernel connections stuck: {states}\n{out}")
        await asyncio.sleep(0.1)


# ------------------------------------------------------------------ bulk


async def test_100mb_ustack_to_kernel_sha256(lab: Lab, stack: Any) -> None:
    sink = peer_script(lab, "sink", 5001)
    try:
        nbytes = 100 * MB
        reader, writer = await stack.open_connection(lab.peer_address, 5001, timeout=10)
        for piece in pattern_chunks(nbytes, seed=3):
            writer.write(piece)
            await writer.drain()
        writer.write_eof()
        reply = (await asyncio.wait_for(reader.read(), 60)).decode().split()
        writer.close()
        await writer.wait_closed()
        assert reply == [str(nbytes), pattern_sha256(nbytes, 3)]
        assert stack.counters()["tcp_gso_out"] > 0  # offload is the default
        (result,) = await sink.results()
        assert result["bytes"] == nbytes and "error" not in result
        await assert_peer_clean(lab)
    finally:
        sink.kill()


async def test_100mb_kernel_to_ustack_sha256(lab: Lab, stack: Any) -> None:
    nbytes = 100 * MB
    source = peer_script(lab, "source", 5002, "--bytes", str(nbytes), "--seed", "5")
    try:
        reader, writer = await stack.open_connection(lab.peer_address, 5002, timeout=10,
                                                     limit=1 << 20)
        h = hashlib.sha256()
        got = 0
        while True:
            data = await asyncio.wait_for(reader.read(1 << 20), 30)
            if not data:
                break
            got += len(data)
            h.update(data)
        writer.close()
        await writer.wait_closed()
        assert got == nbytes
        assert h.hexdigest() == pattern_sha256(nbytes, 5)
        (result,) = await source.results()
        assert "error" not in result
        await assert_peer_clean(lab)
    finally:
        source.kill()


async def duplex_echo(lab: Lab, stack: Any, port: int, seed: int, chunk: int) -> None:
    """10 MB through the kernel echo server on ``port``: concurrent writes and
    reads, the echoed bytes' SHA-256 equal, and the peer left clean."""
    echo = peer_script(lab, "echo", port)
    try:
        nbytes = 10 * MB
        reader, writer = await stack.open_connection(lab.peer_address, port, timeout=10)

        async def send() -> None:
            for piece in pattern_chunks(nbytes, seed=seed, chunk=chunk):
                writer.write(piece)
                await writer.drain()
            writer.write_eof()

        async def receive() -> str:
            h = hashlib.sha256()
            got = 0
            while data := await asyncio.wait_for(reader.read(65536), 30):
                got += len(data)
                h.update(data)
            assert got == nbytes
            return h.hexdigest()

        _, digest = await asyncio.gather(send(), receive())
        assert digest == pattern_sha256(nbytes, seed)
        writer.close()
        await writer.wait_closed()
        await echo.results()
        await assert_peer_clean(lab)
    finally:
        echo.kill()


async def test_10mb_full_duplex_echo(lab: Lab, stack: Any) -> None:
    await duplex_echo(lab, stack, 5003, seed=11, chunk=100_000)


async def test_200_concurrent_connections_1mb_each(lab: Lab, stack: Any) -> None:
    n = 200
    sink = peer_script(lab, "sink", 5004, "--count", str(n))
    try:
        nbytes = 1 * MB

        async def one(i: int) -> list[str]:
            reader, writer = await stack.open_connection(lab.peer_address, 5004, timeout=30)
            for piece in pattern_chunks(nbytes, seed=100 + i, chunk=200_000):
                writer.write(piece)
                await writer.drain()
            writer.write_eof()
            reply: list[str] = (await asyncio.wait_for(reader.read(), 120)).decode().split()
            writer.close()
            await writer.wait_closed()
            return reply

        replies = await asyncio.gather(*(one(i) for i in range(n)))
        for i, reply in enumerate(replies):
            assert reply == [str(nbytes), pattern_sha256(nbytes, 100 + i)], i
        results = await sink.results(timeout=120)
        assert len(results) == n and all("error" not in r for r in results)
        await assert_peer_clean(lab, wait=10)
    finally:
        sink.kill()


# ------------------------------------------------------------------ HTTP


async def test_curl_fetches_page_from_start_server(lab: Lab, stack: Any) -> None:
    body = b"<h1>hello from ustack</h1>\n" * 1000

    async def http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        assert request.startswith(b"GET /index.html ")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
                     b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await stack.start_server(http, port=8080)
    try:
        loop = asyncio.get_running_loop()
        proc = await loop.run_in_executor(None, lambda: lab.run_in_peer(
            ["curl", "-sS", "--max-time", "20", f"http://{stack.address.split('/')[0]}:8080/index.html"],
            capture_output=True))
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == body
    finally:
        server.close()
        await server.wait_closed()
    await assert_peer_clean(lab)


async def test_http_client_downloads_10mb_from_python_http_server(
    lab: Lab, stack: Any, tmp_path: Path
) -> None:
    payload = os.urandom(10 * MB)
    (tmp_path / "blob.bin").write_bytes(payload)
    server = Peer(lab, [sys.executable, "-u", "-m", "http.server", "8000", "--bind",
                        lab.peer_address, "--directory", str(tmp_path)], ready=False)
    try:
        for _ in range(50):  # until it listens
            if "LISTEN" in kernel_tcp_states(lab):
                break
            await asyncio.sleep(0.1)
        reader, writer = await stack.open_connection(lab.peer_address, 8000, timeout=10,
                                                     limit=1 << 20)
        writer.write(f"GET /blob.bin HTTP/1.0\r\nHost: {lab.peer_address}\r\n\r\n".encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.0 200")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length")))
        data = await asyncio.wait_for(reader.read(-1), 60)  # until the server closes
        writer.close()
        await writer.wait_closed()
        assert length == len(payload)
        assert data == payload
        await assert_peer_clean(lab)
    finally:
        server.kill()


# ------------------------------------------------------------------ errors

RESET_AFTER = r"""
import socket, struct, sys
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("0.0.0.0", int(sys.argv[1]))); ls.listen(1); print("READY", flush=True)
c, _ = ls.accept()
c.sendall(b"x" * 100000)
got = 0
while got < 200000:
    d = c.recv(65536)
    if not d: break
    got += len(d)
c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
c.close()  # RST
print('{"done": true}', flush=True)
"""


async def test_refused(lab: Lab, stack: Any) -> None:
    with pytest.raises(ConnectionRefusedError):
        await stack.open_connection(lab.peer_address, 5999, timeout=10)
    await assert_peer_clean(lab)


async def test_unreachable_host(lab: Lab, stack: Any) -> None:
    import errno

    host = lab.peer_address.rsplit(".", 1)[0] + ".99"  # on-link, nobody there
    t0 = time.monotonic()
    with pytest.raises(OSError) as info:
        await stack.open_connection(host, 80, timeout=30)
    assert info.value.errno == errno.EHOSTUNREACH, info.value
    assert time.monotonic() - t0 < 30


async def test_reset_mid_transfer(lab: Lab, stack: Any) -> None:
    peer = inline_peer(lab, RESET_AFTER, "5005")
    try:
        reader, writer = await stack.open_connection(lab.peer_address, 5005, timeout=10)
        assert len(await reader.readexactly(100000)) == 100000
        block = b"y" * 65536
        with pytest.raises(ConnectionResetError):
            for _ in range(200):  # the kernel resets after 200 kB
                writer.write(block)
                await writer.drain()
                await asyncio.sleep(0.001)
        with pytest.raises(ConnectionResetError):
            await reader.read(10)
        writer.close()
        await peer.results()
        await assert_peer_clean(lab)
    finally:
        peer.kill()


HALF_CLOSE_PEER = r"""
import socket, sys, json
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("0.0.0.0", int(sys.argv[1]))); ls.listen(1); print("READY", flush=True)
c, _ = ls.accept()
if sys.argv[2] == "peer-first":
    c.sendall(b"from kernel")
    c.shutdown(socket.SHUT_WR)          # kernel half-closes first
    data = b""
    while True:
        d = c.recv(65536)
        if not d: break
        data += d
else:
    data = b""
    while True:                          # ustack half-closes first
        d = c.recv(65536)
        if not d: break
        data += d
    c.sendall(b"reply to " + data)
    c.shutdown(socket.SHUT_WR)
c.close()
print(json.dumps({"data": data.decode()}), flush=True)
"""


async def test_half_close_ustack_first(lab: Lab, stack: Any) -> None:
    peer = inline_peer(lab, HALF_CLOSE_PEER, "5006", "ustack-first")
    try:
        reader, writer = await stack.open_connection(lab.peer_address, 5006, timeout=10)
        writer.write(b"question")
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 10) == b"reply to question"
        writer.close()
        await writer.wait_closed()
        assert (await peer.results()) == [{"data": "question"}]
        await assert_peer_clean(lab)
    finally:
        peer.kill()


async def test_half_close_kernel_first(lab: Lab, stack: Any) -> None:
    peer = inline_peer(lab, HALF_CLOSE_PEER, "5007", "peer-first")
    try:
        reader, writer = await stack.open_connection(lab.peer_address, 5007, timeout=10)
        assert await asyncio.wait_for(reader.read(), 10) == b"from kernel"
        assert reader.at_eof()
        writer.write(b"still talking after your FIN")  # our direction is still open
        await writer.drain()
        writer.write_eof()
        assert (await peer.results()) == [{"data": "still talking after your FIN"}]
        writer.close()
        await writer.wait_closed()
        await assert_peer_clean(lab)
    finally:
        peer.kill()


UNREAD_PEER = r"""
import socket, sys, time
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("0.0.0.0", int(sys.argv[1]))); ls.listen(1); print("READY", flush=True)
c, _ = ls.accept()
c.recv(10)        # read a little
time.sleep(0.3)   # more arrives and stays unread
c.close()         # Linux: close with unread data sends RST (RFC 2525)
print('{"closed": true}', flush=True)
"""


async def test_peer_closes_with_unread_data(lab: Lab, stack: Any) -> None:
    peer = inline_peer(lab, UNREAD_PEER, "5008")
    try:
        reader, writer = await stack.open_connection(lab.peer_address, 5008, timeout=10)
        writer.write(b"z" * 50000)
        await writer.drain()
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(), 10)
        await peer.results()
        writer.close()
        await assert_peer_clean(lab)
    finally:
        peer.kill()


ABORT_PEER = r"""
import socket, sys, json
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("0.0.0.0", int(sys.argv[1]))); ls.listen(1); print("READY", flush=True)
c, _ = ls.accept(); c.settimeout(10)
got = 0
try:
    while True:
        d = c.recv(65536)
        if not d:
            print(json.dumps({"eof": got}), flush=True); break
        got += len(d)
except ConnectionResetError:
    print(json.dumps({"reset": got}), flush=True)
"""


async def test_abort_sends_rst(lab: Lab, stack: Any) -> None:
    peer = inline_peer(lab, ABORT_PEER, "5009")
    try:
        _, writer = await stack.open_connection(lab.peer_address, 5009, timeout=10)
        writer.write(b"a" * 10000)
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.transport.abort()
        (result,) = await peer.results()
        assert "reset" in result, result
        await assert_peer_clean(lab)
    finally:
        peer.kill()


async def test_tcp_info_after_transfer(lab: Lab, stack: Any) -> None:
    sink = peer_script(lab, "sink", 5010)
    try:
        reader, writer = await stack.open_connection(lab.peer_address, 5010, timeout=10)
        writer.write(b"q" * 1_000_000)
        await writer.drain()
        writer.write_eof()
        await reader.read()
        info = writer.get_extra_info("tcp_info")
        assert info.bytes_acked >= 1_000_000
        assert info.srtt > 0
        assert writer.get_extra_info("peername") == (lab.peer_address, 5010)
        writer.close()
        await writer.wait_closed()
        await sink.results()
        await assert_peer_clean(lab)
    finally:
        sink.kill()


TLS_SERVER = r"""
import socket, ssl, sys
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(sys.argv[2], sys.argv[3])
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("0.0.0.0", int(sys.argv[1]))); ls.listen(1); print("READY", flush=True)
c, _ = ls.accept(); c.settimeout(20)
t = ctx.wrap_socket(c, server_side=True)
line = b""
while not line.endswith(b"\n"):
    d = t.recv(100)
    if not d: break
    line += d
t.sendall(b"tls says " + line + b"x" * 1_000_000)
if sys.argv[4] == "close_notify":
    try:
        t.unwrap().close()  # close_notify, then FIN
    except (OSError, ssl.SSLError):
        t.close()
else:
    t.close()  # FIN right after the burst, no close_notify (a "ragged" close)
print('{"ok": true}', flush=True)
"""


@pytest.mark.parametrize("close", ["close_notify", "ragged"])
async def test_tls_client_to_kernel_server(
    lab: Lab, stack: Any, tmp_path: Path, close: str
) -> None:
    """1 MB over TLS; with a ragged close the FIN arrives while the app reader
    is paused (regression: asyncio's SSLProtocol flushed early and lost data)."""
    import ssl

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=peer", "-addext", f"subjectAltName=IP:{lab.peer_address}",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    peer = inline_peer(lab, TLS_SERVER, "5443", str(cert), str(key), close)
    try:
        ctx = ssl.create_default_context(cafile=str(cert))
        reader, writer = await stack.open_connection(lab.peer_address, 5443, ssl=ctx,
                                                     timeout=10)
        assert writer.get_extra_info("peercert") is not None
        writer.write(b"hello\n")
        data = await asyncio.wait_for(reader.readexactly(len(b"tls says hello\n") + 1_000_000),
                                      20)
        assert data.startswith(b"tls says hello\n")
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()
        await peer.results()
        await assert_peer_clean(lab)
    finally:
        peer.kill()


DEFAULT_STACK_CLIENT = r"""
import asyncio, sys, ustack
async def main():
    reader, writer = await ustack.open_connection(sys.argv[1], int(sys.argv[2]), timeout=10)
    writer.write(b"via the default stack")
    writer.write_eof()
    print((await reader.read()).decode(), flush=True)
    writer.close()
    await writer.wait_closed()
asyncio.run(main())
"""


def test_module_level_open_connection_uses_environment(lab: Lab) -> None:
    peer = inline_peer(lab, HALF_CLOSE_PEER, "5011", "ustack-first")
    try:
        env = dict(os.environ, USTACK_IFACE=lab.stack_if, USTACK_ADDRESS=lab.stack_address,
                   USTACK_DIAG="0")
        proc = lab.run_in_stack([sys.executable, "-c", DEFAULT_STACK_CLIENT, lab.peer_address,
                                 "5011"], env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == "reply to via the default stack"
    finally:
        peer.kill()


async def test_slow_reader_closes_window_against_kernel(lab: Lab, stack: Any) -> None:
    nbytes = 20 * MB
    source = peer_script(lab, "source", 5012, "--bytes", str(nbytes), "--seed", "12")
    try:
        reader, writer = await stack.open_connection(lab.peer_address, 5012, timeout=10,
                                                     limit=1 << 16)
        await asyncio.sleep(1.0)  # read nothing: the kernel must stop at our window
        info = writer.get_extra_info("tcp_info")
        assert info.rcv_wnd < 2 * info.advmss, info
        assert info.recv_q >= (1 << 19)  # our receive buffer is (nearly) full
        kernel = lab.run_in_peer(["ss", "-tnH", "sport", "= :5012"], capture_output=True,
                                 text=True).stdout.split()
        assert kernel and kernel[0] == "ESTAB" and int(kernel[2]) > 1 << 20  # Send-Q backs up
        h = hashlib.sha256()
        got = 0
        while True:
            data = await asyncio.wait_for(reader.read(1 << 20), 30)
            if not data:
                break
            got += len(data)
            h.update(data)
        assert got == nbytes and h.hexdigest() == pattern_sha256(nbytes, 12)
        writer.close()
        await writer.wait_closed()
        await source.results()
        await assert_peer_clean(lab)
    finally:
        source.kill()


async def test_exact_wire_mode_duplex_echo(lab: Lab) -> None:
    """offload=False (no GSO, MTU-sized frames out): the same bytes arrive."""
    from ustack.stack import Stack

    with lab.enter_stack_ns():
        stack = await Stack.start(iface=lab.stack_if, address=lab.stack_address, offload=False)
    try:
        await duplex_echo(lab, stack, 5013, seed=13, chunk=300_000)
        assert stack.counters().get("tcp_gso_out", 0) == 0
    finally:
        await stack.close()
