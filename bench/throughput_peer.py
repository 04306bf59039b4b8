#!/usr/bin/env python3
"""Kernel TCP peer for ustack benchmarks and integration tests.

Runs in the peer namespace with plain ``socket``; stdlib only.  Prints
``READY <port>`` once listening, then one JSON line per connection.

Modes:
  sink    read until EOF, reply ``<bytes> <sha256>\\n``, close
  source  send ``--bytes`` of the deterministic pattern, close
  echo    send back everything received until EOF, then close
  send    (client) connect to ``--connect HOST``, send ``--bytes``, shutdown,
          read the reply, print a JSON line with the time taken (and the
          socket's TCP_CONGESTION, set with ``--congestion NAME``)

Every mode accepts ``--count K`` connections, served concurrently by threads.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import socket
import struct
import sys
import threading
import time

_PRINT_LOCK = threading.Lock()
BLOCK_LEN = 1_000_003  # not a power of two: block edges never align with segments


def pattern_block(seed: int) -> bytes:
    return random.Random(seed).randbytes(BLOCK_LEN)


def pattern_chunks(total: int, seed: int, chunk: int = 1 << 20) -> list[memoryview]:
    """The deterministic stream of ``total`` bytes as views of one block."""
    block = pattern_block(seed)
    doubled = memoryview(block + block)
    out = []
    pos = 0
    while pos < total:
        n = min(chunk, total - pos, BLOCK_LEN)
        off = pos % BLOCK_LEN
        out.append(doubled[off : off + n])
        pos += n
    return out


def pattern_sha256(total: int, seed: int) -> str:
    h = hashlib.sha256()
    for piece in pattern_chunks(total, seed):
        h.update(piece)
    return h.hexdigest()


def _serve(conn: socket.socket, args: argparse.Namespace) -> None:
    t0 = time.perf_counter()
    nbytes = 0
    h = hashlib.sha256()
    try:
        if args.mode == "sink":
            buf = bytearray(1 << 20)
            view = memoryview(buf)
            while True:
                n = conn.recv_into(buf)
                if not n:
                    break
                nbytes += n
                if not args.no_hash:
                    h.update(view[:n])
            conn.sendall(f"{nbytes} {h.hexdigest()}\n".encode())
        elif args.mode == "source":
            if args.congestion:  # the sender's algorithm (root for cubic)
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION,
                                args.congestion.encode())
            for piece in pattern_chunks(args.bytes, args.seed):
                conn.sendall(piece)
                nbytes += len(piece)
        elif args.mode == "echo":
            while True:
                data = conn.recv(1 << 18)
                if not data:
                    break
                nbytes += len(data)
                conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
        # wait for the other side's FIN so the close is orderly
        conn.settimeout(30)
        try:
            while conn.recv(65536):
                pass
        except OSError:
            pass
        result = {"mode": args.mode, "bytes": nbytes, "seconds": time.perf_counter() - t0,
                  "sha256": h.hexdigest() if args.mode == "sink" else None}
    except OSError as exc:
        result = {"mode": args.mode, "bytes": nbytes, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        conn.close()
    line = json.dumps(result) + "\n"
    with _PRINT_LOCK:  # one whole line per connection, threads never interleave
        sys.stdout.write(line)
        sys.stdout.flush()


def client_send(args: argparse.Namespace) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if args.congestion:  # Linux TCP_CONGESTION, before connect (root for cubic)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, args.congestion.encode())
    sock.settimeout(60)
    sock.connect((args.connect, args.port))
    algo = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16)
    t0 = time.perf_counter()
    for piece in pattern_chunks(args.bytes, args.seed):
        sock.sendall(piece)
    sock.shutdown(socket.SHUT_WR)
    reply = b""
    while True:
        data = sock.recv(4096)
        if not data:
            break
        reply += data
    elapsed = time.perf_counter() - t0
    # struct tcp_info: 8 bytes of u8 fields, then u32s; tcpi_total_retrans at 100
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    total_retrans = struct.unpack_from("I", info, 100)[0] if len(info) >= 104 else None
    sock.close()
    print(json.dumps({"mode": "send", "bytes": args.bytes, "seconds": elapsed,
                      "total_retrans": total_retrans,
                      "reply": reply.decode(errors="replace").strip(),
                      "congestion": algo.split(b"\0", 1)[0].decode()}), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["sink", "source", "echo", "send"])
    parser.add_argument("--port", type=int, default=5001)
    parser.add_argument("--bytes", type=int, default=10 << 20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--connect", default=None)
    parser.add_argument("--no-hash", action="store_true")
    parser.add_argument("--congestion", default=None,
                        help="send, source: TCP_CONGESTION for the socket (reno, cubic, bbr)")
    args = parser.parse_args()
    if args.mode == "send":
        client_send(args)
        return 0
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("0.0.0.0", args.port))
    lsock.listen(max(128, args.count))
    print(f"READY {lsock.getsockname()[1]}", flush=True)
    threads = []
    for _ in range(args.count):
        conn, _addr = lsock.accept()
        t = threading.Thread(target=_serve, args=(conn, args), daemon=True)
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    lsock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
